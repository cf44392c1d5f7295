"""Export and explain for tasks whose model takes more channels than the data has.

An inpaint model reads the image plus its hole mask (C + 1 channels). `cnnlab export`, the filter atlas
and `cnnlab report` built their example inputs from the data's C channels, and each stopped with a
PyTorch traceback ("The size of tensor a (3) must match the size of tensor b (4)").
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from cnnlab.cli import cli

pytestmark = pytest.mark.slow  # one tiny training run and one ONNX export


@pytest.fixture(scope="module")
def inpaint_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("inpaint") / "run"
    args = ["train", "inpaint", "--data", "builtin:shapes?n=12&size=32", "--model", "unet_small", "--patch", "16",
            "--hole", "2-6", "--out", str(out), "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def test_an_inpaint_run_exports_to_onnx_with_its_mask_channel(inpaint_run: Path, tmp_path: Path) -> None:
    import onnxruntime as ort

    out = tmp_path / "fill.onnx"
    result = CliRunner().invoke(cli, ["export", str(inpaint_run), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert float(result.output.rsplit("max abs difference", 1)[1]) < 1e-4
    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(out, alone / "fill.onnx")
    session = ort.InferenceSession(str(alone / "fill.onnx"), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert inp.name == "images_and_mask" and inp.shape[1] == 4  # RGB + the hole mask
    got = session.run(None, {inp.name: np.zeros((2, 4, 16, 16), np.float32)})[0]
    assert got.shape == (2, 3, 16, 16)


def test_an_inpaint_run_gets_a_filter_atlas(inpaint_run: Path, tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["explain", str(inpaint_run), "--method", "filters", "--channels", "4",
                                      "--steps", "2", "--out", str(tmp_path / "ex")])
    assert result.exit_code == 0, result.output
    assert len(list((tmp_path / "ex").glob("filters_*.png"))) == 1
