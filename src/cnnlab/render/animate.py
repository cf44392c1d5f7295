"""Sliding-window animations (GIF) of a conv, pool or transposed conv over its padded input.

Each frame shows the padded input (padding cells grey, inserted zeros of a transposed conv blue),
the kernel, and the output filling in cell by cell, with the worked sum of the current cell as the
caption. Frames are drawn with Pillow directly (no matplotlib): exact cell grids, small and fast.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from cnnlab.errors import CnnlabError
from cnnlab.files import atomic_write

CELL = 34  # px per grid cell
MARGIN = 16
MAX_CELLS = 32  # per side: larger grids make unreadable frames
MAX_FRAMES = 400

REAL, PAD, INSERTED = 0, 1, 2
FILL = {REAL: (255, 255, 255), PAD: (222, 222, 222), INSERTED: (214, 228, 250)}
WINDOW = (255, 196, 120)
CURRENT = (255, 150, 60)
INK = (20, 20, 20)
MUTED = (120, 120, 120)


@dataclass(frozen=True)
class Scene:
    """What to draw: the padded grid with cell kinds, the kernel, the output and each step's taps."""

    grid: np.ndarray  # (Hp, Wp) padded input values
    kinds: np.ndarray  # (Hp, Wp) REAL / PAD / INSERTED
    kernel: np.ndarray | None  # (kh, kw), None for pooling
    output: np.ndarray  # (H', W')
    taps: Callable[[int, int], list[tuple[int, int]]]  # output cell -> padded-input cells it reads
    caption: Callable[[int, int], str]  # output cell -> worked sum
    title: str


def _font(size: int) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    return ImageFont.load_default(size=size)


def _grid_text(v: float) -> str:
    from cnnlab.ops.explain import fmt

    return "" if not np.isfinite(v) else fmt(v)


def _draw_grid(draw: ImageDraw.ImageDraw, top: int, left: int, values: np.ndarray, fills: dict, label: str,
               font: Any, hidden: set | None = None) -> None:
    draw.text((left, top - 18), label, fill=MUTED, font=font)
    for (r, c), v in np.ndenumerate(values):
        box = (left + c * CELL, top + r * CELL, left + (c + 1) * CELL, top + (r + 1) * CELL)
        draw.rectangle(box, fill=fills.get((r, c), (255, 255, 255)), outline=(160, 160, 160))
        if hidden is None or (r, c) not in hidden:
            text = _grid_text(float(v))
            w = draw.textlength(text, font=font)
            draw.text((box[0] + (CELL - w) / 2, box[1] + CELL / 2 - 7), text, fill=INK, font=font)


def render_frames(scene: Scene) -> list[Image.Image]:
    """One RGB frame per output cell, in row-major order."""
    hp, wp = scene.grid.shape
    ho, wo = scene.output.shape
    if max(hp, wp, ho, wo) > MAX_CELLS or ho * wo > MAX_FRAMES:
        raise CnnlabError(f"a {hp}x{wp} padded input with a {ho}x{wo} output is too large to animate; "
                          f"use inputs up to {MAX_CELLS}x{MAX_CELLS} cells (and at most {MAX_FRAMES} output cells)")
    font, small = _font(13), _font(12)
    kh, kw = scene.kernel.shape if scene.kernel is not None else (0, 0)
    panels = [(wp, "padded input"), (kw, "kernel"), (wo, "output")] if kw else [(wp, "padded input"), (wo, "output")]
    width = max(MARGIN * (len(panels) + 1) + CELL * sum(w for w, _ in panels) + 24 * (len(panels) - 1), 520)
    chars = max(30, int((width - 2 * MARGIN) / 7.2))
    grid_h = CELL * max(hp, kh, ho)
    height = 40 + 22 + grid_h + 20 + 18 * 4 + MARGIN
    base_fill = {(r, c): FILL[int(k)] for (r, c), k in np.ndenumerate(scene.kinds)}
    frames = []
    for i in range(ho):
        for j in range(wo):
            img = Image.new("RGB", (width, height), (255, 255, 255))
            draw = ImageDraw.Draw(img)
            draw.text((MARGIN, 10), scene.title, fill=INK, font=font)
            top, left = 62, MARGIN
            fills = dict(base_fill)
            fills.update({t: WINDOW for t in scene.taps(i, j)})
            _draw_grid(draw, top, left, scene.grid, fills, "padded input", small)
            left += CELL * wp + 24 + MARGIN
            if scene.kernel is not None:
                _draw_grid(draw, top, left, scene.kernel, {}, "kernel", small)
                left += CELL * kw + 24 + MARGIN
            done = {(r, c) for r in range(ho) for c in range(wo) if (r, c) > (i, j)}
            _draw_grid(draw, top, left, scene.output, {(i, j): CURRENT}, "output", small, hidden=done)
            # the bundled font has no multiplication sign
            caption = textwrap.wrap(scene.caption(i, j).replace("×", "*"), chars)
            if len(caption) > 4:
                caption = [*caption[:3], caption[3][: chars - 3] + "..."]
            for n, line in enumerate(caption):
                draw.text((MARGIN, top + grid_h + 20 + 18 * n), line, fill=INK, font=small)
            frames.append(img)
    return frames


