"""`.ci/run` runs what it claims: it installs Chromium where it is missing, so the report's
real-browser test runs on CI instead of skipping."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

from conftest import REPO


def _run_ci_with(tmp_path: Path, *, uid: str) -> tuple[subprocess.CompletedProcess, str]:
    """Run .ci/run with fake id/apt-get/python/ruff on PATH that log their calls, and no chromium."""
    bin_dir, log = tmp_path / "bin", tmp_path / "calls.log"
    bin_dir.mkdir()
    fakes = {"id": f'echo {uid}', "apt-get": f'echo "apt-get $*" >> {log}',
             "python": f'echo "python $*" >> {log}', "ruff": f'echo "ruff $*" >> {log}'}
    for name, body in fakes.items():
        (bin_dir / name).write_text(f"#!/bin/sh\n{body}\n")
        (bin_dir / name).chmod(0o755)
    for tool in ("bash", "dirname"):  # the only real programs the script needs
        (bin_dir / tool).symlink_to(shutil.which(tool))
    # the PATH holds nothing else, so `command -v chromium` fails even where Chromium is installed
    env = {"PATH": str(bin_dir), "HOME": os.environ.get("HOME", "/tmp")}
    done = subprocess.run([str(bin_dir / "bash"), str(REPO / ".ci" / "run")], env=env, capture_output=True,
                          text=True, timeout=60)
    return done, log.read_text() if log.exists() else ""


def test_ci_installs_chromium_as_root_before_the_tests(tmp_path: Path) -> None:
    done, calls = _run_ci_with(tmp_path, uid="0")
    assert done.returncode == 0, done.stderr
    lines = calls.splitlines()
    install = next(i for i, line in enumerate(lines) if line.startswith("apt-get") and "install" in line)
    assert "chromium" in lines[install]
    assert install < next(i for i, line in enumerate(lines) if "pytest" in line)


def test_ci_without_root_says_the_browser_test_will_skip(tmp_path: Path) -> None:
    done, calls = _run_ci_with(tmp_path, uid="1000")
    assert done.returncode == 0, done.stderr
    assert "apt-get" not in calls and "chromium is missing" in done.stderr
    assert "pytest -n 2" in calls
