"""Holes for inpainting, and a classical fill to compare with.

Holes: random boxes and free-form strokes (the brush strokes of DeepFill v2, Yu et al. 2019), drawn
from a seeded generator until they cover ``cover`` of the image. A box has sides drawn from the
``hole`` range (in pixels); a stroke is 2-5 connected segments, each as long as a box side, painted
with a round brush of a third of that width (at least 2 pixels). Pillow rasterises the shapes, so the
same draws give the same mask on every machine.

Baseline: ``diffusion_fill`` solves Laplace's equation in the holes with the known pixels as the
boundary (harmonic inpainting: every hole pixel becomes the mean of its four neighbours), by Jacobi
iterations started from the solution at half the resolution. Coarse-to-fine matters: plain Jacobi
needs about (hole width)^2 sweeps to carry the border's colours into a hole's centre, while each
level of the pyramid only has to correct a start that is already right to a pixel or two.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw

from cnnlab.errors import CnnlabError

#: the value hole pixels are set to in the model's input (mid-grey: the mask channel says they are holes)
HOLE_VALUE = 128
#: Jacobi sweeps per pyramid level of the diffusion fill
SWEEPS = 48
#: shapes drawn at most per image (a bound on the loop, far above what any cover needs)
MAX_SHAPES = 10_000


def _randint(low: int, high: int, generator: torch.Generator) -> int:
    """One integer from [low, high] inclusive."""
    return int(torch.randint(low, high + 1, (1,), generator=generator))


def _stroke(draw: ImageDraw.ImageDraw, size: tuple[int, int], hole: tuple[int, int], g: torch.Generator) -> None:
    h, w = size
    y, x = _randint(0, h - 1, g), _randint(0, w - 1, g)
    width = max(2, _randint(*hole, g) // 3)
    points = [(x, y)]
    for _ in range(_randint(2, 5, g)):
        angle = 2 * math.pi * float(torch.rand((), generator=g))
        length = _randint(*hole, g)
        x = min(max(int(x + length * math.cos(angle)), 0), w - 1)
        y = min(max(int(y + length * math.sin(angle)), 0), h - 1)
        points.append((x, y))
    draw.line(points, fill=255, width=width, joint="curve")
    r = width / 2  # round caps: the line's ends would otherwise be cut square
    for px, py in (points[0], points[-1]):
        draw.ellipse((px - r, py - r, px + r, py + r), fill=255)


def make_holes(size: tuple[int, int], hole: tuple[int, int], cover: float, generator: torch.Generator
               ) -> torch.Tensor:
    """A bool (H, W) mask (True = hole) of boxes and strokes covering at least ``cover`` of the image."""
    h, w = size
    low, high = min(hole[0], h, w), min(hole[1], h, w)
    canvas = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for _ in range(MAX_SHAPES):
        if np.count_nonzero(np.asarray(canvas)) >= cover * h * w:
            break
        if float(torch.rand((), generator=generator)) < 0.5:
            bh, bw = _randint(low, high, generator), _randint(low, high, generator)
            top, left = _randint(0, h - bh, generator), _randint(0, w - bw, generator)
            draw.rectangle((left, top, left + bw - 1, top + bh - 1), fill=255)
        else:
            _stroke(draw, (h, w), (low, high), generator)
    return torch.from_numpy(np.asarray(canvas) > 0)


def punch(image: torch.Tensor, mask: torch.Tensor, fill: torch.Tensor | None = None) -> torch.Tensor:
    """uint8 (..., C, H, W) image and bool (..., H, W) mask -> the model's input (..., C + 1, H, W):
    the image with its holes set to HOLE_VALUE, or to ``fill``'s pixels there (uint8, the image's shape:
    a first guess such as the diffusion fill), then the mask as 0/255. What was in a hole is never shown."""
    holes = mask.unsqueeze(-3)  # (..., 1, H, W)
    shown = torch.where(holes, torch.full_like(image, HOLE_VALUE) if fill is None else fill, image)
    return torch.cat([shown, holes.to(torch.uint8) * 255], dim=-3)


def _neighbour_mean(x: torch.Tensor) -> torch.Tensor:
    """The mean of each pixel's 4 neighbours (edges replicated: no flow across the image border)."""
    p = F.pad(x, (1, 1, 1, 1), mode="replicate")
    return (p[..., :-2, 1:-1] + p[..., 2:, 1:-1] + p[..., 1:-1, :-2] + p[..., 1:-1, 2:]) / 4


def _fill(x: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(1, C, H, W) float with (1, 1, H, W) known-pixel weights in {0, 1} -> x with its holes filled."""
    if bool(known.all()):
        return x
    if not bool(known.any()):
        return torch.full_like(x, float(HOLE_VALUE))
    h, w = x.shape[-2:]
    if max(h, w) > 1:
        # half resolution: the mean of the known pixels of each 2x2 block, a block with none is a hole
        num = F.avg_pool2d(x * known, 2, ceil_mode=True)
        den = F.avg_pool2d(known, 2, ceil_mode=True)
        coarse = _fill(num / den.clamp_min(1e-12), (den > 0).to(x.dtype))
        start = coarse.repeat_interleave(2, -2).repeat_interleave(2, -1)[..., :h, :w]
    else:
        start = x
    out = torch.where(known > 0, x, start)
    for _ in range(SWEEPS):
        out = torch.where(known > 0, x, _neighbour_mean(out))
    return out


def diffusion_fill(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """uint8 (C, H, W) and bool (H, W) (True = hole) -> uint8 (C, H, W): the holes filled by diffusion
    (harmonic inpainting, see the module doc), the known pixels unchanged."""
    if image.ndim != 3 or mask.shape != image.shape[-2:]:
        raise CnnlabError(f"diffusion_fill takes a (C, H, W) image and an (H, W) mask, got "
                          f"{tuple(image.shape)} and {tuple(mask.shape)}")
    x = image.float()[None]  # (1, C, H, W); float32 is plenty for an answer rounded to 8 bits
    known = (~mask).float()[None, None]  # (1, 1, H, W)
    return _fill(x, known)[0].round().clamp(0, 255).to(torch.uint8)


__all__ = ["HOLE_VALUE", "diffusion_fill", "make_holes", "punch"]
