"""train -> eval -> predict -> export from the command line, the user errors, and 2-process DDP."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.errors import CnnlabError

pytestmark = pytest.mark.slow

TINY = ["--data", "builtin:shapes", "--model", "mini_xception", "--limit", "96", "--image-size", "32",
        "--batch-size", "16", "--val-split", "0.25", "--precision", "fp32", "--threads", "1",
        "--model-arg", "widths=[8,16]", "--model-arg", "stem_width=8", "--quiet"]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "run"
    result = CliRunner().invoke(cli, ["train", "classify", *TINY, "--out", str(out), "--epochs", "1",
                                      "--label-smoothing", "0.1", "--optimizer", "sgd", "--lr", "0.05"])
    assert result.exit_code == 0, result.output
    assert "cnnlab eval" in result.output  # the next commands to try
    return out


def test_train_writes_the_resolved_cli_options(run_dir) -> None:
    config = json.loads((run_dir / "config.json").read_text())
    train = config["train"]
    assert (train["optimizer"], train["lr"], train["task_options"]["label_smoothing"], train["epochs"]) == ("sgd", 0.05, 0.1, 1)
    assert train["model_kwargs"] == {"widths": [8, 16], "stem_width": 8}
    assert config["task_options"] == {"label_smoothing": 0.1}


def test_eval_json_is_one_object_with_metrics_and_confusion(run_dir) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["split"] == "val" and data["examples"] == 24  # the run's own held-out 25% of 96
    assert {"loss", "top1", "top5"} <= set(data)
    assert sum(map(sum, data["confusion"])) == 24
    assert set(data["per_class"]) == {"circle", "square", "triangle", "star", "cross", "ring"}
    history = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert data["top1"] == pytest.approx(history[-1]["val_top1"], abs=1e-6)  # same split, same numbers
    assert (run_dir / "eval_confusion.png").is_file()


def test_eval_prints_tables(run_dir) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes"])
    assert result.exit_code == 0, result.output
    assert "per class" in result.output and "confusion matrix" in result.output


def test_predict_files_and_folders(run_dir, tmp_path) -> None:
    from PIL import Image

    from cnnlab.data import load_data

    bundle = load_data("builtin:shapes", limit=12, image_size=32)
    (tmp_path / "imgs").mkdir()
    for i in range(3):
        Image.fromarray(bundle.train.x[i].permute(1, 2, 0).numpy()).save(tmp_path / "imgs" / f"{i}.png")
    single = tmp_path / "imgs" / "0.png"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(tmp_path / "imgs"), str(single),
                                      "--top-k", "2", "--format", "json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert len(rows) == 4
    for row in rows:
        assert len(row["top"]) == 2 and row["top"][0]["probability"] >= row["top"][1]["probability"]
    out = tmp_path / "preds"
    result = CliRunner().invoke(cli, ["predict", str(run_dir), str(single), "--format", "csv", "--out", str(out)])
    assert result.exit_code == 0, result.output
    lines = (out / "predictions.csv").read_text().splitlines()
    assert lines[0] == "path,rank,class,probability" and len(lines) == 4
    from cnnlab.app.predict import predict_files  # the library call behind the command

    assert predict_files(run_dir, [str(single)], top_k=2) == rows[-1:]


def test_export_onnx_matches_pytorch(run_dir, tmp_path) -> None:
    out = tmp_path / "m.onnx"
    result = CliRunner().invoke(cli, ["export", str(run_dir), "--format", "onnx", "--out", str(out)])
    assert result.exit_code == 0, result.output
    diff = float(result.output.rsplit("max abs difference", 1)[1])
    assert diff < 1e-4
    import onnx

    graph = onnx.load(str(out)).graph
    assert graph.input[0].type.tensor_type.shape.dim[0].dim_param  # a named (dynamic) batch axis
    # The file stands alone: copied into an empty folder it still runs (the weights were external data
    # beside a temporary name once), and no hidden file is left beside it.
    import shutil

    import numpy as np
    import onnxruntime as ort

    alone = tmp_path / "elsewhere"
    alone.mkdir()
    shutil.copy(out, alone / "m.onnx")
    session = ort.InferenceSession(str(alone / "m.onnx"), providers=["CPUExecutionProvider"])
    assert session.run(None, {"images": np.zeros((1, 3, 32, 32), np.float32)})[0].shape[0] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_user_errors_are_one_clear_message(run_dir, tmp_path) -> None:
    runner = CliRunner()
    cases = [
        (["train", "clasify", *TINY, "--out", str(tmp_path / "a")], "did you mean: classify"),
        (["train", "segment", *TINY, "--out", str(tmp_path / "a")], "per-pixel class logits; pick a segment model"),
        (["train", "classify", *TINY, "--scale", "3", "--out", str(tmp_path / "a")], "has no option --scale"),
        (["train", "classify", *TINY, "--model", "mini_xceptio", "--out", str(tmp_path / "a")],
         "did you mean: mini_xception"),
        # past 12 models the error says where to see them all; the recipes are listed by name
        (["train", "classify", *TINY, "--model", "zzz", "--out", str(tmp_path / "a")], "see `cnnlab models list`"),
        (["train", "classify", *TINY, "--recipe", "zzz", "--out", str(tmp_path / "a")], "cifar10-fast, compress-bsds"),
        (["train", "classify", *TINY, "--out", str(run_dir)], "pass --resume to continue it, or choose a new --out"),
        (["train", "classify", *TINY, "--out", str(run_dir), "--resume", "--seed", "3"], "differs in seed: 0 -> 3"),
        (["eval", str(tmp_path / "missing"), "--data", "builtin:shapes"], "is not a run directory"),
        (["predict", str(tmp_path / "missing"), "x.png"], "is not a run directory"),
        (["eval", str(run_dir), "--data", "builtin:shapes?classes=3&n=60"], "the run was trained on"),
        (["train", "classify", *TINY, "--out", str(tmp_path / "b"), "--model-arg", "nokey"], "KEY=VALUE"),
        # --resume with only --out on a folder without a run: name the missing run, not the missing --data
        (["train", "classify", "--out", str(tmp_path / "none"), "--resume"], "holds no run (no config.json)"),
        # a device name torch does not know was a RuntimeError traceback
        (["train", "classify", *TINY, "--out", str(tmp_path / "c"), "--device", "gpu"], "--device 'gpu' is not a device"),
        (["eval", str(run_dir), "--data", "builtin:shapes", "--device", "gpu"], "use auto, cpu, cuda or cuda:N"),
        (["eval", str(run_dir), "--data", "builtin:shapes", "--batch-size", "0"], "--batch-size must be at least 1"),
        # used to create a folder "p.txt" holding predictions.csv
        (["predict", str(run_dir), "x.png", "--out", str(tmp_path / "p.txt")], "name a .csv/.json file or a folder"),
    ]
    for args, message in cases:
        result = runner.invoke(cli, args)
        assert isinstance(result.exception, CnnlabError), (args, result.output, result.exception)
        assert message in str(result.exception), (args, str(result.exception))


def test_resume_from_the_cli_continues_to_more_epochs(run_dir, tmp_path) -> None:
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    # Only --out, --epochs and --resume: every other setting comes from the run's config.json.
    result = CliRunner().invoke(cli, ["train", "classify", "--out", str(copy), "--epochs", "2", "--resume", "--quiet"])
    assert result.exit_code == 0, result.output
    assert [json.loads(x)["epoch"] for x in (copy / "metrics.jsonl").read_text().splitlines()] == [1, 2]


def test_torchrun_two_processes_on_cpu(tmp_path) -> None:
    out = tmp_path / "ddp"
    env = dict(os.environ, OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           "-m", "cnnlab", "train", "classify", *TINY, "--out", str(out), "--epochs", "1"]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    for name in ("config.json", "model.safetensors", "state.json", "metrics.jsonl", "curves.png"):
        assert (out / name).is_file(), name
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    # 72 training images over 2 ranks = 36 each = 2 full batches of 16 per rank.
    assert len(rows) == 1 and rows[0]["step"] == 2
    assert {"train_loss", "train_top1", "val_loss", "val_top1", "images_per_s", "lr"} <= set(rows[0])
    config = json.loads((out / "config.json").read_text())
    assert config["resolved"]["world_size"] == 2
    assert proc.stderr.count("done:") == 1  # only rank 0 reports


def test_eval_on_other_data_uses_every_example(run_dir) -> None:
    result = CliRunner().invoke(cli, ["eval", str(run_dir), "--data", "builtin:shapes?n=60&size=32", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert (data["split"], data["examples"]) == ("all", 60)


@pytest.mark.data
def test_train_and_eval_on_a_real_image_folder(shared_data, tmp_path) -> None:
    out = tmp_path / "cats"
    args = ["train", "classify", "--data", str(shared_data / "cats_vs_dogs"), "--model", "mini_xception",
            "--limit", "40", "--image-size", "32", "--batch-size", "8", "--epochs", "1", "--precision", "fp32",
            "--threads", "1", "--model-arg", "widths=[8]", "--quiet", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    config = json.loads((out / "config.json").read_text())
    assert config["data"]["info"]["class_names"] == ["cats", "dogs"] and config["data"]["train_size"] == 36
    result = CliRunner().invoke(cli, ["predict", str(out), str(shared_data / "cats_vs_dogs" / "train" / "cats"),
                                      "--format", "json", "--top-k", "1"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 300  # every cat photo of the shared set
