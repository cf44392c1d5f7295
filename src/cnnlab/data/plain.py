"""Plain images for restoration tasks (super-resolution, denoising, ...): the task makes its own inputs.

A Split here holds only the ``image`` field. Folders are searched recursively (class subfolders are
fine: they are not labels here) and every image keeps its own full resolution (a list field when sizes
differ) unless ``image_size`` is given, which cover-resizes and centre-crops as ``images.fit``. No size
cap and no reduced-scale JPEG decoding: super-resolution needs every pixel. Channels are 1 when every
image is grayscale, else 3. The validation split is a seeded random fraction (not stratified: there are
no classes); ``limit`` keeps the first files in sorted order.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.arrays import hwc_to_tensor, read_npz, resize_batch
from cnnlab.data.bundle import DataBundle, Field, Split, stack_or_list
from cnnlab.data.images import (
    DECODE_ERRORS,
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    _expand,
    _progress,
    _reason,
    find_images,
    probe_many,
    read,
    to_array,
    to_mode,
    warn_skipped,
)
from cnnlab.data.split import random_split
from cnnlab.errors import CnnlabError

FULL_SIZE = 1 << 30  # a min_side for images.read that never asks the JPEG decoder to shrink


def decode_full(path: Path, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """One file -> uint8 (channels, H, W) at its own size (EXIF applied), or cover-resized to ``size``.
    Raises DECODE_ERRORS on broken files."""
    if size is not None:
        arr = to_array(read(path, max(size)), size, channels)
    else:
        arr = np.asarray(to_mode(read(path, FULL_SIZE), channels))
        arr = arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)
    return np.require(arr, requirements=["C", "W"])  # torch wants writable arrays (Pillow's are read-only)


def decode_files(paths: Sequence[Path], channels: int, size: tuple[int, int] | None, strict: bool,
                 progress: bool = True) -> tuple[list[torch.Tensor], list[tuple[Path, str]]]:
    """Decode files in a thread pool: ([uint8 (C, H, W)] of the readable ones, [(path, reason)] skipped)."""
    def one(path: Path) -> np.ndarray | str:
        try:
            return decode_full(path, channels, size)
        except DECODE_ERRORS as exc:
            if strict:
                raise CnnlabError(f"cannot read image {path}: {_reason(exc)}; fix or delete the file "
                                  "(without strict, unreadable files are skipped with a warning)") from None
            return _reason(exc)

    images, skipped = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
            _progress(len(paths), progress) as advance:
        try:
            for path, result in zip(paths, pool.map(one, paths), strict=True):
                if isinstance(result, str):
                    skipped.append((path, result))
                else:
                    images.append(torch.from_numpy(result))
                advance()
        except BaseException:  # strict: report the broken file now, without decoding the rest first
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return images, skipped


def read_native(paths: Iterable[str | os.PathLike], in_channels: int = 3) -> list[tuple[Path, torch.Tensor]]:
    """Files and folders -> [(path, uint8 (C, H, W))] at each image's own size (for predict of
    image-to-image runs), decoded like training photos; unreadable files are skipped with one warning."""
    files = _expand(paths)
    images, skipped = decode_files(files, in_channels, None, strict=False)
    if not images:
        raise CnnlabError(f"none of the {len(files)} input image(s) could be read (first: {skipped[0][0]}: "
                          f"{skipped[0][1]}); pass image files Pillow can open")
    warn_skipped(skipped)
    bad = {path for path, _ in skipped}
    return list(zip([f for f in files if f not in bad], images, strict=True))


def _field(items: list[torch.Tensor], like: Field | None) -> Field:
    """stack_or_list, with an empty split stacked like its (stacked) partner."""
    if not items and isinstance(like, torch.Tensor):
        return like[:0]
    return stack_or_list(items)


def _common_size(*fields: Field) -> tuple[int, int] | None:
    sizes = {tuple(t.shape[-2:]) for f in fields for t in f}
    return tuple(next(iter(sizes))) if len(sizes) == 1 else None  # type: ignore[return-value]


def choose_files(root: Path, val_split: float, seed: int, limit: int | None, strict: bool
                 ) -> tuple[list[Path], list[Path], int, list[tuple[Path, str]]]:
    """(train files, val files, channels, skipped) of the image folder ``root``, from headers only.

    The split is drawn over the files whose headers read, so callers that decode only some of them
    (the report's preview) see the same split as ``load_image_folder``."""
    from cnnlab.data.segmentation import find_pair_folders

    root = Path(root)
    pair = find_pair_folders(root)
    if pair is not None:
        raise CnnlabError(f"{root} has an image folder ({pair[0].name}/) and a mask folder ({pair[1].name}/): a mask "
                          f"folder given to superres (a plain-image task) would be read as photos; pass the images "
                          f"folder itself ({pair[0]})")
    if not root.is_dir():
        raise CnnlabError(f"image folder {root} does not exist; pass a folder of images")
    files = find_images(root)[:limit]
    if not files:
        raise CnnlabError(f"folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); pass a folder "
                          "of images (subfolders are searched too)")
    kept, _, modes, skipped = probe_many(files, strict)  # headers: channels, and broken files drop before the split
    if not kept:
        raise CnnlabError(f"none of the {len(files)} image(s) in {root} could be read (first: {skipped[0][0]}: "
                          f"{skipped[0][1]}); pass image files Pillow can open")
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    files = [files[i] for i in kept]
    tr, va = random_split(len(files), val_split, seed)
    return [files[i] for i in tr.tolist()], [files[i] for i in va.tolist()], channels, skipped


def load_image_folder(root: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                      strict: bool, limit: int | None) -> DataBundle:
    """Every image under ``root`` (recursively) as a Split with only the ``image`` field (module doc)."""
    root = Path(root)
    train_files, val_files, channels, skipped = choose_files(root, val_split, seed, limit, strict)
    train, skipped_train = decode_files(train_files, channels, image_size, strict)
    val, skipped_val = decode_files(val_files, channels, image_size, strict)
    skipped = skipped + skipped_train + skipped_val
    if not train:
        raise CnnlabError(f"{root} has no readable training images (first skipped: {skipped[0][0]}: "
                          f"{skipped[0][1]}); add readable images or lower val_split")
    warn_skipped(skipped)
    train_field = stack_or_list(train)
    val_field = _field(val, train_field)
    meta = {"source": "folder", "root": str(root), "split": f"random val_split={val_split} seed={seed}",
            "images": {"train": len(train), "val": len(val)},
            "skipped": [[str(p), reason] for p, reason in skipped],
            "channels_rule": "1 when every image is grayscale, else 3 (RGB)"}
    return DataBundle(Split({"image": train_field}), Split({"image": val_field}), [], channels,
                      image_size or _common_size(train_field, val_field), spec, meta)


def from_tensor(x: torch.Tensor, spec: str, val_split: float, seed: int, size: tuple[int, int] | None,
                limit: int | None, meta: dict[str, Any], val: torch.Tensor | None = None) -> DataBundle:
    """In-memory uint8 (N, C, H, W) images as a plain-image bundle: a seeded random ``val_split`` of
    the first ``limit`` rows, or the given ``val`` images (its first ``limit`` rows) as validation."""
    for what, t in (("x", x), ("val", val)):
        if t is not None and (t.dtype != torch.uint8 or t.dim() != 4):
            raise CnnlabError(f"{spec}: {what} must be uint8 images (N, C, H, W), got {t.dtype} {tuple(t.shape)}")
    x = x[:limit]
    if val is None:
        tr, va = random_split(len(x), val_split, seed)
        train, valid = x[tr], x[va]
        meta = {"split": f"random val_split={val_split} seed={seed}", **meta}
    else:
        if val.shape[1] != x.shape[1]:
            raise CnnlabError(f"{spec}: validation images have {val.shape[1]} channel(s) but training images have "
                              f"{x.shape[1]}; store both alike")
        train, valid = x, val[:limit]
        meta = {"split": "given validation arrays", **meta}
    if size is not None:
        train, valid = resize_batch(train, size), resize_batch(valid, size)
    sizes = {tuple(t.shape[-2:]) for t in (train, valid) if len(t)} or {tuple(train.shape[-2:])}
    common = next(iter(sizes)) if len(sizes) == 1 else None  # None: train and val differ in size
    return DataBundle(Split({"image": train}), Split({"image": valid}), [], int(x.shape[1]),
                      common, spec, meta)  # type: ignore[arg-type]


def load_image_npz(path: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                   limit: int | None) -> DataBundle:
    """Images ``x`` (N, H, W[, C]) uint8 of an .npz (labels ``y`` are ignored), optional ``x_val``."""
    path = Path(path)
    rows = {"y": 0, "y_val": 0} if limit is None else {"x": limit, "x_val": limit, "y": 0, "y_val": 0}
    data = read_npz(path, rows)  # labels: 0 rows (not decompressed), they are not used
    if "x" not in data:
        raise CnnlabError(f"{path} lacks the array 'x'; expected x (N, H, W[, 3]) uint8 images, optional x_val "
                          f"(found: {sorted(data)})")
    x = hwc_to_tensor(np.asarray(data["x"])[:limit], f"{path}: x")
    val = hwc_to_tensor(np.asarray(data["x_val"])[:limit], f"{path}: x_val") if "x_val" in data else None
    return from_tensor(x, spec, val_split, seed, image_size, limit, {"source": "npz"}, val=val)
