"""`fit(config)`: train a run directory from a TrainConfig (or continue it), for any task.

The pieces live beside it: ``build`` (model, preprocessing, config.json), ``resume`` (run-directory
checks and checkpoints), ``machine`` (threads, channels_last, Ctrl-C) and ``loop`` (the steps). This
module strings them together and runs the epochs: validate, checkpoint, log and plot after each one.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.tasks import Meter, Task, get_task
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.build import build_model, check_input_fits, init_from_data, make_preprocess, run_config
from cnnlab.train.config import TrainConfig
from cnnlab.train.distributed import Dist, env_world, setup, teardown
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import (
    NonFiniteLoss,
    Position,
    StepContext,
    check_tta,
    evaluate,
    steps_per_epoch,
    train_epoch,
)
from cnnlab.train.machine import StopRequested, choose_threads, deferred_interrupt, use_channels_last
from cnnlab.train.metrics import append_metrics, read_metrics
from cnnlab.train.optim import lr_at, make_optimizer
from cnnlab.train.precision import make_precision
from cnnlab.train.progress import make_progress
from cnnlab.train.resume import check_data_matches, check_run_dir, restore_checkpoint, save_checkpoint

__all__ = ["FitResult", "fit"]


@dataclass
class FitResult:
    """What `fit` returns: the run directory, its metrics history and the final validation metrics."""

    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, float] = field(default_factory=dict)
    trained: bool = True  # False when the run had already reached the requested epochs


def epoch_row(pos: Position, lr: float, seconds: float, train: dict[str, float], val: dict[str, float],
              world_size: int = 1) -> dict[str, Any]:
    """One metrics.jsonl line (images/s counts every process's images)."""
    row: dict[str, Any] = {
        "epoch": pos.epoch + 1, "step": pos.step,
        "train_loss": pos.loss_sum / max(pos.seen, 1),
        **{f"train_{k}": v for k, v in train.items() if k != "loss"},
        **{f"val_{k}": v for k, v in val.items()},
        "lr": lr,
        "images_per_s": pos.seen * world_size / max(pos.train_seconds, 1e-9),
        "seconds": seconds,
    }
    return {k: (round(v, 6) if isinstance(v, float) else v) for k, v in row.items()}


def train_metrics(pos: Position, dist: Dist, device: torch.device) -> dict[str, float]:
    """The epoch's training metrics over every process (the meters' sums are all-reduced; on the
    device, because NCCL reduces only GPU tensors)."""
    if pos.meter is None:
        return {}
    pos.meter.load_state(dist.sum_(pos.meter.state().to(device)).cpu())
    return pos.meter.compute()


def write_plots(run_dir: Path, history: list[dict[str, Any]], task: Task, meter: Meter | None,
                info: dict[str, Any]) -> None:
    """curves.png from the history, then the task's own plots of the last evaluation."""
    from cnnlab.render.curves import plot_curves

    plot_curves(history, run_dir / "curves.png", metric=task.primary_metric)
    if meter is not None:
        task.plots(run_dir, meter, info)


def fit(cfg: TrainConfig, *, resume: bool = False, on_step: Callable[[Position, float], None] | None = None,
        console: Console | None = None, progress: bool = True) -> FitResult:
    """Train ``cfg`` into the run directory ``cfg.out`` (or continue it with ``resume``)."""
    cfg = cfg.resolved()
    console = console or Console(stderr=True, soft_wrap=True)
    caller_threads = torch.get_num_threads()
    threads = choose_threads(cfg.threads, console)
    from cnnlab.rundir import resolve_device

    device = resolve_device(cfg.device, env_world()[2])
    dist = setup(device)
    try:
        return _fit(cfg, resume, on_step, console, progress, device, dist, threads)
    finally:
        teardown(dist)
        torch.set_num_threads(caller_threads)  # a library call leaves the caller's torch as it found it


def _fit(cfg: TrainConfig, resume: bool, on_step: Callable[[Position, float], None] | None, console: Console,
         progress: bool, device: torch.device, dist: Dist, threads: int) -> FitResult:
    """Everything before the epochs: check, load, build, restore, write config.json."""
    from cnnlab.data import load_data

    run_dir = Path(cfg.out)
    saved = check_run_dir(run_dir, cfg, resume)
    task = get_task(cfg.task, **cfg.task_options)
    check_tta(cfg.tta, task)  # before the data is loaded and anything is written
    from cnnlab.models import list_models

    if cfg.model not in list_models():  # a typo is said before the data loads (10 s on CIFAR)
        from cnnlab.errors import unknown

        raise unknown("model", cfg.model, list_models(), "`cnnlab models list`")
    bundle = load_data(cfg.data, cfg.task, val_split=cfg.val_split, seed=cfg.seed, image_size=cfg.image_size,
                       strict=cfg.strict, limit=cfg.limit, options=cfg.data_options)
    info = bundle.info
    task.bind_data(info)
    if saved is not None:
        check_data_matches(saved, info, run_dir)
    if len(bundle.train) < 2:
        raise CnnlabError(f"--data {cfg.data} has {len(bundle.train)} training example(s); need at least 2")
    task.check_data(info, bundle.train, bundle.val)
    preprocess = make_preprocess(task, bundle, saved)
    model, model_kwargs = build_model(cfg, task, info)
    check_input_fits(cfg.model, model_kwargs, (task.input_channels(info), *task.input_size(info)), task)
    init_from_data(model, bundle.train.x, preprocess, cfg.seed)
    precision = make_precision(cfg.precision, device, use_channels_last(cfg, device))
    model = precision.prepare(model)
    optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum, cfg.norm_lr_scale)
    # The EMA starts from the prepared, data-initialised weights (as airbench's does); a resumed
    # run overwrites it with the saved one.
    lookahead = Lookahead(model) if cfg.lookahead else None
    pos = (restore_checkpoint(run_dir, model, optimizer, task.meter(info, training=True), lookahead,
                              precision.scaler) if saved is not None else Position())
    if dist.enabled and pos.step == 0:
        torch.manual_seed(cfg.seed + 1000 * dist.rank)  # different dropout masks per rank
    config = run_config(cfg, task, bundle, model_kwargs, preprocess, precision.name, device, dist)
    config["resolved"]["threads"] = threads
    if dist.is_main:
        ckpt.write_json(run_dir / ckpt.CONFIG, config)
    if pos.epoch >= cfg.epochs:
        if dist.is_main:
            console.print(f"{run_dir} is already trained for {pos.epoch} epochs; pass a larger --epochs to continue")
        return FitResult(run_dir, read_metrics(run_dir), trained=False)
    if saved is not None and dist.is_main:
        console.print(f"resuming {run_dir} at epoch {pos.epoch + 1}, step {pos.step}")
    net: nn.Module = torch.compile(model) if cfg.compile else model
    if dist.enabled:
        net = torch.nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    ctx = StepContext(net, task, optimizer, precision, preprocess, task.make_augment(cfg.augment),
                      cfg.lr, cfg.epochs * steps_per_epoch(len(bundle.train), cfg.batch_size, dist, cfg.repeat),
                      cfg.warmup, cfg.schedule, cfg.seed, dist, cfg.lr_start, cfg.lr_end, lookahead, cfg.repeat)
    return _train(cfg, ctx, model, bundle, pos, run_dir, console, on_step, progress)


