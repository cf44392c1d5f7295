"""Batched augmentation on packed DCT tensors (N, 384, h, w), done on the coefficients themselves.

Mirroring an 8x8 block left-right maps ``cos((2x+1) u pi / 16)`` to ``(-1)^u`` times itself, so a
horizontal flip reverses the block order and negates every coefficient with odd horizontal frequency u.
Shifts and crops move whole 16-px cells, so nothing has to be re-transformed.

Apply these before the per-channel normalisation: the flip negates odd-u channels, which only commutes
with subtracting a mean when that mean is zero. Randomness comes from the caller's ``torch.Generator``
(the same seed gives the same flips and crops).
"""

from __future__ import annotations

import functools

import torch

from cnnlab.dct.layout import CHANNELS, Y_CHANNELS, ZIGZAG
from cnnlab.errors import CnnlabError


@functools.lru_cache(maxsize=1)
def _flip_tables() -> tuple[torch.Tensor, torch.Tensor]:
    """(source channel, sign) per output channel of the horizontal flip, both (384,), on the CPU."""
    sign64 = torch.tensor([(-1.0) ** (int(n) % 8) for n in ZIGZAG])  # u = n % 8
    # Y channel k*4 + dy*2 + dx holds block column 2j + dx of cell j; mirrored, that block lands at
    # column 2(w-1-j) + (1-dx): the cell order reverses (flip of the last axis) and dx swaps.
    k, dy, dx = torch.meshgrid(torch.arange(64), torch.arange(2), torch.arange(2), indexing="ij")
    y_source = (k * 4 + dy * 2 + (1 - dx)).reshape(-1)
    source = torch.cat([y_source, torch.arange(Y_CHANNELS, CHANNELS)])
    sign = torch.cat([sign64.repeat_interleave(4), sign64, sign64])
    return source, sign


def _check_batch(x: torch.Tensor) -> None:
    if x.ndim != 4 or x.shape[1] != CHANNELS:
        raise CnnlabError(f"x has shape {tuple(x.shape)}; give a batch of packed DCT tensors (N, 384, h, w)")


def hflip(x: torch.Tensor) -> torch.Tensor:
    """Every image of ``x`` (N, 384, h, w) mirrored left-right, as if flipped before the DCT."""
    _check_batch(x)
    source, sign = _flip_tables()
    out = x[:, source.to(x.device)].flip(-1)
    return out * sign.to(device=x.device, dtype=x.dtype).view(1, CHANNELS, 1, 1)


def random_crop(x: torch.Tensor, grid: tuple[int, int], pad: int, generator: torch.Generator) -> torch.Tensor:
    """A random (grid[0], grid[1])-cell window per image of ``x`` zero-padded by ``pad`` cells a side.

    One cell is 16 px, so crops stay on the JPEG block grid. Offsets are drawn from ``generator``.
    """
    _check_batch(x)
    gh, gw = int(grid[0]), int(grid[1])
    n, _, h, w = x.shape
    room_y, room_x = h + 2 * pad - gh, w + 2 * pad - gw
    if pad < 0 or gh < 1 or gw < 1 or room_y < 0 or room_x < 0:
        raise CnnlabError(f"cannot crop {gh}x{gw} cells from {h}x{w} padded by {pad}; give a grid no "
                          f"larger than ({h + 2 * max(pad, 0)}, {w + 2 * max(pad, 0)}) and pad >= 0")
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dev = generator.device
    oy = torch.randint(room_y + 1, (n,), generator=generator, device=dev).to(x.device)
    ox = torch.randint(room_x + 1, (n,), generator=generator, device=dev).to(x.device)
    rows = oy[:, None] + torch.arange(gh, device=x.device)  # (N, gh)
    cols = ox[:, None] + torch.arange(gw, device=x.device)  # (N, gw)
    batch = torch.arange(n, device=x.device)[:, None, None]
    # advanced indices around a slice put their broadcast shape first: (N, gh, gw, C)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def dct_flip_crop(x: torch.Tensor, generator: torch.Generator, pad: int = 1) -> torch.Tensor:
    """Per image: a horizontal flip with probability 1/2, then a random shift of up to ``pad`` cells
    (16 px each) each way, zero-filled; the output has the input's shape."""
    _check_batch(x)
    flip = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    flip = flip.to(x.device).view(-1, 1, 1, 1)
    x = torch.where(flip, hflip(x), x)
    return random_crop(x, (x.shape[2], x.shape[3]), pad, generator)
