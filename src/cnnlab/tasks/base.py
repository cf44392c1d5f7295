"""The Task interface: everything that differs between tasks, so the engine never asks which task it runs.

A task owns: the model keywords its head needs (from the data's info), how a batch of items becomes
model inputs and targets (random patches, paired augmentation and degradations drawn from the step's
seeded generator, so resume stays exact), its loss, its metrics and their direction, its test-time
augmentation, and how its predictions, plots and report sections are made. The loop, checkpoints,
precision, DDP and progress only move named fields around.

Batches are dicts of tensors: ``input`` (uint8 images the engine preprocesses and moves to the
device) and ``target`` (whatever the loss compares the outputs with); a task may add more fields
(``baseline`` for super-resolution) that its meter reads.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, ClassVar

import torch
from torch import nn

from cnnlab.data.bundle import Split

Batch = dict[str, torch.Tensor]
#: (fields of a batch, field kinds, generator) -> the fields augmented alike (random parameters drawn once)
Augment = Callable[[Batch, dict[str, str], torch.Generator], Batch]


class Meter(ABC):
    """Accumulates a task's metrics over batches; ``compute()`` returns plain floats."""

    @abstractmethod
    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        """Add one batch: raw model outputs (float), targets, the batch's mean loss, and the whole
        batch for metrics that need more than the targets (a baseline, the input)."""

    @abstractmethod
    def compute(self) -> dict[str, float]:
        """Metric name -> value over everything added so far (``loss`` always included)."""

    def state(self) -> torch.Tensor:
        """The running sums as one float64 tensor, so that distributed ranks can all-reduce them."""
        raise NotImplementedError(f"{type(self).__name__} cannot be reduced across processes")

    def load_state(self, sums: torch.Tensor) -> None:
        """Replace the running sums by ``sums`` (for example the all-reduced ones)."""
        raise NotImplementedError(f"{type(self).__name__} cannot be reduced across processes")



class ScoreSumsMeter(Meter):
    """Running sums of per-image scores (``KEYS``), the loss and two counts: all images, and those
    whose batch carried a baseline. One state layout for the image-to-image meters that share it
    (superres, inpaint, localize): [loss_sum, count, baseline_count, *sums in KEYS order]."""

    KEYS: ClassVar[tuple[str, ...]] = ()

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.loss_sum, self.count, self.baseline_count = 0.0, 0, 0

    def state(self) -> torch.Tensor:
        values = [self.loss_sum, self.count, self.baseline_count, *(self.sums[k] for k in self.KEYS)]
        return torch.tensor(values, dtype=torch.float64)

    def load_state(self, sums: torch.Tensor) -> None:
        self.loss_sum, self.count, self.baseline_count = float(sums[0]), int(sums[1]), int(sums[2])
        self.sums = {k: float(v) for k, v in zip(self.KEYS, sums[3:].tolist(), strict=True)}


