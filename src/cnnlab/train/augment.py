"""The training augmentation named by ``TrainConfig.augment``, built from ``cnnlab.data.transforms``.

Random parameters are drawn once per example and applied to the images and, for tasks whose targets
are images or masks, to the targets as well, so they stay aligned.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError
from cnnlab.train.loop import Augment

AUGMENTS = ("auto", "none", "flip", "crop", "flip-crop")


def make_augment(name: str, image_size: tuple[int, int], spatial_targets: bool) -> Augment | None:
    """The augmentation ``name`` for images of ``image_size``; None for 'none'.

    'crop' is a random translation by up to 1/8 of the image size (reflect padding), 'flip' a
    left-right mirror with probability 1/2; 'auto' is both (the standard CIFAR recipe).
    """
    from cnnlab.data.transforms import Compose, HorizontalFlip, default_augmentation, random_translate

    if name not in AUGMENTS:
        raise CnnlabError(f"unknown augmentation {name!r}; choose from: {', '.join(AUGMENTS)}")
    if name == "none":
        return None
    if name == "flip":
        pipeline = Compose([HorizontalFlip()])
    elif name == "crop":
        pipeline = Compose([random_translate(image_size)])
    else:  # auto, flip-crop
        pipeline = default_augmentation(image_size)

    def augment(x: torch.Tensor, y: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        params = pipeline.sample(len(x), generator)
        x = pipeline.apply(params, x)
        return x, (pipeline.apply(params, y) if spatial_targets else y)

    return augment
