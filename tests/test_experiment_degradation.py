"""`cnnlab experiment degradation`: four ordinary run directories trained with the named recipe, a
plot, a JSON record whose findings say whether the paper's result was reproduced, and an HTML page."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.experiments import degradation
from cnnlab.experiments.training import TrainedRun

TINY = "builtin:shapes?n=48&size=16"  # 6 classes; seconds for all four networks


@pytest.fixture(scope="module")
def out(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("degradation") / "deg"
    result = CliRunner().invoke(cli, ["experiment", "degradation", "--data", TINY, "--out", str(out),
                                      "--epochs", "1", "--quiet", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "plain-56 ends with a training error" in result.output
    return out


@pytest.mark.slow
def test_writes_the_plot_the_record_and_one_run_directory_per_model(out: Path) -> None:
    assert (out / "degradation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    record = json.loads((out / "degradation.json").read_text())
    assert record["experiment"] == "degradation" and record["plots"] == ["degradation.png"]
    assert [row[0] for row in record["table"]["rows"]] == list(degradation.MODELS)
    assert [row[1] for row in record["table"]["rows"]] == ["20", "56", "20", "56"]
    assert record["settings"]["recipe"] == "degradation" and record["settings"]["epochs"] == 1
    for model in degradation.MODELS:
        config = json.loads((out / model / "config.json").read_text())
        assert config["model"]["name"] == model and config["train"]["recipe"] == "degradation"
        assert config["train"]["optimizer"] == "sgd" and config["train"]["batch_size"] == 128
        assert len((out / model / "metrics.jsonl").read_text().splitlines()) == 1
        result = record["results"][model]
        assert len(result["train_error"]) == len(result["val_error"]) == 1 and 0 <= result["val_error"][0] <= 1


@pytest.mark.slow
def test_the_runs_are_ordinary_run_directories_and_the_folder_has_a_report(out: Path) -> None:
    result = CliRunner().invoke(cli, ["eval", str(out / "resnet20"), "--data", TINY, "--json"])
    assert result.exit_code == 0, result.output
    assert "top1" in json.loads(result.output.strip().splitlines()[-1])
    result = CliRunner().invoke(cli, ["report", str(out), "--out", str(out / "page.html")])
    assert result.exit_code == 0, result.output
    page = (out / "page.html").read_text()
    assert "Findings" in page and "plain56" in page and page.count("data:image/png;base64,") == 5  # plot + 4 curves


@pytest.mark.slow
def test_running_again_reads_the_finished_runs_back_without_training(out: Path) -> None:
    before = {m: (out / m / "metrics.jsonl").read_text() for m in degradation.MODELS}
    result = CliRunner().invoke(cli, ["experiment", "degradation", "--data", TINY, "--out", str(out),
                                      "--epochs", "1", "--quiet"])
    assert result.exit_code == 0, result.output
    assert "already trained for 1 epochs" in result.output
    assert before == {m: (out / m / "metrics.jsonl").read_text() for m in degradation.MODELS}


def _run(model: str, train_error: float, val_error: float = 0.5, train_size: int = 1000) -> TrainedRun:
    history = [{"epoch": 1, "train_top1": 1 - train_error, "val_top1": 1 - val_error, "images_per_s": 100.0,
                "seconds": 60.0}]
    config = {"data": {"info": {"class_names": [f"c{i}" for i in range(10)]}, "train_size": train_size}}
    return TrainedRun(model, Path(model), history, config, 853_018 if model.endswith("56") else 269_722, 1)


PAPER = {"plain20": _run("plain20", 0.10), "plain56": _run("plain56", 0.15),
         "resnet20": _run("resnet20", 0.10), "resnet56": _run("resnet56", 0.07)}


def test_findings_say_whether_each_half_of_the_paper_is_reproduced() -> None:
    plain, residual, same, val = degradation.findings(PAPER)
    assert "15.00%" in plain and "10.00%" in plain and "degradation problem is reproduced" in plain
    assert "still at chance" not in plain
    assert "gains from depth" in residual and "853,018" in same and "plain56 50.00%" in val
    # Both halves the other way round, by more than the noise of 1,000 training images.
    plain, residual, *_ = degradation.findings({**PAPER, "plain56": _run("plain56", 0.04),
                                                "resnet56": _run("resnet56", 0.14)})
    assert "does NOT reproduce" in plain and "has NOT overtaken" in residual and "after 1 epoch " in residual
    stuck = degradation.findings({**PAPER, "plain56": _run("plain56", 0.895)})[0]
    assert "is reproduced (but plain-56 is still at chance, 90.00% error" in stuck


def test_a_gap_inside_the_noise_of_the_training_images_names_no_winner() -> None:
    # 1 point on 1,000 images is inside the band (~2.7 points): neither reproduced nor contradicted.
    close = {**PAPER, "plain56": _run("plain56", 0.11), "resnet56": _run("resnet56", 0.09)}
    plain, residual, *_ = degradation.findings(close)
    assert "level within noise" in plain and "neither reproduces nor contradicts" in plain
    assert "level within noise" in residual and "NOT shown" in residual and "gains from depth" not in residual
    # The same 1 point on 100,000 images is far outside it (~0.3 points).
    big = {name: _run(name, 1 - run.last("train_top1"), train_size=100_000) for name, run in close.items()}
    plain, residual, *_ = degradation.findings(big)
    assert "degradation problem is reproduced" in plain and "gains from depth" in residual
    # Both plain nets at chance: the run has not begun, and says so instead of "reproduced".
    plain = degradation.findings({**PAPER, "plain20": _run("plain20", 0.89), "plain56": _run("plain56", 0.895)})[0]
    assert "both are still at chance" in plain and "says nothing about degradation" in plain
    assert "reproduced" not in plain


def test_missing_or_bad_data_is_one_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["experiment", "degradation", "--out", str(tmp_path)])
    assert result.exit_code != 0 and "--data" in result.output
    result = CliRunner().invoke(cli, ["experiment", "degradation", "--data", str(tmp_path / "nope"),
                                      "--out", str(tmp_path / "o"), "--epochs", "0"])
    assert result.exit_code != 0 and "--epochs must be at least 1" in str(result.exception)
