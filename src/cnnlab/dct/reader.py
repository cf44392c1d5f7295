"""Read a JPEG file's quantised DCT coefficients and quantisation tables, without decoding to pixels.

``read_coefficients(path)`` returns per component an int16 plane of shape (64, block rows, block
columns), coefficient index k in JPEG zig-zag order first (k = 0 is DC), and that component's
quantisation table (64,) in the same order. Block counts are the component's own (T.81 A.1.1:
ceil(ceil(size * sampling / max sampling) / 8)), without the MCU padding. ``dequantized()`` gives the
real DCT coefficients (quantised x table), as float32; ``pixels = IDCT(dequantised) + 128``.

The decoding is jpegdct.c (baseline, extended-sequential and progressive Huffman JPEGs, restart
intervals), compiled at first use like cnnlab's kernels. The EXIF orientation is not applied: the
coefficients are the blocks as stored.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from cnnlab.errors import CnnlabError

_SOURCE = Path(__file__).with_name("jpegdct.c")
_INFO = 7 + 8 * 4  # see jdct_info
_MESSAGES = {
    1: "is not a JPEG file (no start-of-image marker)",
    2: "is truncated (the data ends before the last block)",
    3: "has corrupt JPEG data",
    4: "is an arithmetic-coded JPEG, which the coefficient reader does not decode",
    5: "is a lossless JPEG (it has no DCT coefficients)",
    6: "is a hierarchical JPEG, which the coefficient reader does not decode",
    7: "is a 12-bit JPEG; only 8-bit JPEGs are read",
    8: "has a colour model other than grayscale or YCbCr (CMYK or YCCK: 4 components)",
    9: "has no JPEG frame header",
    10: "has invalid sampling factors",
    11: "stores R, G, B instead of Y, Cb, Cr (an Adobe RGB-coded JPEG)",
    12: "is too large to read",
}
FIX = "re-save it as a baseline or progressive YCbCr/grayscale JPEG, or leave it out"


class JpegError(CnnlabError):
    """A file the coefficient reader cannot read; the message names the file and the reason."""


@dataclass(frozen=True)
class Coefficients:
    """One JPEG's quantised coefficients: see the module doc for the layout."""

    planes: list[np.ndarray]
    qtables: list[np.ndarray]
    sampling: list[tuple[int, int]]  # (horizontal, vertical) per component
    size: tuple[int, int]  # (height, width) in pixels
    progressive: bool

    def dequantized(self) -> list[np.ndarray]:
        """Float32 DCT coefficients per component: quantised value x its table entry."""
        return [p.astype(np.float32) * q.astype(np.float32)[:, None, None]
                for p, q in zip(self.planes, self.qtables, strict=True)]

    @property
    def subsampling(self) -> str:
        """'gray', '4:4:4', '4:2:2', '4:2:0', '4:4:0', '4:1:1' or 'hXvY' for other luma samplings."""
        if len(self.planes) == 1:
            return "gray"
        (yh, yv), chroma = self.sampling[0], self.sampling[1:]
        if any(s != (1, 1) for s in chroma):
            return "other"
        names = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0", (1, 2): "4:4:0", (4, 1): "4:1:1"}
        return names.get((yh, yv), f"h{yh}v{yv}")


def _declare(lib: ctypes.CDLL) -> None:
    lib.jdct_info.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.jdct_decode.argtypes = [ctypes.c_char_p, ctypes.c_int64, ctypes.c_void_p, ctypes.c_void_p]
    lib.jdct_info.restype = lib.jdct_decode.restype = ctypes.c_int


def _library() -> ctypes.CDLL:
    from cnnlab import kernels

    return kernels.declare_once(kernels.load_required(_SOURCE), _declare)


def _fail(code: int, name: str) -> JpegError:
    return JpegError(f"{name} {_MESSAGES.get(code, f'could not be read (code {code})')}; {FIX}")


def read_coefficients(source: str | os.PathLike | bytes, name: str | None = None) -> Coefficients:
    """The coefficients of one JPEG file (a path, or the file's bytes with ``name`` for messages).
    Blocks outside the component's own block grid (MCU padding) are dropped: progressive files
    code only DC for them."""
    if isinstance(source, bytes):
        data, name = source, name or "<bytes>"
    else:
        data, name = file_bytes(source, name), name or str(source)
    lib = _library()
    info = np.zeros(_INFO, dtype=np.int32)
    qt = np.zeros((4, 64), dtype=np.uint16)
    code = lib.jdct_info(data, len(data), info.ctypes.data, qt.ctypes.data)
    if code:
        raise _fail(code, name)
    width, height, ncomp, progressive = (int(v) for v in info[:4])
    comps = info[7:7 + 8 * ncomp].reshape(ncomp, 8)
    planes = [np.zeros((64, rows, cols), dtype=np.int16) for rows, cols in comps[:, 4:6].tolist()]
    pointers = (ctypes.c_void_p * ncomp)(*[p.ctypes.data for p in planes])
    code = lib.jdct_decode(data, len(data), pointers, qt.ctypes.data)
    if code:
        raise _fail(code, name)
    cropped = [p[:, :brows, :bcols] for p, (brows, bcols) in zip(planes, comps[:, 6:8].tolist(), strict=True)]
    return Coefficients(
        planes=cropped,
        qtables=[qt[tq].copy() for tq in comps[:, 3].tolist()],
        sampling=[(int(h), int(v)) for h, v in comps[:, 1:3].tolist()],
        size=(height, width),
        progressive=bool(progressive),
    )


def file_bytes(path: str | os.PathLike, name: str | None = None) -> bytes:
    """The whole file, or a JpegError naming it (``name``, default the path) and the OS's reason."""
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise JpegError(f"cannot read {name or path}: {exc.strerror or exc}") from None