def _train(cfg: TrainConfig, ctx: StepContext, model: nn.Module, bundle: Any, pos: Position, run_dir: Path,
           console: Console, on_step: Callable[[Position, float], None] | None, show: bool) -> FitResult:
    """The epoch loop, with what Ctrl-C and a NaN loss do (said after the progress bar has closed)."""
    dist = ctx.dist
    try:
        # A live bar on a terminal; in a log file (CI, nohup) one line per epoch instead.
        live = show and dist.is_main and console.is_terminal
        with make_progress(live, console) as bar, deferred_interrupt(not dist.enabled) as pressed:
            history = _run_epochs(cfg, ctx, model, bundle, pos, run_dir, bar, pressed, on_step, show,
                                  None if live or not show else console)
    except KeyboardInterrupt as exc:
        if dist.is_main and not dist.enabled:
            save_checkpoint(run_dir, model, ctx.optimizer, pos, ctx.lookahead, ctx.precision.scaler)
            by = f" by {exc.args[0]}" if isinstance(exc, StopRequested) else ""
            console.print(f"interrupted{by}: checkpoint saved at epoch {pos.epoch + 1}, step {pos.step} in "
                          f"{run_dir}; continue with the same command plus --resume")
        raise
    except NonFiniteLoss as exc:
        kept = (f"the checkpoint of epoch {pos.epoch} is kept in {run_dir}" if pos.epoch
                else "no checkpoint was written")
        raise CnnlabError(f"training stopped: {exc}; {kept}; lower --lr, add --warmup, or use "
                          "--precision fp32") from exc
    final = {k[4:]: v for k, v in history[-1].items() if k.startswith("val_")} if history else {}
    return FitResult(run_dir, history, final)


