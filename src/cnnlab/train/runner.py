"""`fit(config)`: everything around the loop: data, model, run directory, checkpoints, resume, DDP.

The steps are separate functions (check the run directory, build the model, restore a checkpoint, run
one epoch, write the epoch's results) so that each can be read and tested on its own.
"""

from __future__ import annotations

import contextlib
import os
import platform
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from rich.console import Console
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.tasks import Meter, Task, get_task
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.augment import make_augment
from cnnlab.train.config import TrainConfig, config_differences
from cnnlab.train.distributed import Dist, setup, teardown
from cnnlab.train.lookahead import FILE as LOOKAHEAD_FILE
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.loop import (
    NonFiniteLoss,
    Normalize,
    Position,
    StepContext,
    check_tta,
    evaluate,
    seeded_generator,
    steps_per_epoch,
    train_epoch,
)
from cnnlab.train.metrics import append_metrics, read_metrics
from cnnlab.train.optim import lr_at, make_optimizer
from cnnlab.train.precision import make_precision, resolve_precision
from cnnlab.train.progress import make_progress
from cnnlab.train.run import resolve_device

INIT_SAMPLE = 5000  # training images passed to a model's init_from_data (whitening statistics)


@dataclass
class FitResult:
    """What `fit` returns: the run directory, its metrics history and the final validation metrics."""

    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, float] = field(default_factory=dict)
    trained: bool = True  # False when the run had already reached the requested epochs


def choose_threads(requested: int | None, console: Console) -> int:
    """Set and return torch's CPU thread count: ``requested``, else torch's default, except on a busy
    machine (1-minute load above the core count), where one thread is used: OpenMP threads that
    wait at every barrier for a core held by another job made 2-thread training 10-60x slower than
    1-thread training on a shared 2-core machine (measured; see the README)."""
    if requested:
        torch.set_num_threads(requested)
        return requested
    current = torch.get_num_threads()
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if current > 1 and load > cores:
        torch.set_num_threads(1)
        console.print(f"note: the machine is busy (load {load:.1f} on {cores} cores), training with 1 thread; "
                      f"pass --threads {current} to use {current}")
        return 1
    return current


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """channels_last, except fp32 on a CPU: there it buys little, and torch 2.13's oneDNN crashes
    (segfault) in the weight gradient of 1x1 stride-2 convs with fewer than 16 input channels."""
    return cfg.channels_last and not (device.type == "cpu" and resolve_precision(cfg.precision, device) == "fp32")


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
    diffs = config_differences({**TrainConfig().to_dict(), **saved["train"]}, cfg.to_dict())
    if diffs:
        raise CnnlabError(f"cannot resume {run_dir}: the config differs in {'; '.join(diffs)}; "
                          "drop those options (the run's own values are used) or choose a new --out")
    return saved


def check_data_matches(saved: dict[str, Any], class_names: list[str], in_channels: int,
                       image_size: tuple[int, int], run_dir: Path) -> None:
    """On resume the data must give the same classes, channels and image size as the run's."""
    pre = saved["preprocess"]
    new = {"class_names": class_names, "in_channels": in_channels, "image_size": list(image_size)}
    old = {"class_names": saved["class_names"], "in_channels": pre["in_channels"], "image_size": pre["image_size"]}
    diffs = config_differences(old, new, tuple(new))
    if diffs:
        raise CnnlabError(f"cannot resume {run_dir}: the data differs in {'; '.join(diffs)}; use the run's data or a new --out")


def check_input_fits(name: str, kwargs: dict, input_size: tuple[int, ...]) -> None:
    """Run the model once on the meta device (no memory, no arithmetic) at the data's image size, so
    images too small for it fail here with the layer named, not in the first step after config.json
    was written (which left a run directory that could only be resumed into the same error)."""
    from cnnlab.models import create_model
    from cnnlab.models._summary import summarize

    with torch.random.fork_rng(devices=[]), torch.device("meta"):  # the real model's RNG stream is untouched
        probe = create_model(name, **kwargs)
    error = summarize(probe, input_size).error
    if error is not None:
        size = "x".join(map(str, input_size))
        raise CnnlabError(f"model {name!r} cannot train on {size} images: {error}")  # error says the fix


