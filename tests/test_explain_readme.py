"""The README's Explain section: its Python example runs, and its CLI lines use real options."""

from __future__ import annotations

import re

from cnnlab.cli import cli
from conftest import REPO


def _section() -> str:
    text = (REPO / "README.md").read_text()
    return text.split("## Explain", 1)[1].split("\n## ", 1)[0]


def test_python_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", _section(), flags=re.S)
    assert len(blocks) == 1
    exec(compile(blocks[0], "README.md#explain", "exec"), {})  # our own README, not user input


def test_cli_lines_use_existing_options() -> None:
    blocks = re.findall(r"```bash\n(.*?)```", _section(), flags=re.S)
    lines = [line.split("#")[0].split() for block in blocks for line in block.strip().splitlines()]
    assert lines
    for words in lines:
        assert words[0] == "cnnlab" and words[1] in ("explain", "report")
        params = {opt for p in cli.get_command(None, words[1]).params for opt in p.opts}  # type: ignore[union-attr]
        used = {w for w in words if w.startswith("--")}
        assert used <= params, used - params
