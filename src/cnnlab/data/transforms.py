"""Batched augmentation on whole (N, C, H, W) tensors, with paired inputs kept aligned.

Every transform draws its random parameters once per example, ``params = aug.sample(n, generator)``,
and applies the same parameters to every input of that example: ``aug.apply(params, images)`` and
``aug.apply(params, masks)``. A 3-D input (N, H, W) is treated as a label mask: it is never
interpolated (nearest neighbour) and areas without source pixels get ``mask_fill`` (255 = ignore).
Boxes (N, 4) x1, y1, x2, y2 in pixel edges (``cnnlab.data.boxes``) go through
``aug.apply_boxes(params, boxes, (H, W))``, which returns them in the output's pixels with its size.

Parameters are size-free (fractions and flags), so one ``sample`` serves inputs of different sizes.
The work is index arithmetic and one gather per batch: no per-image Python loop. uint8 stays uint8
(crops and flips copy pixels; resized crops round back), so augmentation can run before ``to_float``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F

IGNORE_INDEX = 255  # mask value for pixels that have no label (padding, unlabelled)


def to_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 images -> float32 in [0, 1]; float input is returned unchanged."""
    return x.to(torch.float32).div_(255.0) if x.dtype == torch.uint8 else x


def _is_mask(x: torch.Tensor) -> bool:
    if x.ndim == 3:
        return True
    if x.ndim == 4:
        return False
    raise ValueError(f"expected images (N, C, H, W) or masks (N, H, W), got shape {tuple(x.shape)}")


