"""The DCT input layout: zig-zag order, the 8x8 DCT, JFIF colour, chroma on the 4:2:0 grid, packing.

Conventions (fixed, see issue 13):

- a *plane* is one component's coefficients, shape (64, bh, bw): coefficient index k in JPEG zig-zag
  order, then block row, block column. Within a block the natural index is ``n = v*8 + u`` with v the
  vertical frequency (row) and u the horizontal frequency (column); ``ZIGZAG[k] = n``.
- pixel = IDCT(dequantised block) + 128, with the orthonormal DCT-II of JPEG (ITU-T T.81, A.3.3).
- the model input ("packed 4:2:0") is a float32 tensor (384, H/16, W/16): channels 0..255 are Y
  (64, H/8, W/8) folded by ``pixel_unshuffle(y, 2)`` (channel ``k*4 + dy*2 + dx``), 256..319 Cb and
  320..383 Cr on the 4:2:0 grid (64, H/16, W/16). Grayscale images have zero chroma (neutral grey).

NumPy functions work in float64; ``pack``/``unpack``/``center_grid`` are the torch side.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError

# ITU-T T.81 Figure A.6: the k-th coefficient of the zig-zag sequence sits at natural index ZIGZAG[k].
# Written out rather than generated so that the test's anti-diagonal walk is an independent check.
ZIGZAG: np.ndarray = np.array([
    0, 1, 8, 16, 9, 2, 3, 10,
    17, 24, 32, 25, 18, 11, 4, 5,
    12, 19, 26, 33, 40, 48, 41, 34,
    27, 20, 13, 6, 7, 14, 21, 28,
    35, 42, 49, 56, 57, 50, 43, 36,
    29, 22, 15, 23, 30, 37, 44, 51,
    58, 59, 52, 45, 38, 31, 39, 46,
    53, 60, 61, 54, 47, 55, 62, 63,
], dtype=np.int64)
ZIGZAG.flags.writeable = False

# INVERSE[n] = k: natural index -> zig-zag position.
INVERSE: np.ndarray = np.argsort(ZIGZAG)
INVERSE.flags.writeable = False

Y_CHANNELS = 256  # 64 coefficients x 4 (2x2 blocks folded into one 16-px cell)
CHANNELS = 384  # Y, then Cb (64), then Cr (64)

# JFIF (ITU-T T.871 section 7) full-range RGB -> YCbCr; the offsets (0, 128, 128) are added after.
RGB_TO_YCBCR = np.array([
    [0.299, 0.587, 0.114],
    [-0.299 / 1.772, -0.587 / 1.772, 0.5],
    [0.5, -0.587 / 1.402, -0.114 / 1.402],
])
_YCBCR_OFFSET = np.array([0.0, 128.0, 128.0])


# ----------------------------------------------------------------------------------------------
# the 8x8 DCT
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _dct_matrix() -> np.ndarray:
    freq = np.arange(8)[:, None]
    pos = np.arange(8)[None, :]
    c = np.cos((2 * pos + 1) * freq * np.pi / 16)
    c[0] *= np.sqrt(1 / 8)
    c[1:] *= np.sqrt(2 / 8)
    c.flags.writeable = False
    return c


def dct_matrix() -> np.ndarray:
    """The orthonormal 8-point DCT-II matrix C (float64, 8x8): ``C[f, x] = a(f) cos((2x+1) f pi / 16)``.

    A block's coefficients are ``C @ block @ C.T`` (rows: vertical frequency v, columns: horizontal u)
    and ``C.T @ coeffs @ C`` gives the block back, which is JPEG's FDCT/IDCT pair (T.81 A.3.3).
    """
    return _dct_matrix().copy()


def _check_plane(plane: np.ndarray, name: str) -> np.ndarray:
    plane = np.asarray(plane)
    if plane.ndim != 3 or plane.shape[0] != 64:
        raise CnnlabError(f"{name} has shape {plane.shape}; a DCT plane is (64, block_rows, block_cols) "
                          "with the 64 coefficients of each 8x8 block first, in zig-zag order")
    return plane


def idct_blocks(plane_zigzag: np.ndarray) -> np.ndarray:
    """Pixels (bh*8, bw*8) float64 of a plane (64, bh, bw) of dequantised zig-zag coefficients.

    The +128 level shift is not added: add it for JPEG sample values.
    """
    plane = _check_plane(plane_zigzag, "plane_zigzag").astype(np.float64)
    _, bh, bw = plane.shape
    natural = plane[INVERSE].reshape(8, 8, bh, bw)  # (v, u, bh, bw)
    c = _dct_matrix()
    blocks = np.einsum("vy,ux,vuij->iyjx", c, c, natural)  # (bh, 8, bw, 8): block row, y, block col, x
    return blocks.reshape(bh * 8, bw * 8)


def fdct_blocks(pixels: np.ndarray) -> np.ndarray:
    """The plane (64, H/8, W/8) float64 of zig-zag DCT coefficients of ``pixels`` (H, W).

    Subtract the 128 level shift first for JPEG samples. H and W must be multiples of 8.
    """
    pixels = np.asarray(pixels, dtype=np.float64)
    if pixels.ndim != 2 or pixels.shape[0] % 8 or pixels.shape[1] % 8:
        raise CnnlabError(f"pixels has shape {pixels.shape}; give a 2-D array whose height and width "
                          "are multiples of 8 (crop or pad it to whole 8x8 blocks)")
    bh, bw = pixels.shape[0] // 8, pixels.shape[1] // 8
    c = _dct_matrix()
    natural = np.einsum("vy,ux,iyjx->vuij", c, c, pixels.reshape(bh, 8, bw, 8))
    return natural.reshape(64, bh, bw)[ZIGZAG]


# ----------------------------------------------------------------------------------------------
# colour (JFIF, ITU-T T.871)
# ----------------------------------------------------------------------------------------------
def rgb_to_ycbcr(rgb: np.ndarray, clip: bool = True) -> np.ndarray:
    """JFIF full-range YCbCr (float64, channels last) of ``rgb`` (..., 3) in 0..255.

    ``clip`` clamps to 0..255 as T.871 does (pure red has Cr = 255.5 before the clamp).
    """
    rgb = np.asarray(rgb, dtype=np.float64)
    if rgb.shape[-1:] != (3,):
        raise CnnlabError(f"rgb has shape {rgb.shape}; give channels last, (..., 3)")
    out = rgb @ RGB_TO_YCBCR.T + _YCBCR_OFFSET
    return np.clip(out, 0.0, 255.0) if clip else out


def ycbcr_to_rgb(ycbcr: np.ndarray, clip: bool = True) -> np.ndarray:
    """RGB (float64, channels last) of JFIF full-range ``ycbcr`` (..., 3); the exact inverse of
    :func:`rgb_to_ycbcr` before clipping (T.871 prints these coefficients rounded: 1.402, 0.344136,
    0.714136, 1.772)."""
    ycbcr = np.asarray(ycbcr, dtype=np.float64)
    if ycbcr.shape[-1:] != (3,):
        raise CnnlabError(f"ycbcr has shape {ycbcr.shape}; give channels last, (..., 3)")
    out = (ycbcr - _YCBCR_OFFSET) @ np.linalg.inv(RGB_TO_YCBCR).T
    return np.clip(out, 0.0, 255.0) if clip else out


# ----------------------------------------------------------------------------------------------
# chroma onto the 4:2:0 grid
# ----------------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=4)
def _chroma_map(fy: int, fx: int) -> np.ndarray:
    """M (64, fy, fx, 64): out[k] = sum M[k, dy, dx, j] * in[j] of block (dy, dx) of an fy x fx group.

    Built by pushing every basis coefficient through IDCT -> box average -> DCT; the chain is linear,
    so the matrix is exact (to float64 rounding) and costs one einsum per image afterwards.
    """
    basis = np.eye(fy * fx * 64).reshape(fy * fx * 64, fy, fx, 64)
    m = np.empty((64, fy, fx, 64))
    for idx, one in enumerate(basis):
        dy, dx, j = np.unravel_index(idx, (fy, fx, 64))
        pixels = idct_blocks(one.transpose(2, 0, 1))  # (8*fy, 8*fx)
        averaged = pixels.reshape(8, fy, 8, fx).mean(axis=(1, 3))  # (8, 8)
        m[:, dy, dx, j] = fdct_blocks(averaged)[:, 0, 0]
    m.flags.writeable = False
    return m


def chroma_to_420(plane: np.ndarray, factors: tuple[int, int]) -> np.ndarray:
    """A dequantised chroma plane (64, bh, bw) brought onto the 4:2:0 grid (float64).

    ``factors = (fy, fx)``, each 1 or 2: how many of this component's blocks, vertically and
    horizontally, make one 4:2:0 block (4:4:4 chroma: (2, 2); 4:2:2: (2, 1); 4:2:0: (1, 1), the
    identity). The result is exactly the DCT of the box-averaged (2x2, 2x1 or 1x2) decoded chroma.
    An odd block count is padded by repeating the last block row/column first.
    """
    plane = _check_plane(plane, "plane").astype(np.float64)
    if len(factors) != 2 or any(f not in (1, 2) for f in factors):
        raise CnnlabError(f"factors {factors!r} must be (fy, fx) with each 1 or 2 "
                          "(blocks of this component per 4:2:0 block, vertically and horizontally)")
    fy, fx = int(factors[0]), int(factors[1])
    if (fy, fx) == (1, 1):
        return plane
    _, bh, bw = plane.shape
    pad = ((0, 0), (0, -bh % fy), (0, -bw % fx))
    plane = np.pad(plane, pad, mode="edge")
    groups = plane.reshape(64, plane.shape[1] // fy, fy, plane.shape[2] // fx, fx)  # (k, i, dy, j, dx)
    return np.einsum("oyxk,kiyjx->oij", _chroma_map(fy, fx), groups)


# ----------------------------------------------------------------------------------------------
# the packed model input
# ----------------------------------------------------------------------------------------------
def _as_float_tensor(a: np.ndarray | torch.Tensor) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(a))
    return t.to(torch.float32)


def pack(y: np.ndarray | torch.Tensor, cb: np.ndarray | torch.Tensor | None = None,
         cr: np.ndarray | torch.Tensor | None = None) -> torch.Tensor:
    """The packed 4:2:0 model input, float32 (384, h, w), from dequantised zig-zag planes.

    ``y`` is (64, 2h, 2w); ``cb`` and ``cr`` are (64, h, w) on the 4:2:0 grid (see
    :func:`chroma_to_420`), or both None for a grayscale image (zero chroma = neutral grey).
    """
    yt = _as_float_tensor(_check_plane(y, "y") if not isinstance(y, torch.Tensor) else y)
    if yt.ndim != 3 or yt.shape[0] != 64 or yt.shape[1] % 2 or yt.shape[2] % 2:
        raise CnnlabError(f"y has shape {tuple(yt.shape)}; give (64, 2h, 2w): an even number of block rows "
                          "and columns (crop or pad the image to the 16-px grid)")
    h, w = yt.shape[1] // 2, yt.shape[2] // 2
    if (cb is None) != (cr is None):
        raise CnnlabError("give both cb and cr, or neither for a grayscale image")
    if cb is None:
        chroma = torch.zeros(128, h, w, dtype=torch.float32)
    else:
        cbt, crt = _as_float_tensor(cb), _as_float_tensor(cr)
        for name, t in (("cb", cbt), ("cr", crt)):
            if tuple(t.shape) != (64, h, w):
                raise CnnlabError(f"{name} has shape {tuple(t.shape)} but y {tuple(yt.shape)} needs chroma "
                                  f"(64, {h}, {w}); bring it to the 4:2:0 grid with chroma_to_420")
        chroma = torch.cat([cbt, crt])
    folded = F.pixel_unshuffle(yt.unsqueeze(0), 2).squeeze(0)  # (256, h, w): channel k*4 + dy*2 + dx
    return torch.cat([folded, chroma])


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, cb, cr) of a packed tensor (..., 384, h, w): y (..., 64, 2h, 2w), cb and cr (..., 64, h, w)."""
    if x.ndim < 3 or x.shape[-3] != CHANNELS:
        raise CnnlabError(f"x has shape {tuple(x.shape)}; a packed DCT tensor is (..., 384, h, w)")
    y = F.pixel_shuffle(x[..., :Y_CHANNELS, :, :], 2)
    return y, x[..., Y_CHANNELS:Y_CHANNELS + 64, :, :], x[..., Y_CHANNELS + 64:, :, :]


