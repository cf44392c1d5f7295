"""Rendering for explain: grids tile exactly, PNGs are written atomically, 1-D layers become traces."""

from __future__ import annotations

from pathlib import Path

import torch
from PIL import Image

from cnnlab.render.grids import feature_grid, make_grid, save_atlas, save_feature_grid, save_image
from cnnlab.render.overlays import overlay, save_overlay


def test_make_grid_places_every_tile() -> None:
    images = torch.arange(5, dtype=torch.float32).reshape(5, 1, 1, 1).expand(5, 1, 3, 4) / 4
    grid = make_grid(images, nrow=3, pad=1, pad_value=-1.0)
    assert grid.shape == (1, 2 * 4 + 1, 3 * 5 + 1)
    assert grid[0, 1, 1] == 0.0 and grid[0, 1, 6] == 0.25 and grid[0, 5, 6] == 1.0
    assert grid[0, 0].eq(-1).all() and grid[0, 5, 11] == -1  # padding, and the empty sixth cell


def test_feature_grid_keeps_silent_channels_black() -> None:
    maps = torch.zeros(4, 5, 5)
    maps[1] = 2.0
    maps[2] = -3.0  # negative: silent, shown as 0, not stretched
    grid = feature_grid(maps, pad=0)
    assert grid.max() == 1.0 and grid.min() == 0.0
    assert grid[0, :5, 5:10].eq(1).all() and grid[0, 5:, :5].eq(0).all()


def test_pngs_are_written_atomically_and_enlarged(tmp_path: Path) -> None:
    path = save_image(torch.rand(3, 8, 8), tmp_path / "a" / "x.png")
    assert Image.open(path).size == (256, 256)  # nearest-neighbour x32 so the pixels stay visible
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["x.png"]
    assert Image.open(save_feature_grid(torch.rand(6, 4, 4), tmp_path / "g.png")).mode == "RGB"
    assert save_atlas(torch.rand(4, 1, 8, 8), tmp_path / "atlas.png").exists()


def test_one_d_layers_and_signals_become_plots(tmp_path: Path) -> None:
    traces = save_feature_grid(torch.randn(5, 100), tmp_path / "traces.png")
    signal = save_overlay(torch.randn(1, 200), torch.rand(200), tmp_path / "signal.png")
    atlas = save_atlas(torch.rand(3, 1, 64), tmp_path / "atlas1d.png")
    for path in (traces, signal, atlas):
        assert Image.open(path).size[0] > 100


def test_overlay_blends_heat_over_image() -> None:
    image = torch.zeros(1, 4, 4)  # grey-scale input is shown as RGB
    heat = torch.zeros(4, 4)
    heat[0, 0] = 1.0
    out = overlay(image, heat, alpha=1.0, cmap="gray")
    assert out.shape == (3, 4, 4)
    assert out[:, 0, 0].eq(1).all() and out[:, 3, 3].eq(0).all()


def test_an_all_zero_map_is_said_in_words_not_drawn_as_a_flat_tint(tmp_path: Path) -> None:
    """Issue 17: a Grad-CAM that is zero everywhere was drawn as a uniform blue tint, which reads as
    'everything matters equally'. On a mid-grey image the old figure's darkest pixel was that tint
    (64 of 255); the note's black text is darker, and a map with heat gets no note."""
    import numpy as np

    grey = torch.full((3, 16, 16), 0.5)
    empty = np.asarray(Image.open(save_overlay(grey, torch.zeros(16, 16), tmp_path / "empty.png")))
    heat = torch.zeros(16, 16)
    heat[4:8, 4:8] = 1.0
    drawn = np.asarray(Image.open(save_overlay(grey, heat, tmp_path / "heat.png")))
    assert drawn.min() > 30 and empty.min() < 30  # black text...
    assert empty.shape[1] == drawn.shape[1] and empty.shape[0] > drawn.shape[0]  # ...on a band under the panels
    f = drawn.shape[1] // 38  # the 2 x (16 px + padding) grid, enlarged f times
    right = empty[2 * f : 18 * f, 20 * f : 36 * f].reshape(-1, 3)
    assert (right == right[0]).all() and right[0].min() > 180  # washed out, no colour-mapped tint