def build_model(cfg: TrainConfig, task: Task, num_classes: int, in_channels: int) -> tuple[nn.Module, dict]:
    """The model named in ``cfg`` with the head the task needs; returns it and its full kwargs."""
    from cnnlab.models import create_model

    outputs = task.num_outputs(num_classes)
    # --model-arg num_classes=1 on two classes asks for one logit (sigmoid / BCE); nothing else may
    # change the head size the data needs.
    wanted = cfg.model_kwargs.get("num_classes", outputs)
    if wanted != outputs and not (wanted == 1 and num_classes == 2):
        raise CnnlabError(f"--model-arg num_classes={wanted} does not fit the data's {num_classes} classes; "
                          f"drop it (or use num_classes=1 for a single-logit binary classifier)")
    kwargs = dict(cfg.model_kwargs, num_classes=wanted, in_channels=in_channels)
    torch.manual_seed(cfg.seed)  # the same initial weights on every rank and every run with this seed
    try:
        model = create_model(cfg.model, **kwargs)
    except TypeError as exc:  # a --model-arg the builder does not take
        raise CnnlabError(f"model {cfg.model!r} rejected its arguments {cfg.model_kwargs}: {exc}") from exc
    return model, kwargs


def init_from_data(model: nn.Module, x: torch.Tensor, preprocess: Normalize, seed: int) -> None:
    """Call the model's ``init_from_data`` (if it has one) with up to INIT_SAMPLE preprocessed images."""
    init = getattr(model, "init_from_data", None)
    if init is None:
        return
    take = torch.randperm(len(x), generator=seeded_generator(seed, -1))[:INIT_SAMPLE]
    init(preprocess(x[take]))


def run_config(cfg: TrainConfig, task: Task, bundle: Any, model_kwargs: dict, preprocess: Normalize,
               precision: str, device: torch.device, dist: Dist) -> dict[str, Any]:
    """config.json: everything load_run needs to rebuild model and preprocessing, plus provenance."""
    import cnnlab

    return {
        "task": cfg.task,
        "task_options": task.options(),
        "model": {"name": cfg.model, "kwargs": model_kwargs},
        "class_names": list(bundle.class_names),
        "preprocess": {"image_size": list(bundle.image_size), "in_channels": bundle.in_channels,
                       "mean": preprocess.mean, "std": preprocess.std},
        "data": {"spec": bundle.spec, "train_size": len(bundle.train), "val_size": len(bundle.val),
                 "meta": _jsonable(bundle.meta)},
        "train": cfg.to_dict(),
        "resolved": {"device": str(device), "precision": precision, "world_size": dist.world_size},
        "versions": {"cnnlab": cnnlab.__version__, "torch": torch.__version__,
                     "python": platform.python_version()},
    }


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@contextlib.contextmanager
def deferred_interrupt(enabled: bool) -> Iterator[Callable[[], bool]]:
    """While active, a first Ctrl-C only sets a flag (checked after each step, so the checkpoint
    holds a finished step); a second one interrupts at once. Yields 'was Ctrl-C pressed?'."""
    pressed = {"flag": False}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: False
        return

    def handler(signum: int, frame: Any) -> None:
        pressed["flag"] = True
        signal.signal(signal.SIGINT, previous)  # a second Ctrl-C stops immediately

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield lambda: pressed["flag"]
    finally:
        signal.signal(signal.SIGINT, previous)


