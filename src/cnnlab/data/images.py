"""Image files -> uint8 tensors, one policy for training folders and for predict/explain inputs.

Policy (the README's Data section says the same):
- Decoding: Pillow, with its decompression-bomb limit left on; EXIF orientation is applied.
- Colour: images become RGB, or 1-channel L when asked for ``in_channels=1``. Transparent images
  (RGBA, LA, palette with transparency) are composited on white, because most transparent images are
  drawn for a white page (a dropped alpha channel shows whatever colour hid under it). 16-bit images
  (I;16, I) are scaled by 255/65535 (a 16-bit white stays white; nothing is clipped). CMYK, YCbCr,
  palette and 1-bit images go through Pillow's conversion.
- Size: the shorter side is resized to cover the target (bilinear, antialiased) and the centre is
  cropped, so nothing is distorted. JPEGs are decoded at a reduced DCT scale first when they are at
  least twice the target size (much faster, same result to within rounding).
- Unreadable or truncated files are skipped with one warning naming each of them, or raise a
  CnnlabError naming the file with ``strict=True``.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from cnnlab.errors import CnnlabError

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"})
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
DEFAULT_MAX_SIZE = 128  # default folder image size: the median shorter side, but no more than this
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


class DataWarning(UserWarning):
    """Something in the data was skipped or changed; the message names the files."""


def is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def find_images(folder: Path) -> list[Path]:
    """Image files under ``folder``, recursively, sorted; hidden files and folders are ignored."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        found.extend(Path(dirpath) / f for f in filenames if is_image(Path(f)))
    return sorted(found)


def probe(path: Path) -> tuple[tuple[int, int], str]:
    """((width, height), mode) from the file header only (no pixel decoding)."""
    with Image.open(path) as img:
        return img.size, img.mode


