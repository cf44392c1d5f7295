"""Bounding boxes, one per image: read off segmentation masks or from a CSV of boxes, and checked.

Convention: float32 x1, y1, x2, y2 in pixel *edges*. A box covering pixel columns c0..c1 (inclusive)
has x1 = c0 and x2 = c1 + 1, so a box's width is x2 - x1 pixels and a mirror maps it exactly:
x1' = W - x2, x2' = W - x1. Boxes must satisfy 0 <= x1 <= x2 <= W and 0 <= y1 <= y2 <= H.

Sources (``load_data(spec, "localize")``, the 'boxes' data layout):
- anything with masks (``builtin:shapes``, a folder of ``images/`` + ``masks/``, an .npz with masks):
  the box of every non-background, non-void pixel, and the class of most of those pixels (the masks'
  class k + 1 becomes box class k; the background is not a box class). Images without a foreground
  pixel are left out (a warning says how many).
- a folder holding ``boxes.csv`` with a header ``file,x1,y1,x2,y2`` and optionally ``label``: one row
  per image, ``file`` relative to the folder, coordinates in the file's own pixels. Labels are class
  names (their sorted set are the classes); without them the data has no classes.
"""

from __future__ import annotations

import csv
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from cnnlab.data.bundle import IGNORE, DataBundle, Split
from cnnlab.errors import CnnlabError

CSV_NAME = "boxes.csv"
COLUMNS = ("file", "x1", "y1", "x2", "y2")


def boxes_from_masks(masks: torch.Tensor, ignore: int = IGNORE) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(N, H, W) class masks (0 = background) -> (boxes float32 (N, 4) in pixel edges, labels int64 (N,)
    = the most common foreground class - 1, found bool (N,): False where no pixel is foreground)."""
    fg = (masks > 0) & (masks != ignore)  # (N, H, W)
    cols, rows = fg.any(dim=1), fg.any(dim=2)  # (N, W), (N, H)
    found = cols.any(dim=1)
    w, h = masks.shape[-1], masks.shape[-2]
    ar_w, ar_h = torch.arange(w), torch.arange(h)
    # first / last occupied column and row; +1 turns the last pixel's index into its right edge
    x1 = torch.where(cols, ar_w, w).amin(dim=1)
    x2 = torch.where(cols, ar_w, -1).amax(dim=1) + 1
    y1 = torch.where(rows, ar_h, h).amin(dim=1)
    y2 = torch.where(rows, ar_h, -1).amax(dim=1) + 1
    boxes = torch.stack([x1, y1, x2, y2], dim=1).float()
    boxes[~found] = 0.0
    counts = torch.zeros(len(masks), 256, dtype=torch.int64)
    counts.scatter_add_(1, masks.flatten(1).long(), fg.flatten(1).long())  # foreground pixels per class
    return boxes, (counts.argmax(dim=1) - 1).clamp(min=0), found


def check_boxes(boxes: torch.Tensor, sizes: list[tuple[int, int]], names: list[str]) -> None:
    """A CnnlabError naming the first box (by ``names[i]``: its file or CSV row) outside its (H, W)
    image, with x2 < x1 or y2 < y1, or not finite."""
    for i, ((x1, y1, x2, y2), (h, w)) in enumerate(zip(boxes.tolist(), sizes, strict=True)):
        box = f"[{x1:g}, {y1:g}, {x2:g}, {y2:g}]"
        if not all(np.isfinite([x1, y1, x2, y2])):
            raise CnnlabError(f"{names[i]}: box {box} is not a number; write x1,y1,x2,y2 as pixel coordinates")
        if x2 < x1 or y2 < y1:
            raise CnnlabError(f"{names[i]}: box {box} has x2 < x1 or y2 < y1; write the top-left corner "
                              "first (x1,y1) and the bottom-right one second (x2,y2)")
        if x1 < 0 or y1 < 0 or x2 > w or y2 > h:
            raise CnnlabError(f"{names[i]}: box {box} lies outside its {w}x{h} (WxH) image; coordinates "
                              f"run from 0 to the width ({w}) and height ({h}) in pixels")


def from_mask_bundle(bundle: DataBundle) -> DataBundle:
    """An image + mask bundle -> image + boxes (+ label) splits; the background class is dropped."""
    names = list(bundle.class_names[1:])
    splits, dropped = [], 0
    for split in (bundle.train, bundle.val):
        if not split.stacked("mask"):
            raise CnnlabError(f"{bundle.spec}: the images have different sizes; boxes need one size, pass "
                              "--image-size (e.g. --image-size 128)")
        boxes, labels, found = boxes_from_masks(split["mask"])
        dropped += int((~found).sum())
        fields = {"image": split["image"][found], "boxes": boxes[found]}
        if len(names) > 1:  # one foreground class tells nothing: no class head then
            fields["label"] = labels[found]
        splits.append(Split(fields))
    if dropped:
        from cnnlab.data.images import DataWarning

        warnings.warn(f"{bundle.spec}: {dropped} image(s) have no foreground pixel (no box) and were left out",
                      DataWarning, stacklevel=3)
    meta = {**bundle.meta, "boxes": "read off the masks: the extent of all non-background, non-void pixels",
            "no_box_dropped": dropped}
    return DataBundle(splits[0], splits[1], names if len(names) > 1 else [], bundle.in_channels,
                      bundle.image_size, bundle.spec, meta)


def read_box_csv(path: Path) -> list[dict[str, str]]:
    """The rows of a boxes CSV (checked header; one row per file)."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [c.strip() for c in reader.fieldnames or []]
        missing = [c for c in COLUMNS if c not in header]
        if missing:
            raise CnnlabError(f"{path}: the header must be file,x1,y1,x2,y2[,label]; missing {', '.join(missing)}")
        rows = [{k.strip(): (v or "").strip() for k, v in row.items() if k is not None} for row in reader]
    seen: dict[str, int] = {}
    for i, row in enumerate(rows, start=2):
        if row["file"] in seen:
            raise CnnlabError(f"{path} row {i}: {row['file']} already has a box (row {seen[row['file']]}); "
                              "localize predicts one box per image: keep one row per file")
        seen[row["file"]] = i
    if not rows:
        raise CnnlabError(f"{path} has no rows; add one line file,x1,y1,x2,y2 per image")
    return rows