def save_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, pos: Position,
                    lookahead: Lookahead | None = None) -> None:
    """Weights, the lookahead EMA (when used), then optimizer + RNG state, then state.json last (it
    marks the checkpoint complete; every file carries the step, so a mix is detected on resume)."""
    ckpt.save_model(run_dir / ckpt.MODEL, model, pos.step)
    if lookahead is not None:
        lookahead.save(run_dir / LOOKAHEAD_FILE, pos.step)
    ckpt.save_state(run_dir, optimizer, {
        "epoch": pos.epoch, "batch": pos.batch, "step": pos.step, "loss_sum": pos.loss_sum,
        "seen": pos.seen, "train_seconds": pos.train_seconds,
        "meter": pos.meter.state().tolist() if pos.meter is not None and pos.batch else None,
    })


def restore_checkpoint(run_dir: Path, model: nn.Module, optimizer: torch.optim.Optimizer, meter: Meter,
                       lookahead: Lookahead | None = None) -> Position:
    """Load weights, optimizer and RNG state (and the lookahead EMA); the Position to continue from
    (fresh when none saved). ``meter`` (a fresh training meter) gets the running sums of an epoch
    interrupted mid-way."""
    if not (run_dir / ckpt.STATE_JSON).exists():
        return Position()
    ckpt.check_consistent(run_dir)
    ckpt.load_model_weights(run_dir / ckpt.MODEL, model)
    info = ckpt.load_state(run_dir, optimizer)
    if lookahead is not None:
        lookahead.load(run_dir / LOOKAHEAD_FILE, int(info["step"]))
    if info.get("meter") is not None:
        meter.load_state(torch.tensor(info["meter"], dtype=torch.float64))
    return Position(epoch=info["epoch"], batch=info["batch"], step=info["step"], loss_sum=info["loss_sum"],
                    seen=info["seen"], train_seconds=info["train_seconds"], meter=meter)


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


def write_plots(run_dir: Path, history: list[dict[str, Any]], metric: str, meter: Any,
                class_names: list[str]) -> None:
    """curves.png from the history; confusion.png when the task's meter has a confusion matrix."""
    from cnnlab.render.curves import plot_curves

    plot_curves(history, run_dir / "curves.png", metric=metric)
    confusion = getattr(meter, "confusion", None)
    if confusion is not None:
        from cnnlab.render.confusion import plot_confusion

        plot_confusion(confusion, class_names, run_dir / "confusion.png")


