"""Tiled inference: run an image-to-image model on a large image one overlapping tile at a time.

A fully convolutional model's output pixel depends only on the input pixels within its receptive-field
radius r. Cut the image into tiles, give each tile ``overlap`` >= r pixels of context on every side
(less at the image border, where the whole image has no more context either), and keep only each
output's centre: the stitched result is the whole-image result (to floating-point rounding; the conv
backends may sum in a different order for different sizes), while the memory of one call is bounded by
the tile size. No blending is needed when the context is large enough; with too little context the
seams show, which is the signal to raise ``overlap``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from cnnlab.errors import CnnlabError


def _starts(size: int, tile: int) -> range:
    """Start of each tile centre along one axis; the last one is shorter when size % tile != 0."""
    return range(0, size, tile)


def tiled(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, tile: int, overlap: int,
          scale: int = 1) -> torch.Tensor:
    """``fn(x)`` for (N, C, H, W) ``x``, computed tile by tile and stitched.

    ``fn`` maps (N, C, h, w) to (N, C', scale h, scale w) (a model, for example). Each ``tile`` x ``tile``
    centre (smaller at the right and bottom edges when H or W is not a multiple) is run with ``overlap``
    pixels of context on each side that exists, and only the centre's output is kept. When ``tile`` covers
    both H and W this is one call, ``fn(x)``. Gradient mode is the caller's: wrap the call in
    ``torch.no_grad()`` (as inference does) or the autograd graph keeps every tile's activations alive.
    """
    if x.ndim != 4:
        raise CnnlabError(f"tiled takes an (N, C, H, W) batch, got shape {tuple(x.shape)}")
    if tile < 1 or overlap < 0 or scale < 1:
        raise CnnlabError(f"need tile >= 1, overlap >= 0 and scale >= 1, got tile={tile}, overlap={overlap}, "
                          f"scale={scale}")
    h, w = x.shape[-2:]
    if (tile >= h and tile >= w) or h == 0 or w == 0:
        return fn(x)
    out: torch.Tensor | None = None
    for y0 in _starts(h, tile):
        y1 = min(y0 + tile, h)
        a0, a1 = max(0, y0 - overlap), min(h, y1 + overlap)
        for x0 in _starts(w, tile):
            x1 = min(x0 + tile, w)
            b0, b1 = max(0, x0 - overlap), min(w, x1 + overlap)
            piece = fn(x[..., a0:a1, b0:b1])
            want = (x.shape[0], (a1 - a0) * scale, (b1 - b0) * scale)
            if piece.ndim != 4 or (piece.shape[0], *piece.shape[-2:]) != want:
                raise CnnlabError(f"fn turned a tile of {tuple(x[..., a0:a1, b0:b1].shape)} into "
                                  f"{tuple(piece.shape)}; tiled needs (N, C', {scale} h, {scale} w) "
                                  f"(is scale={scale} right?)")
            if out is None:
                out = piece.new_empty((x.shape[0], piece.shape[1], h * scale, w * scale))
            out[..., y0 * scale: y1 * scale, x0 * scale: x1 * scale] = piece[
                ..., (y0 - a0) * scale: (y1 - a0) * scale, (x0 - b0) * scale: (x1 - b0) * scale]
    assert out is not None  # h, w >= 1 here, so at least one tile ran
    return out


__all__ = ["tiled"]
