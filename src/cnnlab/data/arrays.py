"""Array datasets: ``.npz`` files in the layout of the shared data folder, and the split/limit/resize
steps every in-memory source (npz, builtin, cifar10) shares."""

from __future__ import annotations

import math
import zipfile
import zlib
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.nn.functional as F

from cnnlab.data.bundle import ImageData
from cnnlab.data.split import balanced_subset, stratified_split
from cnnlab.errors import CnnlabError


def resize_batch(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, C, H, W) -> uint8 (N, C, *size), bilinear with antialiasing, in chunks of 1,024 images
    (so 50,000 CIFAR images never exist as one float tensor)."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    out = [
        F.interpolate(x[i : i + 1024].float(), size=size, mode="bilinear", antialias=True, align_corners=False)
        .round_().clamp_(0, 255).to(torch.uint8)
        for i in range(0, len(x), 1024)
    ]
    return torch.cat(out) if out else x.new_zeros(0, x.shape[1], *size)


def split_arrays(x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor | None, *, val_split: float, seed: int,
                 limit: int | None) -> tuple[ImageData, ImageData]:
    """Cap the source at ``limit`` (balanced subset), then split it stratified by ``val_split``."""
    keep = balanced_subset(y, limit)
    tr, va = stratified_split(y[keep], val_split, seed)
    tr, va = keep[tr], keep[va]
    take = (lambda idx: None) if mask is None else (lambda idx: mask[idx])
    return ImageData(x[tr], y[tr], take(tr)), ImageData(x[va], y[va], take(va))


