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
