"""The training loop as plain functions: batch order, one epoch of steps, one evaluation pass.

Data is held in memory as uint8 tensors. Every random choice of an epoch comes from generators seeded
by (seed, epoch, batch, rank), so an epoch can be restarted at any batch and replay exactly what an
uninterrupted run would have done; that is what makes `--resume` bit-exact.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.tasks import Meter, Task
from cnnlab.train.distributed import Dist
from cnnlab.train.lookahead import Lookahead
from cnnlab.train.optim import lr_at, set_lr
from cnnlab.train.precision import Precision

#: (uint8 images (N, C, H, W), targets, generator) -> augmented (images, targets); still uint8
Augment = Callable[[torch.Tensor, torch.Tensor, torch.Generator], tuple[torch.Tensor, torch.Tensor]]


class NonFiniteLoss(RuntimeError):
    """The training loss became NaN or infinite."""

    def __init__(self, epoch: int, step: int, value: float) -> None:
        super().__init__(f"loss became {value} at epoch {epoch + 1}, step {step}")
        self.epoch, self.step, self.value = epoch, step, value


@dataclass
class Normalize:
    """uint8 NCHW -> float in [0, 1] -> (x - mean) / std per channel; the run's preprocessing."""

    mean: list[float]
    std: list[float]

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        mean = torch.tensor(self.mean, device=x.device).view(1, -1, 1, 1)
        std = torch.tensor(self.std, device=x.device).view(1, -1, 1, 1)
        return (x.float() / 255.0 - mean) / std

    @classmethod
    def from_images(cls, x: torch.Tensor, enabled: bool = True, chunk: int = 4096) -> Normalize:
        """Per-channel mean and std of uint8 images (identity when ``enabled`` is False)."""
        channels = x.shape[1]
        if not enabled or len(x) == 0:
            return cls([0.0] * channels, [1.0] * channels)
        total = torch.zeros(channels, dtype=torch.float64)
        total_sq = torch.zeros(channels, dtype=torch.float64)
        for i in range(0, len(x), chunk):  # chunks: a float copy of all of CIFAR would be 600 MB
            part = x[i:i + chunk].double() / 255.0
            total += part.sum(dim=(0, 2, 3))
            total_sq += (part * part).sum(dim=(0, 2, 3))
        count = len(x) * x.shape[2] * x.shape[3]
        mean = total / count
        std = (total_sq / count - mean * mean).clamp(min=1e-12).sqrt().clamp(min=1e-3)
        return cls([round(float(m), 6) for m in mean], [round(float(s), 6) for s in std])


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


def epoch_batches(n: int, batch_size: int, seed: int, epoch: int, dist: Dist) -> list[torch.Tensor]:
    """This rank's index batches for ``epoch``: a seeded permutation, sharded, last partial batch dropped.

    Dropping the partial batch keeps BatchNorm away from batches of one example and gives every rank
    the same number of steps; when the shard is smaller than one batch it becomes a single batch.
    """
    order = dist.shard(torch.randperm(n, generator=seeded_generator(seed, epoch)))
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


def model_inputs(precision: Precision, preprocess: Normalize, x: torch.Tensor) -> torch.Tensor:
    """uint8 batch -> the model's float input on its device (moved as uint8: 4x less to copy)."""
    return precision.batch(preprocess(precision.batch(x)))


def train_step(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, pos: Position) -> float:
    """One optimizer step on uint8 batch ``x`` with targets ``y``; returns the batch loss (and adds
    the batch to ``pos.meter``)."""
    if ctx.augment is not None:
        x, y = ctx.augment(x, y, seeded_generator(ctx.seed, pos.epoch, pos.batch, ctx.dist.rank, 1))
    inputs = model_inputs(ctx.precision, ctx.preprocess, x)
    targets = y.to(ctx.precision.device, non_blocking=True)
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
        pos.meter.update(outputs.detach().float(), targets, torch.tensor(value))
    return value


def train_epoch(ctx: StepContext, x: torch.Tensor, y: torch.Tensor, pos: Position, batch_size: int,
                on_step: Callable[[Position, float], None] | None = None) -> None:
    """Run the rest of epoch ``pos.epoch`` from batch ``pos.batch``, updating ``pos`` after every step.

    ``on_step(pos, loss)`` is called after each completed step (progress bars, tests); a
    KeyboardInterrupt raised there or by the user leaves ``pos`` describing the last finished step.
    """
    ctx.model.train()
    batches = epoch_batches(len(x), batch_size, ctx.seed, pos.epoch, ctx.dist)
    for index in batches[pos.batch:]:
        start = time.perf_counter()
        loss = train_step(ctx, x[index], y[index], pos)
        pos.train_seconds += time.perf_counter() - start
        pos.loss_sum += loss * len(index)
        pos.seen += len(index)
        pos.batch += 1
        pos.step += 1
        if ctx.lookahead is not None:  # before on_step: a Ctrl-C there saves the pulled weights and EMA
            ctx.lookahead.after_step(pos.step, ctx.total_steps)
        if on_step is not None:
            on_step(pos, loss)


def steps_per_epoch(n: int, batch_size: int, dist: Dist) -> int:
    return len(epoch_batches(n, batch_size, 0, 0, dist))


#: tasks whose outputs are one vector of logits per image, unchanged in meaning by a mirror or a
#: one-pixel shift of the input, so averaging them over transformed copies is meaningful
TTA_TASKS = ("classify",)


def check_tta(tta: str, task: Task) -> None:
    """A CnnlabError when test-time augmentation ``tta`` cannot be used for ``task``."""
    if tta != "none" and (task.name not in TTA_TASKS or task.spatial_targets):
        raise CnnlabError(f"--tta {tta} averages per-image logits, which task {task.name!r} does not output; "
                          "use --tta none")


def tta_outputs(model: nn.Module, inputs: torch.Tensor, tta: str) -> torch.Tensor:
    """The model's float outputs for ``inputs``, averaged over test-time augmentations (airbench's
    levels): 'none' plain, 'flip' the mean with the mirror image, 'flip-translate' half that mean and
    half the mean of the four mirrored / unmirrored copies shifted one pixel up-left and down-right
    (reflect padding)."""
    outputs = model(inputs).float()
    if tta == "none":
        return outputs
    outputs = 0.5 * (outputs + model(inputs.flip(-1)).float())
    if tta == "flip":
        return outputs
    padded = F.pad(inputs, (1, 1, 1, 1), mode="reflect")
    shifted = (padded[:, :, :-2, :-2], padded[:, :, 2:, 2:])
    extra = sum(model(s).float() + model(s.flip(-1)).float() for s in shifted) / 4
    return 0.5 * outputs + 0.5 * extra


@torch.no_grad()
def evaluate(model: nn.Module, task: Task, x: torch.Tensor, y: torch.Tensor, preprocess: Normalize,
             precision: Precision, batch_size: int, num_classes: int, tta: str = "none") -> Meter:
    """One pass over (x, y) in eval mode; returns the filled metric meter (the model's mode is restored).
    ``tta`` averages the outputs over test-time augmentations (``tta_outputs``; see ``check_tta``)."""
    was_training = model.training
    model.eval()
    meter = task.meter(num_classes)
    try:
        for i in range(0, len(x), batch_size):
            inputs = model_inputs(precision, preprocess, x[i:i + batch_size])
            targets = y[i:i + batch_size].to(precision.device)
            with precision.autocast():
                outputs = model(inputs) if tta == "none" else tta_outputs(model, inputs, tta)
            meter.update(outputs.float(), targets, task.loss(outputs, targets))
    finally:
        model.train(was_training)
    return meter