class Task(ABC):
    """What one task means; see the module doc. Subclasses take their own options as keywords."""

    name: ClassVar[str] = ""
    #: the metric that the progress bar shows and that 'best' refers to
    primary_metric: ClassVar[str] = "loss"
    #: metric -> "max" or "min": which way is better (loss and bpp fall; top-1, PSNR and mIoU rise)
    directions: ClassVar[dict[str, str]] = {"loss": "min"}
    #: the data layout the task reads: "labels" (class trees), "masks" (image + mask) or "images"
    data_layout: ClassVar[str] = "labels"
    #: the model trained when --model is left out
    default_model: ClassVar[str] = ""
    #: normalise inputs by the training data's per-channel mean/std; False: the model sees [0, 1]
    normalize: ClassVar[bool] = True
    #: test-time augmentations the task can average (see ``forward``)
    tta_modes: ClassVar[tuple[str, ...]] = ("none",)
    #: what --augment auto means for this task
    default_augment: ClassVar[str] = "none"
    #: the names of the model's input and output in exported graphs
    input_name: ClassVar[str] = "images"
    output_name: ClassVar[str] = "logits"
    #: predictions are image files written into --out (else rows printed as a table / CSV / JSON)
    writes_images: ClassVar[bool] = False
    #: evaluate without mixed precision (scores on 8-bit levels, such as PSNR, need fp32 outputs)
    eval_fp32: ClassVar[bool] = False
    #: the most items the report's sample section shows (None: --samples); only these are decoded
    report_items: ClassVar[int | None] = None

    # --- model -----------------------------------------------------------------------------------
    @abstractmethod
    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        """The model keywords the head needs for data ``info`` (``DataBundle.info``); ``requested``
        are the user's --model-arg values, which may only ask for what fits (else a CnnlabError)."""

    def bind_data(self, info: dict[str, Any]) -> None:  # noqa: B027
        """Called once the data's ``info`` is known (training, and every loaded run), for tasks whose
        batches depend on it (audio: the window in samples is seconds x the sample rate)."""

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:  # noqa: B027
        """Raise a CnnlabError when the data cannot train this task (images smaller than a patch...)."""

    @abstractmethod
    def input_size(self, info: dict[str, Any]) -> tuple[int, ...]:
        """(H, W) of one training input ((T,) for audio), to check the model fits before anything is
        written."""

    def input_channels(self, info: dict[str, Any]) -> int:
        """Channels of the model's input: the data's, plus any the task adds to it (inpainting's hole
        mask); those extra channels pass the preprocessing unchanged (mean 0, std 1)."""
        return int(info["in_channels"])

    def input_normalizer(self, x: Any) -> Any:
        """The run's input normalisation (``cnnlab.rundir.Normalize``) from the training split's primary
        field ``x``: per-channel mean/std of the images, identity for tasks whose models see [0, 1]."""
        from cnnlab.rundir import Normalize

        return Normalize.from_images(x, enabled=self.normalize)

    def data_options_like(self, info: dict[str, Any]) -> dict[str, Any]:
        """Reading options that make other data load as the run's did (``cnnlab eval RUN --data
        OTHER``); images get the run's image size from the engine, so none by default."""
        return {}

    @abstractmethod
    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        """'' when a model with per-example ``output_size`` for ``input_size`` (C, H, W) fits the task;
        else what the task needs (for the error message)."""

    # --- batches ---------------------------------------------------------------------------------
    def make_augment(self, name: str) -> Augment | None:
        """The training augmentation --augment ``name`` stands for ('auto': ``default_augment``; None
        for 'none'). Image tasks share ``cnnlab.train.augment``; a task with other data brings its own."""
        from cnnlab.train.augment import make_augment

        return make_augment(name, self.default_augment)

    @abstractmethod
    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        """A training batch from ``items``: patches, augmentation and degradations drawn from
        ``generator`` (seeded per step), as a dict with at least ``input`` and ``target``."""

    @abstractmethod
    def eval_batch(self, items: Split) -> Batch:
        """An evaluation batch of whole items (no randomness)."""

    def eval_batches(self, split: Split, batch_size: int) -> Iterator[Batch]:
        """Whole items in batches: ``batch_size`` at a time where the images share one size, one at a
        time where sizes vary."""
        step = batch_size if split.stacked() else 1
        for i in range(0, len(split), step):
            yield self.eval_batch(split.take(slice(i, i + step)))

    # --- loss, metrics, outputs ------------------------------------------------------------------
    @abstractmethod
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The mean training loss of a batch (a scalar tensor, fp32)."""

    @abstractmethod
    def meter(self, info: dict[str, Any], training: bool = False) -> Meter:
        """A fresh metric accumulator (``training``: the cheap subset shown while training)."""

    @abstractmethod
    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Raw model outputs -> the task's prediction (class probabilities, masks, images, ...)."""

    def forward(self, model: nn.Module, inputs: torch.Tensor, tta: str = "none") -> torch.Tensor:
        """The model's float outputs for ``inputs``, averaged over the test-time augmentation ``tta``.
        For outputs laid out like the image (masks, images), 'flip' mirrors the input and mirrors
        the output back before averaging; tasks with other outputs override this."""
        outputs = model(inputs).float()
        if tta == "flip":
            outputs = 0.5 * (outputs + model(inputs.flip(-1)).float().flip(-1))
        return outputs

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Predict image files with a loaded run (``cnnlab.rundir.LoadedRun``): one row per input
        (its ``path`` and what was predicted or written). ``options`` are the ones given on the
        command line; a task rejects those it does not know."""
        raise NotImplementedError(f"task {self.name!r} cannot predict files yet")

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """The report's sample section (HTML): predictions on ``samples`` items of ``split`` (the
        run's validation data) or on ``inputs`` (``cnnlab.app.explain.Inputs`` from --inputs)."""
        from cnnlab.app import explain as runs
        from cnnlab.app.report import cam_table

        data = inputs if inputs is not None else runs.inputs_from_split(run, split, samples)
        return cam_table(run, data, source, tmp)

    def cam_target(self, outputs: torch.Tensor, cls: int | None) -> tuple[Any, list[dict[str, Any]]]:
        """What a class activation map explains for these outputs: a ``compute_cam`` target, and per
        image the predicted class, its probability and the class the map is for (``cls`` or a choice)."""
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"task {self.name!r} predicts no class to explain with a CAM; use --method "
                          "activations or --method filters")

    # --- inputs for explain and the report -------------------------------------------------------
    def load_inputs(self, run: Any, paths: list[str]) -> Any:
        """Files or folders to explain, read as the run's model takes them (``cnnlab.app.explain.Inputs``);
        by default images at the run's size and channel count."""
        from cnnlab.app.explain import load_image_inputs

        return load_image_inputs(run, paths)

    def filter_input(self, run: Any) -> tuple[nn.Module | None, int, tuple[int, ...]]:
        """What filter visualisation ascends on: (a module from those pictures to the stored data, or
        None when the pictures are the data; their channels; their size)."""
        return None, int(run.in_channels), tuple(run.input_size)

    def inputs_from_split(self, run: Any, split: Split, count: int, index: list[int] | None = None) -> Any:
        """Up to ``count`` items of ``split`` (or those at ``index``) as ``cnnlab.app.explain.Inputs``."""
        from cnnlab.app.explain import image_inputs_from_split

        return image_inputs_from_split(run, split, count, index)

    def save_cam(self, run: Any, inputs: Any, i: int, cam: torch.Tensor, path: Path) -> Path:
        """Draw input ``i`` of ``inputs`` with its map ``cam`` (at the input's size) into ``path``: by
        default the image beside the heat map laid over it."""
        from cnnlab.app.explain import display_images
        from cnnlab.render.overlays import save_overlay

        return save_overlay(display_images(inputs)[i], cam, path)

    def save_example(self, split: Split, i: int, stem: Path, info: dict[str, Any]) -> Path:
        """Item ``i`` of ``split`` (data ``info``) as a file users can pass to predict and explain (the
        demo's samples): by default ``stem``.png."""
        from cnnlab.render.overlays import save_rgb_png

        return save_rgb_png(split.x[i].float() / 255, stem.with_suffix(".png"))

    def describe_input(self, run: Any) -> str:
        """What the model takes, in words, for the report's summary."""
        if run.image_size:
            size = "x".join(map(str, run.image_size))
        else:
            size = f"own sizes (trained on {'x'.join(map(str, run.input_size))} crops)"
        return f"{run.in_channels} channel(s), {size}"

    def options(self) -> dict[str, Any]:
        """The options this task was built with (recorded in a run's config.json)."""
        return {}

    # --- what users see --------------------------------------------------------------------------
    def plots(self, run_dir: Path, meter: Meter | None, info: dict[str, Any]) -> list[Path]:
        """Task-specific images written into the run directory after an evaluation (curves are the
        engine's)."""
        return []

    def summary(self, metrics: dict[str, float]) -> str:
        """One line of the metrics worth printing, with the baseline beside the score where there is one."""
        shown = [k for k in (self.primary_metric, "loss") if k in metrics]
        return "  ".join(f"{k} {metrics[k]:.4f}" for k in shown)


def better(task: Task, metric: str, a: float, b: float) -> bool:
    """True when value ``a`` of ``metric`` is better than ``b`` for ``task``."""
    return a > b if task.directions.get(metric, "max") == "max" else a < b


def check_options(task: Task, given: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """``defaults`` updated with ``given``; an option the task's predict does not take is an error."""
    from cnnlab.errors import CnnlabError

    extra = sorted(set(given) - set(defaults))
    if extra:
        raise CnnlabError(f"{flags(extra)} does not apply to {task.name!r} runs; their predict options: "
                          f"{flags(defaults) or 'none'}")
    return {**defaults, **given}


def flags(names: Any) -> str:
    """Option names as the command line spells them: ('top_k', 'tile') -> '--top-k, --tile'."""
    return ", ".join("--" + k.replace("_", "-") for k in names)
