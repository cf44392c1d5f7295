"""The training augmentation named by ``TrainConfig.augment``, built from ``cnnlab.data.transforms``.

Random parameters are drawn once per example and applied to every image- and mask-kind field of the
batch (labels pass through), so images and their targets stay aligned. 'auto' is the task's own
choice (``Task.default_augment``).
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch

AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop")


def _pipeline(name: str, image_size: tuple[int, int]):  # type: ignore[no-untyped-def]
    from cnnlab.data.transforms import Compose, HorizontalFlip, default_augmentation, random_translate

    if name == "flip":
        return Compose([HorizontalFlip()])
    if name == "crop":
        return Compose([random_translate(image_size)])
    return default_augmentation(image_size)  # flip-crop


def make_augment(name: str, default: str = "flip-crop") -> Augment | None:
    """The augmentation ``name`` ('auto' = ``default``, the task's choice); None for 'none'.

    'crop' is a random translation by up to 1/8 of the batch's image size (reflect padding), 'flip' a
    left-right mirror with probability 1/2; 'flip-crop' both (the standard CIFAR recipe).
    """
    if name not in AUGMENTS:
        raise CnnlabError(f"unknown augmentation {name!r}; choose from: {', '.join(AUGMENTS)}")
    name = default if name == "auto" else name
    if name == "none":
        return None

    def augment(fields: Batch, kinds: dict[str, str], generator: torch.Generator) -> Batch:
        spatial = [k for k in fields if kinds.get(k) in ("image", "mask")]
        first = fields[spatial[0]]
        pipeline = _pipeline(name, tuple(first.shape[-2:]))
        params = pipeline.sample(len(first), generator)
        return {k: pipeline.apply(params, v) if k in spatial else v for k, v in fields.items()}

    return augment