def save_gif(frames: list[Image.Image], path: str | Path, fps: float = 2.0) -> Path:
    """Write frames as a looping GIF, atomically (:func:`cnnlab.files.atomic_write`)."""
    path = Path(path)
    if not path.parent.is_dir():
        raise CnnlabError(f"folder {str(path.parent)!r} does not exist; create it or choose another -o path")
    if fps <= 0:
        raise CnnlabError(f"fps must be positive, got {fps}")
    return atomic_write(path, lambda p: frames[0].save(p, format="GIF", save_all=True, append_images=frames[1:],
                                                       duration=int(1000 / fps), loop=0))


def _plain_2d(a: Any, name: str) -> np.ndarray:
    arr = np.asarray(a, dtype=np.float64)
    arr = arr.reshape(arr.shape[-2:]) if arr.ndim > 2 and all(s == 1 for s in arr.shape[:-2]) else arr
    if arr.ndim == 1:
        arr = arr[None]
    if arr.ndim != 2:
        raise CnnlabError(f"animate draws one 2-D channel but the {name} has shape {arr.shape}; "
                          f"give an (H, W) {name}")
    return arr


def _kinds(shape: tuple[int, int], pads: Any) -> np.ndarray:
    (t, b), (l, r) = pads
    kinds = np.full(shape, PAD)
    kinds[t: shape[0] - b, l: shape[1] - r] = REAL
    return kinds


def conv_scene(x: Any, w: Any, stride: Any = 1, padding: Any = 0, dilation: Any = 1) -> Scene:
    """A 2-D convolution of one channel."""
    from cnnlab.ops import conv2d
    from cnnlab.ops.conv import pad, resolve_padding
    from cnnlab.ops.explain import explain_conv
    from cnnlab.ops.shape import as_tuple

    x2, w2 = _plain_2d(x, "input"), _plain_2d(w, "kernel")
    s, d = as_tuple(stride, 2, "stride", 1), as_tuple(dilation, 2, "dilation", 1)
    pads = resolve_padding(padding, w2.shape, s, d)
    out = conv2d(x2, w2, s, pads, d)
    grid = pad(x2[None, None], pads)[0, 0]
    return Scene(grid, _kinds(grid.shape, pads), w2, out, _taps(w2.shape, s, d),
                 lambda i, j: explain_conv(x2, w2, (i, j), s, pads, d).text(),
                 f"conv2d: stride {_txt(s)}, padding {_txt(padding)}, dilation {_txt(d)}")