def clip_boxes(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Boxes (N, 4) x1, y1, x2, y2 in pixel edges clipped to an (H, W) image; a box pushed out entirely
    becomes a zero-width (or zero-height) box on the edge."""
    h, w = size
    limit = torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)
    return torch.minimum(boxes.clamp(min=0), limit)


def _gather(x: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor) -> torch.Tensor:
    """out[n, ..., i, j] = x[n, ..., rows[n, i], cols[n, j]] for images (N, C, H, W) or masks (N, H, W)."""
    n = torch.arange(len(x), device=x.device)[:, None, None]
    if x.ndim == 3:
        return x[n, rows[:, :, None], cols[:, None, :]]  # (N, h, w)
    return x[n, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()  # (N, h, w, C) -> NCHW


def _reflect(idx: torch.Tensor, size: int) -> torch.Tensor:
    """Reflect indices into [0, size) without repeating the edge pixel (like numpy's 'reflect')."""
    if size == 1:
        return torch.zeros_like(idx)
    period = 2 * (size - 1)
    idx = idx.remainder(period)
    return torch.where(idx >= size, period - idx, idx)


class RandomCrop:
    """Pad by ``padding`` pixels, then crop ``size`` (default: the input size) at a random offset:
    a random translation of up to ``padding`` pixels, the CIFAR recipe.

    ``mode="reflect"`` mirrors the border (masks are mirrored too, so they stay aligned);
    ``mode="constant"`` fills images with ``fill`` and masks with ``mask_fill``.
    """

    def __init__(self, padding: int = 4, size: int | tuple[int, int] | None = None, mode: str = "reflect",
                 fill: float = 0, mask_fill: int = IGNORE_INDEX) -> None:
        if mode not in ("reflect", "constant"):
            raise ValueError(f"RandomCrop mode must be 'reflect' or 'constant', got {mode!r}")
        self.padding, self.mode, self.fill, self.mask_fill = padding, mode, fill, mask_fill
        self.size = (size, size) if isinstance(size, int) else size

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        # fractions of the free range; turned into pixel offsets once the input's size is known
        return {"oy": torch.rand(n, generator=generator), "ox": torch.rand(n, generator=generator)}

    def _offsets(self, params: dict[str, torch.Tensor], size: tuple[int, int], device: torch.device
                 ) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """(oy, ox): per example, the input row and column that output row and column 0 show (negative
        inside the padding), and the output's (H, W). ``apply`` and ``apply_boxes`` share them."""
        h, w = size
        out_h, out_w = self.size or (h, w)
        p = self.padding
        if out_h > h + 2 * p or out_w > w + 2 * p:
            raise ValueError(f"RandomCrop size {(out_h, out_w)} exceeds the padded input {(h + 2 * p, w + 2 * p)}")
        oy = (params["oy"].to(device) * (h + 2 * p - out_h + 1)).long().clamp_(max=h + 2 * p - out_h) - p
        ox = (params["ox"].to(device) * (w + 2 * p - out_w + 1)).long().clamp_(max=w + 2 * p - out_w) - p
        return oy, ox, (out_h, out_w)

    def apply(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        oy, ox, (out_h, out_w) = self._offsets(params, (h, w), x.device)
        rows = oy[:, None] + torch.arange(out_h, device=x.device)  # (N, out_h) in padded-free coords
        cols = ox[:, None] + torch.arange(out_w, device=x.device)
        if self.mode == "reflect":
            return _gather(x, _reflect(rows, h), _reflect(cols, w))
        out = _gather(x, rows.clamp(0, h - 1), cols.clamp(0, w - 1))
        valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, h, w)
        fill = self.mask_fill if _is_mask(x) else self.fill
        valid = valid if x.ndim == 3 else valid[:, None]
        return torch.where(valid, out, torch.tensor(fill, dtype=x.dtype, device=x.device))

    def apply_boxes(self, params: dict[str, torch.Tensor], boxes: torch.Tensor,
                    size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Boxes shifted by the crop's offset and clipped to the output (see ``clip_boxes``). With mode
        'reflect' the mirrored border can show copies of an object outside its box: use 'constant'
        for box targets."""
        oy, ox, out = self._offsets(params, size, boxes.device)  # output row i shows input row oy + i
        shift = torch.stack([ox, oy, ox, oy], dim=1).to(boxes.dtype)
        return clip_boxes(boxes - shift, out), out


class HorizontalFlip:
    """Mirror left-right with probability ``p`` per example."""

    def __init__(self, p: float = 0.5) -> None:
        self.p = p

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        return {"flip": torch.rand(n, generator=generator) < self.p}

    def apply(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        _is_mask(x)  # refuses (N, 4) boxes, whose row a flip would reverse: they go through apply_boxes
        flip = params["flip"].to(x.device).view(-1, *([1] * (x.ndim - 1)))
        return torch.where(flip, x.flip(-1), x)

    def apply_boxes(self, params: dict[str, torch.Tensor], boxes: torch.Tensor,
                    size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """x1' = W - x2 and x2' = W - x1 where the example is mirrored; y unchanged."""
        w = size[1]
        mirrored = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        return torch.where(params["flip"].to(boxes.device)[:, None], mirrored, boxes), size


class RandomResizedCrop:
    """Crop a random box covering ``scale`` of the image area with aspect ``ratio`` (both measured in
    fractions of the input's width and height), resized to ``size`` (default: the input size).

    Images are resampled bilinearly (uint8 is rounded back), masks by nearest neighbour; boxes always
    lie inside the image, so there is nothing to fill.
    """

    def __init__(self, size: int | tuple[int, int] | None = None, scale: tuple[float, float] = (0.35, 1.0),
                 ratio: tuple[float, float] = (3 / 4, 4 / 3)) -> None:
        self.size = (size, size) if isinstance(size, int) else size
        self.scale, self.ratio = scale, ratio

    def sample(self, n: int, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        area = self.scale[0] + (self.scale[1] - self.scale[0]) * torch.rand(n, generator=generator)
        log_lo, log_hi = torch.log(torch.tensor(self.ratio, dtype=torch.float32))
        ratio = torch.exp(log_lo + (log_hi - log_lo) * torch.rand(n, generator=generator))
        bw = torch.sqrt(area * ratio).clamp(max=1.0)  # box width and height as fractions of the image
        bh = torch.sqrt(area / ratio).clamp(max=1.0)
        cx = (torch.rand(n, generator=generator) * 2 - 1) * (1 - bw)  # centres in [-1, 1], box inside
        cy = (torch.rand(n, generator=generator) * 2 - 1) * (1 - bh)
        return {"bw": bw, "bh": bh, "cx": cx, "cy": cy}

    def apply(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        mask = _is_mask(x)
        src = x[:, None] if mask else x
        out_h, out_w = self.size or tuple(x.shape[-2:])
        p = {key: value.to(x.device, torch.float32) for key, value in params.items()}
        theta = torch.zeros(len(x), 2, 3, device=x.device)
        theta[:, 0, 0], theta[:, 0, 2] = p["bw"], p["cx"]
        theta[:, 1, 1], theta[:, 1, 2] = p["bh"], p["cy"]
        grid = F.affine_grid(theta, [len(x), 1, out_h, out_w], align_corners=False)
        # border: samples in the outer half pixel must not blend with zeros beyond the edge
        out = F.grid_sample(src.float(), grid, mode="nearest" if mask else "bilinear", padding_mode="border",
                            align_corners=False)
        if x.dtype == torch.uint8 or not x.is_floating_point():
            out = out.round_().clamp_(0, 255 if x.dtype == torch.uint8 else None).to(x.dtype)
        return out[:, 0] if mask else out

    def apply_boxes(self, params: dict[str, torch.Tensor], boxes: torch.Tensor,
                    size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """The inverse of ``apply``'s sampling map (output u in [-1, 1] reads input bw * u + cx), clipped."""
        h, w = size
        out_h, out_w = self.size or (h, w)
        p = {key: value.to(boxes.device, boxes.dtype)[:, None] for key, value in params.items()}
        x = ((2 * boxes[:, 0::2] / w - 1) - p["cx"]) / p["bw"]  # (N, 2): x1, x2 in the output's [-1, 1]
        y = ((2 * boxes[:, 1::2] / h - 1) - p["cy"]) / p["bh"]
        x, y = (x + 1) / 2 * out_w, (y + 1) / 2 * out_h
        return clip_boxes(torch.stack([x[:, 0], y[:, 0], x[:, 1], y[:, 1]], dim=1), (out_h, out_w)), (out_h, out_w)


class Compose:
    """Transforms in order; ``sample`` returns one parameter set per transform."""

    def __init__(self, transforms: Sequence[Any]) -> None:
        self.transforms = list(transforms)

    def sample(self, n: int, generator: torch.Generator | None = None) -> list[dict[str, torch.Tensor]]:
        return [t.sample(n, generator) for t in self.transforms]

    def apply(self, params: list[dict[str, torch.Tensor]], x: torch.Tensor) -> torch.Tensor:
        for t, p in zip(self.transforms, params, strict=True):
            x = t.apply(p, x)
        return x

    def apply_boxes(self, params: list[dict[str, torch.Tensor]], boxes: torch.Tensor,
                    size: tuple[int, int]) -> tuple[torch.Tensor, tuple[int, int]]:
        """Boxes through every transform in order; returns them with the final (H, W)."""
        for t, p in zip(self.transforms, params, strict=True):
            boxes, size = t.apply_boxes(p, boxes, size)
        return boxes, size

    def __call__(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Augment one input (no paired inputs): sample and apply in one call."""
        return self.apply(self.sample(len(x), generator), x)


def random_translate(image_size: tuple[int, int], mode: str = "reflect") -> RandomCrop:
    """Random translation by up to 1/8 of the image size (reflect padding, or ``mode``): 4 px at 32x32,
    as in the CIFAR ResNet recipe."""
    return RandomCrop(padding=max(1, min(image_size) // 8), mode=mode)


def default_augmentation(image_size: tuple[int, int], mode: str = "reflect") -> Compose:
    """The standard training augmentation: ``random_translate`` plus a horizontal flip."""
    return Compose([random_translate(image_size, mode), HorizontalFlip()])

