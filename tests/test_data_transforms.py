"""Batched paired augmentation: one parameter draw per example, image and mask stay aligned."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.transforms import (
    IGNORE_INDEX,
    Compose,
    HorizontalFlip,
    RandomCrop,
    RandomResizedCrop,
    default_augmentation,
    to_float,
)

N, H, W = 64, 20, 24


def _coordinate_batch() -> tuple[torch.Tensor, torch.Tensor]:
    """Images whose pixels spell their own (row, column) and a marker channel; masks = 1000 + row * W + column
    (offset so that no real label equals IGNORE_INDEX)."""
    rows = torch.arange(H)[:, None].expand(H, W)
    cols = torch.arange(W)[None, :].expand(H, W)
    image = torch.stack([rows, cols, torch.ones(H, W, dtype=torch.int64)]).to(torch.uint8)
    images = image.expand(N, 3, H, W).clone()
    images[:, 2] += torch.arange(N, dtype=torch.uint8)[:, None, None]  # example id, to catch row mix-ups
    masks = (1000 + rows * W + cols).expand(N, H, W).clone()  # int64 mask
    return images, masks


ALIGNED = [
    RandomCrop(padding=5, mode="reflect"),
    RandomCrop(padding=5, mode="constant"),
    RandomCrop(padding=3, size=(12, 16)),
    HorizontalFlip(),
    RandomResizedCrop(scale=(0.3, 1.0)),
    RandomResizedCrop(size=(10, 10)),
    Compose([RandomResizedCrop(scale=(0.5, 1.0)), RandomCrop(padding=4, mode="constant"), HorizontalFlip()]),
]


@pytest.mark.parametrize("aug", ALIGNED, ids=lambda a: type(a).__name__)
def test_image_and_mask_stay_aligned(aug) -> None:
    images, masks = _coordinate_batch()
    params = aug.sample(N, torch.Generator().manual_seed(0))
    out_x, out_m = aug.apply(params, images), aug.apply(params, masks)
    assert out_x.dtype == torch.uint8 and out_m.dtype == torch.int64
    assert out_x.shape[-2:] == out_m.shape[-2:]
    assert torch.equal(out_x[:, 2].amax(dim=(1, 2)), torch.arange(N, dtype=torch.uint8) + 1)  # no example mixed
    labelled = out_m != IGNORE_INDEX
    padded = out_x[:, 2] == 0  # constant padding fills the image with 0 and the mask with IGNORE_INDEX
    assert torch.equal(labelled, ~padded)
    row, col = (out_m - 1000) // W, (out_m - 1000) % W
    tol = 1 if any(isinstance(t, RandomResizedCrop) for t in getattr(aug, "transforms", [aug])) else 0
    assert ((out_x[:, 0].long() - row).abs() <= tol)[labelled].all()  # bilinear image vs nearest mask: <= 1
    assert ((out_x[:, 1].long() - col).abs() <= tol)[labelled].all()


def test_flip_and_crop_statistics() -> None:
    n = 4000
    gen = torch.Generator().manual_seed(1)
    flips = HorizontalFlip(0.5).sample(n, gen)["flip"].float().mean()
    assert 0.46 < flips < 0.54
    # a one-pixel image row marks where the crop started: offsets are uniform over the 2p + 1 choices
    x = torch.arange(8, dtype=torch.uint8).expand(n, 1, 1, 8).clone()
    out = RandomCrop(padding=2).apply(RandomCrop(2).sample(n, gen), x)
    first = out[:, 0, 0, 2].long()  # value at column 2 = 2 + shift, shift in -2..2
    counts = torch.bincount(first, minlength=5)[:5].float()
    assert counts.sum() == n and (abs(counts / n - 0.2) < 0.03).all()


def test_exact_results_on_small_inputs() -> None:
    x = torch.arange(2 * 1 * 3 * 4, dtype=torch.uint8).reshape(2, 1, 3, 4)
    flip = HorizontalFlip()
    assert torch.equal(flip.apply({"flip": torch.tensor([True, False])}, x), torch.stack([x[0].flip(-1), x[1]]))
    crop = RandomCrop(padding=1, mode="reflect")
    # offset 0 in the padded frame = shift by one pixel down-right, with reflected borders
    out = crop.apply({"oy": torch.zeros(2), "ox": torch.zeros(2)}, x)
    expected = torch.nn.functional.pad(x.float(), (1, 1, 1, 1), mode="reflect")[..., :3, :4].to(torch.uint8)
    assert torch.equal(out, expected)
    assert torch.equal(RandomCrop(padding=0).apply(RandomCrop(0).sample(2), x), x)
    full = RandomResizedCrop(scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.equal(full.apply(full.sample(2), x), x)


def test_sampling_is_deterministic_and_float_inputs_work() -> None:
    aug = default_augmentation((16, 16))
    p1, p2 = aug.sample(5, torch.Generator().manual_seed(7)), aug.sample(5, torch.Generator().manual_seed(7))
    x = torch.rand(5, 3, 16, 16)
    assert torch.equal(aug.apply(p1, x), aug.apply(p2, x))
    assert aug.apply(p1, x).dtype == torch.float32
    assert torch.equal(aug.apply(p1, (x * 255).to(torch.uint8)), aug.apply(p2, (x * 255).to(torch.uint8)))


def test_to_float() -> None:
    x = torch.tensor([0, 128, 255], dtype=torch.uint8)
    out = to_float(x)
    assert out.dtype == torch.float32
    assert torch.equal(out, torch.tensor([0.0, 128 / 255, 1.0], dtype=torch.float32))
    f = torch.rand(3)
    assert to_float(f) is f


@pytest.mark.parametrize("mode", ["reflect", "constant"])
def test_random_crop_matches_a_per_image_pad_and_slice_oracle(mode: str) -> None:
    gen = torch.Generator().manual_seed(3)
    x = torch.randint(0, 256, (16, 3, 9, 11), dtype=torch.uint8, generator=gen)
    crop = RandomCrop(padding=3, size=(7, 10), mode=mode, fill=17)
    params = crop.sample(16, gen)
    out = crop.apply(params, x)
    for i in range(16):  # the oracle: pad one image with torch, slice at the sampled offset
        extra = {"value": 17.0} if mode == "constant" else {}
        padded = torch.nn.functional.pad(x[i : i + 1].float(), (3, 3, 3, 3), mode=mode, **extra)[0]
        oy = min(int(params["oy"][i] * (9 + 6 - 7 + 1)), 9 + 6 - 7)
        ox = min(int(params["ox"][i] * (11 + 6 - 10 + 1)), 11 + 6 - 10)
        assert torch.equal(out[i], padded[:, oy : oy + 7, ox : ox + 10].to(torch.uint8))