def pool_scene(x: Any, size: Any, stride: Any = None, padding: Any = 0, mode: str = "max",
               dilation: Any = 1) -> Scene:
    """A 2-D max/min/avg pooling of one channel (padding cells drawn empty for max/min: they never win)."""
    from cnnlab.ops import pool2d
    from cnnlab.ops.conv import pad
    from cnnlab.ops.explain import explain_pool
    from cnnlab.ops.pool import _pool_pads
    from cnnlab.ops.shape import as_tuple

    x2 = _plain_2d(x, "input")
    k = as_tuple(size, 2, "size", 1)
    s = k if stride is None else as_tuple(stride, 2, "stride", 1)
    d = as_tuple(dilation, 2, "dilation", 1)
    pads = _pool_pads(padding, 2)
    out = pool2d(x2, k, s, pads, mode, d)
    grid = pad(x2[None, None], pads, {"max": -np.inf, "min": np.inf}.get(mode, 0.0))[0, 0]
    return Scene(grid, _kinds(grid.shape, pads), None, out, _taps(k, s, d),
                 lambda i, j: explain_pool(x2, k, (i, j), s, pads, mode, d).text(),
                 f"{mode} pool {k[0]}x{k[1]}: stride {_txt(s)}, padding {_txt(padding)}")


def transpose_scene(x: Any, w: Any, stride: Any = 1, padding: Any = 0, output_padding: Any = 0,
                    dilation: Any = 1) -> Scene:
    """A transposed conv drawn as the lecture's construction: a stride-1 conv over the zero-inserted input."""
    from cnnlab.ops.conv_transpose import pad_or_crop, transpose_steps
    from cnnlab.ops.explain import explain_transpose
    from cnnlab.ops.shape import as_tuple

    x2, w2 = _plain_2d(x, "input"), _plain_2d(w, "kernel")
    s, d = as_tuple(stride, 2, "stride", 1), as_tuple(dilation, 2, "dilation", 1)
    steps = transpose_steps(x2, w2, s, padding, output_padding, d)
    # where each padded cell came from: the same pad-or-crop applied to a mask (0 pad, 1 input, 2 inserted zero)
    mask = np.full(steps.zero_inserted.shape, 2.0)
    mask[:: s[0], :: s[1]] = 1.0
    op = as_tuple(output_padding, 2, "output_padding", 0)
    (p0, p1) = steps.p_prime
    mask = pad_or_crop(mask[None, None], ((p0, p0 + op[0]), (p1, p1 + op[1])))[0, 0]
    kinds = np.choose(mask.astype(int), [PAD, REAL, INSERTED])
    return Scene(steps.padded, kinds, steps.kernel, steps.output, _taps(steps.kernel.shape, (1, 1), d),
                 lambda i, j: explain_transpose(x2, w2, (i, j), s, padding, output_padding, d).worked.text(),
                 f"transposed conv as stride-1 conv: z = {_txt(tuple(v - 1 for v in s))}, "
                 f"p' = {_txt(steps.p_prime)}, flipped kernel")


def _taps(k: tuple[int, ...], s: tuple[int, ...], d: tuple[int, ...]) -> Callable[[int, int], list[tuple[int, int]]]:
    return lambda i, j: [(i * s[0] + a * d[0], j * s[1] + b * d[1]) for a in range(k[0]) for b in range(k[1])]


def _txt(v: Any) -> str:
    if isinstance(v, tuple | list) and len(set(map(str, v))) == 1:
        v = v[0]
    if isinstance(v, tuple | list):
        return ",".join(_txt(i) for i in v)
    return str(v)


def animate(kind: str, x: Any, w: Any = None, path: str | Path = "ops.gif", fps: float = 2.0, **params: Any) -> Path:
    """Draw ``kind`` ('conv', 'pool' or 'transpose') step by step into a GIF at ``path``; returns the path.

    ``params`` are the op's own arguments (stride, padding, dilation, size, mode, output_padding).
    """
    builders = {"conv": conv_scene, "pool": pool_scene, "transpose": transpose_scene}
    if kind not in builders:
        from cnnlab.errors import unknown

        raise unknown("animation", kind, builders)
    scene = builders[kind](x, **params) if kind == "pool" else builders[kind](x, w, **params)
    return save_gif(render_frames(scene), path, fps)