def fit(cfg: TrainConfig, *, resume: bool = False, on_step: Callable[[Position, float], None] | None = None,
        console: Console | None = None, progress: bool = True) -> FitResult:
    """Train ``cfg`` into the run directory ``cfg.out`` (or continue it with ``resume``)."""
    from cnnlab.data import load_data

    cfg = cfg.resolved()
    console = console or Console(stderr=True, soft_wrap=True)
    caller_threads = torch.get_num_threads()
    threads = choose_threads(cfg.threads, console)
    from cnnlab.train.distributed import env_world

    device = resolve_device(cfg.device, env_world()[2])
    dist = setup(device)
    run_dir = Path(cfg.out)
    try:
        saved = check_run_dir(run_dir, cfg, resume)
        task = get_task(cfg.task, label_smoothing=cfg.label_smoothing)
        check_tta(cfg.tta, task)  # before the data is loaded and anything is written
        bundle = load_data(cfg.data, cfg.task, val_split=cfg.val_split, seed=cfg.seed,
                           image_size=cfg.image_size, strict=cfg.strict, limit=cfg.limit)
        if saved is not None:
            check_data_matches(saved, bundle.class_names, bundle.in_channels, bundle.image_size, run_dir)
            pre = saved["preprocess"]
            preprocess = Normalize(pre["mean"], pre["std"])
        else:
            preprocess = Normalize.from_images(bundle.train.x)
        if len(bundle.train) < 2:
            raise CnnlabError(f"--data {cfg.data} has {len(bundle.train)} training example(s); need at least 2")
        model, model_kwargs = build_model(cfg, task, bundle.num_classes, bundle.in_channels)
        check_input_fits(cfg.model, model_kwargs, (bundle.in_channels, *bundle.image_size))
        init_from_data(model, bundle.train.x, preprocess, cfg.seed)
        precision = make_precision(cfg.precision, device, use_channels_last(cfg, device))
        model = precision.prepare(model)
        optimizer = make_optimizer(model, cfg.optimizer, cfg.lr, cfg.weight_decay, cfg.momentum,
                                   cfg.norm_lr_scale)
        # The EMA starts from the prepared, data-initialised weights (as airbench's does); a resumed
        # run overwrites it with the saved one.
        lookahead = Lookahead(model) if cfg.lookahead else None
        pos = (restore_checkpoint(run_dir, model, optimizer, task.meter(bundle.num_classes), lookahead)
               if saved is not None else Position())
        if dist.enabled and pos.step == 0:
            torch.manual_seed(cfg.seed + 1000 * dist.rank)  # different dropout masks per rank
        config = run_config(cfg, task, bundle, model_kwargs, preprocess, precision.name, device, dist)
        config["resolved"]["threads"] = threads
        if dist.is_main:
            ckpt.write_json(run_dir / ckpt.CONFIG, config)
        if pos.epoch >= cfg.epochs:
            if dist.is_main:
                console.print(f"{run_dir} is already trained for {pos.epoch} epochs; "
                              "pass a larger --epochs to continue")
            return FitResult(run_dir, read_metrics(run_dir), trained=False)
        if saved is not None and dist.is_main:
            console.print(f"resuming {run_dir} at epoch {pos.epoch + 1}, step {pos.step}")
        net: nn.Module = torch.compile(model) if cfg.compile else model
        if dist.enabled:
            net = torch.nn.parallel.DistributedDataParallel(
                net, device_ids=[device.index] if device.type == "cuda" else None)
        ctx = StepContext(net, task, optimizer, precision, preprocess,
                          make_augment(cfg.augment, bundle.image_size, task.spatial_targets), cfg.lr,
                          cfg.epochs * steps_per_epoch(len(bundle.train), cfg.batch_size, dist),
                          cfg.warmup, cfg.schedule, cfg.seed, dist, cfg.lr_start, cfg.lr_end, lookahead)
        return _train(cfg, ctx, model, bundle, pos, run_dir, console, on_step, progress)
    finally:
        teardown(dist)
        torch.set_num_threads(caller_threads)  # a library call leaves the caller's torch as it found it


def _train(cfg: TrainConfig, ctx: StepContext, model: nn.Module, bundle: Any, pos: Position, run_dir: Path,
           console: Console, on_step: Callable[[Position, float], None] | None, show: bool) -> FitResult:
    """The epoch loop, with what Ctrl-C and a NaN loss do (said after the progress bar has closed)."""
    dist = ctx.dist
    try:
        # A live bar on a terminal; in a log file (CI, nohup) one line per epoch instead.
        live = show and dist.is_main and console.is_terminal
        with make_progress(live, console) as bar, \
                deferred_interrupt(not dist.enabled) as pressed:
            history = _run_epochs(cfg, ctx, model, bundle, pos, run_dir, bar, pressed, on_step, show,
                                  None if live or not show else console)
    except KeyboardInterrupt:
        if dist.is_main and not dist.enabled:
            save_checkpoint(run_dir, model, ctx.optimizer, pos, ctx.lookahead)
            console.print(f"interrupted: checkpoint saved at epoch {pos.epoch + 1}, step {pos.step} in "
                          f"{run_dir}; continue with the same command plus --resume")
        raise
    except NonFiniteLoss as exc:
        kept = (f"the checkpoint of epoch {pos.epoch} is kept in {run_dir}" if pos.epoch
                else "no checkpoint was written")
        raise CnnlabError(f"training stopped: {exc}; {kept}; lower --lr, add --warmup, or use "
                          "--precision fp32") from exc
    final = {k[4:]: v for k, v in history[-1].items() if k.startswith("val_")} if history else {}
    return FitResult(run_dir, history, final)