def _validate(cfg: TrainConfig, ctx: StepContext, model: nn.Module, bundle: Any, last: bool
              ) -> tuple[Meter | None, dict[str, float]]:
    """The validation meter and metrics of this epoch (with the TTA metrics after the last one)."""
    if not (ctx.dist.is_main and len(bundle.val)):
        return None, {}
    info = bundle.info
    meter = evaluate(model, ctx.task, bundle.val, ctx.preprocess, ctx.precision, cfg.batch_size, info)
    val = meter.compute()
    if last and cfg.tta != "none":
        # Only the final evaluation is augmented (it costs 2x or 6x a plain pass); its metrics sit
        # next to the plain ones as val_tta_* and never replace them.
        tta = evaluate(model, ctx.task, bundle.val, ctx.preprocess, ctx.precision, cfg.batch_size, info, tta=cfg.tta)
        val.update({f"tta_{k}": v for k, v in tta.compute().items()})
    return meter, val


def _run_epochs(cfg: TrainConfig, ctx: StepContext, model: nn.Module, bundle: Any, pos: Position,
                run_dir: Path, bar: Any, pressed: Callable[[], int],
                on_step: Callable[[Position, float], None] | None, show: bool, log: Console | None
                ) -> list[dict[str, Any]]:
    """Train from ``pos`` to ``cfg.epochs``: validate, checkpoint, log and plot after every epoch
    (and print one line per epoch on ``log`` when given)."""
    dist, task = ctx.dist, ctx.task
    history = read_metrics(run_dir)
    steps = steps_per_epoch(len(bundle.train), cfg.batch_size, dist, cfg.repeat)
    bar_task = None

    def step_hook(p: Position, loss: float) -> None:
        metric = task.primary_metric
        running = p.meter.compute().get(metric) if p.meter is not None and show else None
        shown = f"  {metric} {running:.3f}" if running is not None else ""
        bar.update(bar_task, completed=p.batch, stats=f"train loss {loss:.4f}{shown}  "
                   f"{p.seen * dist.world_size / max(p.train_seconds, 1e-9):,.0f} img/s")
        if on_step is not None:
            on_step(p, loss)
        if pressed():
            raise StopRequested(pressed())

    while pos.epoch < cfg.epochs:
        start = time.perf_counter()
        if pos.batch == 0:
            pos.start_epoch(task.meter(bundle.info, training=True))
        bar_task = bar.add_task(f"epoch {pos.epoch + 1}/{cfg.epochs}", total=steps, completed=pos.batch, stats="")
        train_epoch(ctx, bundle.train, pos, cfg.batch_size, step_hook)
        last = pos.epoch + 1 == cfg.epochs
        if last and ctx.lookahead is not None:
            ctx.lookahead.finish(pos.step, ctx.total_steps)  # the net becomes the EMA (on every rank)
        lr = lr_at(max(pos.step - 1, 0), ctx.total_steps, cfg.lr, cfg.warmup, cfg.schedule, cfg.lr_start,
                   cfg.lr_end)
        meter, val = _validate(cfg, ctx, model, bundle, last)
        train = train_metrics(pos, dist, ctx.precision.device)
        row = epoch_row(pos, lr, time.perf_counter() - start, train, val, dist.world_size)
        pos.epoch, pos.batch = pos.epoch + 1, 0
        if dist.is_main:
            # metrics before the checkpoint: a kill between the two redoes the epoch, and its row is
            # replaced; the other order would lose the row of a checkpointed epoch
            history = append_metrics(run_dir, row)
            save_checkpoint(run_dir, model, ctx.optimizer, pos, ctx.lookahead, ctx.precision.scaler)
            write_plots(run_dir, history, task, meter, bundle.info)
            bar.update(bar_task, stats=_summary(row, task))
            if log is not None:
                log.print(f"epoch {pos.epoch}/{cfg.epochs}  {_summary(row, task)}  {row['seconds']:.1f} s")
        dist.barrier()
    return history


def _summary(row: dict[str, Any], task: Task) -> str:
    metric = task.primary_metric
    val = f"  val {metric} {row[f'val_{metric}']:.4f}" if f"val_{metric}" in row else ""
    if f"val_tta_{metric}" in row:
        val += f"  val {metric} with tta {row[f'val_tta_{metric}']:.4f}"
    baseline = row.get(f"val_baseline_{metric}")
    if baseline is not None:
        val += f" (baseline {baseline:.4f})"
    # "train loss": the done line's loss is the validation one (issue 17)
    return f"train loss {row['train_loss']:.4f}{val}  {row['images_per_s']:,.0f} img/s"
