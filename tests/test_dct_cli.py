"""`--input dct` end to end through the CLI: train on a JPEG folder, eval (with DCT flip TTA), predict,
explain (maps drawn on the decoded image), export to ONNX; and the model really learns."""

from __future__ import annotations

import json

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli

pytestmark = pytest.mark.slow


def stripes(horizontal: bool, seed: int, size: int = 64) -> Image.Image:
    """Stripes of a random period and phase with noise: the class is their orientation, something the
    DCT sees directly (vertical stripes live in the horizontal frequencies u, horizontal ones in v)."""
    rng = np.random.default_rng(seed)
    period = rng.uniform(6, 14)
    t = np.arange(size)
    wave = 127 + 90 * np.sin(2 * np.pi * t / period + rng.uniform(0, 6.3))
    img = np.repeat(wave[:, None], size, 1) if horizontal else np.repeat(wave[None, :], size, 0)
    img = np.clip(img + rng.normal(0, 20, (size, size)), 0, 255).astype(np.uint8)
    return Image.fromarray(np.stack([img, img // 2 + 60, 255 - img], axis=-1))


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("stripes")
    for name, horizontal in (("horizontal", True), ("vertical", False)):
        (root / name).mkdir()
        for i in range(40):
            stripes(horizontal, 1000 * horizontal + i).save(root / name / f"{i}.jpg", quality=85)
    return root


def run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_train_eval_predict_explain_export(folder, tmp_path):
    out = tmp_path / "run"
    run("train", "classify", "--data", str(folder), "--input", "dct", "--model", "mini_xception_dct",
        "--image-size", "64", "--epochs", "6", "--batch-size", "16", "--lr", "3e-3", "--val-split", "0.25",
        "--out", str(out), "--quiet", "--threads", "1")
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["info"]["input"] == "dct" and config["preprocess"]["in_channels"] == 384
    assert config["preprocess"]["input_size"] == [4, 4] and config["preprocess"]["scale"] == 1.0
    final = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert final["val_top1"] >= 0.9, final  # orientation is one coefficient away: far above chance

    text = run("eval", str(out), "--data", str(folder), "--tta", "flip")
    assert "val" in text and "top1" in text
    rows = json.loads(run("predict", str(out), str(folder / "vertical" / "3.jpg"), "--format", "json"))
    assert rows[0]["top"][0]["class"] == "vertical"

    maps = tmp_path / "maps"
    run("explain", str(out), str(folder / "horizontal" / "1.jpg"), "--out", str(maps))
    png = next(maps.glob("*gradcam*.png"))
    assert Image.open(png).size[0] > 64  # image | overlay, drawn on the decoded pixels

    run("explain", str(out), "--method", "filters", "--steps", "2", "--channels", "4", "--out", str(maps))
    atlas = next(maps.glob("filters_*.png"))  # ascended on RGB pixels, encoded to coefficients on the way in
    assert Image.open(atlas).mode in ("RGB", "RGBA")
    run("report", str(out), "--samples", "2")
    assert (out / "report.html").stat().st_size > 10_000

    png = tmp_path / "not_a_jpeg.png"
    stripes(True, 7).save(png)
    refused = CliRunner().invoke(cli, ["predict", str(out), str(png)])
    assert refused.exit_code != 0 and "not_a_jpeg.png is not a JPEG" in str(refused.exception)

    run("export", str(out), "--format", "onnx")
    from cnnlab.dct.data import read_packed
    from cnnlab.rundir import load_run

    loaded = load_run(out)
    x = read_packed(folder / "vertical" / "3.jpg", (4, 4))[0][None].float()
    expected = loaded.model(loaded.preprocess(x)).detach().numpy()
    session = ort.InferenceSession(str(out / "model.onnx"))
    # the graph takes the packed dequantised coefficients themselves: the normalisation is inside
    got = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-3, atol=1e-3)


def test_dct_tta_refuses_translate(folder, tmp_path):
    out = tmp_path / "run"
    run("train", "classify", "--data", str(folder), "--input", "dct", "--model", "mini_xception_dct",
        "--image-size", "32", "--epochs", "1", "--out", str(out), "--quiet", "--limit", "20")
    result = CliRunner().invoke(cli, ["eval", str(out), "--data", str(folder), "--tta", "flip-translate"])
    assert result.exit_code != 0 and "none or flip" in str(result.exception)


def test_rgb_crop_run_reads_new_files_the_same_way(folder, tmp_path):
    out = tmp_path / "rgb"
    run("train", "classify", "--data", str(folder), "--fit", "crop", "--image-size", "48", "--epochs", "1",
        "--model", "resnet20", "--out", str(out), "--quiet", "--limit", "20")
    assert json.loads((out / "config.json").read_text())["data"]["info"]["fit"] == "crop"
    rows = json.loads(run("predict", str(out), str(folder / "vertical" / "3.jpg"), "--format", "json"))
    assert len(rows) == 1
