"""Procedural datasets that need no download: ``builtin:shapes`` (images) and ``builtin:tones`` (audio,
generated in ``cnnlab.data.audio.tones``).

``shapes``: one solid coloured shape per image (circle, square, triangle, star, cross, ring) at a random
position, scale and rotation, on a textured background (smooth noise, a linear gradient or stripes),
with dark-on-light images as often as light-on-dark. Every image comes with its exact segmentation mask,
so the same data serves classification, CAM-localisation checks and segmentation.

Everything is drawn from one seeded ``torch.Generator`` up front and rendered in vectorised chunks
(no per-image Python loop): 4,000 images at 64x64 take about 0.9 s of one CPU core.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError, unknown

SHAPES = ("circle", "square", "triangle", "star", "cross", "ring")

# Colour ranges (fractions of 255) that keep every shape separable from its background: the shape's
# brightest channel is >= 0.8 and no background channel exceeds 0.6 (mirrored for dark-on-light images).
_BG_LOW, _BG_HIGH, _TEXTURE = 0.05, 0.45, 0.15
_CHUNK = 512  # images rendered at once: bounds peak memory at ~100 MB for 64x64


def _inside(kind: int, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Boolean (n, H, W): is the point (a, b) - shape-local coordinates in units of the shape's outer
    radius - inside shape ``kind``?"""
    p = torch.sqrt(a * a + b * b)
    name = SHAPES[kind]
    if name == "circle":
        return p <= 1.0
    if name == "square":
        return torch.maximum(a.abs(), b.abs()) <= 0.75
    if name == "triangle":  # regular, circumradius 1 => apothem 0.5; three half-planes 120 degrees apart
        inside = torch.ones_like(a, dtype=torch.bool)
        for k in range(3):
            phi = math.pi / 2 + 2 * math.pi * k / 3
            inside &= a * math.cos(phi) + b * math.sin(phi) <= 0.5
        return inside
    if name == "star":  # five points: radius follows a triangle wave between 0.45 and 1 over the angle
        t = torch.frac((torch.atan2(b, a) / (2 * math.pi) + 1.0) * 5)
        return p <= 0.45 + 0.55 * (1 - 2 * t).abs()
    if name == "cross":
        return ((a.abs() <= 0.3) & (b.abs() <= 1.0)) | ((b.abs() <= 0.3) & (a.abs() <= 1.0))
    if name == "ring":
        return (p <= 1.0) & (p >= 0.55)
    raise AssertionError(name)


