"""Starting or resuming a run directory: the checks that refuse a mismatch, and the checkpoint of a
position in training (weights, lookahead EMA, optimizer, RNG and the epoch's running sums)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.rundir import data_info
from cnnlab.tasks import Meter
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.config import TrainConfig, config_differences
from cnnlab.train.lookahead import FILE as LOOKAHEAD_FILE
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import Position


def check_run_dir(run_dir: Path, cfg: TrainConfig, resume: bool) -> dict[str, Any] | None:
    """The saved config.json of ``run_dir`` when resuming (after checking it matches ``cfg``), else None."""
    path = run_dir / ckpt.CONFIG
    if not path.exists():
        if resume:
            raise CnnlabError(f"--resume: {run_dir} holds no run (no {ckpt.CONFIG}); drop --resume to start one")
        return None
    if not resume:
        raise CnnlabError(f"{run_dir} already holds a run; pass --resume to continue it, or choose a new --out")
    saved = ckpt.read_json(path)
    if saved.get("task") != cfg.task:
        raise CnnlabError(f"{run_dir} is a {saved.get('task')!r} run, not {cfg.task!r}: resume it with "
                          f"`cnnlab train {saved.get('task')} ... --resume`, or choose a new --out")
    # A run saved before an option existed trained with its default: compare against that.
    diffs = config_differences(TrainConfig.upgrade({**TrainConfig().to_dict(), **saved["train"]}), cfg.to_dict())
    if diffs:
        raise CnnlabError(f"cannot resume {run_dir}: the config differs in {'; '.join(diffs)}; "
                          "drop those options (the run's own values are used) or choose a new --out")
    return saved


def check_data_matches(saved: dict[str, Any], info: dict[str, Any], run_dir: Path) -> None:
    """On resume the data must give the same info (classes, channels, image size) as the run's."""
    diffs = config_differences(data_info(saved), info, tuple(info))
    if diffs:
        raise CnnlabError(f"cannot resume {run_dir}: the data differs in {'; '.join(diffs)}; use the run's data or a new --out")


def checkpoint_files(lookahead: Lookahead | None) -> tuple[str, ...]:
    """The files one checkpoint of this run consists of."""
    return ckpt.FILES if lookahead is None else (*ckpt.FILES, LOOKAHEAD_FILE)


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, pos: Position,
                    lookahead: Lookahead | None = None, scaler: torch.amp.GradScaler | None = None) -> None:
    """Weights, the lookahead EMA (when used), then optimizer + RNG state, then state.json last (it
    marks the checkpoint complete; every file carries the step, so a mix is detected on resume), after
    keeping the checkpoint they replace in .previous/ (what ``restore_checkpoint`` falls back to)."""
    ckpt.keep_previous(run_dir, checkpoint_files(lookahead))
    ckpt.save_model(run_dir / ckpt.MODEL, model, pos.step)
    if lookahead is not None:
        lookahead.save(run_dir / LOOKAHEAD_FILE, pos.step)
    ckpt.save_state(run_dir, optimizer, {
        "epoch": pos.epoch, "batch": pos.batch, "step": pos.step, "loss_sum": pos.loss_sum,
        "seen": pos.seen, "train_seconds": pos.train_seconds,
        "meter": pos.meter.state().tolist() if pos.meter is not None and pos.batch else None,
        # fp16's loss scale and its growth counter: without them a resumed run restarts at 65536 and
        # skips steps finding the scale again, so it would not end with the same weights
        "scaler": scaler.state_dict() if scaler is not None and scaler.is_enabled() else None,
    })


def restore_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meter: Meter,
                       lookahead: Lookahead | None = None, scaler: torch.amp.GradScaler | None = None
                       ) -> Position:
    """Load weights, optimizer and RNG state (and the lookahead EMA); the Position to continue from
    (fresh when none saved). ``meter`` (a fresh training meter) gets the running sums of an epoch
    interrupted mid-way."""
    if not (run_dir / ckpt.STATE_JSON).exists() and not (run_dir / ckpt.PREVIOUS / ckpt.STATE_JSON).exists():
        return Position()
    names = checkpoint_files(lookahead)
    ckpt.recover(run_dir, names)
    ckpt.check_consistent(run_dir, names)
    ckpt.load_model_weights(run_dir / ckpt.MODEL, model)
    info = ckpt.load_state(run_dir, optimizer)
    if lookahead is not None:
        lookahead.load(run_dir / LOOKAHEAD_FILE, int(info["step"]))
    if scaler is not None and scaler.is_enabled() and info.get("scaler"):
        scaler.load_state_dict(info["scaler"])
    if info.get("meter") is not None:
        meter.load_state(torch.tensor(info["meter"], dtype=torch.float64))
    return Position(epoch=info["epoch"], batch=info["batch"], step=info["step"], loss_sum=info["loss_sum"],
                    seen=info["seen"], train_seconds=info["train_seconds"], meter=meter)
