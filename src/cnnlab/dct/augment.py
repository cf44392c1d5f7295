"""Batched augmentation on packed DCT tensors (N, 384, h, w), done on the coefficients themselves.

Mirroring an 8x8 block left-right maps ``cos((2x+1) u pi / 16)`` to ``(-1)^u`` times itself, so a
horizontal flip reverses the block order and negates every coefficient with odd horizontal frequency u.
Shifts and crops move whole 16-px cells, so nothing has to be re-transformed. :func:`random_shift`
moves images by any even number of pixels instead (chroma, at half resolution, by whole pixels): each
8x8 block is taken back to pixels with the orthonormal inverse DCT (a 64x64 matrix product, not a
JPEG decode), shifted, and transformed again, which is exactly the coefficients of the shifted image.

Apply these before the per-channel normalisation: the flip negates odd-u channels, which only commutes
with subtracting a mean when that mean is zero. Randomness comes from the caller's ``torch.Generator``
(the same seed gives the same flips and crops).
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.dct.layout import CHANNELS, Y_CHANNELS, ZIGZAG, dct_matrix
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


def random_flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Each image of ``x`` mirrored (:func:`hflip`) with probability 1/2, drawn from ``generator``."""
    _check_batch(x)
    mirror = torch.rand(x.shape[0], generator=generator, device=generator.device) < 0.5
    return torch.where(mirror.to(x.device).view(-1, 1, 1, 1), hflip(x), x)


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
    x = random_flip(x, generator)
    return random_crop(x, (x.shape[2], x.shape[3]), pad, generator)


@functools.lru_cache(maxsize=1)
def _basis() -> torch.Tensor:
    """(64 zig-zag coefficients, 64 pixels y*8+x): coefficients = basis @ pixels, pixels = basis.T @ coefficients."""
    c = torch.from_numpy(dct_matrix())  # float64; cast per use, so double batches stay exact
    natural = torch.einsum("vy,ux->vuyx", c, c).reshape(64, 64)  # row v*8+u, column y*8+x
    return natural[torch.from_numpy(np.array(ZIGZAG))]


def _shift_plane(plane: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, pad: int) -> torch.Tensor:
    """Zig-zag plane (N, 64, bh, bw) -> the same plane of each image moved by (pad - oy, pad - ox) px."""
    n, _, bh, bw = plane.shape
    basis = _basis().to(device=plane.device, dtype=plane.dtype)
    blocks = plane.permute(0, 2, 3, 1) @ basis  # (N, bh, bw, 64 pixels y*8+x)
    pixels = blocks.view(n, bh, bw, 8, 8).permute(0, 1, 3, 2, 4).reshape(n, 8 * bh, 8 * bw)
    padded = F.pad(pixels, (pad, pad, pad, pad))  # 0 after the level shift: mid grey, like the cell crops
    h, w = 8 * bh, 8 * bw
    moved = torch.stack([padded[i, top:top + h, left:left + w]  # a loop of views: cheaper than a gather
                         for i, (top, left) in enumerate(zip(oy.tolist(), ox.tolist(), strict=True))])
    blocks = moved.view(n, bh, 8, bw, 8).permute(0, 1, 3, 2, 4).reshape(n, bh, bw, 64)
    return (blocks @ basis.T).permute(0, 3, 1, 2)


def shift(x: torch.Tensor, dy: torch.Tensor, dx: torch.Tensor) -> torch.Tensor:
    """Every image ``i`` of ``x`` (N, 384, h, w) moved down by ``dy[i]`` and right by ``dx[i]`` pixels
    (even integers; negative moves up / left), zero-filled (mid grey); the output has the input's shape.

    The coefficients of the shifted image, exactly (to float rounding), at the cost of an inverse and a
    forward DCT per block; chroma, at half resolution, moves by half as many pixels. The shifted blocks
    are no longer quantised values, as no augmented image's are.
    """
    _check_batch(x)
    dy, dx = torch.as_tensor(dy, dtype=torch.int64).cpu(), torch.as_tensor(dx, dtype=torch.int64).cpu()
    if dy.shape != (len(x),) or dx.shape != (len(x),) or bool((dy % 2).any() or (dx % 2).any()):
        raise CnnlabError(f"shift: give one even dy and dx per image ({len(x)} each), got {dy.tolist()}, "
                          f"{dx.tolist()}; chroma moves by half of them")
    pad = int(max(dy.abs().max(), dx.abs().max())) if len(x) else 0
    work = x.to(torch.promote_types(x.dtype, torch.float32))  # float16 batches are shifted in float32
    y, chroma = F.pixel_shuffle(work[:, :Y_CHANNELS], 2), work[:, Y_CHANNELS:]
    y = _shift_plane(y, pad - dy, pad - dx, pad)  # window offsets into the padded image
    cb, cr = (_shift_plane(c, (pad - dy) // 2, (pad - dx) // 2, pad // 2) for c in chroma.split(64, dim=1))
    return torch.cat([F.pixel_unshuffle(y, 2), cb, cr], dim=1).to(x.dtype).contiguous()


def random_shift(x: torch.Tensor, pad: int, generator: torch.Generator) -> torch.Tensor:
    """:func:`shift` by a random even (dy, dx) per image, each in [-pad, pad] (``pad`` even), from ``generator``.

    RGB's random crop on a 2-px grid instead of a 1-px one, filling mid grey where RGB reflects.
    """
    if pad < 0 or pad % 2:
        raise CnnlabError(f"random_shift: pad={pad} must be an even number of pixels >= 0 (chroma moves by pad / 2)")
    n = x.shape[0]
    dy = 2 * torch.randint(pad + 1, (n,), generator=generator, device=generator.device).cpu() - pad
    dx = 2 * torch.randint(pad + 1, (n,), generator=generator, device=generator.device).cpu() - pad
    return shift(x, dy, dx)


def dct_flip_shift(x: torch.Tensor, generator: torch.Generator, pad: int) -> torch.Tensor:
    """Per image: a horizontal flip with probability 1/2, then :func:`random_shift` by up to ``pad`` px."""
    return random_shift(random_flip(x, generator), pad, generator)
