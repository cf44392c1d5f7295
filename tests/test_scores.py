"""cnnlab.tasks.scores against independent references (scikit-image, numpy, numbers worked by hand) and
cnnlab.tasks.tiles against whole-image inference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from cnnlab.errors import CnnlabError
from cnnlab.tasks.scores import (
    confusion_matrix,
    dice_per_class,
    iou_per_class,
    mean_iou,
    pixel_accuracy,
    psnr,
    rgb_to_y,
    shave,
    sr_crop,
    sr_scores,
    ssim,
)
from cnnlab.tasks.tiles import tiled

SSIM_TOL = 1e-5  # the required agreement with skimage
# What is actually seen (both sides compute in float64): ~1e-16. Checked too, because the sample-covariance
# variant (a factor 121/120 on variances) moves SSIM by only ~1e-6, inside SSIM_TOL.
SSIM_SEEN = 1e-10


def _y_numpy(rgb_levels: np.ndarray) -> np.ndarray:
    """BT.601 studio-range Y of (3, H, W) levels in [0, 255], written out independently of rgb_to_y."""
    r, g, b = rgb_levels / 255.0
    return 16.0 + 65.481 * r + 128.553 * g + 24.966 * b


def _sk_ssim(a: np.ndarray, b: np.ndarray, channel_axis: int | None = None) -> float:
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
                                 data_range=255, channel_axis=channel_axis)


def _smooth(rng: np.random.Generator, shape: tuple[int, ...], sigma: float = 3.0) -> np.ndarray:
    """A natural-ish image: blurred noise plus a gradient, stretched over most of [0, 255]."""
    h, w = shape[-2:]
    noise = gaussian_filter(rng.normal(size=shape), sigma=(0,) * (len(shape) - 2) + (sigma, sigma))
    ramp = np.linspace(0, 1, w)[None, :] + np.linspace(0, 0.5, h)[:, None]
    img = noise / (noise.std() + 1e-12) + 2 * ramp
    img = (img - img.min()) / (img.max() - img.min())
    return 10 + 235 * img


# ---------------------------------------------------------------------------------------------- Y, crops


def test_rgb_to_y_known_values_and_formula() -> None:
    x = torch.tensor([[0.0, 255.0, 255.0, 0.0]]).expand(3, 1, 4).clone()
    x[:, 0, 3] = torch.tensor([255.0, 0.0, 0.0])  # pure red
    y = rgb_to_y(x)
    assert y.shape == (1, 1, 4)
    assert torch.allclose(y[0, 0, :3], torch.tensor([16.0, 235.0, 235.0], dtype=torch.float64), atol=1e-9)
    assert y[0, 0, 3].item() == pytest.approx(16 + 65.481)
    rng = np.random.default_rng(0)
    rgb = rng.uniform(0, 255, size=(2, 3, 5, 7))
    got = rgb_to_y(torch.from_numpy(rgb)).numpy()
    assert got.shape == (2, 1, 5, 7)
    np.testing.assert_allclose(got[:, 0], np.stack([_y_numpy(im) for im in rgb]), rtol=0, atol=1e-10)


def test_rgb_to_y_gray_passthrough_and_bad_channels() -> None:
    gray = torch.rand(2, 1, 4, 4) * 255
    assert torch.equal(rgb_to_y(gray), gray.double())
    with pytest.raises(CnnlabError, match="1 or 3 channels"):
        rgb_to_y(torch.rand(4, 5, 5))


def test_sr_crop_and_shave() -> None:
    x = torch.arange(2 * 11 * 14).reshape(2, 11, 14)
    c = sr_crop(x, 4)
    assert c.shape == (2, 8, 12)
    assert torch.equal(c, x[:, :8, :12])  # top-left kept
    assert sr_crop(x, 1) is not None and sr_crop(x, 1).shape == x.shape
    s = shave(x, 2)
    assert s.shape == (2, 7, 10)
    assert torch.equal(s, x[:, 2:9, 2:12])
    assert shave(x, 0).shape == x.shape
    with pytest.raises(CnnlabError):
        shave(x, 6)
    with pytest.raises(CnnlabError):
        sr_crop(x, 0)


# -------------------------------------------------------------------------------------------------- PSNR


def test_psnr_matches_skimage_per_image() -> None:
    rng = np.random.default_rng(1)
    a = rng.uniform(0, 255, size=(3, 3, 16, 12))
    b = np.clip(a + rng.normal(0, 8, size=a.shape), 0, 255)
    got = psnr(torch.from_numpy(a), torch.from_numpy(b))
    assert got.shape == (3,)
    want = [peak_signal_noise_ratio(a[i], b[i], data_range=255) for i in range(3)]
    np.testing.assert_allclose(got.numpy(), want, rtol=0, atol=1e-10)
    one = psnr(torch.from_numpy(a[0]), torch.from_numpy(b[0]))
    assert one.ndim == 0 and one.item() == pytest.approx(want[0], abs=1e-10)
    # data_range: the same images on a [0, 1] scale give the same dB
    assert psnr(torch.from_numpy(a / 255), torch.from_numpy(b / 255), data_range=1.0).numpy() == pytest.approx(want)


def test_psnr_identical_is_inf_and_shape_mismatch_raises() -> None:
    a = torch.rand(2, 3, 8, 8)
    assert torch.isinf(psnr(a, a.clone())).all() and (psnr(a, a) > 0).all()
    with pytest.raises(CnnlabError, match="same shape"):
        psnr(a, a[..., :7])


# -------------------------------------------------------------------------------------------------- SSIM


@pytest.mark.parametrize("kind", ["random", "smooth"])
@pytest.mark.parametrize("channels", [1, 3])
def test_ssim_matches_skimage(kind: str, channels: int) -> None:
    rng = np.random.default_rng(channels * 10 + len(kind))
    shape = (2, channels, 23, 31)  # not square, not a multiple of the window
    if kind == "random":
        a = rng.uniform(0, 255, size=shape)
        b = np.clip(a + rng.normal(0, 30, size=shape), 0, 255)
    else:
        a = _smooth(rng, shape)
        b = np.clip(gaussian_filter(a, sigma=(0, 0, 1.0, 1.0)) + rng.normal(0, 3, size=shape), 0, 255)
    got = ssim(torch.from_numpy(a), torch.from_numpy(b))
    assert got.shape == (2,) and got.dtype == torch.float64
    for i in range(2):
        want = _sk_ssim(a[i, 0], b[i, 0]) if channels == 1 else _sk_ssim(a[i], b[i], channel_axis=0)
        assert abs(got[i].item() - want) < SSIM_TOL, (got[i].item(), want)
        assert abs(got[i].item() - want) < SSIM_SEEN, (got[i].item(), want)
        sample = structural_similarity(a[i], b[i], gaussian_weights=True, sigma=1.5, use_sample_covariance=True,
                                       data_range=255, channel_axis=0)
        assert abs(got[i].item() - sample) > 100 * SSIM_SEEN  # the tight check can tell the two apart
    assert (got < 1).all() and (got > -1).all()


def test_ssim_uint8_input_single_image_and_identity() -> None:
    rng = np.random.default_rng(5)
    a = rng.integers(0, 256, size=(3, 11, 14), dtype=np.uint8)  # exactly one window tall
    b = rng.integers(0, 256, size=(3, 11, 14), dtype=np.uint8)
    got = ssim(torch.from_numpy(a), torch.from_numpy(b))
    assert got.ndim == 0
    assert abs(got.item() - _sk_ssim(a.astype(np.float64), b.astype(np.float64), channel_axis=0)) < SSIM_TOL
    assert ssim(torch.from_numpy(a), torch.from_numpy(a)).item() == pytest.approx(1.0, abs=1e-12)
    with pytest.raises(CnnlabError, match="at least 11x11"):
        ssim(torch.zeros(1, 10, 20), torch.zeros(1, 10, 20))


# ------------------------------------------------------------------------------------- SR paper protocol


def _sr_reference(sr01: np.ndarray, hr_u8: np.ndarray, scale: int) -> tuple[list[float], list[float]]:
    """The protocol written out in numpy: quantise, modcrop, Y, shave, skimage PSNR and SSIM."""
    h, w = hr_u8.shape[-2] // scale * scale, hr_u8.shape[-1] // scale * scale
    sr_levels = np.round(np.clip(sr01, 0, 1) * 255)[..., :h, :w]
    hr_levels = hr_u8.astype(np.float64)[..., :h, :w]
    ps, ss = [], []
    for s, t in zip(sr_levels, hr_levels, strict=True):
        ys, yt = (_y_numpy(s), _y_numpy(t)) if s.shape[0] == 3 else (s[0], t[0])
        ys, yt = ys[scale:-scale, scale:-scale], yt[scale:-scale, scale:-scale]
        ps.append(peak_signal_noise_ratio(yt, ys, data_range=255))
        ss.append(_sk_ssim(ys, yt))
    return ps, ss


@pytest.mark.parametrize("channels", [3, 1])
def test_sr_scores_match_the_protocol_done_by_hand(channels: int) -> None:
    rng = np.random.default_rng(7)
    scale = 3
    hr = np.round(_smooth(rng, (2, channels, 37, 44))).astype(np.uint8)  # 37x44 -> cropped to 36x42
    sr01 = hr[..., :36, :42] / 255.0 + rng.normal(0, 0.03, size=(2, channels, 36, 42))  # out of range too
    got = sr_scores(torch.from_numpy(sr01), torch.from_numpy(hr), scale)
    want_p, want_s = _sr_reference(sr01, hr, scale)
    assert got["psnr"].shape == (2,) and got["ssim"].shape == (2,)
    np.testing.assert_allclose(got["psnr"].numpy(), want_p, rtol=0, atol=1e-8)
    np.testing.assert_allclose(got["ssim"].numpy(), want_s, rtol=0, atol=SSIM_TOL)
    assert 20 < min(want_p) < 40 and 0.3 < min(want_s) < 1  # a sensible regime, not a degenerate one


def test_sr_scores_uint8_and_float_hr_agree_and_sr_is_cropped() -> None:
    rng = np.random.default_rng(8)
    hr = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 26, 29), dtype=np.uint8))
    sr = torch.from_numpy(rng.integers(0, 256, size=(1, 3, 26, 29), dtype=np.uint8))  # uncropped SR
    a = sr_scores(sr, hr, 4)
    b = sr_scores(sr.double() / 255, hr.double() / 255, 4)
    c = sr_scores(sr[..., :24, :28], hr, 4)
    for k in ("psnr", "ssim"):
        assert torch.allclose(a[k], b[k], rtol=0, atol=1e-12) and torch.allclose(a[k], c[k], rtol=0, atol=1e-12)
    want_p, want_s = _sr_reference(sr.numpy() / 255.0, hr.numpy(), 4)
    assert a["psnr"].item() == pytest.approx(want_p[0], abs=1e-8)
    assert abs(a["ssim"].item() - want_s[0]) < SSIM_TOL
    with pytest.raises(CnnlabError, match="does not cover"):
        sr_scores(sr[..., :20, :28], hr, 4)


# ---------------------------------------------------------------------------------------- segmentation


def _hand_case() -> tuple[torch.Tensor, torch.Tensor]:
    target = torch.tensor([[0, 0, 1, 1],
                           [0, 0, 1, 1],
                           [2, 2, 1, 1],
                           [2, 2, 255, 255]])
    pred = torch.tensor([[0, 1, 1, 1],
                         [0, 0, 1, 2],
                         [2, 1, 1, 1],
                         [0, 2, 0, 3]])  # the 3 sits on an ignored pixel, so class 3 never counts
    return pred, target


def test_iou_on_a_hand_worked_4x4_case() -> None:
    pred, target = _hand_case()
    conf = confusion_matrix(pred, target, num_classes=4, ignore_index=255)
    # rows = true class, cols = predicted, counted by hand from the two grids (14 pixels, 2 ignored):
    # true 0 at (0,0) (0,1) (1,0) (1,1) -> predicted 0, 1, 0, 0
    # true 1 at (0,2) (0,3) (1,2) (1,3) (2,2) (2,3) -> 1, 1, 1, 2, 1, 1
    # true 2 at (2,0) (2,1) (3,0) (3,1) -> 2, 1, 0, 2
    assert conf.dtype == torch.int64
    assert conf.tolist() == [[3, 1, 0, 0],
                             [0, 5, 1, 0],
                             [1, 1, 2, 0],
                             [0, 0, 0, 0]]
    # IoU = TP / (row + col - TP): rows 4, 6, 4, 0; cols 4, 7, 3, 0
    # class 0: 3 / (4 + 4 - 3) = 3/5; class 1: 5 / (6 + 7 - 5) = 5/8; class 2: 2 / (4 + 3 - 2) = 2/5
    # class 3: 0 / 0 -> NaN (absent from target and prediction)
    iou = iou_per_class(conf)
    assert iou[:3].tolist() == pytest.approx([0.6, 0.625, 0.4])
    assert math.isnan(iou[3].item())
    assert mean_iou(conf) == pytest.approx((0.6 + 0.625 + 0.4) / 3)  # 0.541666...
    assert pixel_accuracy(conf) == pytest.approx(10 / 14)  # trace 3 + 5 + 2 over 14 counted pixels
    # Dice = 2 TP / (row + col): 6/8, 10/13, 4/7, NaN
    dice = dice_per_class(conf)
    assert dice[:3].tolist() == pytest.approx([6 / 8, 10 / 13, 4 / 7])
    assert math.isnan(dice[3].item())


def test_iou_predicted_but_absent_class_is_zero_not_nan() -> None:
    target = torch.zeros(2, 3, dtype=torch.long)
    pred = torch.tensor([[0, 0, 1], [0, 0, 0]])
    iou = iou_per_class(confusion_matrix(pred, target, 3))
    assert iou[0].item() == pytest.approx(5 / 6) and iou[1].item() == 0.0 and math.isnan(iou[2].item())
    assert mean_iou(confusion_matrix(pred, target, 3)) == pytest.approx((5 / 6 + 0) / 2)


def _numpy_confusion(pred: np.ndarray, target: np.ndarray, k: int, ignore: int) -> np.ndarray:
    conf = np.zeros((k, k), dtype=np.int64)
    for t, p in zip(target.ravel(), pred.ravel(), strict=True):
        if t != ignore:
            conf[t, p] += 1
    return conf


def test_segmentation_scores_match_numpy_on_random_maps() -> None:
    rng = np.random.default_rng(3)
    k = 6
    target = rng.integers(0, k - 1, size=(3, 9, 11))  # class 5 never in target
    target[rng.random(target.shape) < 0.1] = 255
    pred = np.where(rng.random(target.shape) < 0.6, np.clip(target, 0, k - 2), rng.integers(0, k - 1, target.shape))
    conf_np = _numpy_confusion(pred, target, k, 255)
    conf = confusion_matrix(torch.from_numpy(pred), torch.from_numpy(target), k, ignore_index=255)
    np.testing.assert_array_equal(conf.numpy(), conf_np)
    tp = np.diag(conf_np).astype(float)
    union = conf_np.sum(0) + conf_np.sum(1) - tp
    with np.errstate(invalid="ignore"):
        iou_np = np.where(union > 0, tp / union, np.nan)
        dice_np = np.where(union > 0, 2 * tp / (conf_np.sum(0) + conf_np.sum(1)), np.nan)
    np.testing.assert_allclose(iou_per_class(conf).numpy(), iou_np, equal_nan=True)
    np.testing.assert_allclose(dice_per_class(conf).numpy(), dice_np, equal_nan=True)
    assert math.isnan(iou_np[5])
    assert mean_iou(conf) == pytest.approx(np.nanmean(iou_np))
    assert pixel_accuracy(conf) == pytest.approx((pred == target)[target != 255].mean())
    # summing per-batch matrices = one matrix of everything (dataset-level scores)
    parts = sum(confusion_matrix(torch.from_numpy(pred[i]), torch.from_numpy(target[i]), k, 255) for i in range(3))
    assert torch.equal(parts, conf)


def test_confusion_matrix_rejects_bad_input() -> None:
    t = torch.zeros(4, 4, dtype=torch.long)
    with pytest.raises(CnnlabError, match="outside"):
        confusion_matrix(t + 3, t, 3)
    with pytest.raises(CnnlabError, match="outside"):
        confusion_matrix(t, t + 255, 3)  # 255 without ignore_index
    with pytest.raises(CnnlabError, match="argmax"):
        confusion_matrix(torch.rand(4, 4), t, 3)
    with pytest.raises(CnnlabError, match="same shape"):
        confusion_matrix(torch.zeros(2, 3, 4, 4), t, 3)
    empty = confusion_matrix(t, t + 255, 3, ignore_index=255)
    assert empty.sum() == 0 and math.isnan(mean_iou(empty)) and math.isnan(pixel_accuracy(empty))


# ------------------------------------------------------------------------------------------------- tiles

TILE_TOL = 1e-5  # float32 convs summed in a different order for different input sizes; seen ~1e-7


def _sr_net(scale: int) -> torch.nn.Module:
    """Three 3x3 convs (receptive-field radius 3 in input pixels), then PixelShuffle(scale)."""
    torch.manual_seed(0)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 3 * scale * scale, 3, padding=1), torch.nn.PixelShuffle(scale),
    )
    return net.eval()


@pytest.mark.parametrize("scale", [1, 2])
def test_tiled_equals_whole_image_when_overlap_covers_the_receptive_field(scale: int) -> None:
    net = _sr_net(scale)
    x = torch.rand(2, 3, 29, 37, generator=torch.Generator().manual_seed(1))  # not multiples of the tile
    with torch.no_grad():
        whole = net(x)
        assert whole.shape == (2, 3, 29 * scale, 37 * scale)
        for tile, overlap in [(8, 3), (8, 5), (10, 3), (5, 4)]:
            out = tiled(net, x, tile=tile, overlap=overlap, scale=scale)
            assert out.shape == whole.shape
            assert (out - whole).abs().max().item() < TILE_TOL, (tile, overlap)
        # too little context: the seams show (so the test above can fail)
        for overlap in (0, 2):
            diff = (tiled(net, x, tile=8, overlap=overlap, scale=scale) - whole).abs().max().item()
            assert diff > 1e-3, overlap


def test_tiled_one_call_when_the_tile_covers_the_image_and_counts_tiles() -> None:
    calls: list[tuple[int, ...]] = []

    def fn(t: torch.Tensor) -> torch.Tensor:
        calls.append(tuple(t.shape))
        return t * 2

    x = torch.rand(1, 1, 12, 9)
    assert torch.equal(tiled(fn, x, tile=12, overlap=4), x * 2) and calls == [(1, 1, 12, 9)]
    calls.clear()
    assert torch.equal(tiled(fn, x, tile=5, overlap=2), x * 2)
    assert len(calls) == 3 * 2  # ceil(12 / 5) rows x ceil(9 / 5) columns
    assert max(c[-2] for c in calls) <= 5 + 2 * 2 and max(c[-1] for c in calls) <= 5 + 2 * 2


def test_tiled_rejects_wrong_scale_and_bad_arguments() -> None:
    net = _sr_net(2)
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad(), pytest.raises(CnnlabError, match="scale=1"):
        tiled(net, x, tile=8, overlap=3)  # the net upsamples by 2
    with pytest.raises(CnnlabError):
        tiled(net, x, tile=0, overlap=3)
    with pytest.raises(CnnlabError):
        tiled(net, x[0], tile=8, overlap=3)
