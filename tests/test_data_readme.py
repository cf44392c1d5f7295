"""The README's Data section: its Python example runs as written and prints what the text says."""

from __future__ import annotations

import re
import subprocess
import sys

from conftest import REPO


def _section() -> str:
    return (REPO / "README.md").read_text().split("\n## Data\n", 1)[1].split("\n## ", 1)[0]


def test_data_example_runs() -> None:
    blocks = re.findall(r"```python\n(.*?)```", _section(), flags=re.S)
    assert len(blocks) == 1
    out = subprocess.run([sys.executable, "-c", blocks[0]], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert out.returncode == 0, out.stderr
    assert "['circle', 'square', 'triangle', 'star', 'cross', 'ring'] torch.Size([480, 3, 32, 32])" in out.stdout


def test_data_cli_examples_use_existing_options() -> None:
    from click.testing import CliRunner

    from cnnlab.cli import cli
    from cnnlab.data import parse_spec
    from cnnlab.models import list_models

    blocks = re.findall(r"```bash\n(.*?)```", _section(), flags=re.S)
    assert blocks
    for line in blocks[0].strip().splitlines():
        words = line.split()
        assert words[0] == "cnnlab"
        help_text = CliRunner().invoke(cli, [words[1], "--help"]).output
        for flag in (w for w in words if w.startswith("--")):
            assert flag in help_text, (line, flag)
        options = dict(zip(words[2:], words[3:], strict=False))
        if "--model" in options:
            assert options["--model"] in list_models()
        spec = options.get("--data", "").strip('"')
        if spec.startswith("builtin:") or spec.startswith("cifar10"):
            parse_spec(spec)  # raises on a spec that load_data would refuse
