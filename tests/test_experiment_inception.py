"""`cnnlab experiment inception-vs-xception`: two run directories trained with one recipe, parameters
within 2%, accuracy / speed / mult-adds side by side, findings that say whether the paper's claim held."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.experiments import inception_vs_xception as ivx
from cnnlab.experiments.training import TrainedRun

TINY = "builtin:shapes?n=48&size=16"


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("ivx") / "ivx"
    result = CliRunner().invoke(cli, ["experiment", "inception-vs-xception", "--data", TINY, "--out", str(out),
                                      "--epochs", "1", "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "apart" in result.output and "Caveat" in result.output
    return out


@pytest.mark.slow
def test_writes_plot_record_and_two_runs_with_parameters_within_2_percent(out: Path) -> None:
    assert (out / "inception_vs_xception.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "inception_vs_xception.json").read_text())
    assert record["experiment"] == "inception-vs-xception" and record["settings"]["recipe"] == ivx.RECIPE
    assert [row[0] for row in record["table"]["rows"]] == list(ivx.MODELS)
    assert record["parameter_gap"] < 0.02
    results = record["results"]
    for model in ivx.MODELS:
        config = json.loads((out / model / "config.json").read_text())
        assert config["model"]["name"] == model and config["train"]["recipe"] == ivx.RECIPE
        # shapes has 6 classes, so the heads differ from the 10-class defaults, the bodies do not
        assert 800_000 < results[model]["params"] < 850_000 and results[model]["mult_adds"] > 0
        assert len(results[model]["val_top1"]) == 1 and results[model]["images_per_s"] > 0
    # Same recipe for both: the runs' training settings differ in nothing but the model.
    a, b = (json.loads((out / m / "config.json").read_text())["train"] for m in ivx.MODELS)
    assert {k for k in a if a[k] != b.get(k)} <= {"model", "out"}


@pytest.mark.slow
def test_the_output_folder_has_a_report_with_the_plot_and_both_runs(out: Path) -> None:
    result = CliRunner().invoke(cli, ["report", str(out), "--out", str(out / "page.html")])
    assert result.exit_code == 0, result.output
    page = (out / "page.html").read_text()
    assert "xception_small" in page and "Caveat" in page and page.count("data:image/png;base64,") == 3


def _run(model: str, top1: float, images_per_s: float, macs: int, val_size: int = 1000,
         threads: int = 1) -> TrainedRun:
    history = [{"epoch": 1, "val_top1": top1, "train_loss": 1.0, "images_per_s": images_per_s, "seconds": 60.0}]
    config = {"preprocess": {"input_size": [32, 32]}, "data": {"train_size": 1000, "val_size": val_size},
              "resolved": {"threads": threads}}
    return TrainedRun(model, Path(model), history, config, 826_938 if model.startswith("inc") else 819_794, macs)


PAPER = {"inception_small": _run("inception_small", 0.60, 30.0, 116_700_000),
         "xception_small": _run("xception_small", 0.65, 12.0, 150_000_000)}


def test_findings_say_whether_xception_won_and_whether_mult_adds_predicted_speed() -> None:
    params, accuracy, speed, caveat = ivx.findings(PAPER)
    assert "0.9% apart" in params and "MORE" not in params
    assert "+5.00 points" in accuracy and "as in the paper" in accuracy
    assert "1 thread:" in speed and "inception_small is 2.50x faster" in speed and "fewer mult-adds" in speed
    assert "1,000 training images" in caveat and "ImageNet" in caveat
    reversed_ = {**PAPER, "xception_small": _run("xception_small", 0.55, 40.0, 150_000_000)}
    _, accuracy, speed, _ = ivx.findings(reversed_)
    assert "does NOT reproduce" in accuracy and "xception_small is 1.33x faster despite more mult-adds" in speed
    assert "do not predict the speed" in speed


def test_gaps_inside_the_noise_name_no_winner() -> None:
    # 2 points on 1,000 validation images is inside the band (~4.3 points); 5% apart in speed is a tie.
    close = {"inception_small": _run("inception_small", 0.60, 40.0, 116_700_000),
             "xception_small": _run("xception_small", 0.62, 42.0, 150_000_000)}
    _, accuracy, speed, _ = ivx.findings(close)
    assert "level within noise" in accuracy and "does NOT show" in accuracy and "as in the paper" not in accuracy
    assert "level (within 10%" in speed and "faster" not in speed
    # The same 2 points on 100,000 images is a real gap; identical accuracies never are.
    big = {m: _run(m, r.last("val_top1"), 40.0, r.macs, val_size=100_000) for m, r in close.items()}
    assert "as in the paper" in ivx.findings(big)[1]
    tie = {m: _run(m, 0.10, 40.0, r.macs, val_size=0) for m, r in close.items()}
    assert "level within noise" in ivx.findings(tie)[1]
    # Runs timed with different thread counts are not compared as if they were alike.
    mixed = {**close, "xception_small": _run("xception_small", 0.62, 80.0, 150_000_000, threads=2)}
    speed = ivx.findings(mixed)[2]
    assert "not compared (the two runs used different thread counts)" in speed and "faster" not in speed


def test_a_stem_stride_other_than_1_or_2_is_refused_by_name(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["experiment", "inception-vs-xception", "--data", TINY,
                                      "--out", str(tmp_path), "--stem-stride", "3"])
    assert result.exit_code != 0 and "--stem-stride 3" in str(result.exception)
