"""Random training patches from items of any size: one window per item, shared by its paired fields.

Image-to-image tasks train on crops (a CPU cannot afford whole 480x360 frames per step, and random
windows are themselves augmentation) and evaluate on whole images. The window is drawn once per item
from the step's generator and cut from every named field (image and mask alike), so they stay aligned.
"""

from __future__ import annotations

import torch

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError


def random_patches(items: Split, names: tuple[str, ...], size: int, generator: torch.Generator,
                   multiple: int = 1) -> dict[str, torch.Tensor]:
    """A ``size`` x ``size`` crop of each item (the top-left corner a multiple of ``multiple``, so a
    later downscaling stays on the same pixel grid), stacked per field: {name: (N, ...)}."""
    out: dict[str, list[torch.Tensor]] = {name: [] for name in names}
    for i, (h, w) in enumerate(items.sizes()):
        if h < size or w < size:
            raise CnnlabError(f"an image of {h}x{w} is smaller than the {size}x{size} training patch; "
                              "lower --patch or leave out the small images")
        top = int(torch.randint(0, (h - size) // multiple + 1, (1,), generator=generator)) * multiple
        left = int(torch.randint(0, (w - size) // multiple + 1, (1,), generator=generator)) * multiple
        for name in names:
            out[name].append(items[name][i][..., top:top + size, left:left + size])
    return {name: torch.stack(values) for name, values in out.items()}


def check_patch(sizes: list[tuple[int, int]], patch: int, what: str = "--patch") -> None:
    """A CnnlabError naming how many images are smaller than ``patch`` (and the smallest)."""
    small = [(h, w) for h, w in sizes if h < patch or w < patch]
    if small:
        h, w = min(small, key=lambda s: s[0] * s[1])
        raise CnnlabError(f"{len(small)} of {len(sizes)} training images are smaller than {what} {patch} "
                          f"(the smallest is {h}x{w}); lower {what} to at most {min(min(s) for s in sizes)}, "
                          "or remove the small images")
