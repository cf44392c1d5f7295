"""cnnlab.data.degrade: Pillow bicubic resizing of uint8 tensors, the SR papers' LR images, the baseline."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.degrade import bicubic_resize, downscale, upscale
from cnnlab.errors import CnnlabError


def _rand_u8(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.from_numpy(np.random.default_rng(seed).integers(0, 256, size=shape, dtype=np.uint8))


@pytest.mark.parametrize("channels", [1, 3])
def test_shapes_single_and_batch(channels: int) -> None:
    one = _rand_u8(channels, 21, 34)
    out = bicubic_resize(one, (10, 15))
    assert out.shape == (channels, 10, 15) and out.dtype == torch.uint8
    batch = _rand_u8(3, channels, 21, 34, seed=1)
    out = bicubic_resize(batch, (40, 50))
    assert out.shape == (3, channels, 40, 50) and out.dtype == torch.uint8
    # a batch is its images resized one by one
    for i in range(3):
        assert torch.equal(out[i], bicubic_resize(batch[i], (40, 50)))
    assert bicubic_resize(one, 7).shape == (channels, 7, 7)


def test_downscale_crops_then_divides_and_upscale_multiplies() -> None:
    hr = _rand_u8(2, 3, 38, 45)
    hr_c, lr = downscale(hr, 4)
    assert hr_c.shape == (2, 3, 36, 44) and torch.equal(hr_c, hr[..., :36, :44])
    assert lr.shape == (2, 3, 9, 11)
    assert upscale(lr, 4).shape == hr_c.shape
    hr1, lr1 = downscale(hr[0, :1], 3)  # single gray image
    assert hr1.shape == (1, 36, 45) and lr1.shape == (1, 12, 15)
    assert upscale(lr1, 3).shape == (1, 36, 45)


@pytest.mark.parametrize("channels", [1, 3])
def test_constant_image_stays_constant(channels: int) -> None:
    x = torch.full((channels, 24, 30), 137, dtype=torch.uint8)
    _, lr = downscale(x, 3)
    assert (lr == 137).all()
    assert (upscale(lr, 3) == 137).all()


def test_downscale_undoes_nearest_upsampling() -> None:
    rng = np.random.default_rng(2)
    small = rng.integers(0, 256, size=(3, 16, 20), dtype=np.uint8)
    big = torch.from_numpy(small.repeat(2, axis=1).repeat(2, axis=2))
    _, lr = downscale(big, 2)
    assert lr.shape == small.shape
    err = (lr.int() - torch.from_numpy(small).int()).abs().float().mean().item()
    # Antialiased bicubic at x2 keeps ~3/4 of each pixel and mixes in its neighbours, so on white noise the
    # error is ~17 levels; a misaligned (one-pixel shifted) result would be ~85 and a blur of it ~64.
    assert err < 25
    shifted = (lr.int() - torch.from_numpy(np.roll(small, 1, axis=1)).int()).abs().float().mean().item()
    assert shifted > 3 * err
    # on a smooth image the same round trip is nearly exact
    yy, xx = np.mgrid[0:16, 0:20]
    smooth = (128 + 60 * np.sin(xx / 4.0) * np.cos(yy / 5.0)).round().astype(np.uint8)[None]
    _, lr = downscale(torch.from_numpy(smooth.repeat(2, axis=1).repeat(2, axis=2)), 2)
    assert (lr.int() - torch.from_numpy(smooth).int()).abs().float().mean().item() < 2


def test_equals_pillow_by_hand() -> None:
    x = _rand_u8(3, 37, 41, seed=4)
    img = Image.fromarray(x.permute(1, 2, 0).numpy())
    for h, w in [(12, 13), (80, 61)]:  # down (antialiased) and up
        want = np.asarray(img.resize((w, h), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
        assert np.array_equal(bicubic_resize(x, (h, w)).numpy(), want)
    gray = _rand_u8(1, 37, 41, seed=5)
    want = np.asarray(Image.fromarray(gray[0].numpy()).resize((14, 9), Image.Resampling.BICUBIC))
    assert np.array_equal(bicubic_resize(gray, (9, 14))[0].numpy(), want)
    _, lr = downscale(x, 3)
    want = np.asarray(img.crop((0, 0, 39, 36)).resize((13, 12), Image.Resampling.BICUBIC)).transpose(2, 0, 1)
    assert np.array_equal(lr.numpy(), want)


def test_rejects_float_and_bad_shapes() -> None:
    with pytest.raises(CnnlabError, match="uint8"):
        bicubic_resize(torch.rand(3, 8, 8), (4, 4))
    with pytest.raises(CnnlabError, match=r"\(C, H, W\)"):
        bicubic_resize(_rand_u8(8, 8), (4, 4))
    with pytest.raises(CnnlabError, match="scale"):
        downscale(_rand_u8(3, 8, 8), 0)
    with pytest.raises(CnnlabError, match="smaller than the scale"):
        downscale(_rand_u8(3, 3, 8), 4)
