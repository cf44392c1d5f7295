"""Image grids and small plots for feature maps, filter atlases and silent-channel curves.

Tiling is plain torch (:func:`make_grid`); files are written atomically (:func:`cnnlab.files.atomic_write`)
and every ``save_*`` function returns the path it wrote. matplotlib is imported lazily with the Agg
backend.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

import torch

from cnnlab.files import atomic_write


def make_grid(images: torch.Tensor, nrow: int | None = None, pad: int = 2, pad_value: float = 0.0) -> torch.Tensor:
    """Tile (N, C, H, W) images into one (C, H', W') image, ``nrow`` per row (default: near-square)."""
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), pad_value)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


def save_image(image: torch.Tensor, path: str | Path, cmap: str | None = None, min_side: int = 256,
               caption: str | None = None) -> Path:
    """Write a (C, H, W) or (H, W) image in [0, 1] as PNG; a single channel uses ``cmap`` if given.

    Small images (32x32 inputs, 4x4 feature maps) are enlarged by an integer factor with nearest
    neighbour until the longer side reaches ``min_side``, so pixels stay visible as squares.
    ``caption`` is written in black on a white band under the image (wrapped to its width).
    """
    import numpy as np
    from PIL import Image

    path = Path(path)
    image = image.detach().float().cpu().clamp(0, 1)
    if image.dim() == 3 and image.shape[0] == 1:
        image = image[0]
    if image.dim() == 2 and cmap:
        image = colorize(image, cmap)
    if image.dim() == 2:
        image = image[None]
    factor = max(1, min_side // max(image.shape[1:]))
    image = image.repeat_interleave(factor, dim=1).repeat_interleave(factor, dim=2).permute(1, 2, 0)
    if image.shape[2] == 1:
        image = image[:, :, 0]
    array = (image.numpy() * 255).round().astype(np.uint8)
    pil = Image.fromarray(array)
    if caption:
        pil = _add_caption(pil, caption)
    return atomic_write(path, lambda p: pil.save(p, format="PNG"))


def _add_caption(pil, caption: str):  # type: ignore[no-untyped-def]
    """``pil`` with ``caption`` in black on a white band underneath, wrapped to the image's width."""
    from PIL import Image, ImageDraw, ImageFont

    font = ImageFont.load_default(size=max(12, min(24, pil.width // 48)))
    measure = ImageDraw.Draw(pil)
    lines: list[str] = []
    for word in caption.split():
        if lines and measure.textlength(f"{lines[-1]} {word}", font=font) <= pil.width - 8:
            lines[-1] = f"{lines[-1]} {word}"
        else:
            lines.append(word)
    height = int(measure.textbbox((0, 0), "Ag", font=font)[3]) + 4
    out = Image.new(pil.mode, (pil.width, pil.height + height * len(lines) + 8), "white")
    out.paste(pil, (0, 0))
    draw = ImageDraw.Draw(out)
    for i, line in enumerate(lines):
        draw.text((4, pil.height + 4 + i * height), line, fill="black", font=font)
    return out


def colorize(values: torch.Tensor, cmap: str = "viridis") -> torch.Tensor:
    """(H, W) values in [0, 1] -> (3, H, W) RGB through a matplotlib colormap."""
    import matplotlib

    lut = torch.tensor(matplotlib.colormaps[cmap](range(256))[:, :3], dtype=torch.float32)  # (256, 3)
    index = (values.detach().float().cpu().clamp(0, 1) * 255).round().long()
    return lut[index].permute(2, 0, 1)


def feature_grid(maps: torch.Tensor, order: Sequence[int] | None = None, pad: int = 1) -> torch.Tensor:
    """(C, H, W) maps of ONE example -> (1, H', W') grid, every channel scaled by the layer's own max.

    One scale for the whole layer (not per channel) so that weak and silent channels look weak
    and black instead of being stretched into noise.
    """
    maps = maps.detach().float().cpu()
    if order is not None:
        maps = maps[torch.as_tensor(list(order))]
    peak = maps.clamp(min=0).max().clamp(min=1e-8)
    return make_grid((maps.clamp(min=0) / peak)[:, None], pad=pad, pad_value=1.0)


def save_feature_grid(maps: torch.Tensor, path: str | Path, order: Sequence[int] | None = None, cmap: str = "viridis") -> Path:
    """Write the feature maps of one example: (C, H, W) as a colour-mapped grid, (C, T) as traces."""
    if maps.dim() == 2:
        return save_traces(maps, path, order)
    if maps.dim() != 3:
        raise ValueError(f"expected (C, H, W) or (C, T) maps of one example, got {tuple(maps.shape)}")
    return save_image(feature_grid(maps, order)[0], path, cmap=cmap)


def _figure_to(fig, path: str | Path) -> Path:  # type: ignore[no-untyped-def]
    import matplotlib.pyplot as plt

    try:
        return atomic_write(path, lambda p: fig.savefig(p, format="png", dpi=100, bbox_inches="tight"))
    finally:
        plt.close(fig)


def _pyplot():  # type: ignore[no-untyped-def]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_traces(maps: torch.Tensor, path: str | Path, order: Sequence[int] | None = None, max_channels: int = 32) -> Path:
    """1-D feature maps (C, T) as stacked traces, one per channel, on a shared scale."""
    plt = _pyplot()
    maps = maps.detach().float().cpu()
    idx = list(order) if order is not None else list(range(maps.shape[0]))
    idx = idx[:max_channels]
    peak = float(maps[idx].abs().max().clamp(min=1e-8))
    fig, ax = plt.subplots(figsize=(8, 0.35 * len(idx) + 1))
    for row, c in enumerate(idx):
        ax.plot(maps[c].numpy() / peak * 0.45 - row, lw=0.8)
    ax.set_yticks([-r for r in range(len(idx))], [str(c) for c in idx], fontsize=6)
    ax.set_xlabel("time step")
    ax.set_ylabel("channel")
    return _figure_to(fig, path)


def save_silent_by_depth(rows: Sequence, path: str | Path) -> Path:  # rows: SilentRow
    """Plot the share of silent channels per layer against depth (shallowest on the left)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(max(5, 0.3 * len(rows) + 2), 3.5))
    ax.bar(range(len(rows)), [100 * r.share for r in rows], color="tab:gray")
    ax.set_xticks(range(len(rows)), [r.layer for r in rows], rotation=90, fontsize=6)
    ax.set_ylabel("silent channels (%)")
    ax.set_ylim(0, 100)
    ax.set_title("channels that never activate, by depth")
    return _figure_to(fig, path)


def save_atlas(images: torch.Tensor, path: str | Path, nrow: int | None = None) -> Path:
    """Write filter-visualisation images (K, C, H, W) as one grid; (K, C, T) are drawn as traces."""
    if images.dim() == 3:
        return save_traces(images.mean(dim=1) - 0.5, path)
    return save_image(make_grid(images, nrow=nrow, pad=2, pad_value=1.0), path, cmap="gray")