def _row_box(path: Path, i: int, row: dict[str, str]) -> list[float]:
    try:
        return [float(row[c]) for c in COLUMNS[1:]]
    except ValueError:
        raise CnnlabError(f"{path} row {i}: x1,y1,x2,y2 must be numbers, got "
                          f"{[row[c] for c in COLUMNS[1:]]}") from None


def _read_image(path: Path, channels: int, size: tuple[int, int] | None) -> tuple[np.ndarray, tuple[int, int]]:
    """uint8 (C, H, W), resized (not cropped, so boxes scale) to ``size``; and the file's own (H, W)."""
    from PIL import Image

    from cnnlab.data.images import read, to_mode

    img = to_mode(read(path, 1 << 30), channels)
    own = (img.height, img.width)
    if size is not None and own != size:
        img = img.resize((size[1], size[0]), Image.BILINEAR)
    arr = np.asarray(img)
    return np.ascontiguousarray(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)), own


def load_box_csv(root: Path, *, spec: str, val_split: float, seed: int, image_size: tuple[int, int] | None,
                 limit: int | None) -> DataBundle:
    """A folder with boxes.csv (module doc) -> image + boxes (+ label) splits, images resized to
    ``image_size`` (default: their common size) with the boxes scaled alike."""
    from cnnlab.data.images import GRAY_MODES, probe
    from cnnlab.data.split import random_split

    path = root / CSV_NAME
    rows = read_box_csv(path)[:limit]
    files = [root / r["file"] for r in rows]
    for i, f in enumerate(files, start=2):
        if not f.is_file():
            raise CnnlabError(f"{path} row {i}: image {f} does not exist; file paths are relative to {root}")
    probes = [probe(f) for f in files]
    channels = 1 if all(mode in GRAY_MODES for _, mode in probes) else 3
    images, own = zip(*(_read_image(f, channels, image_size) for f in files), strict=True)
    where = [f"{path} row {i} ({r['file']})" for i, r in enumerate(rows, start=2)]
    boxes = torch.tensor([_row_box(path, i, r) for i, r in enumerate(rows, start=2)], dtype=torch.float32)
    check_boxes(boxes, list(own), where)
    sizes = {a.shape[1:] for a in images}
    if len(sizes) > 1:
        raise CnnlabError(f"{root}: the images have {len(sizes)} different sizes; pass --image-size (e.g. "
                          "--image-size 128) to resize them all (the boxes scale with them)")
    h, w = images[0].shape[1:]
    scale = torch.tensor([[w / s[1], h / s[0], w / s[1], h / s[0]] for s in own], dtype=torch.float32)
    fields: dict[str, Any] = {"image": torch.from_numpy(np.stack(images)), "boxes": boxes * scale}
    labels = [r.get("label", "") for r in rows]
    names = sorted(set(labels)) if all(labels) else []
    if any(labels) and not all(labels):
        missing = next(i for i, lab in enumerate(labels, start=2) if not lab)
        raise CnnlabError(f"{path} row {missing}: no label; give every row a label or none of them")
    if names:
        fields["label"] = torch.tensor([names.index(lab) for lab in labels], dtype=torch.int64)
    train, val = random_split(len(rows), val_split, seed)
    everything = Split(fields)
    meta = {"source": "boxes csv", "root": str(root), "split": f"random val_split={val_split} seed={seed}",
            "boxes": f"{CSV_NAME}: x1,y1,x2,y2 in the files' pixels, scaled to the loaded size"}
    return DataBundle(everything.take(train), everything.take(val), names, channels, (int(h), int(w)), spec, meta)


def load_boxes(kind: str, name: str, spec: str, **kwargs: Any) -> DataBundle:
    """The 'boxes' layout of a parsed spec (``kind``, ``name``): a folder with boxes.csv, else the
    masks of any segmentation source (``kwargs``: load_data's, less the task)."""
    if kind == "folder" and (Path(name) / CSV_NAME).is_file():
        if kwargs.get("options"):
            raise CnnlabError(f"data option(s) {sorted(kwargs['options'])} apply to mask files; {name} has "
                              f"{CSV_NAME}: drop them")
        return load_box_csv(Path(name), spec=spec, val_split=kwargs["val_split"], seed=kwargs["seed"],
                            image_size=kwargs["image_size"], limit=kwargs["limit"])
    if kind == "named":
        raise CnnlabError(f"{name} holds class labels, not boxes; task localize needs masks (builtin:shapes, "
                          f"images/ + masks/ folders) or a folder with {CSV_NAME} (file,x1,y1,x2,y2[,label])")
    from cnnlab.data.specs import load_data

    return from_mask_bundle(load_data(spec, "segment", **kwargs))


__all__ = ["boxes_from_masks", "check_boxes", "from_mask_bundle", "load_box_csv", "load_boxes", "read_box_csv"]
