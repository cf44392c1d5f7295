"""What a new user met walking the README (issue 17): each defect has a test that failed before its fix."""

from __future__ import annotations

import dataclasses
import json
import os

import pytest
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.cli._options import parse_key_values
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model


def test_python_spellings_parse_and_strings_are_refused_where_a_bool_or_number_is_meant() -> None:
    assert parse_key_values(("project=False", "act=None", "x=True"), "--set", "a=1") == \
        {"project": False, "act": None, "x": True}
    for bad in ("False", "no", "ture"):  # each used to build the *projected* model: a truthy string
        with pytest.raises(CnnlabError, match="project=.* must be true or false"):
            create_model("mini_xception", num_classes=3, project=bad)
    with pytest.raises(CnnlabError, match="must be a number"):
        create_model("edsr_cpu", scale=2, width="48")
    assert create_model("mini_xception", num_classes=3, project=False, widths=[8, 16]).num_classes == 3


@pytest.mark.slow
def test_eval_finds_the_runs_own_split_however_the_folder_is_spelled(tmp_path, monkeypatch) -> None:
    from PIL import Image

    from cnnlab.app.evaluate import evaluate_run
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.runner import fit

    for c in ("a", "b"):
        (tmp_path / "photos" / c).mkdir(parents=True)
        for i in range(10):
            Image.new("RGB", (16, 16), (25 * i, 200 if c == "a" else 0, 0)).save(tmp_path / "photos" / c / f"{i}.png")
    monkeypatch.chdir(tmp_path)
    cfg = TrainConfig(data="photos/", model="resnet20", out="run", epochs=1, batch_size=4, val_split=0.2,
                      precision="fp32", threads=1)
    fit(dataclasses.replace(cfg), progress=False)
    for spelling in ("photos/", "photos", str(tmp_path / "photos"), "./photos"):
        result, _ = evaluate_run("run", spelling)
        assert (result["split"], result["examples"]) == ("val", 4), spelling
    with pytest.warns(UserWarning, match="scores images it trained on"):
        evaluate_run("run", "photos", split="all")
    assert json.loads((tmp_path / "run" / "config.json").read_text())["data"]["path"] == os.path.realpath("photos")


def test_cli_model_arg_false_is_false(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["models", "summary", "mini_xception", "--input-size", "3,32,32", "--set", "project=ture"])
    assert isinstance(result.exception, CnnlabError) and "must be true or false" in str(result.exception)


def test_a_model_typo_is_reported_before_the_data_is_read(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["train", "classify", "--data", str(tmp_path / "missing.npz"), "--model",
                                      "resnet2O", "--out", str(tmp_path / "r")])
    assert isinstance(result.exception, CnnlabError) and "unknown model 'resnet2O'" in str(result.exception)


@pytest.mark.slow
def test_done_line_says_validation_and_epoch_and_explain_refuses_too_many_channels(tmp_path) -> None:
    run = tmp_path / "r"
    args = ["train", "classify", "--data", "builtin:shapes?n=40&size=16", "--model", "resnet20", "--out", str(run),
            "--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--quiet"]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert "done: 1 epoch  validation: top1" in result.output
    others = [str(tmp_path / "all") if a == str(run) else a for a in args]
    alone = CliRunner().invoke(cli, [*others, "--val-split", "0"])
    assert alone.exit_code == 0 and "done: 1 epoch  no validation split" in alone.output, alone.output
    result = CliRunner().invoke(cli, ["explain", str(run), "--method", "filters", "--layer", "stem.0.conv",
                                      "--channels", "500", "--steps", "1"])
    assert isinstance(result.exception, CnnlabError) and "pass at most 16" in str(result.exception)


def test_every_command_with_a_device_option_defaults_to_auto() -> None:
    """train said auto while eval, predict, explain and report said cpu: a GPU user got CPU scoring."""
    import click

    from cnnlab.cli import COMMANDS

    seen = []
    for name in COMMANDS:
        command = cli.get_command(click.Context(cli), name)  # the group loads its commands lazily
        for option in getattr(command, "params", []):
            if "--device" in getattr(option, "opts", ()):
                # train's default is resolved later (the run's own value on --resume), its help says auto
                default = option.default if isinstance(option.default, str) else None  # or click's UNSET
                assert default in ("auto", None), (name, default)
                assert default == "auto" or "[default: auto]" in (option.help or ""), name
                seen.append(name)
    assert {"train", "eval", "predict", "explain", "report"} <= set(seen)


def test_models_summary_takes_train_s_model_arg_with_set_as_an_alias() -> None:
    runner = CliRunner()
    base = ["models", "summary", "mini_xception", "--input-size", "3,32,32"]
    named = runner.invoke(cli, [*base, "--model-arg", "widths=[8,16]"])
    alias = runner.invoke(cli, [*base, "--set", "widths=[8,16]"])
    assert named.exit_code == 0, named.output
    assert named.output == alias.output
    assert named.output != runner.invoke(cli, base).output  # the widths were applied
