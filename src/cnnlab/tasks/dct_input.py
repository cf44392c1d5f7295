"""What a classification run does differently when its input is JPEG DCT coefficients (``--input dct``).

ClassifyTask holds one of these once ``bind_data`` has seen ``info["input"] == "dct"``; everything
else (head, loss, metrics, meter, the engine) is shared with RGB runs, so the two compare fairly.
- inputs are ``dct`` fields: float16 (384, H/16, W/16) packed coefficients (``cnnlab.dct.layout``);
- normalisation is per frequency, over the training set and its mirror (``frequency_stats``);
- augmentation and TTA flip and shift on the coefficients (``cnnlab.dct.augment``), before the
  normalisation for training, after it for TTA (the odd frequencies have mean 0, so both commute);
- files are read with ``cnnlab.dct.data`` at the run's grid; maps are drawn on the image decoded from
  the coefficients, at block resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch

TTA_MODES = ("none", "flip")


def grid(info: dict[str, Any]) -> tuple[int, int]:
    """The run's input grid in 16-px cells, from the data's (H, W) image size."""
    from cnnlab.dct.data import grid_of

    h, w = info["image_size"]
    return grid_of((h, w))


def shift_cells(info: dict[str, Any]) -> int:
    """Random-shift range in cells: the RGB 'crop' augmentation's 1/8 of the size, rounded to cells."""
    return max(1, round(min(grid(info)) / 8))


def shift_pixels(info: dict[str, Any]) -> int:
    """Random-shift range in pixels for 'shift': RGB's 1/8 of the size, rounded to an even number."""
    return 2 * max(1, round(min(info["image_size"]) / 16))


def make_augment(name: str, info: dict[str, Any]) -> Augment | None:
    """--augment for DCT inputs: 'flip', 'crop' (shifts on the 16-px grid), 'flip-crop' (= auto),
    'shift' (shifts by any even number of pixels), 'flip-shift', 'none'."""
    from cnnlab.dct.augment import dct_flip_crop, dct_flip_shift, random_crop, random_flip, random_shift
    from cnnlab.train.augment import check_name

    check_name(name)
    if name == "none":
        return None
    pad = shift_cells(info)
    pixels = shift_pixels(info)

    def one(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if name == "flip":
            return random_flip(x, generator)
        if name == "crop":
            return random_crop(x, tuple(x.shape[-2:]), pad, generator)
        if name == "shift":
            return random_shift(x, pixels, generator)
        if name == "flip-shift":
            return dct_flip_shift(x, generator, pixels)
        return dct_flip_crop(x, generator, pad)

    def augment(fields: Batch, kinds: dict[str, str], generator: torch.Generator) -> Batch:
        return {k: one(v, generator) if kinds.get(k) == "dct" else v for k, v in fields.items()}

    return augment


def tta_flip(model: torch.nn.Module, inputs: torch.Tensor, tta: str) -> torch.Tensor:
    """Logits averaged with the DCT-domain mirror image ('flip'), or plain ('none')."""
    from cnnlab.dct.augment import hflip

    if tta not in TTA_MODES:
        raise CnnlabError(f"--tta {tta} is not available for DCT inputs; use --tta none or flip")
    outputs = model(inputs).float()
    return outputs if tta == "none" else 0.5 * (outputs + model(hflip(inputs)).float())


def load_files(run: Any, paths: list[str]) -> tuple[torch.Tensor, list[Path]]:
    """JPEG files and folders -> (float16 (N, 384, *grid), the paths read), at the run's grid."""
    from cnnlab.data.images import _expand, warn_skipped
    from cnnlab.dct.data import read_many

    files = _expand(paths)
    x, kept, skipped = read_many(files, grid(run.config["data"]["info"]))
    if not kept:
        raise CnnlabError(f"none of the {len(files)} input file(s) could be read as JPEG coefficients (first: "
                          f"{skipped[0][0]}: {skipped[0][1]})")
    warn_skipped(skipped, "unreadable JPEG")
    return x, [files[i] for i in kept]


def to_rgb(x: torch.Tensor) -> torch.Tensor:
    """Packed inputs (N, 384, h, w) -> uint8 RGB (N, 3, 16h, 16w): inverse DCT, chroma upsampled by
    repetition, JFIF YCbCr -> RGB. For display only (the model never sees pixels)."""
    import numpy as np

    from cnnlab.dct.layout import idct_blocks, unpack, ycbcr_to_rgb

    y, cb, cr = unpack(x.float().cpu())
    images = []
    for i in range(len(x)):
        luma = idct_blocks(y[i].numpy()) + 128
        chroma = [np.repeat(np.repeat(idct_blocks(c[i].numpy()) + 128, 2, 0), 2, 1) for c in (cb, cr)]
        rgb = ycbcr_to_rgb(np.stack([luma, *chroma], axis=-1))
        images.append(torch.from_numpy(np.clip(np.rint(rgb), 0, 255).astype(np.uint8)).permute(2, 0, 1))
    return torch.stack(images)


def cam_to_image(cam: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
    """A map over the input grid of cells, repeated to the decoded image's pixels (block resolution)."""
    return F.interpolate(cam[None, None].float(), size=tuple(image.shape[-2:]), mode="nearest")[0, 0]


class PixelsToDct(torch.nn.Module):
    """RGB in [0, 1] (N, 3, 16h, 16w) -> packed DCT inputs (N, 384, h, w), differentiably: JFIF YCbCr,
    chroma averaged 2x2 (4:2:0), level shift, orthonormal 8x8 DCT per block, zig-zag, packing. The
    coefficients are not quantised. Lets filter visualisation ascend on pictures a DCT model reads as
    a JPEG encoder would have written them."""

    def __init__(self) -> None:
        super().__init__()
        import numpy as np

        from cnnlab.dct.layout import RGB_TO_YCBCR, ZIGZAG, dct_matrix

        c = torch.from_numpy(dct_matrix()).float()
        basis = torch.einsum("vy,ux->vuyx", c, c).reshape(64, 64)  # natural (v*8+u) x pixel (y*8+x)
        self.register_buffer("basis", basis[torch.tensor(np.array(ZIGZAG))], persistent=False)
        self.register_buffer("rgb_to_ycbcr", torch.tensor(RGB_TO_YCBCR, dtype=torch.float32), persistent=False)

    def _blocks(self, plane: torch.Tensor) -> torch.Tensor:
        """(N, H, W) pixels, level-shifted -> (N, 64, H/8, W/8) zig-zag coefficients."""
        n, h, w = plane.shape
        tiles = F.unfold(plane[:, None], 8, stride=8)  # (N, 64 pixels, blocks)
        return (self.basis @ tiles).view(n, 64, h // 8, w // 8)

    def forward(self, rgb: torch.Tensor) -> torch.Tensor:
        ycc = torch.einsum("oc,nchw->nohw", self.rgb_to_ycbcr, rgb * 255)  # Y; Cb, Cr around 0 (= 128 - 128)
        y = self._blocks(ycc[:, 0] - 128)
        chroma = [self._blocks(F.avg_pool2d(ycc[:, c:c + 1], 2)[:, 0]) for c in (1, 2)]
        return torch.cat([F.pixel_unshuffle(y, 2), *chroma], dim=1)