def _run_epochs(cfg: TrainConfig, ctx: StepContext, model: nn.Module, bundle: Any, pos: Position,
                run_dir: Path, bar: Any, pressed: Callable[[], bool],
                on_step: Callable[[Position, float], None] | None, show: bool, log: Console | None
                ) -> list[dict[str, Any]]:
    """Train from ``pos`` to ``cfg.epochs``: validate, checkpoint, log and plot after every epoch
    (and print one line per epoch on ``log`` when given)."""
    dist, task = ctx.dist, ctx.task
    history = read_metrics(run_dir)
    steps = steps_per_epoch(len(bundle.train), cfg.batch_size, dist)
    bar_task = None

    def step_hook(p: Position, loss: float) -> None:
        metric = task.primary_metric
        running = p.meter.compute().get(metric) if p.meter is not None and show else None
        shown = f"  {metric} {running:.3f}" if running is not None else ""
        bar.update(bar_task, completed=p.batch, stats=f"loss {loss:.4f}{shown}  "
                   f"{p.seen * dist.world_size / max(p.train_seconds, 1e-9):,.0f} img/s")
        if on_step is not None:
            on_step(p, loss)
        if pressed():
            raise KeyboardInterrupt

    while pos.epoch < cfg.epochs:
        start = time.perf_counter()
        if pos.batch == 0:
            pos.start_epoch(task.meter(bundle.num_classes))
        bar_task = bar.add_task(f"epoch {pos.epoch + 1}/{cfg.epochs}", total=steps, completed=pos.batch,
                                stats="")
        train_epoch(ctx, bundle.train.x, bundle.train.y, pos, cfg.batch_size, step_hook)
        last = pos.epoch + 1 == cfg.epochs
        if last and ctx.lookahead is not None:
            ctx.lookahead.finish(pos.step, ctx.total_steps)  # the net becomes the EMA (on every rank)
        lr = lr_at(max(pos.step - 1, 0), ctx.total_steps, cfg.lr, cfg.warmup, cfg.schedule, cfg.lr_start,
                   cfg.lr_end)
        meter, val = None, {}
        if dist.is_main and len(bundle.val):
            meter = evaluate(model, task, bundle.val.x, bundle.val.y, ctx.preprocess, ctx.precision,
                             cfg.batch_size, bundle.num_classes)
            val = meter.compute()
            if last and cfg.tta != "none":
                # Only the final evaluation is augmented (it costs 2x or 6x a plain pass); its metrics
                # sit next to the plain ones as val_tta_* and never replace them.
                tta = evaluate(model, task, bundle.val.x, bundle.val.y, ctx.preprocess, ctx.precision,
                               cfg.batch_size, bundle.num_classes, tta=cfg.tta)
                val.update({f"tta_{k}": v for k, v in tta.compute().items()})
        train = train_metrics(pos, dist, ctx.precision.device)
        row = epoch_row(pos, lr, time.perf_counter() - start, train, val, dist.world_size)
        pos.epoch, pos.batch = pos.epoch + 1, 0
        if dist.is_main:
            save_checkpoint(run_dir, model, ctx.optimizer, pos, ctx.lookahead)
            history = append_metrics(run_dir, row)
            write_plots(run_dir, history, task.primary_metric, meter, bundle.class_names)
            bar.update(bar_task, stats=_summary(row, task.primary_metric))
            if log is not None:
                log.print(f"epoch {pos.epoch}/{cfg.epochs}  {_summary(row, task.primary_metric)}  "
                          f"{row['seconds']:.1f} s")
        dist.barrier()
    return history


def _summary(row: dict[str, Any], metric: str) -> str:
    val = f"  val {metric} {row[f'val_{metric}']:.4f}" if f"val_{metric}" in row else ""
    if f"val_tta_{metric}" in row:
        val += f"  val {metric} with tta {row[f'val_tta_{metric}']:.4f}"
    return f"loss {row['train_loss']:.4f}{val}  {row['images_per_s']:,.0f} img/s"
