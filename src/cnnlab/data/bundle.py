"""The in-memory dataset types every loader returns: Split (one split as named fields) and DataBundle.

A Split holds N items under named fields (``image``, ``label``, ``mask``, later ``boxes``, ``wave``,
``dct``). Each field is either one stacked tensor (N, ...) when every item has the same shape (50,000
CIFAR images are 150 MB as one uint8 tensor, and batches are augmented on whole tensors), or a list of
N tensors when sizes differ (photos for super-resolution, CamVid frames at their own size). A field's
*kind* says how paired transforms treat it: ``image`` uint8 (C, H, W) items, ``mask`` uint8 (H, W)
per-pixel classes (IGNORE = void), ``label`` one int64 per item, ``wave`` float32 (C, T) audio in
[-1, 1], ``dct`` float (384, H/16, W/16) packed JPEG coefficients (``cnnlab.dct.layout``), ``boxes`` float32
(N, 4) one box per item, x1, y1, x2, y2 in pixel edges (``cnnlab.data.boxes``). A split's items are
counted by its *primary* field: ``image``, or ``wave`` for audio.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

#: the mask value that losses and metrics ignore (void / unlabelled pixels)
IGNORE = 255
KINDS = ("image", "mask", "label", "wave", "dct", "boxes")
#: the kind of a field when the loader does not say (a field's name is its kind for the common ones)
DEFAULT_KINDS = {"image": "image", "mask": "mask", "label": "label", "target": "image", "wave": "wave",
                 "dct": "dct", "boxes": "boxes"}
#: the fields that can be a split's primary one (the model's input), in order of preference
PRIMARY = ("image", "wave", "dct")

Field = torch.Tensor | list[torch.Tensor]


def _count(values: Field) -> int:
    return len(values)


def _item_shape(values: Field, i: int) -> tuple[int, ...]:
    return tuple(values[i].shape)


class Split:
    """One split: named fields of ``len(split)`` items each (see the module doc)."""

    def __init__(self, fields: Mapping[str, Field], kinds: Mapping[str, str] | None = None) -> None:
        found = [name for name in PRIMARY if name in fields]
        if not found:
            raise ValueError(f"a Split needs an 'image' (or 'wave' or 'dct') field, got fields {sorted(fields)}")
        self.primary = found[0]
        self.fields: dict[str, Field] = dict(fields)
        self.kinds: dict[str, str] = {name: (kinds or {}).get(name, DEFAULT_KINDS.get(name, "label"))
                                      for name in self.fields}
        self._check()

    def _check(self) -> None:
        # Catch a malformed split where it is built, not three modules later in the training loop.
        n = _count(self.fields[self.primary])
        for name, values in self.fields.items():
            kind = self.kinds[name]
            if kind not in KINDS:
                raise ValueError(f"field {name!r} has unknown kind {kind!r}; kinds: {', '.join(KINDS)}")
            if _count(values) != n:
                raise ValueError(f"field {name!r} has {_count(values)} items, {self.primary!r} has {n}")
            if kind == "wave" and not _all(values, lambda t: t.dtype == torch.float32 and t.dim() == 2):
                raise ValueError(f"field {name!r} must hold float32 (C, T) waveforms, got {_describe(values)}")
            if kind == "dct" and not _all(values, lambda t: t.is_floating_point() and t.dim() == 3 and t.shape[0] == 384):
                raise ValueError(f"field {name!r} must hold float (384, h, w) packed DCT inputs, got {_describe(values)}")
            if kind == "image" and not _all(values, lambda t: t.dtype == torch.uint8 and t.dim() == 3):
                raise ValueError(f"field {name!r} must hold uint8 (C, H, W) images, got {_describe(values)}")
            if kind == "boxes" and not (isinstance(values, torch.Tensor) and values.dtype == torch.float32
                                        and values.dim() == 2 and values.shape[1] == 4):
                # one box per item, x1, y1, x2, y2 in pixels (cnnlab.data.boxes checks the values)
                raise ValueError(f"field {name!r} must be float32 (N, 4) boxes x1, y1, x2, y2, got {_describe(values)}")
            if kind == "label" and not (isinstance(values, torch.Tensor) and values.dtype == torch.int64
                                        and values.dim() == 1):
                raise ValueError(f"field {name!r} must be int64 (N,) labels, got {_describe(values)}")
            if kind == "mask" and isinstance(values, torch.Tensor) and isinstance(self.fields["image"], torch.Tensor):
                if values.shape[1:] != self.fields["image"].shape[2:]:  # stacked: one comparison, not one per item
                    raise ValueError(f"field {name!r} is {tuple(values.shape)}, the images are "
                                     f"{tuple(self.fields['image'].shape)}: masks must be (N, H, W) of the images")
            elif kind == "mask":
                for i in range(n):
                    if _item_shape(values, i) != _item_shape(self.fields["image"], i)[1:]:
                        raise ValueError(f"field {name!r} item {i} is {_item_shape(values, i)}, its image is "
                                         f"{_item_shape(self.fields['image'], i)}: masks must be (H, W) of the image")

    def __len__(self) -> int:
        return _count(self.fields[self.primary])

    def __contains__(self, name: str) -> bool:
        return name in self.fields

    def __getitem__(self, name: str) -> Field:
        return self.fields[name]

    def take(self, index: torch.Tensor | slice) -> Split:
        """The items at ``index`` (a slice, int64 indices or a bool mask) as a new Split."""
        return Split({name: _take(values, index) for name, values in self.fields.items()}, self.kinds)

    def stacked(self, name: str | None = None) -> bool:
        """True when field ``name`` (default: the primary one) is one tensor (every item the same shape)."""
        return isinstance(self.fields[name or self.primary], torch.Tensor)

    def sizes(self) -> list[tuple[int, ...]]:
        """(H, W) of every image, or (T,) of every waveform."""
        items = self.fields[self.primary]
        axes = 1 if self.primary == "wave" else 2  # (C, H, W) images and DCT cells, (C, T) waves
        if isinstance(items, torch.Tensor):
            return [tuple(items.shape[-axes:])] * len(items)  # type: ignore[list-item]
        return [tuple(t.shape[-axes:]) for t in items]  # type: ignore[misc]

    # Shorthands for the classification fields, which most code and tests read.
    @property
    def x(self) -> Field:
        """The primary field: the images (or the waveforms of an audio split)."""
        return self.fields[self.primary]

    @property
    def y(self) -> torch.Tensor:
        return self.fields["label"]  # type: ignore[return-value]

    @property
    def mask(self) -> Field | None:
        return self.fields.get("mask")


def _all(values: Field, ok: Any) -> bool:
    if isinstance(values, torch.Tensor):
        return values.dim() >= 1 and (len(values) == 0 or ok(values[0]))
    return all(ok(t) for t in values)


def _describe(values: Field) -> str:
    if isinstance(values, torch.Tensor):
        return f"{values.dtype} {tuple(values.shape)}"
    return f"a list of {len(values)} tensors" + (f" (first {values[0].dtype} {tuple(values[0].shape)})" if values else "")


def _take(values: Field, index: torch.Tensor | slice) -> Field:
    if isinstance(values, torch.Tensor):
        return values[index]
    if isinstance(index, slice):
        return values[index]
    if index.dtype == torch.bool:
        index = index.nonzero().flatten()
    return [values[i] for i in index.tolist()]


def stack_or_list(items: list[torch.Tensor]) -> Field:
    """One tensor when every item has the same shape, else the list itself."""
    if items and all(t.shape == items[0].shape for t in items):
        return torch.stack(items)
    return items


def ImageData(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None = None) -> Split:  # noqa: N802
    """A classification split: ``x`` uint8 (N, C, H, W), ``y`` int64 (N,) class indices, optional
    ``mask`` uint8 (N, H, W) per-pixel labels of the same images (0 = background, k + 1 = class k,
    255 = ignore) for localisation checks. Raises ValueError on a malformed split."""
    if x.dtype != torch.uint8 or x.ndim != 4:
        raise ValueError(f"ImageData.x must be uint8 (N, C, H, W), got {x.dtype} {tuple(x.shape)}")
    if y.dtype != torch.int64 or len(y) != len(x):
        raise ValueError(f"ImageData.y must be int64 with {len(x)} rows, got {y.dtype} {tuple(y.shape)}")
    if mask is not None and mask.shape != (len(x), *x.shape[2:]):
        raise ValueError(f"ImageData.mask must be (N, H, W) = {(len(x), *x.shape[2:])}, got {tuple(mask.shape)}")
    fields: dict[str, Field] = {"image": x, "label": y}
    if mask is not None:
        fields["mask"] = mask
    return Split(fields)


@dataclass(frozen=True)
class DataBundle:
    """What ``load_data`` returns: both splits plus what a run must remember to preprocess new inputs
    the same way (``in_channels``, ``image_size`` as (H, W), None when sizes vary) and to name its
    outputs (``class_names``, empty where a task has no classes). ``meta`` holds loader facts worth
    recording in a run's config (source, skipped files, split rule); ``extra_info`` the facts beyond
    images that new inputs must match (audio: ``sample_rate``), merged into ``info``."""

    train: Split
    val: Split
    class_names: list[str]
    in_channels: int
    image_size: tuple[int, int] | None
    spec: str
    meta: dict[str, Any] = field(default_factory=dict)
    extra_info: dict[str, Any] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def info(self) -> dict[str, Any]:
        """The data facts a task and a run directory need (JSON-ready): classes, channels, size."""
        size = None if self.image_size is None else list(self.image_size)
        return {"class_names": list(self.class_names), "in_channels": self.in_channels, "image_size": size,
                **self.extra_info}
