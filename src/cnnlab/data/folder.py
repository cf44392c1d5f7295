"""Class-per-folder image trees for classification.

Layouts (class names are the folder names, sorted):
  root/train/<class>/<image> + root/val/<class>/<image>   own validation split (same class folders)
  root/train/<class>/<image>                              no val/: val_split of train/
  root/<class>/<image>                                    one pool: val_split of it (stratified)

Files are found recursively inside each class folder by extension. The split and ``limit`` are decided
on the file lists, so only the files that are used get decoded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.data.bundle import DataBundle, ImageData, Split
from cnnlab.data.images import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    decode_many,
    default_size,
    find_images,
    probe_many,
    warn_skipped,
)
from cnnlab.data.split import balanced_subset, stratified_split
from cnnlab.errors import CnnlabError

LAYOUTS = "root/<class>/<image> or root/train/<class>/<image> + root/val/<class>/<image>"


def _class_folders(folder: Path) -> dict[str, list[Path]]:
    """{class name: image files} for the subfolders of ``folder``, with errors that say what is missing."""
    subdirs = sorted(d for d in folder.iterdir() if d.is_dir() and not d.name.startswith("."))
    if not subdirs:
        loose = [f.name for f in folder.iterdir() if f.suffix.lower() in IMAGE_EXTENSIONS]
        hint = f" (it holds {len(loose)} loose image(s): put them in one subfolder per class)" if loose else ""
        raise CnnlabError(f"folder {folder} has no class subfolders{hint}; expected {LAYOUTS} with at least 2 classes")
    for d in subdirs:
        try:
            d.name.encode("utf-8")
        except UnicodeEncodeError:  # a class name is drawn in plots and written into reports as text
            raise CnnlabError(f"class folder {d} has a name that is not valid UTF-8; rename it (the folder "
                              "names are the class names)") from None
    classes = {d.name: find_images(d) for d in subdirs}
    for name, files in classes.items():
        if not files:
            raise CnnlabError(f"class folder {folder / name} holds no images ({', '.join(sorted(IMAGE_EXTENSIONS))}); "
                              "add images or remove the folder")
    if len(classes) < 2:
        only = next(iter(classes))
        raise CnnlabError(f"folder {folder} has only one class folder ({only!r}); classification needs at least 2 "
                          f"classes: add {folder}/<other class>/ with images")
    return classes


def _flatten(classes: dict[str, list[Path]], names: list[str]) -> tuple[list[Path], torch.Tensor]:
    files = [f for name in names for f in classes[name]]
    labels = torch.tensor([i for i, name in enumerate(names) for _ in classes[name]], dtype=torch.int64)
    return files, labels


def _check_same_classes(train: dict[str, list[Path]], val: dict[str, list[Path]], root: Path) -> None:
    missing = sorted(set(train) - set(val))
    extra = sorted(set(val) - set(train))
    if missing:
        raise CnnlabError(f"class(es) {', '.join(missing)} of {root / 'train'} have no folder in {root / 'val'}; "
                          f"add {root / 'val' / missing[0]}/ with images, or remove {root / 'val'} to use a val_split")
    if extra:
        raise CnnlabError(f"{root / 'val'} has class folder(s) {', '.join(extra)} that {root / 'train'} lacks; "
                          "every validation class needs training images: add them to train/ or remove them from val/")


def _decode_split(files: list[Path], labels: torch.Tensor, size: tuple[int, int], channels: int,
                  strict: bool, reading: dict[str, Any]) -> tuple[Split, list[tuple[Path, str]]]:
    if reading.get("input", "rgb") == "dct":
        from cnnlab.dct.data import grid_of, read_many

        x, kept, skipped = read_many(files, grid_of(size), strict=strict,
                                     allow_reencode=bool(reading.get("allow_reencode")))
        return Split({"dct": x, "label": labels[torch.tensor(kept, dtype=torch.int64)]}), skipped
    x, kept, skipped = decode_many(files, size, channels, strict=strict, fit_mode=reading.get("fit", "resize"))
    return ImageData(x, labels[torch.tensor(kept, dtype=torch.int64)]), skipped


#: reading options of class folders: input rgb|dct, fit resize|crop (rgb), allow_reencode (dct)
READING = {"input": ("rgb", "dct"), "fit": ("resize", "crop"), "allow_reencode": (False, True)}


def check_reading(options: dict[str, Any]) -> dict[str, Any]:
    """The folder reading options, checked: unknown keys and values name the choices."""
    for key, value in options.items():
        if key not in READING:
            raise CnnlabError(f"data option {key!r} does not apply to class folders; they take "
                              f"{', '.join(READING)} (--input, --fit, --allow-reencode)")
        if value not in READING[key]:
            raise CnnlabError(f"--{key.replace('_', '-')} {value!r}: choose from {', '.join(map(str, READING[key]))}")
    if options.get("input") == "dct" and options.get("fit", "crop") != "crop":
        raise CnnlabError("--input dct cannot resize (that needs pixels): drop --fit resize; DCT inputs are "
                          "centre-cropped on the 16-px grid (--fit crop)")
    return options


Files = tuple[list[Path], torch.Tensor]  # image paths and their int64 class indices


def _choose_files(root: Path, val_split: float, seed: int, limit: int | None) -> tuple[list[str], Files, Files, str]:
    """(class names, train files, val files, split description) for the layout found under ``root``."""
    if (root / "train").is_dir():
        train_classes = _class_folders(root / "train")
        names = sorted(train_classes)
        files, labels = _flatten(train_classes, names)
        if (root / "val").is_dir():
            val_classes = _class_folders(root / "val")
            _check_same_classes(train_classes, val_classes, root)
            val_files, val_labels = _flatten(val_classes, names)
            keep, vkeep = balanced_subset(labels, limit), balanced_subset(val_labels, limit)
            return names, _pick(files, labels, keep), _pick(val_files, val_labels, vkeep), "train/ and val/ folders"
        split = f"stratified val_split={val_split} seed={seed} of train/"
    else:
        if (root / "val").is_dir():  # otherwise val/ would silently become a class called 'val'
            raise CnnlabError(f"folder {root} has val/ but no train/; add {root / 'train'}/<class>/ with the training "
                              "images, or rename val/")
        classes = _class_folders(root)
        names = sorted(classes)
        files, labels = _flatten(classes, names)
        split = f"stratified val_split={val_split} seed={seed}"
    pool = balanced_subset(labels, limit)  # one pool: cap at limit, then split stratified
    tr, va = stratified_split(labels[pool], val_split, seed)
    return names, _pick(files, labels, pool[tr]), _pick(files, labels, pool[va]), split


def _pick(files: list[Path], labels: torch.Tensor, index: torch.Tensor) -> Files:
    return [files[i] for i in index.tolist()], labels[index]


def load_folder(root: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                strict: bool, limit: int | None, reading: dict[str, Any] | None = None) -> DataBundle:
    """Decode a class-per-folder tree into a DataBundle (see the module doc for the layouts).

    ``in_channels`` is 1 when every image is grayscale (L, 16-bit, 1-bit, LA) and 3 otherwise;
    ``image_size=None`` picks the median shorter side capped at 128 (``images.default_size``).
    ``reading`` (see READING): ``input="dct"`` reads JPEG coefficients into ``dct`` fields
    (``cnnlab.dct.data``: 384 channels, sizes on the 16-px grid), ``fit="crop"`` crops RGB images
    the same way instead of resizing them.
    """
    reading = check_reading(dict(reading or {}))
    dct = reading.get("input") == "dct"
    names, (train_files, train_labels), (val_files, val_labels), split = _choose_files(root, val_split, seed, limit)
    # Headers only: colour modes decide the channels, sizes the default image size. Files that fail
    # here fail decoding below too, and are reported from there.
    _, sizes, modes, _ = probe_many(train_files + val_files, strict)
    channels = 1 if modes and all(m in GRAY_MODES for m in modes) else 3
    if dct:
        from cnnlab.dct.data import CELL, default_grid, grid_of

        channels = 384
        size = tuple(image_size) if image_size else tuple(CELL * g for g in default_grid(sizes))
        grid_of(size)  # an off-grid --image-size fails before anything is read
    else:
        size = image_size or default_size(sizes)
    train, skipped_train = _decode_split(train_files, train_labels, size, channels, strict, reading)
    val, skipped_val = _decode_split(val_files, val_labels, size, channels, strict, reading)
    skipped = skipped_train + skipped_val
    for name, count in zip(names, torch.bincount(train.y, minlength=len(names)).tolist(), strict=True):
        if count == 0:  # the error names a skipped file itself: no warning line before it
            first = f" ({len(skipped)} unreadable, first: {skipped[0][0]}: {skipped[0][1]})" if skipped else ""
            raise CnnlabError(f"class {name!r} has no readable training images in {root}{first}; add readable images")
    warn_skipped(skipped)
    meta = {"source": "folder", "root": str(root), "split": split,
            "skipped": [[str(p), reason] for p, reason in skipped],
            "channels_rule": "384 (JPEG DCT, --input dct)" if dct else "1 when every image is grayscale, else 3 (RGB)"}
    # what new inputs must be read like (eval on other data, predict, explain)
    extra = {"input": "dct"} if dct else ({"fit": "crop"} if reading.get("fit") == "crop" else {})
    return DataBundle(train, val, names, channels, tuple(size), spec, meta, extra)
