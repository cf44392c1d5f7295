"""Issue 15 item 1: inference (eval, predict) runs in the run's precision and channels_last, with
cache-sized batches, while fp32 stays available and image-to-image tasks stay exact."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

from cnnlab.app.inference import load_fast
from cnnlab.cli import cli
from cnnlab.errors import CnnlabError
from cnnlab.rundir import Normalize, load_run
from cnnlab.train.precision import INFERENCE_PRECISIONS, inference_batch, inference_precision

TINY = ["--data", "builtin:shapes", "--model", "mini_xception", "--limit", "96", "--image-size", "32",
        "--batch-size", "16", "--val-split", "0.25", "--precision", "fp32", "--threads", "1",
        "--model-arg", "widths=[8,16]", "--model-arg", "stem_width=8", "--quiet", "--epochs", "1"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("inference") / "run"
    result = CliRunner().invoke(cli, ["train", "classify", *TINY, "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def test_batches_hold_about_a_fixed_number_of_pixels() -> None:
    assert [inference_batch(s) for s in [(32, 32), (128, 128), (256, 256), (2048, 2048)]] == [256, 16, 4, 1]
    assert inference_batch((128, 128), 7) == 7  # what the user asked for wins
    with pytest.raises(CnnlabError, match="--batch-size must be at least 1"):
        inference_batch((32, 32), 0)


def test_run_precision_resolves_the_trained_one_and_exact_tasks_stay_fp32() -> None:
    assert inference_precision("run", "fp32", "cpu").name == "fp32"
    assert inference_precision("run", "bf16", "cpu").name == "bf16"
    assert inference_precision("bf16", "fp32", "cpu").name == "bf16"  # asked for explicitly
    assert inference_precision("run", "bf16", "cpu", exact=True).name == "fp32"
    assert inference_precision("fp32", "bf16", "cpu").channels_last  # no weight gradient at inference
    with pytest.raises(CnnlabError, match="--precision 'half' is not one of: run, auto"):
        inference_precision("half", "fp32", "cpu")


def test_the_cli_offers_the_same_precisions() -> None:
    from cnnlab.cli import _options

    assert _options.INFERENCE_PRECISIONS == INFERENCE_PRECISIONS


def test_normalize_builds_its_tensors_once_and_can_emit_channels_last() -> None:
    pre = Normalize([0.5, 0.25, 0.0], [0.5, 0.5, 1.0])
    x = torch.randint(0, 256, (2, 3, 4, 5), dtype=torch.uint8)
    want = (x.float() / 255 - torch.tensor([0.5, 0.25, 0.0]).view(1, 3, 1, 1)) / torch.tensor([0.5, 0.5, 1.0]).view(1, 3, 1, 1)
    assert torch.equal(pre(x), want)
    cached = pre._tensors[(x.device, 4)][0]
    pre(x)
    assert pre._tensors[(x.device, 4)][0] is cached and len(pre._tensors) == 1
    pre.channels_last = True
    out = pre(x)
    assert out.is_contiguous(memory_format=torch.channels_last) and torch.equal(out, want)


def test_a_bf16_run_model_keeps_its_module_names_and_gives_float_outputs_close_to_fp32(run_dir) -> None:
    exact = load_run(run_dir)
    fast = load_fast(run_dir, precision="bf16")
    assert exact.precision is None and fast.precision.name == "bf16"
    assert [n for n, _ in fast.model.named_modules()] == [n for n, _ in exact.model.named_modules()]
    conv = next(m for m in fast.model.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size != (1, 1))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    x = torch.randint(0, 256, (4, 3, 32, 32), dtype=torch.uint8)
    with torch.no_grad():
        want = exact.model(exact.preprocess(x))
        got = fast.model(fast.preprocess(x))
    assert got.dtype == torch.float32
    assert not torch.equal(got, want)  # it really ran in bf16
    assert torch.allclose(got, want, atol=0.1 * want.abs().max().item())


def test_eval_reports_its_precision_and_fp32_matches_training(run_dir) -> None:
    runner = CliRunner()
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    exact = json.loads(runner.invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--json",
                                           "--precision", "fp32"]).output)
    assert exact["precision"] == "fp32" and exact["tta"] == "none"
    assert exact["loss"] == pytest.approx(history[-1]["val_loss"], rel=1e-4)
    bf16 = json.loads(runner.invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--json",
                                          "--precision", "bf16", "--batch-size", "5"]).output)
    assert bf16["precision"] == "bf16" and bf16["examples"] == 24
    assert bf16["loss"] == pytest.approx(exact["loss"], rel=0.05) and bf16["loss"] != exact["loss"]


def test_eval_tta_averages_flips_and_an_unknown_mode_is_refused(run_dir) -> None:
    runner = CliRunner()
    plain = json.loads(runner.invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--json"]).output)
    flip = json.loads(runner.invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--json",
                                          "--tta", "flip"]).output)
    assert flip["tta"] == "flip" and flip["loss"] != plain["loss"]
    result = runner.invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--tta", "rotate"])
    assert isinstance(result.exception, CnnlabError) and "--tta rotate is not defined" in str(result.exception)
