"""benchmarks/keras_xception.py (issue 17): its Keras-on-torch row gets a venv that runs this torch, and
its table's columns line up whatever the labels and failures. No timing here: that is the benchmark's."""

from __future__ import annotations

import importlib.util
import venv
from types import ModuleType

import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("keras_xception", REPO / "benchmarks" / "keras_xception.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_table_columns_line_up(bench: ModuleType, capsys: pytest.CaptureFixture) -> None:
    best = {label: {"img_s": 70.6 - i} for i, (label, *_) in enumerate(bench.ROWS[:-2])}
    best["Keras 3 (torch backend)"] = {"error": "ModuleNotFoundError: No module named 'torch'"}
    best["Keras 3 (TensorFlow backend)"] = {"img_s": 27.2}
    bench._print_table(best, "wall seconds", 0)
    header, *rows = capsys.readouterr().out.splitlines()[1:-1]  # header .. last framework
    assert len(rows) == len(bench.ROWS)
    images_end, ratio_end = header.index("img/s") + len("img/s"), len(header)
    label_end = images_end - 9  # the label column, then a space and the 8 wide img/s column
    for row in rows:  # the longest label ("cnnlab auto, glibc malloc defaults") overflowed a fixed 32
        assert row[:label_end].rstrip() in best and row[label_end] == " ", row
        assert row[images_end - 1] != " " and row[images_end] == " ", row
        assert row[ratio_end - 1] != " " and row[ratio_end:ratio_end + 1] in ("", " "), row
    assert "ModuleNotFoundError" in next(row for row in rows if "failed" in row)


def test_the_keras_venv_runs_this_torch_and_a_bare_one_is_named(bench: ModuleType, tmp_path) -> None:
    """The docstring's old recipe (a --system-site-packages venv) sees the base interpreter, which need
    not have torch: the Keras-on-torch row failed. The script's own venv takes this torch from disk."""
    python = bench.make_keras_venv(tmp_path / "keras", packages=())  # pip installs nothing here: no network
    assert bench.torch_problem(str(python)) is None
    venv.EnvBuilder(with_pip=False).create(tmp_path / "bare")
    problem = bench.torch_problem(str(tmp_path / "bare" / "bin" / "python"))
    assert problem is not None and "no torch" in problem and "--make-keras-venv" in problem
    assert "--make-keras-venv" in bench.__doc__ and "--system-site-packages /tmp" not in bench.__doc__
