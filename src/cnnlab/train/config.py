"""The training configuration: one dataclass, resolved once, written to the run's config.json.

Every default is explicit here and the resolved values (learning rate, device, precision) are written
to config.json, so a run can always be reproduced from its directory. Functions in this module return
new objects; they never mutate the caller's config.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from cnnlab.errors import CnnlabError

OPTIMIZERS = ("sgd", "adamw")
SCHEDULES = ("onecycle", "cosine")
#: test-time augmentation levels for the final evaluation (airbench's levels 0, 1 and 2)
TTA_MODES = ("none", "flip", "flip-translate")
#: learning rate used when none is given, per optimizer
DEFAULT_LR = {"sgd": 0.1, "adamw": 2e-3}

# Fields that define what is trained and how: a resumed run must agree on them (epochs, device,
# precision and the other run-time knobs may change between sessions).
COMPAT_KEYS = (
    "task", "data", "model", "model_kwargs", "val_split", "image_size", "limit", "seed", "batch_size",
    "optimizer", "lr", "momentum", "schedule", "warmup", "weight_decay", "task_options", "data_options",
    "augment", "recipe", "lr_start", "lr_end", "norm_lr_scale", "lookahead", "repeat",
)


@dataclass(frozen=True)
class TrainConfig:
    """Everything `cnnlab train` needs; ``resolved()`` fills the values left to the machine."""

    task: str = "classify"
    data: str = ""
    model: str = ""  # "" = the task's default model
    out: str = "run"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    # the task's own options (classify: label_smoothing; superres: scale, patch; ...), checked by the task
    task_options: dict[str, Any] = field(default_factory=dict)
    # how the data layout is read (masks: mask_values, void_value), checked by the loader
    data_options: dict[str, Any] = field(default_factory=dict)
    epochs: int = 10
    repeat: int = 1  # visits of every training item per epoch (each with fresh random patches)
    batch_size: int = 64  # per process (DDP: the global batch is batch_size * world size)
    seed: int = 0
    precision: str = "auto"  # auto | fp32 | bf16 | fp16
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    val_split: float = 0.1  # fraction of the training examples held out when the data has no val split
    image_size: int | list[int] | None = None  # resize to this square size or [H, W]; None = the data's own
    limit: int | None = None  # use at most this many training examples (quick experiments, tests)
    optimizer: str = "adamw"  # sgd (Nesterov) | adamw
    lr: float | None = None  # peak learning rate; None = DEFAULT_LR[optimizer]
    momentum: float = 0.9  # SGD momentum, or AdamW beta1
    weight_decay: float = 5e-4  # applied to conv/linear weights only, never to norm or bias params
    schedule: str = "onecycle"  # onecycle (linear up, linear down) | cosine (linear up, cosine down)
    warmup: float = 0.1  # fraction of all steps spent in linear warm-up
    lr_start: float = 0.0  # warm-up starts at this fraction of the peak lr (0: at peak / warm-up steps)
    lr_end: float = 0.0  # the decay ends at this fraction of the peak lr
    # Norm-layer weights and biases train at lr * norm_lr_scale. At 1.0 they keep the long-standing
    # exemption from weight decay; any other scale gives them weight_decay / norm_lr_scale (airbench's
    # rule, see optim.param_groups for why), so their decay per step equals the conv weights'.
    norm_lr_scale: float = 1.0
    lookahead: bool = False  # airbench's lookahead: an EMA of the weights, pulled onto every 5 steps
    tta: str = "none"  # test-time augmentation of the FINAL evaluation: none | flip | flip-translate
    augment: str = "auto"  # auto | none | flip | crop | flip-crop (auto = the task's choice)
    recipe: str | None = None  # a named set of overrides from cnnlab.train.recipes
    compile: bool = False  # torch.compile the model (faster on GPU after a warm-up)
    channels_last: bool = True
    strict: bool = False  # data loading: fail on any unreadable file instead of skipping it
    threads: int | None = None  # torch intra-op threads; None = torch's default

    def resolved(self, **values: Any) -> TrainConfig:
        """A validated copy with ``values`` applied and the automatic learning rate filled in."""
        cfg = dataclasses.replace(self, **values)
        if not cfg.model:
            from cnnlab.tasks import task_class

            cfg = dataclasses.replace(cfg, model=task_class(cfg.task).default_model)
        cfg.validate()
        if cfg.lr is None:
            cfg = dataclasses.replace(cfg, lr=DEFAULT_LR[cfg.optimizer])
        return cfg

    def validate(self) -> None:
        """Raise a CnnlabError naming the first invalid value and its valid range."""
        checks = [
            (self.optimizer in OPTIMIZERS, f"--optimizer must be one of {', '.join(OPTIMIZERS)}"),
            (self.schedule in SCHEDULES, f"--schedule must be one of {', '.join(SCHEDULES)}"),
            (self.epochs >= 1, "--epochs must be at least 1"),
            (self.batch_size >= 1, "--batch-size must be at least 1"),
            (self.repeat >= 1, "--repeat must be at least 1 (visits of every training item per epoch)"),
            (0.0 <= self.warmup < 1.0, "--warmup is a fraction of all steps, in [0, 1)"),
            (0.0 <= self.lr_start <= 1.0, "--lr-start is a fraction of the peak lr, in [0, 1]"),
            (0.0 <= self.lr_end <= 1.0, "--lr-end is a fraction of the peak lr, in [0, 1]"),
            (self.norm_lr_scale > 0, "--norm-lr-scale must be positive (1 = the same lr as the weights)"),
            (self.tta in TTA_MODES, f"--tta must be one of {', '.join(TTA_MODES)}"),
            (0.0 <= self.val_split < 1.0, "--val-split must be in [0, 1)"),
            (self.limit is None or self.limit >= 1, "--limit must be at least 1 (leave it out for every image)"),
            (self.threads is None or self.threads >= 0, "--threads must be a positive count (or 0: automatic)"),
            (self.lr is None or self.lr > 0, "--lr must be positive"),
            (self.weight_decay >= 0, "--weight-decay must be >= 0"),
            (bool(self.data), "--data is required (a folder, an .npz file or builtin:NAME)"),
            (bool(self.model), "--model is required for this task (see `cnnlab models list`)"),
        ]
        for ok, message in checks:
            if not ok:
                raise CnnlabError(message)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @staticmethod
    def upgrade(values: dict[str, Any]) -> dict[str, Any]:
        """A saved 'train' section in today's keys: runs written before task options had their own
        section kept label smoothing at the top level."""
        values = dict(values)
        if "label_smoothing" in values:
            smoothing = values.pop("label_smoothing")
            options = dict(values.get("task_options") or {})
            if smoothing:
                options.setdefault("label_smoothing", smoothing)
            values["task_options"] = options
        return values

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        """Rebuild from config.json's 'train' section (unknown keys are an error, not ignored)."""
        values = cls.upgrade(values)
        names = {f.name for f in dataclasses.fields(cls)}
        extra = sorted(set(values) - names)
        if extra:
            raise CnnlabError(f"config has unknown training keys {extra}; was it written by a newer cnnlab?")
        return cls(**values)


def apply_overrides(cfg: TrainConfig, overrides: dict[str, Any], source: str) -> TrainConfig:
    """A copy of ``cfg`` with ``overrides`` applied; unknown keys name ``source`` in the error."""
    names = {f.name for f in dataclasses.fields(TrainConfig)}
    bad = sorted(set(overrides) - names)
    if bad:
        raise CnnlabError(f"{source} sets unknown training options {bad}")
    return dataclasses.replace(cfg, **overrides)


def config_differences(saved: dict[str, Any], new: dict[str, Any], keys: tuple[str, ...] = COMPAT_KEYS
                       ) -> list[str]:
    """The keys among ``keys`` whose values differ, each as 'key: saved -> new'."""
    diffs = []
    for key in keys:
        a, b = saved.get(key), new.get(key)
        if _normal(a) != _normal(b):
            diffs.append(f"{key}: {a!r} -> {b!r}")
    return diffs


def _normal(value: Any) -> Any:
    # JSON turns tuples into lists; compare the JSON shape of both sides.
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    if isinstance(value, dict):
        return {k: _normal(v) for k, v in value.items()}
    return value