def hwc_to_tensor(x: np.ndarray, what: str) -> torch.Tensor:
    """A uint8 (N, H, W, C) or (N, H, W) array -> uint8 (N, C, H, W) tensor; ``what`` names it in errors."""
    if x.dtype != np.uint8:
        raise CnnlabError(f"{what} must be uint8 images (N, H, W, C) in 0..255, got dtype {x.dtype}; "
                          "convert with (x * 255).round().astype('uint8') if it holds floats in [0, 1]")
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise CnnlabError(f"{what} must be (N, H, W, 3) or (N, H, W) / (N, H, W, 1) for grayscale, got shape {x.shape}")
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def labels_to_tensor(y: np.ndarray, n: int, num_classes: int | None, what: str) -> torch.Tensor:
    """Integer labels (n,) in [0, num_classes) -> int64 tensor."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != n or not np.issubdtype(y.dtype, np.integer):
        raise CnnlabError(f"{what} must be integer class indices of shape ({n},), got {y.dtype} {y.shape}")
    if len(y) and y.min() < 0:
        raise CnnlabError(f"{what} holds negative class indices (min {y.min()}); labels must be 0, 1, ... "
                          "(one per class)")
    if len(y) and num_classes is not None and y.max() >= num_classes:
        raise CnnlabError(f"{what} holds class indices {y.min()}..{y.max()} but there are {num_classes} class names")
    return torch.from_numpy(y.astype(np.int64))


def _read_header(f: IO[bytes]) -> tuple[tuple[int, ...], bool, np.dtype] | None:
    """(shape, fortran order, dtype) from the header of an .npy stream; None for a format version
    this reader does not know (np.load then reads the array itself)."""
    version = np.lib.format.read_magic(f)
    if version == (1, 0):
        return np.lib.format.read_array_header_1_0(f)
    if version == (2, 0):
        return np.lib.format.read_array_header_2_0(f)
    return None


def _check_sizes(path: Path) -> None:
    """A CnnlabError when an array's header claims other than the bytes its member holds: a cut file,
    or a forged header that would make np.load allocate terabytes before reading a byte (a
    decompression bomb)."""
    with zipfile.ZipFile(path) as archive:
        for info in archive.infolist():
            if not info.filename.endswith(".npy"):
                continue
            with archive.open(info) as f:
                try:
                    header = _read_header(f)
                except ValueError as exc:  # np.lib.format's word for a header that does not parse
                    raise CnnlabError(f"{path} is damaged: the header of array {info.filename[:-4]!r} does not read "
                                      f"({exc}); write it again with np.savez") from None
                if header is None or header[2].hasobject:  # object arrays are refused by np.load
                    continue
                shape, _, dtype = header
                claimed, held = math.prod(shape) * dtype.itemsize, info.file_size - f.tell()
            if claimed != held:
                raise CnnlabError(f"{path} is damaged: array {info.filename[:-4]!r} claims shape {shape} of {dtype} "
                                  f"({claimed:,} bytes) but holds {held:,} bytes; write it again with np.savez")


def _read_rows(path: Path, key: str, stop: int) -> np.ndarray | None:
    """The first ``stop`` rows of array ``key`` in an .npz, decompressing only those bytes; None when the
    member is not a plain C-order array (then the caller reads it whole)."""
    with zipfile.ZipFile(path) as archive, archive.open(f"{key}.npy") as f:
        header = _read_header(f)
        if header is None:
            return None
        shape, fortran, dtype = header
        if fortran or dtype.hasobject or not shape:
            return None
        rows = min(stop, shape[0])
        row_bytes = int(np.prod(shape[1:], dtype=np.int64)) * dtype.itemsize
        buffer = f.read(rows * row_bytes)
        return np.frombuffer(buffer, dtype=dtype).reshape(rows, *shape[1:])


def read_npz(path: Path, limit_rows: dict[str, int] | None = None) -> dict[str, np.ndarray]:
    """The arrays of an .npz file, without ever unpickling (object arrays are refused).
    ``limit_rows`` maps a key to how many leading rows are needed (the rest is not decompressed)."""
    limit_rows = limit_rows or {}
    try:  # opened here: is_zipfile would answer False for a file it cannot open, and blame the format
        with open(path, "rb") as f:
            is_zip = zipfile.is_zipfile(f)
    except IsADirectoryError:
        raise CnnlabError(f"{path} is a folder, not an .npz file; pass the .npz file or drop the .npz "
                          "suffix from the folder's name") from None
    except FileNotFoundError:
        is_zip = True  # np.load names the missing file
    except OSError as exc:
        raise CnnlabError(f"cannot read {path}: {exc.strerror}; fix its permissions or pass a readable copy") from None
    if not is_zip:  # np.load would call it "pickled data"
        raise CnnlabError(f"{path} is not a readable .npz file (not a zip archive: truncated, or another "
                          "format); write it with np.savez(path, x=images, y=labels)")
    try:
        _check_sizes(path)
        with np.load(path, allow_pickle=False) as data:
            arrays = {}
            for key in data.files:
                if key == "filenames":
                    continue  # provenance only, and as large as the labels times 40: not needed here
                prefix = _read_rows(path, key, limit_rows[key]) if key in limit_rows else None
                arrays[key] = prefix if prefix is not None else data[key]
            return arrays
    except CnnlabError:
        raise
    except ValueError as exc:  # object arrays need pickle, which would run code from the file
        raise CnnlabError(f"{path}: {exc}; store class_names as a str array (np.array(names, dtype=str))") from None
    except MemoryError as exc:
        raise CnnlabError(f"{path} holds more than this machine's memory ({exc}); load part of it (--limit N) "
                          "or use a machine with more memory") from None
    except (OSError, EOFError, zipfile.BadZipFile, zlib.error) as exc:  # e.g. a damaged member (CRC error)
        raise CnnlabError(f"{path} is not a readable .npz file ({exc})") from None


def _rows_needed(path: Path, limit: int | None) -> dict[str, int]:
    """How many leading rows of x / x_val a ``limit`` needs (the balanced subset takes first rows)."""
    if limit is None:
        return {}
    labels = read_npz(path, {"x": 0, "x_val": 0})
    needed = {}
    for xkey, ykey in (("x", "y"), ("x_val", "y_val")):
        if ykey in labels and labels[ykey].ndim == 1 and np.issubdtype(labels[ykey].dtype, np.integer):
            keep = balanced_subset(torch.from_numpy(labels[ykey].astype(np.int64)), limit)
            needed[xkey] = int(keep.max()) + 1 if len(keep) else 0
    return needed


def load_npz(path: Path, limit: int | None = None) -> tuple[torch.Tensor, torch.Tensor, list[str], tuple[torch.Tensor, torch.Tensor] | None]:
    """(x, y, class_names, (x_val, y_val) or None) from an .npz with keys x, y[, class_names, x_val, y_val].

    With ``limit``, x and y (and x_val, y_val) are cut to the rows the balanced subset can use."""
    needed = _rows_needed(path, limit)
    data = read_npz(path, needed)
    for xkey, ykey in (("x", "y"), ("x_val", "y_val")):
        if xkey in needed and ykey in data:
            data[ykey] = data[ykey][: needed[xkey]]
    missing = [key for key in ("x", "y") if key not in data]
    if missing:
        raise CnnlabError(f"{path} lacks the array(s) {missing}; expected keys x (N, H, W, 3) uint8, y (N,) int, "
                          f"optional class_names, x_val, y_val (found: {sorted(data)})")
    if "class_names" in data:
        names = [str(name) for name in data["class_names"].tolist()]
    else:  # no names stored: classes are named by their index
        names = [str(i) for i in range(int(data["y"].max()) + 1 if len(data["y"]) else 0)]
    x = hwc_to_tensor(data["x"], f"{path}: x")
    y = labels_to_tensor(data["y"], len(x), len(names), f"{path}: y")
    if len(names) < 2:  # as for folders: one class trains a classifier that cannot be wrong
        raise CnnlabError(f"{path} holds only one class ({names}); classification needs at least 2: add "
                          "images of another class to x and y (and its name to class_names)")
    val = None
    if ("x_val" in data) != ("y_val" in data):
        raise CnnlabError(f"{path} has only one of x_val / y_val; store both or neither")
    if "x_val" in data:
        x_val = hwc_to_tensor(data["x_val"], f"{path}: x_val")
        if x_val.shape[1:] != x.shape[1:]:
            raise CnnlabError(f"{path}: x_val images are {tuple(x_val.shape[1:])} but x images are {tuple(x.shape[1:])}")
        val = (x_val, labels_to_tensor(data["y_val"], len(x_val), len(names), f"{path}: y_val"))
    return x, y, names, val
