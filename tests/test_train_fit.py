"""fit(): bit-exact resume (after an epoch and after Ctrl-C mid-epoch), NaN stop, run-dir checks."""

from __future__ import annotations

import dataclasses
import json
import os
import signal

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.errors import CnnlabError
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.config import TrainConfig
from cnnlab.train.metrics import REQUIRED_KEYS
from cnnlab.train.runner import fit

pytestmark = pytest.mark.slow

# 96 shapes at 32x32, 72 for training in batches of 16: 4 steps per epoch, seconds per run.
TINY = TrainConfig(data="builtin:shapes", model="mini_xception", epochs=2, batch_size=16, limit=96,
                   val_split=0.25, image_size=32, precision="fp32", threads=1,
                   model_kwargs={"widths": [8, 16], "stem_width": 8})


def tiny(tmp_path, name: str, **changes) -> TrainConfig:
    return dataclasses.replace(TINY, out=str(tmp_path / name), **changes)


def weights(run_dir) -> dict[str, torch.Tensor]:
    return load_file(str(run_dir / ckpt.MODEL))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted 2-epoch run."""
    cfg = dataclasses.replace(TINY, out=str(tmp_path_factory.mktemp("ref") / "run"))
    return fit(cfg, progress=False)


def test_run_directory_and_metrics_format(reference) -> None:
    run = reference.run_dir
    for name in ("config.json", "model.safetensors", "state.safetensors", "state.json", "metrics.jsonl",
                 "curves.png", "confusion.png"):
        assert (run / name).is_file(), name
    lines = (run / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    assert [r["epoch"] for r in rows] == [1, 2] and [r["step"] for r in rows] == [4, 8]
    for row in rows:
        assert set(REQUIRED_KEYS) <= set(row)
        assert {"train_top1", "train_top5", "val_loss", "val_top1", "val_top5"} <= set(row)
        assert all(isinstance(v, (int, float)) for v in row.values())
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["kwargs"]["num_classes"] == 6 and config["preprocess"]["image_size"] == [32, 32]
    assert config["train"]["lr"] == 2e-3  # the resolved value, not None
    assert not list(run.glob(".*.tmp"))  # no temporary files left behind


def test_resume_after_ctrl_c_is_bit_exact(tmp_path, reference) -> None:
    """Ctrl-C mid-epoch 1, resume, Ctrl-C mid-epoch 2, resume: the same weights as never stopping."""
    cfg = tiny(tmp_path, "run")

    def press_ctrl_c_at(step: int):
        def on_step(pos, loss: float) -> None:
            if pos.step == step:
                os.kill(os.getpid(), signal.SIGINT)  # the real signal: the handler defers it to here
        return on_step

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, on_step=press_ctrl_c_at(2), progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert (state["epoch"], state["batch"], state["step"]) == (0, 2, 2)
    with pytest.raises(KeyboardInterrupt):
        fit(cfg, resume=True, on_step=press_ctrl_c_at(6), progress=False)
    result = fit(cfg, resume=True, progress=False)
    expected, got = weights(reference.run_dir), weights(result.run_dir)
    assert expected.keys() == got.keys()
    for key in expected:
        assert torch.equal(expected[key], got[key]), key
    for key in ("train_loss", "train_top1", "val_loss", "val_top1"):
        assert [r[key] for r in result.history] == [r[key] for r in reference.history], key


def test_resume_of_a_finished_run_trains_nothing(reference) -> None:
    cfg = dataclasses.replace(TINY, out=str(reference.run_dir))
    before = weights(reference.run_dir)
    result = fit(cfg, resume=True, progress=False)
    assert not result.trained
    assert all(torch.equal(before[k], v) for k, v in weights(reference.run_dir).items())


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    from cnnlab.tasks.classify import ClassifyTask

    real_loss = ClassifyTask.loss
    calls = {"n": 0}

    def loss(self, outputs, targets):
        calls["n"] += 1
        value = real_loss(self, outputs, targets)
        return value * float("nan") if calls["n"] == 6 else value  # second step of epoch 2

    monkeypatch.setattr(ClassifyTask, "loss", loss)
    cfg = tiny(tmp_path, "run", val_split=0.0, limit=72)  # no validation: only training calls the loss
    with pytest.raises(CnnlabError, match=r"loss became nan at epoch 2, step 5.*checkpoint of epoch 1 is kept"):
        fit(cfg, progress=False)
    state = json.loads((tmp_path / "run" / "state.json").read_text())
    assert state["epoch"] == 1 and state["step"] == 4
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 1
    assert all(torch.isfinite(t.float()).all() for t in weights(tmp_path / "run").values())


def test_existing_run_without_resume_is_refused(reference) -> None:
    with pytest.raises(CnnlabError, match="already holds a run; pass --resume"):
        fit(dataclasses.replace(TINY, out=str(reference.run_dir)), progress=False)


def test_resume_with_a_different_config_names_the_keys(reference) -> None:
    cfg = dataclasses.replace(TINY, out=str(reference.run_dir), lr=0.5, model_kwargs={"widths": [8]})
    with pytest.raises(CnnlabError, match=r"differs in model_kwargs: .*; lr: 0.002 -> 0.5"):
        fit(cfg, resume=True, progress=False)


def test_resume_of_another_tasks_run_is_refused(tmp_path, reference) -> None:
    run = tmp_path / "seg"
    run.mkdir()
    config = json.loads((reference.run_dir / "config.json").read_text())
    config["task"] = "segment"
    (run / "config.json").write_text(json.dumps(config))
    with pytest.raises(CnnlabError, match="is a 'segment' run, not 'classify'"):
        fit(dataclasses.replace(TINY, out=str(run)), resume=True, progress=False)


def test_resume_without_a_run_is_refused(tmp_path) -> None:
    with pytest.raises(CnnlabError, match="holds no run"):
        fit(tiny(tmp_path, "none"), resume=True, progress=False)


def test_images_too_small_for_the_model_fail_before_the_run_directory_exists(tmp_path) -> None:
    # cifar_fast pools 8x8 images down to nothing: this was a torch RuntimeError in the first step,
    # after config.json was written, so the folder could only be "resumed" into the same error
    cfg = tiny(tmp_path, "small", model="cifar_fast", model_kwargs={}, image_size=8)
    with pytest.raises(CnnlabError, match=r"model 'cifar_fast' cannot train on 3x8x8 images: layer 'group3.pool'"):
        fit(cfg, progress=False)
    assert not (tmp_path / "small").exists()


def test_init_from_data_is_called_with_preprocessed_images(tmp_path, monkeypatch) -> None:
    from cnnlab.models.mini_xception import MiniXception

    seen = []
    monkeypatch.setattr(MiniXception, "init_from_data", lambda self, x: seen.append(x), raising=False)
    fit(tiny(tmp_path, "run", epochs=1), progress=False)
    assert len(seen) == 1 and seen[0].dtype == torch.float32 and seen[0].shape[1:] == (3, 32, 32)
    assert abs(float(seen[0].mean())) < 0.2  # normalised with the training statistics


def test_bf16_autocast_trains_in_channels_last(tmp_path) -> None:
    result = fit(tiny(tmp_path, "bf16", precision="bf16", epochs=1), progress=False)
    config = json.loads((result.run_dir / "config.json").read_text())
    assert config["resolved"]["precision"] == "bf16"
    row = result.history[0]
    assert row["train_loss"] == row["train_loss"] and 0 < row["train_loss"] < 10  # finite
    saved = weights(result.run_dir)
    assert all(t.dtype != torch.bfloat16 for t in saved.values())  # master weights stay fp32


def test_two_classes_with_a_single_logit(tmp_path) -> None:
    """--model-arg num_classes=1 on two-class data: one output column trained with BCE."""
    from cnnlab.rundir import load_run

    cfg = tiny(tmp_path, "binary", data="builtin:shapes?classes=2", epochs=1,
               model_kwargs={"widths": [8, 16], "stem_width": 8, "num_classes": 1})
    result = fit(cfg, progress=False)
    run = load_run(result.run_dir)
    assert run.model.num_classes == 1 and run.class_names == ["circle", "square"]
    probs = run.task.predict(run.model(run.preprocess(torch.zeros(2, 3, 32, 32, dtype=torch.uint8))))
    assert probs.shape == (2, 2)
    with pytest.raises(CnnlabError, match="num_classes=3 does not fit the data's 2 classes"):
        fit(dataclasses.replace(cfg, out=str(tmp_path / "bad"), model_kwargs={"num_classes": 3}), progress=False)


def test_fit_leaves_the_callers_thread_count_as_it_found_it(tmp_path) -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        fit(tiny(tmp_path, "threads", epochs=1, threads=1), progress=False)
        assert torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


# airbench's tricks together (8 steps: the lookahead pulls at step 5 and at the end), with the
# norm-layer lr, schedule fractions and a flip-TTA final evaluation.
AIRBENCH = dict(lookahead=True, norm_lr_scale=8.0, lr_start=0.2, lr_end=0.07, tta="flip")


@pytest.fixture(scope="module")
def reference_airbench(tmp_path_factory):
    """An uninterrupted 2-epoch run with lookahead, norm_lr_scale, lr_start/lr_end and TTA."""
    cfg = dataclasses.replace(TINY, out=str(tmp_path_factory.mktemp("ref_la") / "run"), **AIRBENCH)
    return fit(cfg, progress=False)


def test_lookahead_resume_after_ctrl_c_restores_weights_and_ema_exactly(tmp_path, reference_airbench) -> None:
    cfg = tiny(tmp_path, "run", **AIRBENCH)

    def ctrl_c_at_step_6(pos, loss: float) -> None:
        if pos.step == 6:  # after the pull at step 5: the resumed run needs the saved EMA
            os.kill(os.getpid(), signal.SIGINT)

    with pytest.raises(KeyboardInterrupt):
        fit(cfg, on_step=ctrl_c_at_step_6, progress=False)
    run = tmp_path / "run"
    saved_ema = load_file(str(run / "lookahead.safetensors"))
    assert saved_ema.keys() and all(t.dtype.is_floating_point for t in saved_ema.values())
    result = fit(cfg, resume=True, progress=False)
    ref = reference_airbench.run_dir
    for name in (ckpt.MODEL, "lookahead.safetensors"):
        expected, got = load_file(str(ref / name)), load_file(str(run / name))
        assert expected.keys() == got.keys()
        for key in expected:
            assert torch.equal(expected[key], got[key]), (name, key)
    assert result.history == [dict(r, seconds=g["seconds"], images_per_s=g["images_per_s"])
                              for r, g in zip(reference_airbench.history, result.history, strict=True)]
    # the final pull made the net the EMA
    final_ema, final_net = load_file(str(run / "lookahead.safetensors")), weights(run)
    assert all(torch.equal(final_ema[k], final_net[k]) for k in final_ema)


def test_final_tta_metrics_sit_next_to_the_plain_ones(reference_airbench) -> None:
    first, last = reference_airbench.history
    assert not any(k.startswith("val_tta_") for k in first)  # per-epoch validation stays plain
    assert {"val_top1", "val_loss", "val_tta_top1", "val_tta_loss"} <= set(last)
    assert last["val_tta_loss"] != last["val_loss"]  # a different evaluation, not a copy
    assert reference_airbench.final["top1"] == last["val_top1"]
    assert reference_airbench.final["tta_top1"] == last["val_tta_top1"]
    state = json.loads((reference_airbench.run_dir / "state.json").read_text())
    lrs = [g["lr"] for g in state["optimizer"]["param_groups"]]
    assert len(lrs) == 3 and lrs[2] == pytest.approx(8 * lrs[0])  # the norm group at 8x the lr


def test_runs_saved_before_the_new_options_still_resume(tmp_path, reference) -> None:
    import shutil

    run = tmp_path / "old"
    shutil.copytree(reference.run_dir, run)
    config = json.loads((run / "config.json").read_text())
    for key in ("lookahead", "tta", "norm_lr_scale", "lr_start", "lr_end"):
        del config["train"][key]  # what a run written by the previous version holds
    (run / "config.json").write_text(json.dumps(config))
    assert not fit(dataclasses.replace(TINY, out=str(run)), resume=True, progress=False).trained


def test_tta_for_a_task_without_per_image_logits_is_refused_before_anything_is_written(tmp_path, monkeypatch
                                                                                        ) -> None:
    from cnnlab.tasks.classify import ClassifyTask

    monkeypatch.setattr(ClassifyTask, "tta_modes", ("none", "flip"))  # as a segmentation task's are
    with pytest.raises(CnnlabError, match="--tta flip-translate is not defined for task 'classify'"):
        fit(tiny(tmp_path, "seg", tta="flip-translate"), progress=False)
    assert not (tmp_path / "seg").exists()
