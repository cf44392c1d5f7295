"""The training loop as plain functions: batch order, one epoch of steps, one evaluation pass.

Data is held in memory as uint8 tensors; the task turns each batch of items into named fields
(``input``, ``target``, ...), so the loop never asks which task it runs. Every random choice of an epoch comes from generators seeded
by (seed, epoch, batch, rank), so an epoch can be restarted at any batch and replay exactly what an
uninterrupted run would have done; that is what makes `--resume` bit-exact.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.rundir import Normalize
from cnnlab.tasks import Batch, Meter, Task
from cnnlab.tasks.base import Augment
from cnnlab.train.distributed import Dist
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.optim import lr_at, set_lr
from cnnlab.train.precision import Precision


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch + 1}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class Position:
    """Where training stands: finished epochs, batches done in the current epoch, optimizer steps,
    and the running sums of the current epoch (so an epoch interrupted mid-way reports the same loss)."""

    epoch: int = 0
    batch: int = 0
    step: int = 0
    loss_sum: float = 0.0
    seen: int = 0
    train_seconds: float = 0.0
    meter: Meter | None = None  # the task's training metrics of the current epoch

    def start_epoch(self, meter: Meter) -> None:
        self.batch, self.loss_sum, self.seen, self.train_seconds = 0, 0.0, 0, 0.0
        self.meter = meter


def seeded_generator(*parts: int) -> torch.Generator:
    """A CPU generator seeded from several integers (seed, epoch, batch, rank)."""
    value = 0
    for p in parts:
        value = (value * 1_000_003 + int(p)) % (2**63 - 1)
    return torch.Generator().manual_seed(value)


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: Dist, repeat: int = 1) -> list[torch.Tensor]:
    """This rank's index batches for ``epoch``: a seeded permutation, sharded, last partial batch dropped.

    ``repeat`` visits every item that many times per epoch (a fresh random patch each time): 200 photos
    give 200 patches an epoch otherwise, and validating after every 12 steps would cost more than the
    training.

    Dropping the partial batch keeps BatchNorm away from batches of one example and gives every rank
    the same number of steps; when the shard is smaller than one batch it becomes a single batch.
    """
    order = dist.shard(torch.randperm(n * repeat, generator=seeded_generator(seed, epoch)) % n)
    if len(order) < batch_size:
        return [order] if len(order) > 1 else []
    full = len(order) // batch_size * batch_size
    return list(order[:full].split(batch_size))


@dataclass
class StepContext:
    """What one training step needs besides the batch (kept together so the functions stay small)."""

    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    precision: Precision
    preprocess: Normalize
    augment: Augment | None
    lr: float
    total_steps: int
    warmup: float
    schedule: str
    seed: int
    dist: Dist
    lr_start: float = 0.0  # fractions of the peak lr where warm-up starts and the decay ends
    lr_end: float = 0.0
    lookahead: Lookahead | None = None
    repeat: int = 1  # visits of every training item per epoch


def model_inputs(precision: Precision, preprocess: Normalize, x: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> the model's float input on its device (moved as uint8: 4x less to copy)."""
    return precision.batch(preprocess(precision.batch(x)))


def train_step(ctx: StepContext, batch: Batch, pos: Position) -> float:
    """One optimizer step on ``batch`` (its uint8 ``input`` and its ``target``); returns the batch loss
    (and adds the batch to ``pos.meter``)."""
    inputs = model_inputs(ctx.precision, ctx.preprocess, batch["input"])
    targets = batch["target"].to(ctx.precision.device, non_blocking=True)
    set_lr(ctx.optimizer, lr_at(pos.step, ctx.total_steps, ctx.lr, ctx.warmup, ctx.schedule, ctx.lr_start,
                                ctx.lr_end))
    with ctx.precision.autocast():
        outputs = ctx.model(inputs)
    loss = ctx.task.loss(outputs, targets)
    # The mean over ranks: every rank logs the same number and sees a NaN together (no rank is left
    # waiting in a collective while another one stops).
    value = float(ctx.dist.sum_(loss.detach().float().reshape(1).clone())) / ctx.dist.world_size
    if value != value or value in (float("inf"), float("-inf")):
        raise NonFiniteLoss(pos.epoch, pos.step, value)
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.precision.backward(loss)
    ctx.precision.step(ctx.optimizer)
    if pos.meter is not None:
        pos.meter.update(outputs.detach().float(), targets, torch.tensor(value), batch)
    return value


def train_epoch(ctx: StepContext, split: Split, pos: Position, batch_size: int,
                on_step: Callable[[Position, float], None] | None = None) -> None:
    """Run the rest of epoch ``pos.epoch`` from batch ``pos.batch``, updating ``pos`` after every step.

    ``on_step(pos, loss)`` is called after each completed step (progress bars, tests); a
    KeyboardInterrupt raised there or by the user leaves ``pos`` describing the last finished step.
    """
    ctx.model.train()
    batches = epoch_batches(len(split), batch_size, ctx.seed, pos.epoch, ctx.dist, ctx.repeat)
    for index in batches[pos.batch:]:
        start = time.perf_counter()
        # Every random choice of the step (patches, flips, degradations) comes from this generator.
        generator = seeded_generator(ctx.seed, pos.epoch, pos.batch, ctx.dist.rank, 1)
        batch = ctx.task.train_batch(split.take(index), generator, ctx.augment)
        loss = train_step(ctx, batch, pos)
        pos.train_seconds += time.perf_counter() - start
        pos.loss_sum += loss * len(index)
        pos.seen += len(index)
        pos.batch += 1
        pos.step += 1
        if ctx.lookahead is not None:  # before on_step: a Ctrl-C there saves the pulled weights and EMA
            ctx.lookahead.after_step(pos.step, ctx.total_steps)
        if on_step is not None:
            on_step(pos, loss)


def steps_per_epoch(n: int, batch_size: int, dist: Dist, repeat: int = 1) -> int:
    return len(epoch_batches(n, batch_size, 0, 0, dist, repeat))


def check_tta(tta: str, task: Task) -> None:
    """A CnnlabError when test-time augmentation ``tta`` cannot be used for ``task``."""
    if tta not in task.tta_modes:
        raise CnnlabError(f"--tta {tta} is not defined for task {task.name!r}; use --tta "
                          f"{' or '.join(task.tta_modes)}")


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, split: Split, preprocess: Normalize, precision: Precision,
             batch_size: int, info: dict, tta: str = "none") -> Meter:
    """One pass over ``split`` (whole items, the task's eval batches) in eval mode; returns the filled
    metric meter (the model's mode is restored). ``tta`` averages the outputs over the task's
    test-time augmentations (``Task.forward``; see ``check_tta``)."""
    was_training = model.training
    model.eval()
    meter = task.meter(info)
    try:
        for batch in task.eval_batches(split, batch_size):
            inputs = model_inputs(precision, preprocess, batch["input"])
            targets = batch["target"].to(precision.device)
            # Tasks scored on 8-bit pixel levels evaluate in fp32: bf16 keeps about 3 significant
            # digits, coarser than one level of 255 near white.
            with contextlib.nullcontext() if task.eval_fp32 else precision.autocast():
                outputs = task.forward(model, inputs, tta)
            meter.update(outputs.float(), targets, task.loss(outputs, targets), batch)
    finally:
        model.train(was_training)
    return meter
