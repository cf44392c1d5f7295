"""`cnnlab demo` on tiny settings: trains, evaluates, writes samples, plots and the report, prints next steps."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.errors import CnnlabError

pytestmark = pytest.mark.slow


def test_demo_writes_a_run_and_says_what_next(tmp_path) -> None:
    out = tmp_path / "demo"
    args = ["demo", "--out", str(out), "--epochs", "1", "--images", "120", "--size", "32", "--widths", "8,16",
            "--precision", "fp32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "metrics.jsonl", "curves.png", "confusion.png", "report.html"):
        assert (out / name).is_file(), name
    assert len(list((out / "samples").glob("*.png"))) == 12  # 2 per class
    assert "validation top-1" in result.output
    for command in ("cnnlab eval", "cnnlab predict", "cnnlab explain", "cnnlab export"):
        assert command in result.output
    # Running it again continues the same run (here: already finished, nothing to train).
    again = CliRunner().invoke(cli, args)
    assert again.exit_code == 0, again.output
    assert "already trained" in again.output and "(the run was already trained)" in again.output
    assert len((out / "metrics.jsonl").read_text().splitlines()) == 1
    assert json.loads((out / "config.json").read_text())["model"]["name"] == "mini_xception"


def test_demo_refuses_a_folder_holding_another_run(tmp_path) -> None:
    out = tmp_path / "other"
    out.mkdir()
    (out / "config.json").write_text(json.dumps({"train": {"data": "x.npz", "model": "resnet20"}}))
    result = CliRunner().invoke(cli, ["demo", "--out", str(out)])
    assert isinstance(result.exception, CnnlabError)
    assert "holds another run" in str(result.exception)


@pytest.mark.parametrize(("task", "headline", "extra"), [
    ("segment", "validation mIoU", "iou.png"),
    ("superres", "validation PSNR (dB)", "curves.png"),
    ("denoise", "validation PSNR (dB)", "samples/val_0.png"),
    ("inpaint", "validation hole PSNR (dB)", "samples/masks/val_0.png"),
    ("localize", "validation mean IoU", "samples/circle_0.png"),
    ("compress", "validation PSNR (dB)", "samples/val_0.png"),
])
def test_demo_of_each_image_to_image_task(task: str, headline: str, extra: str, tmp_path) -> None:
    out = tmp_path / task
    args = ["demo", "--task", task, "--out", str(out), "--epochs", "1", "--images", "60", "--precision", "fp32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    for name in ("config.json", "model.safetensors", "report.html", extra):
        assert (out / name).is_file(), name
    assert headline in result.output and f"--out {out}/predicted" in result.output
    assert json.loads((out / "config.json").read_text())["task"] == task
    if task == "compress":  # the extra line it prints writes real files, and they decode
        import shlex

        line = next(ln.strip() for ln in result.output.splitlines() if ln.strip().startswith("cnnlab compress"))
        packed = CliRunner().invoke(cli, shlex.split(line.split("(")[0])[1:])
        assert packed.exit_code == 0, packed.output
        unpacked = CliRunner().invoke(cli, ["decompress", str(out), str(out / "packed"), "--out", str(out / "back")])
        assert unpacked.exit_code == 0 and len(list((out / "back").glob("*.png"))) == len(
            list((out / "samples").glob("*.png"))), unpacked.output


def test_demo_of_audio_and_its_next_steps_run(tmp_path) -> None:
    """The audio demo trains on builtin:tones, writes WAV samples, and the predict line it prints works."""
    import shlex

    out = tmp_path / "audio"
    args = ["demo", "--task", "audio", "--out", str(out), "--epochs", "1", "--images", "64", "--precision", "fp32"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "validation top-1" in result.output and (out / "report.html").is_file()
    wavs = sorted((out / "samples").glob("*.wav"))
    assert len(wavs) >= 6 and all(w.stem.rsplit("_", 1)[1].isdigit() for w in wavs)  # named by class
    line = next(ln.strip() for ln in result.output.splitlines() if ln.strip().startswith("cnnlab predict"))
    predicted = CliRunner().invoke(cli, shlex.split(line)[1:])
    assert predicted.exit_code == 0, predicted.output
    refused = CliRunner().invoke(cli, ["demo", "--task", "audio", "--size", "32", "--out", str(tmp_path / "x")])
    assert isinstance(refused.exception, CnnlabError) and "--size does not apply" in str(refused.exception)


def test_inpaint_demo_predict_line_uses_the_sample_masks(tmp_path) -> None:
    import glob
    import shlex

    out = tmp_path / "fill"
    result = CliRunner().invoke(cli, ["demo", "--task", "inpaint", "--out", str(out), "--epochs", "1", "--images",
                                      "40", "--precision", "fp32"])
    assert result.exit_code == 0, result.output
    line = next(ln.strip() for ln in result.output.splitlines() if ln.strip().startswith("cnnlab predict"))
    words = [w for part in shlex.split(line)[1:] for w in (sorted(glob.glob(part)) if "*" in part else [part])]
    predicted = CliRunner().invoke(cli, words)  # the shell's glob, done here
    assert predicted.exit_code == 0, predicted.output
    assert len(list((out / "predicted").glob("*.png"))) == len(list((out / "samples").glob("*.png")))
