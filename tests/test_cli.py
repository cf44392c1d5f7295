"""The CLI shell: help is instant (no torch import), unknown commands suggest close ones."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from cnnlab.cli import COMMANDS, cli


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(cli, ["--help"])
    assert result.exit_code == 0
    for name in COMMANDS:
        assert name in result.output


def test_help_does_not_import_torch() -> None:
    code = "import sys; from cnnlab.cli import main; main(['--help'])\n"
    code = "import sys\ntry:\n    " + code.strip() + "\nexcept SystemExit: pass\nprint('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip().endswith("False")


def test_unknown_command_suggests_a_close_one() -> None:
    result = CliRunner().invoke(cli, ["opz"])
    assert result.exit_code == 2
    assert "did you mean: ops" in result.output


def test_cnnlab_warnings_are_one_line(capsys) -> None:  # type: ignore[no-untyped-def]
    import warnings

    from cnnlab.cli import _one_line_warnings
    from cnnlab.data.images import DataWarning

    saved = warnings.showwarning
    try:
        _one_line_warnings()
        warnings.showwarning(DataWarning("skipped 1 unreadable image file(s): a.jpg"), DataWarning, "x.py", 3)
    finally:
        warnings.showwarning = saved
    assert capsys.readouterr().err == "warning: skipped 1 unreadable image file(s): a.jpg\n"


def test_key_values_parse_json_and_refuse_broken_json() -> None:
    import pytest

    from cnnlab.cli._options import parse_key_values
    from cnnlab.errors import CnnlabError

    assert parse_key_values(("widths=[8,16]", "act=gelu", "project=false"), "--set", "x=1") == {
        "widths": [8, 16], "act": "gelu", "project": False}
    with pytest.raises(CnnlabError, match=r"--set 'widths=\[1,2': the value is not valid JSON"):
        parse_key_values(("widths=[1,2",), "--set", "x=1")  # used to pass on as the string '[1,2'
    # numbers typed with commas are a list for every builder; other commas stay a string
    assert parse_key_values(("widths=32,64", "rates=0.5,2", "names=a,b", "mixed=1,x"), "--set", "x=1") == {
        "widths": [32, 64], "rates": [0.5, 2], "names": "a,b", "mixed": "1,x"}


def test_an_output_path_blocked_by_a_file_is_one_line(tmp_path, capsys) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from cnnlab.cli import main

    blocker = tmp_path / "taken.png"
    blocker.write_bytes(b"a file where the run folder should go")
    with pytest.raises(SystemExit) as info:  # was a FileExistsError traceback from mkdir
        main(["train", "classify", "--data", "builtin:shapes?n=60&size=16", "--model", "resnet20",
              "--epochs", "1", "--quiet", "--out", str(blocker)])
    err = capsys.readouterr().err.strip().splitlines()
    assert info.value.code == 2
    assert err[-1] == f"error: {blocker}: File exists; choose another path (--out) or fix this one"
