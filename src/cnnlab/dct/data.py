"""JPEG files -> packed DCT model inputs (``--input dct``), for class folders and for predict/explain.

Each file's coefficients are dequantised, its chroma brought to the 4:2:0 grid, packed into the
(384, H/16, W/16) layout of ``cnnlab.dct.layout`` and centre-cropped or zero-padded (zero = mid grey)
to the run's grid of 16-px cells. Nothing is resized: resizing needs pixels, and the point is not to
decode them. ``cnnlab.data.images`` crops RGB images the same way (``fit="crop"``), so RGB and DCT
runs of one folder see the same pixels.

Stored as float16 (dequantised coefficients lie within about +-1100, where float16 keeps 3 significant
digits): half the memory of float32 for the same stats and training.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.images import DataWarning, _progress
from cnnlab.dct.layout import CHANNELS, ZIGZAG, centred_window, chroma_to_420
from cnnlab.dct.reader import Coefficients, JpegError, file_bytes, read_coefficients
from cnnlab.errors import CnnlabError

CELL = 16  # pixels per packed cell: one 4:2:0 MCU
REENCODE_QUALITY = 95


def grid_of(size: tuple[int, int]) -> tuple[int, int]:
    """Cells of an (H, W) image size; the size must lie on the 16-px grid."""
    if size[0] % CELL or size[1] % CELL or min(size) < CELL:
        fit = "x".join(str(max(CELL, s // CELL * CELL)) for s in size)
        raise CnnlabError(f"--image-size {size[0]}x{size[1]} is not on the 16-px block grid that --input dct crops "
                          f"on; use a multiple of 16 such as {fit}")
    return size[0] // CELL, size[1] // CELL


def _chroma_factors(coefs: Coefficients, name: str) -> tuple[int, int]:
    """How many of a chroma component's blocks make one 4:2:0 block, (vertical, horizontal)."""
    (yh, yv), (ch, cv) = coefs.sampling[0], coefs.sampling[1]
    if coefs.sampling[2] != (ch, cv) or (2 * cv) % yv or (2 * ch) % yh or not {2 * cv // yv, 2 * ch // yh} <= {1, 2}:
        raise JpegError(f"{name} has chroma subsampling {coefs.subsampling} (sampling factors "
                        f"{coefs.sampling}); --input dct reads 4:4:4, 4:2:2, 4:4:0 and 4:2:0 JPEGs: re-save it as one")
    return 2 * cv // yv, 2 * ch // yh


def packed(coefs: Coefficients, name: str = "<jpeg>", grid: tuple[int, int] | None = None) -> torch.Tensor:
    """The packed float32 (384, *grid) input: the image's centred window of ``grid`` 16-px cells,
    zero-padded where the image is smaller (the whole image, ceil(H/16) x ceil(W/16), without ``grid``).

    Equal to ``center_grid(pack(y, cb, cr), grid)`` of the whole image's planes, but the window is cut
    from the quantised planes first and only it is dequantised and folded (3x faster on photos
    twice the crop's size: benchmarks/jpeg_read_bench.py).
    """
    rows, cols = -(-coefs.size[0] // CELL), -(-coefs.size[1] // CELL)
    gh, gw = grid or (rows, cols)
    (sy, dy, ny), (sx, dx, nx) = centred_window(rows, gh), centred_window(cols, gw)
    out = np.zeros((CHANNELS, gh, gw), dtype=np.float32)
    q = coefs.qtables
    y = _window(coefs.planes[0], 2 * sy, 2 * sx, 2 * ny, 2 * nx) * q[0].astype(np.float32)[:, None, None]
    # fold 2x2 blocks into one cell: channel k*4 + dy*2 + dx (pixel_unshuffle's order)
    out[:256, dy:dy + ny, dx:dx + nx] = y.reshape(64, ny, 2, nx, 2).transpose(0, 2, 4, 1, 3).reshape(256, ny, nx)
    if len(coefs.planes) == 3:
        fy, fx = _chroma_factors(coefs, name)
        for c in (1, 2):
            plane = _window(coefs.planes[c], fy * sy, fx * sx, fy * ny, fx * nx) * q[c].astype(np.float32)[:, None, None]
            start = 256 + 64 * (c - 1)
            out[start:start + 64, dy:dy + ny, dx:dx + nx] = chroma_to_420(plane, (fy, fx)) if (fy, fx) != (1, 1) else plane
    return torch.from_numpy(out)


def _window(plane: np.ndarray, top: int, left: int, rows: int, cols: int) -> np.ndarray:
    """Blocks [top, top + rows) x [left, left + cols) of ``plane`` (64, r, c) as float32, the last block
    row/column repeated past the plane's edge (what the encoder does inside a partial MCU)."""
    part = plane[:, top:top + rows, left:left + cols]
    pad = ((0, 0), (0, rows - part.shape[1]), (0, cols - part.shape[2]))
    if pad[1][1] or pad[2][1]:
        part = np.pad(part, pad, mode="edge")
    return part.astype(np.float32)


def _reencoded(path: Path) -> bytes:
    from PIL import Image

    with Image.open(path) as img:
        img = img.convert("L" if img.mode in ("L", "I;16", "1", "LA") else "RGB")
        out = io.BytesIO()
        img.save(out, "JPEG", quality=REENCODE_QUALITY)
        return out.getvalue()


def not_jpeg_error(path: Path) -> CnnlabError:
    return CnnlabError(f"{path} is not a JPEG file; --input dct reads the coefficients JPEG files store: convert "
                       f"it to JPEG, leave it out, or pass --allow-reencode to decode and re-encode such files "
                       f"(JPEG quality {REENCODE_QUALITY})")


def read_packed(path: Path, grid: tuple[int, int], allow_reencode: bool = False) -> tuple[torch.Tensor, bool]:
    """(float16 (384, *grid) input, whether the file was re-encoded) for one file. Raises JpegError
    for a JPEG the reader cannot read, CnnlabError for a non-JPEG without ``allow_reencode``."""
    data = file_bytes(path)  # read once: the magic check and the decoder share it
    reencoded = not data.startswith(b"\xff\xd8")
    if reencoded and not allow_reencode:
        raise not_jpeg_error(path)
    coefs = read_coefficients(_reencoded(path) if reencoded else data, name=str(path))
    return packed(coefs, str(path), grid).to(torch.float16), reencoded


def read_many(paths: Sequence[Path], grid: tuple[int, int], *, strict: bool = False, allow_reencode: bool = False,
              progress: bool = True) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Read files in a thread pool (the C reader releases the GIL): (float16 (M, 384, *grid), indices of
    the M files read, [(path, reason)] of the JPEGs skipped). A non-JPEG file is an error unless
    ``allow_reencode``; an unreadable JPEG is skipped, or an error with ``strict``."""
    def one(path: Path) -> tuple[torch.Tensor, bool] | str:
        try:
            return read_packed(path, grid, allow_reencode)
        except JpegError as exc:
            if strict:
                raise
            return str(exc).removeprefix(f"{path} ").split(";")[0]

    out = torch.empty((len(paths), CHANNELS, *grid), dtype=torch.float16)
    kept, skipped, reencoded = [], [], 0
    workers = min(8, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers) as pool, _progress(len(paths), progress, "reading JPEG DCT") as advance:
        for i, result in enumerate(pool.map(one, paths)):
            if isinstance(result, str):
                skipped.append((paths[i], result))
            else:
                out[len(kept)] = result[0]
                reencoded += result[1]
                kept.append(i)
            advance()
    if reencoded:
        warnings.warn(f"re-encoded {reencoded} non-JPEG file(s) as JPEG quality {REENCODE_QUALITY} (--allow-reencode); "
                      "their coefficients are not the original files'", DataWarning, stacklevel=2)
    return out[:len(kept)], kept, skipped


def default_grid(sizes: Sequence[tuple[int, int]]) -> tuple[int, int]:
    """The RGB folders' default size policy (median shorter side, capped), rounded down to 16 px."""
    from cnnlab.data.images import default_size

    side = max(CELL, default_size(sizes)[0] // CELL * CELL)
    return side // CELL, side // CELL


# ----------------------------------------------------------------------------------------------
# normalisation statistics
# ----------------------------------------------------------------------------------------------
def _channel_frequency() -> tuple[np.ndarray, np.ndarray]:
    """For each of the 384 channels: its frequency row (0..191: 64 Y, 64 Cb, 64 Cr) and whether its
    horizontal frequency u is odd (those change sign under a horizontal flip)."""
    k = np.concatenate([np.arange(256) // 4, np.arange(64), np.arange(64)])
    row = np.concatenate([np.arange(256) // 4, 64 + np.arange(64), 128 + np.arange(64)])
    return row, (ZIGZAG[k] % 8) % 2 == 1


def frequency_stats(x: torch.Tensor, chunk: int = 256) -> tuple[list[float], list[float]]:
    """Per-frequency mean and std of packed inputs (N, 384, h, w), expanded to the 384 channels.

    One statistic per frequency of each component (the four folded Y positions share theirs), taken
    over the training set and its mirror image: the odd horizontal frequencies then have mean 0, so
    normalising commutes with the DCT-domain flip of augmentation and TTA.
    """
    row, odd = _channel_frequency()
    index = torch.from_numpy(row)
    total = torch.zeros(192, dtype=torch.float64)
    total_sq = torch.zeros(192, dtype=torch.float64)
    count = torch.zeros(192, dtype=torch.float64)
    for i in range(0, len(x), chunk):
        part = x[i:i + chunk].double()
        total.index_add_(0, index, part.sum(dim=(0, 2, 3)))
        total_sq.index_add_(0, index, (part * part).sum(dim=(0, 2, 3)))
        count.index_add_(0, index, torch.full((CHANNELS,), float(part[:, 0].numel()), dtype=torch.float64))
    mean = total / count.clamp(min=1)
    mean[torch.from_numpy(np.unique(row[odd]))] = 0.0  # mirrored copies cancel the odd-u means
    var = total_sq / count.clamp(min=1) - mean * mean
    std = var.clamp(min=1e-6).sqrt().clamp(min=1e-3)
    return ([round(float(mean[r]), 6) for r in row], [round(float(std[r]), 6) for r in row])