def _hsv_to_rgb(h: torch.Tensor, s: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """(n,) hue/saturation/value in [0, 1] -> (n, 3) RGB in [0, 1]."""
    k = torch.stack([(5 + h * 6) % 6, (3 + h * 6) % 6, (1 + h * 6) % 6], dim=1)  # (n, 3)
    return v[:, None] - v[:, None] * s[:, None] * torch.clamp(torch.minimum(k, 4 - k), 0, 1)


def _backgrounds(p: dict[str, torch.Tensor], xs: torch.Tensor, ys: torch.Tensor) -> torch.Tensor:
    """Float (n, 3, H, W) textured backgrounds in [0, _BG_HIGH + _TEXTURE]; each texture is computed
    only for the images that use it (a loop over three kinds, not over images)."""
    n, size = len(p["bg_kind"]), xs.shape[-1]
    bg = torch.empty(n, 3, size, size)
    for kind in range(3):
        sel = torch.nonzero(p["bg_kind"] == kind).flatten()
        if len(sel) == 0:
            continue
        c1, c2 = p["c1"][sel, :, None, None], p["c2"][sel, :, None, None]  # (m, 3, 1, 1)
        if kind == 0:  # smooth noise: a 6x6 random grid upsampled, plus a little pixel noise
            smooth = F.interpolate(p["coarse"][sel], size=(size, size), mode="bicubic", align_corners=False)
            bg[sel] = c1 + _TEXTURE * (smooth - 0.5) * 2 + 0.03 * p["fine"][sel]
            continue
        angle = p["angle"][sel, None, None]
        along = (xs * torch.cos(angle) + ys * torch.sin(angle))[:, None]  # (m, 1, H, W), in [-1.5, 1.5]
        if kind == 1:  # linear gradient between two colours
            t = along / math.sqrt(2) * 0.5 + 0.5
        else:  # stripes
            t = 0.5 + 0.5 * torch.sin(math.pi * p["freq"][sel, None, None, None] * along + p["phase"][sel, None, None, None])
        bg[sel] = c1 + (c2 - c1) * t
    return bg.clamp_(0.0, _BG_HIGH + _TEXTURE)


def _sample_params(n: int, size: int, num_classes: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random number of the dataset, drawn in one fixed order (the order is the seed contract)."""

    def u(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=gen)

    labels = (torch.arange(n) % num_classes)[torch.randperm(n, generator=gen)]  # exactly balanced
    radius = u(n, low=0.35, high=0.7)  # outer radius, in units of the image half-width
    return {
        "label": labels,
        "radius": radius,
        "cx": (u(n) * 2 - 1) * (1 - radius),  # keeps the whole shape inside the image
        "cy": (u(n) * 2 - 1) * (1 - radius),
        "theta": u(n, high=2 * math.pi),
        "fg": _hsv_to_rgb(u(n), u(n, low=0.5), u(n, low=0.8)),
        "invert": torch.rand(n, generator=gen) < 0.5,
        "bg_kind": torch.randint(0, 3, (n,), generator=gen),
        "c1": u(n, 3, low=_BG_LOW, high=_BG_HIGH),
        "c2": u(n, 3, low=_BG_LOW, high=_BG_HIGH),
        "angle": u(n, high=2 * math.pi),
        "freq": u(n, low=2.0, high=6.0),
        "phase": u(n, high=2 * math.pi),
        "coarse": u(n, 3, 6, 6),
        "fine": torch.randn(n, 3, size, size, generator=gen),
    }


def _render(p: dict[str, torch.Tensor], size: int, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images (n, 3, H, W) and uint8 masks (n, H, W) (0 = background, k + 1 = shape class k)."""
    n = len(p["label"])
    coords = (torch.arange(size, dtype=torch.float32) + 0.5) / size * 2 - 1  # pixel centres in [-1, 1]
    ys, xs = torch.meshgrid(coords, coords, indexing="ij")
    dx, dy = xs[None] - p["cx"][:, None, None], ys[None] - p["cy"][:, None, None]  # (n, H, W)
    cos, sin = torch.cos(p["theta"])[:, None, None], torch.sin(p["theta"])[:, None, None]
    r = p["radius"][:, None, None]
    a, b = (cos * dx + sin * dy) / r, (-sin * dx + cos * dy) / r
    inside = torch.empty(n, size, size, dtype=torch.bool)
    for kind in range(num_classes):  # each shape test runs only on the images of that class
        sel = torch.nonzero(p["label"] == kind).flatten()
        inside[sel] = _inside(kind, a[sel], b[sel])
    bg = _backgrounds(p, xs, ys)
    img = torch.where(inside[:, None], p["fg"][:, :, None, None], bg)
    img = torch.where(p["invert"][:, None, None, None], 1.0 - img, img)
    mask = torch.where(inside, p["label"][:, None, None] + 1, 0).to(torch.uint8)
    return (img * 255).round_().to(torch.uint8), mask


def shapes(n: int = 2000, size: int = 64, classes: int = len(SHAPES), seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """``n`` shape images: (x uint8 (n, 3, size, size), y int64 (n,), mask uint8 (n, size, size), names)."""
    if not 1 <= n <= 1_000_000:
        raise CnnlabError(f"builtin:shapes n={n} is out of range; use 1..1000000 images")
    if not 8 <= size <= 1024:
        raise CnnlabError(f"builtin:shapes size={size} is out of range; use 8..1024 pixels")
    if not 2 <= classes <= len(SHAPES):
        raise CnnlabError(f"builtin:shapes classes={classes} is out of range; use 2..{len(SHAPES)}")
    gen = torch.Generator().manual_seed(seed)
    params = _sample_params(n, size, classes, gen)
    xs, masks = [], []
    for start in range(0, n, _CHUNK):
        chunk = {key: value[start : start + _CHUNK] for key, value in params.items()}
        x, m = _render(chunk, size, classes)
        xs.append(x)
        masks.append(m)
    return torch.cat(xs), params["label"].clone(), torch.cat(masks), list(SHAPES[:classes])


def _tones(**options: Any) -> tuple:
    from cnnlab.data.audio.tones import tones  # imported when used: the image builtins do not need it

    return tones(**options)


# name -> (generator, {option: default}); an option's type is its default's type.
BUILTINS: dict[str, tuple[Callable[..., tuple], dict[str, Any]]] = {
    "shapes": (shapes, {"n": 2000, "size": 64, "classes": len(SHAPES)}),
    "tones": (_tones, {"n": 2000, "sample_rate": 8000, "duration": 1.0, "classes": 8, "channels": 1}),
}
#: the data layouts (``Task.data_layout``) each builtin serves
LAYOUTS = {"shapes": ("labels", "masks", "images"), "tones": ("audio",)}


def check_layout(name: str, layout: str) -> None:
    """A CnnlabError when builtin ``name`` cannot serve a task that reads ``layout`` data."""
    if layout in LAYOUTS[name]:
        return
    if layout == "audio":
        raise CnnlabError(f"builtin:{name} holds images; task audio reads recordings: builtin:tones or a folder "
                          "of audio files")
    raise CnnlabError(f"builtin:{name} holds audio clips; train it with `cnnlab train audio --data builtin:{name}`")


def parse_options(name: str, options: dict[str, str]) -> dict[str, Any]:
    """Every option of builtin ``name``: the defaults, overridden by the spec's ``key=value`` texts."""
    if name not in BUILTINS:
        raise unknown("builtin dataset", name, BUILTINS)
    defaults = BUILTINS[name][1]
    resolved = dict(defaults)
    for key, text in options.items():
        if key not in defaults:
            raise unknown(f"option of builtin:{name}", key, defaults)
        kind = type(defaults[key])
        try:
            resolved[key] = kind(text)
        except ValueError:
            raise CnnlabError(f"builtin:{name} option {key}={text!r} must be {kind.__name__}") from None
    return resolved


def generate(name: str, options: dict[str, Any], seed: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Run builtin ``name`` with resolved options (see ``parse_options``): (x, y, mask, class names)."""
    return BUILTINS[name][0](**options, seed=seed)
