"""Noise for denoising: additive Gaussian (a fixed sigma, or one drawn per image from a range for blind
training) and Poisson (shot) noise, made on the fly from a seeded generator.

Noise is added in floating point on the 0-255 scale and the result is neither clipped nor rounded:
that is the protocol of the denoising papers (DnCNN, BM3D: ``y = x + sigma * randn`` on the double
image), so that sigma 25 means a noise of standard deviation 25 and the noisy input's PSNR is the
textbook 20.17 dB. Images saved as 8-bit files are clipped and rounded; the model sees those too at
predict time, and scores are taken after the same rounding (``cnnlab.tasks.denoise``).

Validation noise must be the same every epoch and every run, whatever the batch order: each image's
generator is seeded from its own pixels (``image_generator``), so an image always gets the same noise.
"""

from __future__ import annotations

import re
import zlib
from collections.abc import Sequence

import torch

from cnnlab.errors import CnnlabError

NOISES = ("gaussian", "poisson", "poisson-gaussian")
#: "25", "5-50", "5,50", "-5" (a sign is not a range's dash)
_RANGE = re.compile(r"\s*(-?\d+(?:\.\d*)?)\s*(?:[-,]\s*(-?\d+(?:\.\d*)?))?\s*")


def parse_range(value: float | str | Sequence[float], option: str, example: str, minimum: float = 0.0
                ) -> tuple[float, float]:
    """A fixed value or a range as (low, high): 25, '25', '5-50', '5,50' or [5, 50]; values below
    ``minimum`` and low > high are a CnnlabError naming ``option``."""
    text = str(value)
    if isinstance(value, str):
        found = _RANGE.fullmatch(value)
        parts = [float(p) for p in found.groups() if p is not None] if found else []
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        parts = [float(value)]
    else:
        try:
            parts = [float(v) for v in value]
        except (TypeError, ValueError):
            parts = []
    if len(parts) not in (1, 2) or any(p != p for p in parts):
        raise CnnlabError(f"{option} {text} must be a number or a range LOW-HIGH, for example {example}")
    low, high = parts[0], parts[-1]
    if low < minimum or high < minimum:
        raise CnnlabError(f"{option} {text} must be >= {minimum:g}, for example {example}")
    if low > high:
        raise CnnlabError(f"{option} {text}: the range goes down ({low:g} > {high:g}); write it LOW-HIGH, "
                          f"for example {example}")
    return low, high


def image_generator(image: torch.Tensor, salt: int = 0) -> torch.Generator:
    """A generator seeded from the image's bytes (and ``salt``): the same image, the same draws."""
    data = image.detach().cpu().contiguous().numpy().tobytes()
    return torch.Generator().manual_seed(zlib.crc32(data) * 1_000_003 + salt)


def uniform(low: float, high: float, generator: torch.Generator) -> float:
    """One draw from [low, high] (exactly ``low`` when the range is a single value)."""
    return low if low == high else low + (high - low) * float(torch.rand((), generator=generator))


def add_noise(clean: torch.Tensor, kind: str, sigma: float, peak: float, generator: torch.Generator
              ) -> torch.Tensor:
    """uint8 (C, H, W) -> noisy float32 (C, H, W) on the 0-255 scale, unclipped.

    ``gaussian``: clean + sigma * N(0, 1), ``sigma`` the standard deviation on the 0-255 scale.
    ``poisson``: Poisson(clean / 255 * peak) / peak * 255, ``peak`` the photon count of white: the
    noise's variance grows with the brightness, and a lower peak is noisier. ``poisson-gaussian``: both,
    shot noise then read noise, as a camera sensor has them.
    """
    if kind not in NOISES:
        raise CnnlabError(f"--noise {kind} is not a noise model; use one of {', '.join(NOISES)}")
    x = clean.float()
    if kind != "gaussian":
        x = torch.poisson(x / 255.0 * peak, generator=generator) / peak * 255.0
    if kind != "poisson":
        x = x + sigma * torch.randn(x.shape, generator=generator)
    return x


__all__ = ["NOISES", "add_noise", "image_generator", "parse_range", "uniform"]
