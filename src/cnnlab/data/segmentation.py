"""Images with per-pixel class masks (task ``segment``): mask folders and ``.npz`` arrays.

Layouts (an image folder is ``images/`` or ``image/``; a mask folder ``masks/``, ``labels/`` or ``label/``):
  root/images/<...>/<name>.jpg + root/masks/<...>/<name>.png       one pool: val_split of it (seeded)
  root/train/{images,masks}/ + root/val/{images,masks}/             own validation split
  root/train/{images,masks}/                                        no val/: val_split of train/
  root/classes.txt (optional)                                       class names, one per line

An image and its mask share a file stem: the relative path without its extension
(``images/0001TP_006690.jpg`` <-> ``labels/0001TP_006690.png``).

Mask values -> classes (a mask is stored as uint8 (H, W): class indices 0..K-1, IGNORE = 255 = void):
- Masks are single-channel integer images: mode L, P (the palette *index* is the value, not its colour),
  1-bit, or 16-bit I;16. Colour (RGB) masks are refused: save masks as single-channel index PNGs.
- ``mask_values`` (``--mask-values 0,255``): the k-th listed file value is class k; every other value
  (except ``void_value``) is an error, so a wrong list cannot pass silently.
- Without ``mask_values`` a file value is the class index itself; 255 stays void (the VOC convention).
- ``void_value`` (``--void-value 11``, CamVid's 'Unlabelled'): that file value becomes void (255).
- The class count K: the names in ``classes.txt`` when present; else ``len(mask_values)``; else the
  largest class value found in the loaded masks (after mapping) + 1, with names "0".."K-1".
  Segmentation needs at least 2 classes.

Images keep their own size (fields are lists when sizes differ) unless ``image_size`` is given: then the
image is cover-resized and centre-cropped (bilinear, as ``images.fit``) and its mask is resized with
NEAREST through exactly the same source box, so the two stay aligned (``fit_pair``). Unreadable files
drop their pair with one warning (or raise with ``strict``); every other bad input is a CnnlabError.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from cnnlab.data.arrays import hwc_to_tensor, read_npz, resize_batch
from cnnlab.data.bundle import IGNORE, DataBundle, Field, Split, stack_or_list
from cnnlab.data.images import (
    DECODE_ERRORS,
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    _progress,
    _reason,
    find_images,
    probe_many,
    read,
    to_mode,
    warn_skipped,
)
from cnnlab.data.split import random_split
from cnnlab.errors import CnnlabError

IMAGE_DIRS = ("images", "image")
MASK_DIRS = ("masks", "labels", "label")
#: mask modes read as integer values (P: palette indices; 1: 0/1; I;16 / I: 16-bit / 32-bit integers)
MASK_MODES = frozenset({"L", "P", "1", "I", "I;16", "I;16B", "I;16L", "I;16N"})
FULL_SIZE = 1 << 30  # a min_side for images.read that never asks the JPEG decoder to shrink
LAYOUTS = ("root/images/ + root/masks/ (or image/, labels/, label/), or root/train/{images,masks}/ + "
           "root/val/{images,masks}/")
VALUE_HELP = ("map file values to classes with --mask-values (e.g. --mask-values 0,255), mark a value void with "
              "--void-value, or name the classes in classes.txt")


def find_pair_folders(root: Path) -> tuple[Path, Path] | None:
    """(image folder, mask folder) when ``root`` has both (see IMAGE_DIRS, MASK_DIRS), else None."""
    if not root.is_dir():
        return None
    image = next((root / n for n in IMAGE_DIRS if (root / n).is_dir()), None)
    mask = next((root / n for n in MASK_DIRS if (root / n).is_dir()), None)
    return (image, mask) if image is not None and mask is not None else None


# --- mask values -> classes ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ValueRule:
    """How file values become classes: ``mask_values`` (k-th value -> class k) or identity; ``void_value``
    -> IGNORE; ``num_classes`` when known up front (classes.txt or mask_values), else None (inferred)."""

    mask_values: tuple[int, ...] | None
    void_value: int | None
    num_classes: int | None
    names_from: str  # what fixed num_classes, for error messages: 'classes.txt', '--mask-values' or ''

    def allowed(self) -> str:
        void = "" if self.void_value is None else f", {self.void_value} = void"
        if self.mask_values is not None:
            return f"the values of --mask-values {','.join(map(str, self.mask_values))}{void}"
        top = f"0..{self.num_classes - 1}" if self.num_classes is not None else "0..254"
        return f"class indices {top}{void}, {IGNORE} = void"

    def lookup(self, value: int, what: str) -> int:
        """The class (or IGNORE) of one file value; a CnnlabError naming ``what`` for a value outside."""
        if self.void_value is not None and value == self.void_value:
            return IGNORE
        if self.mask_values is not None:
            if value in self.mask_values:
                return self.mask_values.index(value)
        elif value == IGNORE:
            return IGNORE
        elif 0 <= value < (self.num_classes if self.num_classes is not None else IGNORE):
            return value
        named = self.mask_values is None and self.names_from
        where = f"the {self.num_classes} classes in {self.names_from}" if named else "the classes"
        raise CnnlabError(f"{what} holds value {value}, outside {where} (allowed: {self.allowed()}); "
                          f"fix the mask, or {VALUE_HELP}")

    def apply(self, values: np.ndarray, what: str) -> np.ndarray:
        """Integer file values (any shape) -> uint8 classes with IGNORE for void."""
        if values.dtype == np.bool_:
            values = values.astype(np.uint8)
        if values.dtype == np.uint8:
            present = np.flatnonzero(np.bincount(values.ravel(), minlength=256))
            lut = np.full(256, IGNORE, dtype=np.uint8)
            for v in present.tolist():
                lut[v] = self.lookup(v, what)
            return lut[values]
        uniques, inverse = np.unique(values, return_inverse=True)
        mapped = np.array([self.lookup(int(v), what) for v in uniques.tolist()], dtype=np.uint8)
        return mapped[inverse].reshape(values.shape)


MAX_MASK_VALUE = 65535  # the largest value a mask file holds (16-bit masks)


def _int_list(values: object, what: str) -> tuple[int, ...]:
    """Integers from a list (or a "0,255" string as typed on the command line); a CnnlabError otherwise."""
    items = [v.strip() for v in values.split(",") if v.strip()] if isinstance(values, str) else values
    out = []
    try:
        for v in items:  # type: ignore[union-attr]
            digits = isinstance(v, str) and v.lstrip("-").isdigit()
            if not (digits or (isinstance(v, int | np.integer) and not isinstance(v, bool))):
                raise TypeError
            out.append(int(v))
    except TypeError:
        raise CnnlabError(f"{what} must be integer mask values such as 0,255, got {values!r}") from None
    return tuple(out)


def value_rule(mask_values: Sequence[int] | str | None, void_value: int | None, names: list[str] | None,
               names_from: str = "classes.txt") -> ValueRule:
    """Check the mapping arguments (and classes.txt's count) and return the rule."""
    values = None if mask_values is None else _int_list(mask_values, "--mask-values")
    void = None if void_value is None else _int_list([void_value], "--void-value")[0]
    if values is not None:
        dupes = sorted({v for v in values if values.count(v) > 1})
        if dupes:
            raise CnnlabError(f"--mask-values {','.join(map(str, values))} lists {', '.join(map(str, dupes))} more "
                              "than once; list each file value once (the k-th value is class k)")
        if len(values) < 2:
            raise CnnlabError(f"--mask-values {','.join(map(str, values))} gives {len(values)} class; segmentation "
                              "needs at least 2 (e.g. --mask-values 0,255 for background and object)")
        if min(values) < 0 or max(values) > MAX_MASK_VALUE:
            raise CnnlabError(f"--mask-values {','.join(map(str, values))} holds a value outside 0..{MAX_MASK_VALUE}; "
                              "mask files hold values 0..255 (or 0..65535 for 16-bit masks)")
        if void is not None and void in values:
            raise CnnlabError(f"--void-value {void} is also listed in --mask-values {','.join(map(str, values))}; "
                              "a file value is either a class or void: drop it from one of them")
        if names is not None and len(names) != len(values):
            raise CnnlabError(f"{names_from} names {len(names)} classes but --mask-values lists {len(values)} values; "
                              "give one file value per class name")
    if void is not None and not 0 <= void <= MAX_MASK_VALUE:
        raise CnnlabError(f"--void-value {void} is outside 0..{MAX_MASK_VALUE} (what 8- and 16-bit mask files "
                          "hold); pass the file value of void pixels (e.g. 11 or 255)")
    if names is not None:
        return ValueRule(values, void, len(names), names_from)
    if values is not None:
        return ValueRule(values, void, len(values), "--mask-values")
    return ValueRule(None, void, None, "")


def read_class_names(path: Path) -> list[str] | None:
    """Names from classes.txt (one per line, blank lines ignored), or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        names = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except (OSError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"cannot read {path} ({exc}); write it as UTF-8 text, one class name per line") from None
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise CnnlabError(f"{path} lists {', '.join(dupes)} more than once; give each class one line")
    if len(names) < 2:
        raise CnnlabError(f"{path} names {len(names)} class(es); segmentation needs at least 2 (line k is the name "
                          "of mask value k, e.g. background on the first line)")
    if len(names) > IGNORE:
        raise CnnlabError(f"{path} names {len(names)} classes; at most {IGNORE} fit ({IGNORE} is void)")
    return names


def inferred_names(num_classes: int, where: str) -> list[str]:
    """Names "0".."K-1" for K found from the masks (at least 2, or an error that says what to pass)."""
    if num_classes < 2:
        found = "only void pixels" if num_classes == 0 else "only class 0"
        raise CnnlabError(f"the masks of {where} hold {found}; segmentation needs at least 2 classes: if objects are "
                          "stored as 255 (void unless mapped), pass --mask-values 0,255 (the k-th value becomes class k); "
                          "check --void-value, or name the classes in classes.txt")
    return [str(k) for k in range(num_classes)]


# --- image + mask resizing -----------------------------------------------------------------------------


def cover_box(width: int, height: int, size: tuple[int, int]) -> tuple[float, float, float, float]:
    """The source box that ``images.fit`` maps onto (height, width) ``size``: cover, then centre crop."""
    th, tw = size
    scale = max(tw / width, th / height)
    cw, ch = min(width, tw / scale), min(height, th / scale)
    left, top = max(0.0, (width - cw) / 2), max(0.0, (height - ch) / 2)
    return left, top, left + cw, top + ch


def fit_pair(img: Image.Image, mask: Image.Image, size: tuple[int, int]) -> tuple[Image.Image, Image.Image]:
    """Resize an image (bilinear) and its mask (nearest) to (height, width) through the same source box."""
    if img.size != mask.size:
        raise ValueError(f"image {img.size} and mask {mask.size} differ in size")
    box = cover_box(*img.size, size)
    target = (size[1], size[0])
    return (img.resize(target, Image.Resampling.BILINEAR, box=box),
            mask.resize(target, Image.Resampling.NEAREST, box=box))


def _chw(img: Image.Image) -> np.ndarray:
    arr = np.asarray(img)  # read-only, and torch wants writable arrays: np.require copies
    return np.require(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1), requirements=["C", "W"])


# --- folders -------------------------------------------------------------------------------------------

Pair = tuple[Path, Path]  # (image file, mask file)


def _stem(path: Path, folder: Path) -> str:
    return path.relative_to(folder).with_suffix("").as_posix()


def _by_stem(files: list[Path], folder: Path, what: str) -> dict[str, Path]:
    out: dict[str, Path] = {}
    for f in files:
        stem = _stem(f, folder)
        if stem in out:
            raise CnnlabError(f"{out[stem]} and {f} share the name {stem!r}: the {what} for that stem is ambiguous; "
                              "remove or rename one of them")
        out[stem] = f
    return out


def _listing(stems: list[str]) -> str:
    shown = ", ".join(stems[:5])
    return shown + (f" and {len(stems) - 5} more" if len(stems) > 5 else "")


def find_pairs(image_dir: Path, mask_dir: Path) -> list[Pair]:
    """(image, mask) files matched by stem, sorted by stem; every unmatched file is an error."""
    images = _by_stem(find_images(image_dir), image_dir, "image")
    masks = _by_stem(find_images(mask_dir), mask_dir, "mask")
    if not images:
        raise CnnlabError(f"image folder {image_dir} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                          "add the images (and their masks)")
    lonely_images = sorted(set(images) - set(masks))
    lonely_masks = sorted(set(masks) - set(images))
    problems = []
    if lonely_images:
        problems.append(f"{len(lonely_images)} image(s) in {image_dir} have no mask in {mask_dir} "
                        f"({_listing(lonely_images)}): add their masks (same name, e.g. .png) or remove the images")
    if lonely_masks:
        problems.append(f"{len(lonely_masks)} mask(s) in {mask_dir} have no image in {image_dir} "
                        f"({_listing(lonely_masks)}): add their images or remove the masks")
    if problems:
        raise CnnlabError("; ".join(problems) + " (images and masks are matched by file name without extension)")
    return [(images[s], masks[s]) for s in sorted(images)]


def _not_mask_data(root: Path) -> CnnlabError:
    """The error for a folder without image + mask folders, saying what it looks like instead."""
    if not root.is_dir():
        return CnnlabError(f"mask data folder {root} does not exist; pass a folder with images/ and masks/")
    has_image = next((n for n in IMAGE_DIRS if (root / n).is_dir()), None)
    has_mask = next((n for n in MASK_DIRS if (root / n).is_dir()), None)
    if has_image:
        return CnnlabError(f"{root} has {has_image}/ but no mask folder; put the masks (same file names as the images) "
                           f"in {root / 'masks'}/ (or labels/, label/)")
    if has_mask:
        return CnnlabError(f"{root} has the mask folder {has_mask}/ but no image folder; put the images in "
                           f"{root / 'images'}/ (or image/)")
    if find_pair_folders(root / "val") is not None:
        return CnnlabError(f"{root} has val/ with images and masks but no train/ with them; add {root / 'train'}/images/ "
                           f"and {root / 'train'}/masks/")
    subdirs = sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    classes = [d.name for d in subdirs if find_images(d)]
    if classes:
        shown = ", ".join(classes[:5]) + (", ..." if len(classes) > 5 else "")
        return CnnlabError(f"{root} looks like classification data (image folders {shown}, no mask folder); train it "
                           f"with `cnnlab train classify`, or add {root / 'images'}/ and {root / 'masks'}/ for segmentation")
    loose = find_images(root)
    if loose:
        return CnnlabError(f"{root} holds {len(loose)} image(s) but no mask folder; put the images in {root / 'images'}/ "
                           f"and their masks (same file names) in {root / 'masks'}/")
    return CnnlabError(f"folder {root} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); expected {LAYOUTS}")


def _choose_pairs(root: Path, val_split: float, seed: int, limit: int | None) -> tuple[list[Pair], list[Pair], str]:
    """(train pairs, val pairs, split description) for the layout found under ``root``."""
    pool = find_pair_folders(root)
    described = ""
    if pool is None and find_pair_folders(root / "train") is not None:
        train = find_pairs(*find_pair_folders(root / "train"))  # type: ignore[misc]
        if (root / "val").is_dir():
            folders = find_pair_folders(root / "val")
            if folders is None:
                raise CnnlabError(f"{root / 'val'} has no image folder and mask folder; add {root / 'val'}/images/ "
                                  f"and {root / 'val'}/masks/, or remove {root / 'val'} to use a val_split of train/")
            return train[:limit], find_pairs(*folders)[:limit], "train/ and val/ folders"
        pairs, described = train, " of train/"
    elif pool is None:
        raise _not_mask_data(root)
    else:
        pairs = find_pairs(*pool)
    pairs = pairs[:limit]
    tr, va = random_split(len(pairs), val_split, seed)
    return ([pairs[i] for i in tr.tolist()], [pairs[i] for i in va.tolist()],
            f"random val_split={val_split} seed={seed}{described}")


def _check_mask_modes(pairs: list[Pair], modes: list[str]) -> None:
    for (_, mask), mode in zip(pairs, modes, strict=True):
        if mode not in MASK_MODES:
            kind = "a colour (RGB) image" if mode.startswith("RGB") else f"mode {mode}"
            raise CnnlabError(f"mask {mask} is {kind}; save masks as single-channel index PNGs (mode L or P, pixel "
                              "value = class index; 16-bit I;16 also works), converting colour-coded masks to indices")


def _probe_pairs(pairs: list[Pair], strict: bool) -> tuple[list[Pair], list[str], list[tuple[Path, str]]]:
    """Readable pairs, their image modes and the skipped files; mask modes are checked here (headers only)."""
    files = [f for pair in pairs for f in pair]
    kept, _, modes, skipped = probe_many(files, strict)
    mode_of = {files[i]: m for i, m in zip(kept, modes, strict=True)}
    good = [p for p in pairs if p[0] in mode_of and p[1] in mode_of]
    _check_mask_modes(good, [mode_of[m] for _, m in good])
    return good, [mode_of[i] for i, _ in good], skipped


Decoded = tuple[np.ndarray, np.ndarray, int]  # image (C, H, W), mask (H, W) classes, its largest class or -1


def _decode_pair(pair: Pair, channels: int, size: tuple[int, int] | None, rule: ValueRule,
                 strict: bool) -> Decoded | tuple[Path, str]:
    image_path, mask_path = pair
    try:
        img = read(image_path, FULL_SIZE)
    except DECODE_ERRORS as exc:
        return _unreadable(image_path, exc, strict)
    try:
        mask = read(mask_path, FULL_SIZE)
    except DECODE_ERRORS as exc:
        return _unreadable(mask_path, exc, strict)
    if img.size != mask.size:
        raise CnnlabError(f"mask {mask_path} is {mask.size[0]}x{mask.size[1]} but its image {image_path} is "
                          f"{img.size[0]}x{img.size[1]} (width x height); a mask must have its image's size: fix or "
                          "re-export the mask (resize masks with nearest-neighbour only)")
    if mask.mode not in MASK_MODES:  # the header said otherwise (e.g. changed by EXIF handling)
        _check_mask_modes([pair], [mask.mode])
    classes = rule.apply(np.asarray(mask), f"mask {mask_path}")
    img = to_mode(img, channels)
    if size is not None:
        img, resized = fit_pair(img, Image.fromarray(classes, "L"), size)
        classes = np.asarray(resized)
    valid = classes[classes != IGNORE]
    return _chw(img), np.require(classes, requirements=["C", "W"]), int(valid.max()) if valid.size else -1


def _unreadable(path: Path, exc: BaseException, strict: bool) -> tuple[Path, str]:
    if strict:
        raise CnnlabError(f"cannot read image {path}: {_reason(exc)}; fix or delete the file (without strict, "
                          "unreadable files are skipped with a warning)") from None
    return path, _reason(exc)


def _decode_pairs(pairs: list[Pair], channels: int, size: tuple[int, int] | None, rule: ValueRule, strict: bool,
                  progress: bool = True) -> tuple[list[Decoded], list[tuple[Path, str]]]:
    decoded, skipped = [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool, \
            _progress(len(pairs), progress) as advance:
        try:
            for result in pool.map(lambda p: _decode_pair(p, channels, size, rule, strict), pairs):
                if isinstance(result[0], Path):
                    skipped.append(result)  # type: ignore[arg-type]
                else:
                    decoded.append(result)  # type: ignore[arg-type]
                advance()
        except BaseException:  # a bad mask: report it now, without decoding the rest first
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return decoded, skipped


def _field(items: list[torch.Tensor], empty_shape: tuple[int, ...] | None) -> Field:
    if not items and empty_shape is not None:
        return torch.zeros(empty_shape, dtype=torch.uint8)
    return stack_or_list(items)


def _splits(train: list[Decoded], val: list[Decoded], channels: int) -> tuple[Split, Split, tuple[int, int] | None]:
    sizes = {d[1].shape for d in train + val}
    common: tuple[int, int] | None = tuple(next(iter(sizes))) if len(sizes) == 1 else None  # type: ignore[assignment]

    def split(items: list[Decoded]) -> Split:
        image = _field([torch.from_numpy(d[0]) for d in items], None if common is None else (0, channels, *common))
        mask = _field([torch.from_numpy(d[1]) for d in items], None if common is None else (0, *common))
        return Split({"image": image, "mask": mask})

    return split(train), split(val), common


def load_mask_folder(root: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                     strict: bool, limit: int | None, mask_values: Sequence[int] | str | None = None,
                     void_value: int | None = None) -> DataBundle:
    """Decode image + mask pairs into a DataBundle with fields ``image`` and ``mask`` (module doc)."""
    root = Path(root)
    names = read_class_names(root / "classes.txt")
    rule = value_rule(mask_values, void_value, names)
    train_pairs, val_pairs, split = _choose_pairs(root, val_split, seed, limit)
    train_pairs, train_modes, skipped = _probe_pairs(train_pairs, strict)
    val_pairs, val_modes, skipped_val = _probe_pairs(val_pairs, strict)
    modes = train_modes + val_modes
    channels = 1 if modes and all(m in GRAY_MODES for m in modes) else 3
    train, skipped_train = _decode_pairs(train_pairs, channels, image_size, rule, strict)
    val, skipped_valid = _decode_pairs(val_pairs, channels, image_size, rule, strict)
    skipped = skipped + skipped_val + skipped_train + skipped_valid
    if not train:
        first = f" (first skipped: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
        raise CnnlabError(f"{root} has no readable training image + mask pairs{first}; add readable pairs "
                          "or lower val_split")
    warn_skipped(skipped)
    if names is None:  # K from --mask-values, or inferred from the masks that were loaded
        names = ([str(k) for k in range(rule.num_classes)] if rule.num_classes is not None
                 else inferred_names(max(d[2] for d in train + val) + 1, str(root)))
    train_split, val_split_, common = _splits(train, val, channels)
    meta = {"source": "mask folder", "root": str(root), "split": split,
            "pairs": {"train": len(train), "val": len(val)},
            "mask_values": None if rule.mask_values is None else list(rule.mask_values),
            "void_value": rule.void_value, "classes_rule": _classes_rule(rule, names),
            "skipped": [[str(p), reason] for p, reason in skipped],
            "channels_rule": "1 when every image is grayscale, else 3 (RGB)"}
    return DataBundle(train_split, val_split_, names, channels, image_size or common, spec, meta)


def _classes_rule(rule: ValueRule, names: list[str]) -> str:
    if rule.names_from:
        return f"{len(names)} classes from {rule.names_from}"
    return f"{len(names)} classes: the largest class value in the loaded masks + 1"


# --- arrays --------------------------------------------------------------------------------------------


def _mask_array(mask: np.ndarray, x: torch.Tensor, what: str) -> np.ndarray:
    if not (np.issubdtype(mask.dtype, np.integer) or mask.dtype == np.bool_):
        raise CnnlabError(f"{what} must be integer class values (N, H, W), got dtype {mask.dtype}; store masks as "
                          "uint8 (np.uint8) class indices")
    if mask.shape != (len(x), *x.shape[2:]):
        raise CnnlabError(f"{what} has shape {mask.shape} but its images are {tuple(x.shape)}; masks must be "
                          f"(N, H, W) = {(len(x), *x.shape[2:])}, one per image")
    return mask


def _resize_masks(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """uint8 (N, H, W) -> (N, *size) by nearest-exact (pixel centres, as resize_batch's bilinear)."""
    if tuple(mask.shape[-2:]) == tuple(size):
        return mask
    out = [F.interpolate(mask[i : i + 1024, None].float(), size=size, mode="nearest-exact")[:, 0].to(torch.uint8)
           for i in range(0, len(mask), 1024)]
    return torch.cat(out) if out else mask.new_zeros(0, *size)


def load_mask_npz(path: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                  limit: int | None, mask_values: Sequence[int] | str | None = None,
                  void_value: int | None = None) -> DataBundle:
    """Image + mask arrays from an .npz: ``x`` uint8 (N, H, W[, C]), ``mask`` integer (N, H, W), optional
    ``class_names``, ``x_val`` / ``mask_val``. Values map to classes as for folders (module doc)."""
    path = Path(path)
    rows = {} if limit is None else {k: limit for k in ("x", "mask", "x_val", "mask_val")}
    data = read_npz(path, rows)
    missing = [key for key in ("x", "mask") if key not in data]
    if missing:
        raise CnnlabError(f"{path} lacks the array(s) {missing}; expected keys x (N, H, W[, 3]) uint8, mask (N, H, W) "
                          f"integer, optional class_names, x_val, mask_val (found: {sorted(data)})")
    if ("x_val" in data) != ("mask_val" in data):
        raise CnnlabError(f"{path} has only one of x_val / mask_val; store both or neither")
    names = None
    if "class_names" in data:
        names = [str(n) for n in np.asarray(data["class_names"]).tolist()]
        if len(names) < 2:
            raise CnnlabError(f"{path}: class_names holds {len(names)} name(s); segmentation needs at least 2 classes")
    rule = value_rule(mask_values, void_value, names, names_from=f"{path}: class_names")

    def arrays(xkey: str, mkey: str) -> tuple[torch.Tensor, torch.Tensor]:
        x = hwc_to_tensor(np.asarray(data[xkey])[:limit], f"{path}: {xkey}")
        mask = _mask_array(np.asarray(data[mkey])[:limit], x, f"{path}: {mkey}")
        return x, torch.from_numpy(np.ascontiguousarray(rule.apply(mask, f"{path}: {mkey}")))

    x, mask = arrays("x", "mask")
    if "x_val" in data:
        x_val, mask_val = arrays("x_val", "mask_val")
        if x_val.shape[1] != x.shape[1]:
            raise CnnlabError(f"{path}: x_val has {x_val.shape[1]} channel(s) but x has {x.shape[1]}; store both alike")
        split = "given validation arrays"
    else:
        tr, va = random_split(len(x), val_split, seed)
        x, mask, x_val, mask_val = x[tr], mask[tr], x[va], mask[va]
        split = f"random val_split={val_split} seed={seed}"
    if len(x) == 0:
        raise CnnlabError(f"{path}: x holds no images; store at least one training image and its mask")
    if rule.num_classes is not None:
        names = names or [str(k) for k in range(rule.num_classes)]
    else:  # K = the largest class value found + 1
        found = [int(m[m != IGNORE].max()) for m in (mask, mask_val) if bool((m != IGNORE).any())]
        names = inferred_names(max(found) + 1 if found else 0, str(path))
    if image_size is not None:
        x, x_val = resize_batch(x, image_size), resize_batch(x_val, image_size)
        mask, mask_val = _resize_masks(mask, image_size), _resize_masks(mask_val, image_size)
    meta = {"source": "npz", "split": split,
            "mask_values": None if rule.mask_values is None else list(rule.mask_values),
            "void_value": rule.void_value, "classes_rule": _classes_rule(rule, names)}
    size = tuple(x.shape[-2:]) if x_val.shape[-2:] == x.shape[-2:] else None
    return DataBundle(Split({"image": x, "mask": mask}), Split({"image": x_val, "mask": mask_val}), names,
                      int(x.shape[1]), size, spec, meta)  # type: ignore[arg-type]
