"""``load_data(spec)``: turn a data spec string into a DataBundle.

Accepted specs (see the README's Data section):
  PATH/                      a class-per-folder tree (``train/`` + ``val/``, or one pool split by val_split)
  PATH.npz                   arrays x (N, H, W, 3) uint8, y (N,), class_names, optional x_val / y_val
  builtin:NAME[?k=v&k=v]     procedural data, no download (``builtin:shapes?n=2000&size=64``, ``builtin:tones``)
  cifar10 | cifar10:test     the official CIFAR-10 binary archive, downloaded once into the cache
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.arrays import load_npz, resize_batch, split_arrays
from cnnlab.data.bundle import DataBundle, ImageData, Split
from cnnlab.data.split import check_val_split
from cnnlab.errors import CnnlabError, did_you_mean

NAMED = ("cifar10", "cifar10:train", "cifar10:test")

ACCEPTED = ("a folder (root/<class>/<image> or root/train|val/<class>/<image>), a .npz file (x, y, class_names), "
            "builtin:NAME (builtin:shapes, builtin:shapes?n=2000&size=64), or cifar10 / cifar10:test")


@dataclass(frozen=True)
class Spec:
    """A parsed spec: ``kind`` is folder | npz | builtin | named; ``name`` the path or dataset name."""

    kind: str
    name: str
    options: dict[str, str] = field(default_factory=dict)


def parse_spec(spec: str | os.PathLike) -> Spec:
    """Classify a spec string (no data is read). Named datasets win over a same-named folder in the
    current directory; write ``./cifar10`` to mean the folder."""
    from cnnlab.data.builtin import BUILTINS

    text = str(spec).strip()
    if text.startswith("builtin:"):
        name, _, query = text[len("builtin:"):].partition("?")
        options = {}
        for part in filter(None, query.split("&")):
            key, eq, value = part.partition("=")
            if not eq or not key:
                raise CnnlabError(f"data spec {text!r}: option {part!r} must look like key=value (e.g. n=2000)")
            options[key] = value
        if name not in BUILTINS:
            choices = [f"builtin:{b}" for b in BUILTINS]
            raise CnnlabError(f"unknown builtin dataset {name!r}{did_you_mean(f'builtin:{name}', choices)}; "
                              f"choose from: {', '.join(choices)}")
        return Spec("builtin", name, options)
    if text in NAMED:
        return Spec("named", text)
    path = Path(text).expanduser()
    if path.is_dir():
        return Spec("folder", str(path))
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise CnnlabError(f"data file {path} is not an .npz array file; pass a .npz file or a folder of images")
        return Spec("npz", str(path))
    if os.sep in text or "/" in text or path.suffix or text.startswith((".", "~")):
        raise CnnlabError(f"data path {path} does not exist; pass an existing folder or .npz file")
    choices = list(NAMED) + [f"builtin:{b}" for b in BUILTINS]
    raise CnnlabError(f"unknown data spec {text!r}: no folder, file or dataset has that name"
                      f"{did_you_mean(text, choices)}; accepted: {ACCEPTED}")


def _image_size(image_size: int | tuple[int, int] | None) -> tuple[int, int] | None:
    if image_size is None:
        return None
    size = (image_size, image_size) if isinstance(image_size, int) else tuple(int(s) for s in image_size)
    if len(size) != 2 or min(size) < 1:
        raise CnnlabError(f"image_size must be a positive int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def data_layout(task: str) -> str:
    """The data layout task ``task`` reads: 'labels' (class trees), 'masks' (images + masks) or 'images'."""
    from cnnlab.tasks import get_task

    return get_task(task).data_layout


#: data options that name items of the data they were given for (a group split's groups): they do not
#: carry over when a run reads other data (``cnnlab eval RUN --data OTHER``)
OWN_DATA_OPTIONS = ("split_by", "val_groups")


def options_for_other_data(options: dict[str, Any]) -> dict[str, Any]:
    """A run's data options as they apply to other data: without those that name its own data's items."""
    return {k: v for k, v in options.items() if k not in OWN_DATA_OPTIONS}


def load_data(spec: str | os.PathLike, task: str = "classify", *, val_split: float = 0.1, seed: int = 0,
              image_size: int | tuple[int, int] | None = None, strict: bool = False,
              cache_dir: str | os.PathLike | None = None, limit: int | None = None,
              options: dict[str, Any] | None = None) -> DataBundle:
    """Load a data spec into memory as uint8 tensors, split into train and val, in the layout that
    ``task`` reads (its ``data_layout``: class labels, image + mask pairs, or plain images).

    ``val_split`` (stratified by class for labels, deterministic from ``seed``) applies where the source
    has no own validation split. ``image_size`` (int or (H, W)) resizes every image; ``None`` keeps
    array sizes, picks a size for class folders (see ``cnnlab.data.folder``) and keeps each image's own
    size for mask and plain-image folders. ``strict`` turns skipped unreadable images into errors.
    ``limit`` (for quick runs and tests) caps every source at that many images before splitting.
    ``options`` are the layout's own reading options (class folders: ``input`` rgb|dct, ``fit``
    resize|crop, ``allow_reencode``, see ``cnnlab.data.folder``; masks: ``mask_values``, ``void_value``; audio:
    ``sample_rate``, ``channels``, ``label_pattern``, ``split_by``, ``val_groups``, see
    ``cnnlab.data.audio``).
    ``cache_dir`` is where downloads live (default ``$CNNLAB_CACHE`` or ``~/.cache/cnnlab``).
    """
    layout = data_layout(task)
    check_val_split(val_split)
    if limit is not None and limit < 1:  # else builtin data reports it as its own option n
        raise CnnlabError(f"limit={limit} must be at least 1 image (or None for all of them)")
    size = _image_size(image_size)
    parsed = parse_spec(spec)
    options = dict(options or {})
    if layout == "audio":  # recordings: their own reader, options and builtin
        from cnnlab.data.audio import load_audio

        if size is not None:
            raise CnnlabError("image_size does not apply to audio; recordings are read at one sample rate "
                              "(--sample-rate) and cut into --window seconds by the task")
        return load_audio(parsed.kind, parsed.name, str(spec), builtin_options=parsed.options, val_split=val_split,
                          seed=seed, strict=strict, limit=limit, options=options)
    if layout == "boxes":  # one box per image: read off masks, or a folder's boxes.csv
        from cnnlab.data.boxes import load_boxes

        return load_boxes(parsed.kind, parsed.name, str(spec), val_split=val_split, seed=seed, image_size=size,
                          strict=strict, limit=limit, options=options, cache_dir=cache_dir)
    if options and layout not in ("masks", "labels"):
        raise CnnlabError(f"data option(s) {sorted(options)} apply to class folders (--input, --fit, "
                          "--allow-reencode), mask data (task segment) or audio only; drop them")
    if options and layout == "labels" and parsed.kind != "folder":
        raise CnnlabError(f"data option(s) {sorted(options)} (--input, --fit, --allow-reencode) apply to "
                          f"folders of image files, not to {spec}; --input dct needs a folder of JPEG files")
    if parsed.kind == "builtin":
        return _builtin(parsed, str(spec), layout, val_split, seed, size, limit)
    if layout == "masks":
        return _masks(parsed, str(spec), val_split, seed, size, strict, limit, options)
    if layout == "images":
        return _images(parsed, str(spec), val_split, seed, size, strict, limit, cache_dir)
    return _labels(parsed, str(spec), val_split, seed, size, strict, limit, cache_dir, options)


def _labels(parsed: Spec, spec: str, val_split: float, seed: int, size: tuple[int, int] | None, strict: bool,
            limit: int | None, cache_dir: str | os.PathLike | None, options: dict[str, Any]) -> DataBundle:
    if parsed.kind == "npz":
        x, y, names, val = load_npz(Path(parsed.name), limit)
        return _arrays(spec, x, y, names, val, val_split, seed, size, limit, {"source": "npz"})
    if parsed.kind == "named":
        from cnnlab.data.cifar10 import load_cifar10

        x, y, names, test = load_cifar10(cache_dir)
        if parsed.name == "cifar10:test":  # evaluation spec: val is the official test set, train is empty
            return _arrays(spec, x[:0], y[:0], names, test, 0.0, seed, size, limit,
                           {"source": "cifar10", "split": "official test batch"})
        return _arrays(spec, x, y, names, None, val_split, seed, size, limit, {"source": "cifar10"})
    from cnnlab.data.folder import load_folder

    root = Path(parsed.name)
    from cnnlab.data.segmentation import find_pair_folders

    if find_pair_folders(root) is not None:
        raise CnnlabError(f"{root} holds images with masks (an image folder and a mask folder), not one folder "
                          "per class; train it with `cnnlab train segment`")
    return load_folder(root, spec=spec, val_split=val_split, seed=seed, image_size=size, strict=strict, limit=limit,
                       reading=options)


def _masks(parsed: Spec, spec: str, val_split: float, seed: int, size: tuple[int, int] | None, strict: bool,
           limit: int | None, options: dict[str, Any]) -> DataBundle:
    from cnnlab.data import segmentation

    if parsed.kind == "named":
        raise CnnlabError(f"{parsed.name} holds class labels, not masks; task segment needs image + mask pairs: "
                          "a folder with images/ and masks/, an .npz with x and mask, or builtin:shapes")
    if parsed.kind == "npz":
        return segmentation.load_mask_npz(Path(parsed.name), spec=spec, val_split=val_split, seed=seed,
                                          image_size=size, limit=limit, **options)
    return segmentation.load_mask_folder(Path(parsed.name), spec=spec, val_split=val_split, seed=seed,
                                         image_size=size, strict=strict, limit=limit, **options)


def _images(parsed: Spec, spec: str, val_split: float, seed: int, size: tuple[int, int] | None, strict: bool,
            limit: int | None, cache_dir: str | os.PathLike | None) -> DataBundle:
    from cnnlab.data import plain

    if parsed.kind == "named":
        from cnnlab.data.cifar10 import load_cifar10

        x, _, _, test = load_cifar10(cache_dir)
        if parsed.name == "cifar10:test":
            return plain.from_tensor(test[0][:0], spec, 0.0, seed, size, limit,
                                     {"source": "cifar10", "split": "official test batch"}, val=test[0])
        return plain.from_tensor(x, spec, val_split, seed, size, limit, {"source": "cifar10"})
    if parsed.kind == "npz":
        return plain.load_image_npz(Path(parsed.name), spec=spec, val_split=val_split, seed=seed, image_size=size,
                                    limit=limit)
    return plain.load_image_folder(Path(parsed.name), spec=spec, val_split=val_split, seed=seed, image_size=size,
                                   strict=strict, limit=limit)


def _arrays(spec: str, x: torch.Tensor, y: torch.Tensor, names: list[str],
            val: tuple[torch.Tensor, torch.Tensor] | None, val_split: float, seed: int,
            size: tuple[int, int] | None, limit: int | None, meta: dict) -> DataBundle:
    """Bundle in-memory arrays: split (or use the given val arrays), cap at limit, resize."""
    if val is None:
        train, valid = split_arrays(x, y, None, val_split=val_split, seed=seed, limit=limit)
        meta = {"split": f"stratified val_split={val_split} seed={seed}", **meta}
    else:
        train, _ = split_arrays(x, y, None, val_split=0.0, seed=seed, limit=limit)
        valid, _ = split_arrays(*val, None, val_split=0.0, seed=seed, limit=limit)
        meta = {"split": "given validation arrays", **meta}
    if size is not None:
        train = ImageData(resize_batch(train.x, size), train.y)
        valid = ImageData(resize_batch(valid.x, size), valid.y)
    return DataBundle(train, valid, names, int(x.shape[1]), tuple(train.x.shape[-2:]), spec, meta)


def _builtin(parsed: Spec, spec: str, layout: str, val_split: float, seed: int,
             size: tuple[int, int] | None, limit: int | None) -> DataBundle:
    from cnnlab.data.builtin import check_layout, generate, parse_options

    check_layout(parsed.name, layout)
    options = parse_options(parsed.name, parsed.options)
    if size is not None:
        if size[0] != size[1]:
            raise CnnlabError(f"{spec} makes square images; pass one image_size, not {size}")
        if "size" in parsed.options and options["size"] != size[0]:
            raise CnnlabError(f"{spec} asks for size={options['size']} but image_size={size[0]}; give one of them")
        options["size"] = size[0]
    if limit is not None:  # generate no more than will be used
        options["n"] = min(limit, options["n"])
    x, y, mask, names = generate(parsed.name, options, seed)
    train, valid = split_arrays(x, y, mask, val_split=val_split, seed=seed, limit=None)
    meta = {"source": "builtin", "builtin": parsed.name, "options": options,
            "split": f"stratified val_split={val_split} seed={seed}",
            "mask": "uint8 (N, H, W): 0 background, k + 1 = class k"}
    if layout == "masks":  # targets are the masks; class 0 is the background
        train, valid = (Split({"image": s.x, "mask": s.mask}) for s in (train, valid))
        names = ["background", *names]
    elif layout == "images":  # the pictures alone (restoration tasks make their own targets)
        train, valid = (Split({"image": s.x}) for s in (train, valid))
        names = []
    return DataBundle(train, valid, names, 3, tuple(x.shape[-2:]), spec, meta)