def _scale_16bit(img: Image.Image) -> Image.Image:
    """16-bit (or 32-bit integer) grayscale -> 8-bit L with 65535 -> 255 (Pillow's convert would clip)."""
    a = np.asarray(img).astype(np.int64).clip(0, 65535)
    return Image.fromarray(((a * 255 + 32767) // 65535).astype(np.uint8), "L")


def to_mode(img: Image.Image, channels: int) -> Image.Image:
    """Any Pillow image -> mode RGB (channels=3) or L (channels=1), by the policy in the module doc."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        img = _scale_16bit(img)
    elif img.mode == "F":
        img = Image.fromarray(np.asarray(img).clip(0, 255).round().astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in ("RGBA", "LA", "La", "RGBa", "PA"):
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba).convert("RGB")
    return img.convert("RGB" if channels == 3 else "L")


def fit(img: Image.Image, size: tuple[int, int]) -> Image.Image:
    """Resize so the image covers (height, width), then take the centre: one resample with a source box."""
    w, h = img.size
    th, tw = size
    scale = max(tw / w, th / h)
    cw, ch = min(w, tw / scale), min(h, th / scale)  # the source region that maps onto the target
    left, top = max(0.0, (w - cw) / 2), max(0.0, (h - ch) / 2)  # max/min: float rounding at the edges
    return img.resize((tw, th), Image.Resampling.BILINEAR, box=(left, top, left + cw, top + ch))


def _refuse_bomb(img: Image.Image) -> None:
    """Refuse images over Pillow's decompression-bomb limit: Pillow itself refuses only twice that and
    just warns (without naming the file) in between, then decodes them all the same."""
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and img.width * img.height > limit:
        raise Image.DecompressionBombError(
            f"{img.width}x{img.height} = {img.width * img.height:,} pixels is over the decompression-bomb limit of "
            f"{limit:,} (PIL.Image.MAX_IMAGE_PIXELS; raise it if the image is genuine)")


def read(path: Path, min_side: int) -> Image.Image:
    """Open and fully decode one file (the only step that meets broken files: DECODE_ERRORS)."""
    with Image.open(path) as img:
        _refuse_bomb(img)
        img.draft(None, (min_side, min_side))  # JPEG only: decode at 1/2, 1/4 or 1/8 scale, still >= min_side
        img.load()
        return ImageOps.exif_transpose(img)


FITS = ("resize", "crop")


def crop_on_grid(arr: np.ndarray, size: tuple[int, int], cell: int = 16) -> np.ndarray:
    """(C, H, W) -> (C, *size) without resampling, the way ``--input dct`` crops coefficients: the
    image is edge-extended to whole 16-px cells (as a JPEG encoder fills its last MCU), then the
    centred window of cells is cut out, with mid-grey (128, a zero DCT block) where it overhangs."""
    c, h, w = arr.shape
    rows, cols = -(-h // cell), -(-w // cell)
    arr = np.pad(arr, ((0, 0), (0, rows * cell - h), (0, cols * cell - w)), mode="edge")
    out = np.full((c, *size), 128, dtype=np.uint8)
    from cnnlab.dct.layout import centred_window

    (sy, dy, ny), (sx, dx, nx) = centred_window(rows, size[0] // cell), centred_window(cols, size[1] // cell)
    out[:, dy * cell:(dy + ny) * cell, dx * cell:(dx + nx) * cell] = \
        arr[:, sy * cell:(sy + ny) * cell, sx * cell:(sx + nx) * cell]
    return out


def to_array(img: Image.Image, size: tuple[int, int], channels: int, fit_mode: str = "resize") -> np.ndarray:
    """A decoded image -> uint8 (channels, H, W): colour policy, then cover-resize and centre crop
    ('resize'), or a centred crop on the 16-px grid without resampling ('crop', see crop_on_grid)."""
    if fit_mode == "crop":
        arr = np.asarray(to_mode(img, channels))
        return crop_on_grid(arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1), size)
    arr = np.asarray(fit(to_mode(img, channels), size))
    return arr[None] if arr.ndim == 2 else arr.transpose(2, 0, 1)


def decode(path: Path, size: tuple[int, int], channels: int) -> np.ndarray:
    """One file -> uint8 (channels, H, W) by the module's policy. Raises DECODE_ERRORS on broken files."""
    return to_array(read(path, max(size)), size, channels)


def _reason(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}".splitlines()[0]


def warn_skipped(skipped: Sequence[tuple[Path, str]], what: str = "unreadable image") -> None:
    """One warning line naming every skipped file and why (the first 20; the rest are counted)."""
    if not skipped:
        return
    shown = "; ".join(f"{path} ({reason})" for path, reason in skipped[:20])
    more = f"; and {len(skipped) - 20} more" if len(skipped) > 20 else ""
    warnings.warn(f"skipped {len(skipped)} {what} file(s): {shown}{more}", DataWarning, stacklevel=3)


def decode_many(paths: Sequence[Path], size: tuple[int, int], channels: int, strict: bool = False,
                workers: int | None = None, progress: bool = True, fit_mode: str = "resize"
                ) -> tuple[torch.Tensor, list[int], list[tuple[Path, str]]]:
    """Decode files in a thread pool (Pillow releases the GIL while decoding and resampling);
    ``fit_mode`` as in ``to_array``.

    Returns (uint8 (M, C, H, W), indices into ``paths`` of the M decoded files, [(path, reason)] skipped).
    With ``strict`` the first unreadable file raises a CnnlabError naming it.
    """
    def one(path: Path) -> np.ndarray | str:
        try:
            img = read(path, max(size) if fit_mode == "resize" else 1 << 30)  # crop: full resolution
        except DECODE_ERRORS as exc:
            if strict:
                raise CnnlabError(f"cannot read image {path}: {_reason(exc)}; fix or delete the file "
                                  "(without strict, unreadable files are skipped with a warning)") from None
            return _reason(exc)
        return to_array(img, size, channels, fit_mode)

    workers = workers or min(8, os.cpu_count() or 1)
    out = np.empty((len(paths), channels, *size), dtype=np.uint8)
    kept, skipped = [], []
    with ThreadPoolExecutor(max_workers=workers) as pool, _progress(len(paths), progress) as advance:
        for i, result in enumerate(pool.map(one, paths)):
            if isinstance(result, str):
                skipped.append((paths[i], result))
            else:
                out[len(kept)] = result
                kept.append(i)
            advance()
    return torch.from_numpy(out[: len(kept)]), kept, skipped


class _progress:
    """A rich progress bar on stderr for loads long enough to wait for; a no-op otherwise."""

    MIN_FILES = 300

    def __init__(self, total: int, enabled: bool, label: str = "decoding images") -> None:
        self.total, self.enabled, self.label = total, enabled and total >= self.MIN_FILES, label

    def __enter__(self):  # type: ignore[no-untyped-def]
        if not self.enabled:
            return lambda: None
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

        self.bar = Progress(TextColumn(self.label), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                            console=Console(stderr=True), transient=True)
        self.bar.__enter__()
        task = self.bar.add_task("decode", total=self.total)
        return lambda: self.bar.advance(task)

    def __exit__(self, *exc: object) -> None:
        if self.enabled:
            self.bar.__exit__(*exc)


def default_size(shapes: Iterable[tuple[int, int]]) -> tuple[int, int]:
    """The default square size for a set of (width, height): the median shorter side, capped at
    DEFAULT_MAX_SIZE (large photos train slowly on a CPU), at least 8."""
    sides = sorted(min(w, h) for w, h in shapes)
    side = sides[len(sides) // 2] if sides else DEFAULT_MAX_SIZE
    side = max(8, min(DEFAULT_MAX_SIZE, side))
    return side, side


def probe_many(paths: Sequence[Path], strict: bool) -> tuple[list[int], list[tuple[int, int]], list[str], list[tuple[Path, str]]]:
    """Headers of every file, read in a thread pool: (indices readable, sizes, modes, skipped (path, reason))."""
    def one(path: Path) -> tuple[tuple[int, int], str] | str:
        try:
            return probe(path)
        except DECODE_ERRORS as exc:
            if strict:
                raise CnnlabError(f"cannot read image {path}: {_reason(exc)}; fix or delete the file") from None
            return _reason(exc)

    kept, sizes, modes, skipped = [], [], [], []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for i, result in enumerate(pool.map(one, paths)):
            if isinstance(result, str):
                skipped.append((paths[i], result))
            else:
                kept.append(i)
                sizes.append(result[0])
                modes.append(result[1])
    return kept, sizes, modes, skipped


def _expand(paths: Iterable[str | os.PathLike]) -> list[Path]:
    from cnnlab.files import expand_inputs

    return expand_inputs(paths, find_images, "images", ", ".join(sorted(IMAGE_EXTENSIONS)))


def load_images(paths: Iterable[str | os.PathLike], image_size: int | tuple[int, int] | None = None,
                in_channels: int = 3, strict: bool = False, fit_mode: str = "resize"
                ) -> tuple[torch.Tensor, list[Path]]:
    """Files and folders (searched recursively for image extensions) -> (uint8 (N, C, H, W), paths).

    Same decoding, colour and resize policy as training folders; ``image_size=None`` picks the same
    default (median shorter side, capped). Unreadable files are skipped with a warning (and left out of
    the returned paths) or raise with ``strict``.
    """
    if in_channels not in (1, 3):
        raise CnnlabError(f"in_channels must be 1 or 3 for images, got {in_channels}")
    files = _expand(paths)
    if image_size is None:
        kept, sizes, _, _ = probe_many(files, strict)
        size = default_size(sizes)
    else:
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
    x, kept, skipped = decode_many(files, size, in_channels, strict=strict, fit_mode=fit_mode)
    if not kept:  # the error alone names the file: a warning listing the same files would repeat it
        raise CnnlabError(f"none of the {len(files)} input image(s) could be read (first: {skipped[0][0]}: "
                          f"{skipped[0][1]}); pass image files Pillow can open ({', '.join(sorted(IMAGE_EXTENSIONS))})")
    warn_skipped(skipped)
    return x, [files[i] for i in kept]