def center_grid(x: np.ndarray | torch.Tensor, grid: tuple[int, int]) -> np.ndarray | torch.Tensor:
    """``x`` (..., h, w) cropped and/or zero-padded, centred, to (..., grid[0], grid[1]).

    Meant for packed tensors (cells of 16 px) so Y and chroma move together; on a lone plane it moves
    whole blocks. An odd difference puts the extra row/column of padding at the bottom/right and crops
    the extra one from the bottom/right. Returns the same kind (NumPy or torch) it was given.
    """
    gh, gw = int(grid[0]), int(grid[1])
    if gh < 1 or gw < 1 or x.ndim < 2:
        raise CnnlabError(f"grid {grid!r} must be two positive cell counts and x (shape "
                          f"{tuple(x.shape)}) must have at least 2 dims")
    h, w = x.shape[-2], x.shape[-1]
    out_shape = (*x.shape[:-2], gh, gw)
    out = torch.zeros(out_shape, dtype=x.dtype, device=x.device) if isinstance(x, torch.Tensor) \
        else np.zeros(out_shape, dtype=x.dtype)
    (src_y, dst_y, n_y), (src_x, dst_x, n_x) = centred_window(h, gh), centred_window(w, gw)
    out[..., dst_y:dst_y + n_y, dst_x:dst_x + n_x] = x[..., src_y:src_y + n_y, src_x:src_x + n_x]
    return out


def centred_window(size: int, target: int) -> tuple[int, int, int]:
    """(source start, destination start, length) of the centred window of ``size`` in ``target``: the one
    centring rule of center_grid, the DCT reader's crop and RGB ``--fit crop``."""
    if size >= target:
        return (size - target) // 2, 0, target
    return 0, (target - size) // 2, size
