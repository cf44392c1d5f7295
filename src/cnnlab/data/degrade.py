"""Degradations for image-to-image tasks: bicubic down- and upscaling of uint8 image tensors.

Why Pillow: its BICUBIC filter (Keys' cubic with a = -0.5, the same kernel as MATLAB's ``imresize``)
widens the kernel by the scale factor when downscaling, so it antialiases the way ``imresize`` does.
That makes ``PIL.Image.resize(..., BICUBIC)`` the de-facto reference for making LR images in Python
super-resolution codebases; ``torch.nn.functional.interpolate(mode="bicubic")`` uses a = -0.75 and does
not antialias unless asked, so LR images made with it give models (and scores) that do not compare with
published ones. Pillow works in 8 bits per channel, so the results are close to, not bit-identical with,
MATLAB's (which rounds once, at the end).

Images are uint8 (C, H, W) or (N, C, H, W); 3-channel images are resized as Pillow "RGB" images, any
other channel count (1 for gray) channel by channel as "L" images (Pillow resamples RGB bands
independently, so the two agree).
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from cnnlab.errors import CnnlabError


def _resize_one(img: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """One uint8 (C, H, W) array -> (C, h, w) with Pillow's bicubic."""
    h, w = size
    if img.shape[0] == 3:
        out = Image.fromarray(np.ascontiguousarray(img.transpose(1, 2, 0))).resize((w, h), Image.Resampling.BICUBIC)
        return np.asarray(out).transpose(2, 0, 1)
    return np.stack([np.asarray(Image.fromarray(np.ascontiguousarray(ch)).resize((w, h), Image.Resampling.BICUBIC))
                     for ch in img])


def bicubic_resize(x: torch.Tensor, size: int | tuple[int, int]) -> torch.Tensor:
    """uint8 (C, H, W) or (N, C, H, W) -> uint8 at ``size`` = (h, w) (or an int for a square), resized
    with Pillow's antialiased bicubic (see the module doc for why Pillow)."""
    if x.dtype != torch.uint8:
        raise CnnlabError(f"bicubic_resize takes uint8 images (Pillow resamples 8-bit levels), got {x.dtype}; "
                          "convert with (x.clamp(0, 1) * 255).round().to(torch.uint8)")
    if x.ndim not in (3, 4):
        raise CnnlabError(f"bicubic_resize takes (C, H, W) or (N, C, H, W), got shape {tuple(x.shape)}")
    h, w = (size, size) if isinstance(size, int) else size
    if h < 1 or w < 1:
        raise CnnlabError(f"target size must be at least 1x1, got {h}x{w}")
    batch = x if x.ndim == 4 else x.unsqueeze(0)
    arr = batch.detach().cpu().numpy()
    out = torch.from_numpy(np.stack([_resize_one(img, (h, w)) for img in arr])).to(x.device)
    return out if x.ndim == 4 else out[0]


def _check_scale(scale: int) -> None:
    if not isinstance(scale, int) or scale < 1:
        raise CnnlabError(f"scale must be a positive integer, got {scale!r}")


def downscale(hr: torch.Tensor, scale: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The SR papers' LR image: crop HR to a multiple of ``scale`` (top-left kept), then bicubic down by
    ``scale``. Returns (hr_cropped, lr) so that lr is exactly 1/scale of the HR it is scored against."""
    _check_scale(scale)
    h, w = hr.shape[-2:]
    h, w = h - h % scale, w - w % scale  # scores.sr_crop, inlined: data must not import tasks
    hr = hr[..., :h, :w]
    if h == 0 or w == 0:
        raise CnnlabError(f"image of {tuple(hr.shape[-2:])} is smaller than the scale {scale}")
    return hr, bicubic_resize(hr, (h // scale, w // scale))


def upscale(lr: torch.Tensor, scale: int) -> torch.Tensor:
    """Bicubic up by ``scale``: the baseline every SR model has to beat."""
    _check_scale(scale)
    h, w = lr.shape[-2:]
    return bicubic_resize(lr, (h * scale, w * scale))


__all__ = ["bicubic_resize", "downscale", "upscale"]
