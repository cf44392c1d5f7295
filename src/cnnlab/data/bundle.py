"""The in-memory dataset types every loader returns: ImageData (one split) and DataBundle (both splits).

Images stay uint8 NCHW tensors at one fixed size per dataset: 50,000 CIFAR images are 150 MB that way
(600 MB as float32), and batches are augmented on whole tensors (see ``cnnlab.data.transforms``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch


@dataclass(frozen=True)
class ImageData:
    """One split: ``x`` uint8 (N, C, H, W); ``y`` int64 targets ((N,) class indices for ``classify``,
    (N, H, W) masks for ``segment``); ``mask`` optional uint8 (N, H, W) per-pixel labels of the
    same images (0 = background, k + 1 = class k, 255 = ignore) for localisation checks."""

    x: torch.Tensor
    y: torch.Tensor
    mask: torch.Tensor | None = None

    def __post_init__(self) -> None:
        # Catch a malformed split where it is built, not three modules later in the training loop.
        if self.x.dtype != torch.uint8 or self.x.ndim != 4:
            raise ValueError(f"ImageData.x must be uint8 (N, C, H, W), got {self.x.dtype} {tuple(self.x.shape)}")
        if self.y.dtype != torch.int64 or len(self.y) != len(self.x):
            raise ValueError(f"ImageData.y must be int64 with {len(self.x)} rows, got {self.y.dtype} {tuple(self.y.shape)}")
        if self.mask is not None and self.mask.shape != (len(self.x), *self.x.shape[2:]):
            raise ValueError(f"ImageData.mask must be (N, H, W) = {(len(self.x), *self.x.shape[2:])}, got {tuple(self.mask.shape)}")

    def __len__(self) -> int:
        return len(self.x)

    def take(self, index: torch.Tensor | slice) -> ImageData:
        """The rows at ``index`` (a slice, int64 indices or a bool mask) as a new ImageData."""
        return ImageData(self.x[index], self.y[index], None if self.mask is None else self.mask[index])


@dataclass(frozen=True)
class DataBundle:
    """What ``load_data`` returns: both splits plus what a run must remember to preprocess new images
    the same way (``in_channels``, ``image_size`` as (H, W)) and to name its outputs (``class_names``).
    ``meta`` holds loader facts worth recording in a run's config (source, skipped files, split rule)."""

    train: ImageData
    val: ImageData
    class_names: list[str]
    in_channels: int
    image_size: tuple[int, int]
    spec: str
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)
