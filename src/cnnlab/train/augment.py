"""The training augmentation named by ``TrainConfig.augment``, built from ``cnnlab.data.transforms``.

Random parameters are drawn once per example and applied to every image- and mask-kind field of the
batch, and to its boxes-kind fields (``apply_boxes``); labels pass through. So images and their
targets stay aligned. 'auto' is the task's own
choice (``Task.default_augment``).
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch

# 'shift' / 'flip-shift' are 'crop' / 'flip-crop' on pixels, which move by whole pixels anyway; they
# differ for DCT inputs, where 'crop' moves whole 16-px cells and 'shift' any even number of pixels.
AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop", "shift", "flip-shift")


def _pipeline(name: str, image_size: tuple[int, int], mode: str):  # type: ignore[no-untyped-def]
    from cnnlab.data.transforms import Compose, HorizontalFlip, default_augmentation, random_translate

    if name == "flip":
        return Compose([HorizontalFlip()])
    if name in ("crop", "shift"):
        return Compose([random_translate(image_size, mode)])
    return default_augmentation(image_size, mode)  # flip-crop, flip-shift


def check_name(name: str) -> None:
    """--augment must be one of ``AUGMENTS`` (image and DCT inputs share the names)."""
    if name not in AUGMENTS:
        raise CnnlabError(f"unknown augmentation {name!r}; choose from: {', '.join(AUGMENTS)}")


def make_augment(name: str, default: str = "flip-crop") -> Augment | None:
    """The augmentation ``name`` ('auto' = ``default``, the task's choice); None for 'none'.

    'crop' is a random translation by up to 1/8 of the batch's image size (reflect padding), 'flip' a
    left-right mirror with probability 1/2; 'flip-crop' both (the standard CIFAR recipe). On images
    'shift' and 'flip-shift' are the same as 'crop' and 'flip-crop' (see ``AUGMENTS``).
    """
    check_name(name)
    name = default if name == "auto" else name
    if name == "none":
        return None

    def augment(fields: Batch, kinds: dict[str, str], generator: torch.Generator) -> Batch:
        spatial = [k for k in fields if kinds.get(k) in ("image", "mask")]
        boxes = [k for k in fields if kinds.get(k) == "boxes"]
        first = fields[spatial[0]]
        size = tuple(first.shape[-2:])
        # with boxes, translations pad with black: a mirrored border would show copies of an object
        # outside its box
        pipeline = _pipeline(name, size, "constant" if boxes else "reflect")
        params = pipeline.sample(len(first), generator)
        out = {k: pipeline.apply(params, v) if k in spatial else v for k, v in fields.items()}
        out.update({k: pipeline.apply_boxes(params, fields[k], size)[0] for k in boxes})
        return out

    return augment
