"""What the tasks that learn from plain photos share (denoise, inpaint, compress): ``PhotoTask`` (random
patches for training, whole images for validation, fp32 outputs scored on 8-bit levels), 8-bit PSNR, the
report's side-by-side panels, and the predict options for tiled inference."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks import scores
from cnnlab.tasks.base import Augment, Task
from cnnlab.tasks.patches import check_patch, random_patches

#: predict's tile size and context in input pixels (whole 481x321 photos fit one tile)
PREDICT_OPTIONS = {"tile": 512, "overlap": 48}
#: the side of the centre crop each report panel shows
PANEL = 160


class PhotoTask(Task):
    """A task that makes its own inputs and targets from plain photos (``images`` data, no masks): it
    trains on random ``patch`` crops and validates on whole images, in fp32 (its scores are on 8-bit
    levels), with pixels in [0, 1] (no mean/std: the outputs are pixels too)."""

    data_layout = "images"
    normalize = False
    default_augment = "flip"
    writes_images = True
    eval_fp32 = True
    report_items = 4
    patch: int  # set by the subclass's __init__

    def input_size(self, info: dict[str, Any]) -> tuple[int, int]:
        return self.patch, self.patch

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if "mask" in train:
            raise CnnlabError(f"{self.name} trains on plain photos (it makes its own inputs from them), not masks; "
                              "pass a folder of photos")
        check_patch(train.sizes(), self.patch)

    def train_patches(self, items: Split, generator: torch.Generator, augment: Augment | None) -> torch.Tensor:
        """uint8 (N, C, P, P): one random ``patch`` crop of each item, augmented."""
        clean = random_patches(items, ("image",), self.patch, generator)["image"]
        if augment is not None:
            clean = augment({"image": clean}, {"image": "image"}, generator)["image"]
        return clean


def images_of(items: Split) -> list[torch.Tensor]:
    """The items' uint8 (C, H, W) images as a list (stacked or not)."""
    images = items["image"]
    return list(images.unbind(0)) if isinstance(images, torch.Tensor) else list(images)


def psnr_8bit(output: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """Per-image PSNR (N,) on all channels, 0-255, no border shaved, of a float [0, 1] output quantised
    to 8-bit levels (as saving it does) against the uint8 clean image."""
    return scores.psnr(scores.to_levels(output), scores.to_levels(clean))


def panels(images: list[torch.Tensor], path: Path) -> Path:
    """The same centre crop of each (C, H, W) image in [0, 1], side by side, saved to ``path``."""
    from cnnlab.render.grids import make_grid, save_image

    h, w = images[0].shape[-2:]
    size = min(h, w, PANEL)
    top, left = (h - size) // 2, (w - size) // 2
    tiles = torch.stack([im[..., top:top + size, left:left + size].expand(3, -1, -1) if im.shape[0] == 1
                         else im[..., top:top + size, left:left + size] for im in images])
    return save_image(make_grid(tiles.float().clamp(0, 1), nrow=len(images), pad=2, pad_value=1.0), path,
                      min_side=800)


def section(source: str, header: str, parts: list[str]) -> str:
    """The report's sample section: a heading, what the panels are, then the panels."""
    import html

    return f"<h2>Sample predictions</h2><p>{html.escape(source)}: {html.escape(header)}</p>" + "".join(parts)


def no_split_note(task: str) -> str:
    return f"<h2>Sample predictions</h2><p class=\"note\">{task} samples come from the run's data</p>"


def tiled_model(run: Any, x: torch.Tensor, opts: dict[str, Any]) -> torch.Tensor:
    """The run's model on float input ``x`` (1, C, H, W), tile by tile (bounded memory), as float."""
    from cnnlab.tasks.tiles import tiled

    return tiled(lambda t: run.model(t).float(), x, int(opts["tile"]), int(opts["overlap"]))


__all__ = ["PREDICT_OPTIONS", "images_of", "panels", "psnr_8bit", "section", "tiled_model"]
