"""A few validation items of a data spec, decoding only those: what the report and the demo show.

``load_data`` decodes every file of a spec, which is what training needs and far too much for showing
8 images of a 50,000-image folder. The folder loaders choose their split (and ``limit``) on file lists
before they decode anything, so ``load_preview`` makes the same choice with the same functions and then
decodes only the picked files. Array sources (.npz, builtin, cifar10) hold no per-image files to skip:
they load as ``load_data`` loads them, and only the picked rows are kept. So do layouts without a
folder preview here (boxes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.bundle import ImageData, Split
from cnnlab.data.split import balanced_subset


def pick(labels: torch.Tensor | None, n: int, count: int) -> torch.Tensor:
    """Indices of up to ``count`` of ``n`` items: class-balanced where there are ``labels`` (the first
    items of each class, round-robin), else the first ``count``."""
    return balanced_subset(labels, count) if labels is not None else torch.arange(min(count, n))


def load_preview(spec: str | os.PathLike, task: str, count: int, *, val_split: float, seed: int,
                 image_size: tuple[int, int] | None, limit: int | None, options: dict[str, Any] | None,
                 in_channels: int) -> tuple[Split, str]:
    """Up to ``count`` items of the validation split that ``load_data(spec, task, val_split=..., seed=...,
    limit=..., options=...)`` makes, class-balanced where there are labels, decoded at ``image_size``
    (None: each item's own size) with ``in_channels`` channels; and the split they come from: 'val', or
    'train' when the data has no validation items. Unreadable picks are left out with one warning."""
    from cnnlab.data.specs import data_layout, load_data, parse_spec

    layout = data_layout(task)
    parsed = parse_spec(spec)
    options = dict(options or {})
    if parsed.kind == "folder" and layout == "labels" and image_size is not None:
        return _class_folder(Path(parsed.name), count, val_split, seed, image_size, limit, in_channels)
    if parsed.kind == "folder" and layout == "masks":
        return _mask_folder(Path(parsed.name), count, val_split, seed, image_size, limit, options, in_channels)
    if parsed.kind == "folder" and layout == "images":
        return _image_folder(Path(parsed.name), count, val_split, seed, image_size, limit, in_channels)
    if parsed.kind == "folder" and layout == "audio":
        return _audio_folder(Path(parsed.name), count, val_split, seed, limit, options)
    bundle = load_data(spec, task, val_split=val_split, seed=seed, image_size=image_size, limit=limit,
                       options=options)
    part = "val" if len(bundle.val) else "train"
    split = bundle.val if part == "val" else bundle.train
    labels = split.fields.get("label")
    return split.take(pick(labels, len(split), count)), part  # type: ignore[arg-type]


def _class_folder(root: Path, count: int, val_split: float, seed: int, size: tuple[int, int], limit: int | None,
                  channels: int) -> tuple[Split, str]:
    from cnnlab.data.folder import _choose_files
    from cnnlab.data.images import decode_many, warn_skipped

    _, (train_files, train_labels), (val_files, val_labels), _ = _choose_files(root, val_split, seed, limit)
    part, files, labels = ("val", val_files, val_labels) if val_files else ("train", train_files, train_labels)
    index = pick(labels, len(files), count)
    x, kept, skipped = decode_many([files[i] for i in index.tolist()], size, channels, progress=False)
    warn_skipped(skipped)
    return ImageData(x, labels[index][torch.tensor(kept, dtype=torch.int64)]), part


def _mask_folder(root: Path, count: int, val_split: float, seed: int, size: tuple[int, int] | None,
                 limit: int | None, options: dict[str, Any], channels: int) -> tuple[Split, str]:
    from cnnlab.data import segmentation as seg
    from cnnlab.data.images import warn_skipped

    rule = seg.value_rule(options.get("mask_values"), options.get("void_value"),
                          seg.read_class_names(root / "classes.txt"))
    train_pairs, val_pairs, _ = seg._choose_pairs(root, val_split, seed, limit)
    part, pairs = ("val", val_pairs) if val_pairs else ("train", train_pairs)
    pairs, _, skipped = seg._probe_pairs(pairs[:count], strict=False)
    decoded, skipped_decoding = seg._decode_pairs(pairs, channels, size, rule, strict=False, progress=False)
    warn_skipped(skipped + skipped_decoding)
    return seg._splits(decoded, [], channels)[0], part


def _image_folder(root: Path, count: int, val_split: float, seed: int, size: tuple[int, int] | None,
                  limit: int | None, channels: int) -> tuple[Split, str]:
    from cnnlab.data.bundle import stack_or_list
    from cnnlab.data.images import warn_skipped
    from cnnlab.data.plain import choose_files, decode_files

    # Headers of every file are read: the split is drawn over the readable ones (as load_data does).
    train_files, val_files, _, skipped = choose_files(root, val_split, seed, limit, strict=False)
    part, files = ("val", val_files) if val_files else ("train", train_files)
    images, skipped_decoding = decode_files(files[:count], channels, size, strict=False, progress=False)
    warn_skipped(skipped + skipped_decoding)
    return Split({"image": stack_or_list(images) if images else torch.zeros(0, channels, 1, 1, dtype=torch.uint8)}), part


def _audio_folder(root: Path, count: int, val_split: float, seed: int, limit: int | None,
                  options: dict[str, Any]) -> tuple[Split, str]:
    from cnnlab.data.audio.folder import choose_recordings
    from cnnlab.data.audio.io import common_rate, decode_many, probe_rates
    from cnnlab.data.bundle import stack_or_list
    from cnnlab.data.images import warn_skipped

    chosen = choose_recordings(root, val_split=val_split, seed=seed, limit=limit,
                               **{k: options.get(k) for k in ("label_pattern", "split_by", "val_groups")})
    part, listing = ("val", chosen.val) if chosen.val.files else ("train", chosen.train)
    labels = torch.tensor([chosen.names.index(name) for name in listing.labels], dtype=torch.int64)
    index = pick(labels, len(labels), count)
    files = [listing.files[i] for i in index.tolist()]
    rate = options.get("sample_rate")  # the run's (eval passes it); else the rate training would pick
    if rate is None:
        rate = common_rate(probe_rates(chosen.train.files + chosen.val.files, False)[0], None)
    decoded = decode_many(files, int(rate), int(options.get("channels") or 1), strict=False)
    warn_skipped(decoded.skipped, "unreadable audio")
    waves = stack_or_list(decoded.waves) if decoded.waves else torch.zeros(0, 1, 1)
    return Split({"wave": waves, "label": labels[index][torch.tensor(decoded.kept, dtype=torch.int64)]}), part
