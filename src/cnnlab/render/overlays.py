"""Heat maps (CAMs) laid over their images or signals."""

from __future__ import annotations

from pathlib import Path

import torch

from cnnlab.render.grids import _figure_to, _pyplot, colorize, make_grid, save_image


def overlay(image: torch.Tensor, cam: torch.Tensor, alpha: float = 0.5, cmap: str = "jet") -> torch.Tensor:
    """Blend a (H, W) map in [0, 1], colour-mapped, over a (C, H, W) image in [0, 1]: (3, H, W)."""
    image = image.detach().float().cpu()
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    elif image.shape[0] != 3:
        image = image[:3] if image.shape[0] > 3 else image.mean(dim=0, keepdim=True).expand(3, -1, -1)
    return ((1 - alpha) * image + alpha * colorize(cam, cmap)).clamp(0, 1)


# A map that is zero everywhere would be drawn as one flat tint, which reads as "everything matters
# equally"; it is said in words instead.
EMPTY_MAP_NOTE = "map is zero everywhere: nothing at this layer raises the target's score"


def save_overlay(image: torch.Tensor, cam: torch.Tensor, path: str | Path, alpha: float = 0.5, cmap: str = "jet") -> Path:
    """Write image | heat map over image, side by side; a 1-D signal (C, T) gets a shaded plot.
    An all-zero map gets the image washed out instead of a flat tint, and ``EMPTY_MAP_NOTE`` under it."""
    empty = not bool(cam.detach().any())
    if image.dim() == 2:
        return save_signal_overlay(image, cam, path, cmap, title=EMPTY_MAP_NOTE if empty else "")
    plain = overlay(image, torch.zeros_like(cam), alpha=0.0)
    right = 0.4 * plain + 0.6 if empty else overlay(image, cam, alpha, cmap)
    return save_image(make_grid(torch.stack([plain, right]), nrow=2, pad=2, pad_value=1.0), path, min_side=512,
                      caption=EMPTY_MAP_NOTE if empty else None)


def save_signal_overlay(signal: torch.Tensor, cam: torch.Tensor, path: str | Path, cmap: str = "jet", title: str = "") -> Path:
    """A 1-D signal (C, T) with its (T,) map as a coloured band underneath."""
    plt = _pyplot()
    signal = signal.detach().float().cpu()
    fig, ax = plt.subplots(figsize=(8, 2.5))
    lo, hi = float(signal.min()), float(signal.max())
    ax.imshow(cam.detach().float().cpu()[None].numpy(), aspect="auto", cmap=cmap, vmin=0, vmax=1,
              extent=(0, signal.shape[-1], lo, hi), alpha=0.6)
    for channel in signal:
        ax.plot(channel.numpy(), color="black", lw=0.6)
    ax.set_xlabel("time step")
    ax.set_title(title)
    return _figure_to(fig, path)


def palette(num_classes: int) -> torch.Tensor:
    """(K, 3) distinct colours in [0, 1] (matplotlib's tab20, repeated past 20 classes)."""
    import matplotlib

    colours = matplotlib.colormaps["tab20"](range(20))[:, :3]
    return torch.from_numpy(colours[[i % 20 for i in range(num_classes)]]).float()


def mask_overlay(image: torch.Tensor, mask: torch.Tensor, num_classes: int, alpha: float = 0.5) -> torch.Tensor:
    """A (C, H, W) image in [0, 1] with its (H, W) class mask blended over it in class colours: (3, H, W).
    Pixels outside 0..K-1 (void) are left uncoloured."""
    image = image.detach().float().cpu()
    image = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    mask = mask.detach().long().cpu()
    valid = (mask >= 0) & (mask < num_classes)
    colours = palette(num_classes)[mask.clamp(0, num_classes - 1)].permute(2, 0, 1)  # (3, H, W)
    blended = (1 - alpha) * image + alpha * colours
    return torch.where(valid[None], blended, image).clamp(0, 1)


def save_mask_png(mask: torch.Tensor, path: str | Path) -> Path:
    """A (H, W) class-index mask as a single-channel 8-bit PNG (values are the class indices)."""
    import numpy as np
    from PIL import Image

    from cnnlab.files import atomic_write

    array = mask.detach().cpu().numpy().astype(np.uint8)
    return atomic_write(Path(path), lambda p: Image.fromarray(array, mode="L").save(p, format="PNG"))


def save_rgb_png(image: torch.Tensor, path: str | Path) -> Path:
    """A (C, H, W) image in [0, 1] as an 8-bit PNG at its own size (no enlarging)."""
    import numpy as np
    from PIL import Image

    from cnnlab.files import atomic_write

    array = (image.detach().float().cpu().clamp(0, 1) * 255).round().to(torch.uint8).numpy()
    pil = Image.fromarray(array[0], "L") if array.shape[0] == 1 else Image.fromarray(np.ascontiguousarray(array.transpose(1, 2, 0)), "RGB")
    return atomic_write(Path(path), lambda p: pil.save(p, format="PNG"))


def save_legend(names: list[str], path: str | Path) -> Path:
    """One coloured swatch per class name, in the colours of ``mask_overlay``."""
    plt = _pyplot()
    colours = palette(len(names)).numpy()
    fig, ax = plt.subplots(figsize=(min(1.6 * len(names), 14), 0.45))
    for i, (name, colour) in enumerate(zip(names, colours, strict=True)):
        ax.add_patch(plt.Rectangle((i, 0), 0.3, 1, color=colour))
        ax.text(i + 0.35, 0.5, name, va="center", fontsize=8)
    ax.set_xlim(0, len(names))
    ax.set_ylim(0, 1)
    ax.axis("off")
    return _figure_to(fig, path)
