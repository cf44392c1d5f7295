"""Image-quality scores (PSNR, SSIM on Y, the super-resolution papers' protocol) and segmentation scores.

They are written out by hand on purpose: the arithmetic is the lesson, and every function is checked in
tests/test_scores.py against an independent reference (scikit-image, hand-computed numbers).

Conventions:
- Images are (..., C, H, W) tensors; per-image scores reduce the last three dims, so (N, C, H, W) gives
  (N,) and one (C, H, W) image gives a 0-d tensor.
- Everything is computed in float64. SSIM subtracts squares of means of order 255**2 = 65025, where
  float32 keeps only about three significant digits of a small variance; PSNR of nearly identical images
  has the same problem with its mean squared error.
- ``sr_scores`` follows the SR papers (and the MATLAB scripts they publish): quantise the output to 8-bit
  levels, crop HR to a multiple of the scale, take BT.601 Y (not rounded, as ``rgb2ycbcr`` on double
  input), shave ``scale`` pixels on each border, then PSNR and SSIM with data range 255.
- Segmentation scores start from a confusion matrix (rows = true class, columns = predicted class), so
  a whole dataset is scored by summing per-batch matrices; classes absent from both target and prediction
  get NaN (not 0 or 1) and are left out of the means.
"""

from __future__ import annotations

import torch

from cnnlab.errors import CnnlabError

# ITU-R BT.601 studio-range luma for r, g, b in [0, 1] -> Y in [16, 235] (MATLAB's rgb2ycbcr).
_Y_OFFSET = 16.0
_Y_WEIGHTS = (65.481, 128.553, 24.966)

SSIM_SIGMA = 1.5
SSIM_RADIUS = int(3.5 * SSIM_SIGMA + 0.5)  # 5: skimage's truncate=3.5 -> the 11x11 window of Wang et al.
SSIM_K1, SSIM_K2 = 0.01, 0.03


def _float(x: torch.Tensor) -> torch.Tensor:
    """x as float64 (no copy if it already is): the precision every score here is computed in (see module doc)."""
    return x.to(torch.float64)


def _check_image(x: torch.Tensor, name: str) -> None:
    if x.ndim < 3:
        raise CnnlabError(f"{name} must be (..., C, H, W), got shape {tuple(x.shape)}; add a channel dim "
                          "with x.unsqueeze(0) for a gray (H, W) image")


def _check_pair(a: torch.Tensor, b: torch.Tensor) -> None:
    _check_image(a, "a")
    _check_image(b, "b")
    if a.shape != b.shape:
        raise CnnlabError(f"images to compare must have the same shape, got {tuple(a.shape)} and "
                          f"{tuple(b.shape)}; crop them to a common size first (see sr_crop)")


def rgb_to_y(x: torch.Tensor) -> torch.Tensor:
    """RGB in [0, 255] (..., 3, H, W) -> BT.601 studio-range luma Y (..., 1, H, W) in [16, 235].

    The SR literature scores on Y because the eye is most sensitive to luma and because MATLAB's
    ``rgb2ycbcr`` was what the first papers used; the formula is Y = 16 + 65.481 r + 128.553 g + 24.966 b
    for r, g, b in [0, 1]. A one-channel (gray) image is returned as is (as float64): it is its own luma.
    """
    _check_image(x, "x")
    channels = x.shape[-3]
    x = _float(x)
    if channels == 1:
        return x
    if channels != 3:
        raise CnnlabError(f"rgb_to_y needs 1 or 3 channels (dim -3), got {channels} in shape {tuple(x.shape)}")
    r, g, b = x.unbind(-3)
    y = _Y_OFFSET + (_Y_WEIGHTS[0] * r + _Y_WEIGHTS[1] * g + _Y_WEIGHTS[2] * b) / 255.0
    return y.unsqueeze(-3)


def sr_crop(hr: torch.Tensor, scale: int) -> torch.Tensor:
    """Crop (..., H, W) to the largest multiple of ``scale`` in H and W, keeping the top-left corner.

    This is the papers' ``modcrop``: only then does an LR image of size H/scale map exactly onto HR.
    """
    if scale < 1:
        raise CnnlabError(f"scale must be a positive integer, got {scale}")
    h, w = hr.shape[-2:]
    return hr[..., : h - h % scale, : w - w % scale]


def shave(x: torch.Tensor, border: int) -> torch.Tensor:
    """Remove ``border`` pixels from each side of (..., H, W): SR scores ignore the border, where every
    method has to guess what lies beyond the image."""
    if border < 0:
        raise CnnlabError(f"border must be >= 0, got {border}")
    if border == 0:
        return x
    h, w = x.shape[-2:]
    if 2 * border >= min(h, w):
        raise CnnlabError(f"cannot shave {border} pixels from each side of a {h}x{w} image; use a smaller border")
    return x[..., border: h - border, border: w - border]


def psnr(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Peak signal-to-noise ratio in dB, per image over the last three dims: 10 log10(range^2 / MSE).

    Returns shape a.shape[:-3] (so (N,) for a batch, 0-d for one image), float64; identical images give
    +inf (the MSE is 0), which is the honest answer rather than a capped number.
    """
    _check_pair(a, b)
    mse = (_float(a) - _float(b)).square().mean(dim=(-3, -2, -1))
    return 10.0 * torch.log10(data_range**2 / mse)


def _gaussian_window(radius: int = SSIM_RADIUS, sigma: float = SSIM_SIGMA) -> torch.Tensor:
    """The normalised 1-D Gaussian (2 radius + 1 taps) that scipy.ndimage builds; SSIM's 2-D window is
    its outer product, applied as two 1-D passes."""
    x = torch.arange(-radius, radius + 1, dtype=torch.float64)
    g = torch.exp(-0.5 * x.square() / sigma**2)
    return g / g.sum()


def _filter_valid(x: torch.Tensor, window: torch.Tensor) -> torch.Tensor:
    """Separable Gaussian filter of (M, 1, H, W) without padding: (M, 1, H - 2r, W - 2r).

    'valid' filtering equals skimage's reflect-padded filter followed by its crop of r pixels: the
    cropped border is exactly where the padding would have been seen.
    """
    k = window.numel()
    x = torch.nn.functional.conv2d(x, window.view(1, 1, k, 1))
    return torch.nn.functional.conv2d(x, window.view(1, 1, 1, k))


def ssim(a: torch.Tensor, b: torch.Tensor, data_range: float = 255.0) -> torch.Tensor:
    """Structural similarity (Wang et al. 2004), per image, averaged over channels.

    The paper's settings: an 11x11 Gaussian window with sigma 1.5, K1 = 0.01, K2 = 0.03, population
    (biased) variances and covariance, and the mean of the SSIM map over the positions where the whole
    window fits inside the image. This is what ``skimage.metrics.structural_similarity(...,
    gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=...)`` computes, to
    floating-point rounding. Returns shape a.shape[:-3], float64.
    """
    _check_pair(a, b)
    *lead, c, h, w = a.shape
    size = 2 * SSIM_RADIUS + 1
    if h < size or w < size:
        raise CnnlabError(f"SSIM needs images of at least {size}x{size} pixels (its window), got {h}x{w}")
    x = _float(a).reshape(-1, 1, h, w)
    y = _float(b).reshape(-1, 1, h, w)
    m = x.shape[0]
    # One filter call for the five local moments: E[x], E[y], E[x^2], E[y^2], E[xy].
    moments = _filter_valid(torch.cat([x, y, x * x, y * y, x * y]), _gaussian_window())
    mx, my, mxx, myy, mxy = moments.split(m)
    vx, vy, cxy = mxx - mx * mx, myy - my * my, mxy - mx * my
    c1, c2 = (SSIM_K1 * data_range) ** 2, (SSIM_K2 * data_range) ** 2
    s = ((2 * mx * my + c1) * (2 * cxy + c2)) / ((mx * mx + my * my + c1) * (vx + vy + c2))
    per_channel = s.mean(dim=(-3, -2, -1)).reshape(*lead, c)
    return per_channel.mean(dim=-1)


def to_levels(x: torch.Tensor) -> torch.Tensor:
    """An image as 8-bit levels 0..255 in float64: uint8 as is, float in [0, 1] as round(clamp(x) * 255).

    SR outputs are scored after this quantisation because that is what saving them as PNG does; scoring
    the unrounded floats gives slightly different (usually higher) numbers than the papers report.
    """
    if x.dtype == torch.uint8:
        return _float(x)
    if not x.is_floating_point():
        raise CnnlabError(f"images must be uint8 or float in [0, 1], got dtype {x.dtype}")
    return torch.round(_float(x).clamp(0.0, 1.0) * 255.0)


def sr_scores(sr: torch.Tensor, hr: torch.Tensor, scale: int, with_ssim: bool = True) -> dict[str, torch.Tensor]:
    """PSNR and SSIM of super-resolved ``sr`` against ``hr`` by the SR papers' protocol (see module doc).

    Both are (N, C, H, W), uint8 or float in [0, 1]. HR is cropped to a multiple of ``scale`` and SR to the
    same size (so SR may come from the cropped or the uncropped HR), then both are scored on Y with
    ``scale`` pixels shaved from each border. Returns {"psnr": (N,), "ssim": (N,)}, float64 (no "ssim"
    with ``with_ssim=False``: the cheap score shown while training).
    """
    if sr.ndim != 4 or hr.ndim != 4:
        raise CnnlabError(f"sr_scores needs (N, C, H, W) batches, got sr {tuple(sr.shape)} and hr {tuple(hr.shape)}")
    hr = sr_crop(hr, scale)
    h, w = hr.shape[-2:]
    if sr.shape[-2] < h or sr.shape[-1] < w or sr.shape[:2] != hr.shape[:2]:
        raise CnnlabError(f"sr {tuple(sr.shape)} does not cover hr cropped to a multiple of {scale}: "
                          f"{tuple(hr.shape)}; upscale the LR image by exactly {scale}")
    sr = sr[..., :h, :w]
    y_sr = shave(rgb_to_y(to_levels(sr)), scale)
    y_hr = shave(rgb_to_y(to_levels(hr)), scale)
    found = {"psnr": psnr(y_sr, y_hr)}
    if with_ssim:
        found["ssim"] = ssim(y_sr, y_hr)
    return found


def confusion_matrix(pred: torch.Tensor, target: torch.Tensor, num_classes: int,
                     ignore_index: int | None = None) -> torch.Tensor:
    """Pixel counts (K, K), int64: entry [t, p] = pixels of true class t predicted as p.

    ``pred`` and ``target`` are integer label maps of the same shape (take ``logits.argmax(1)`` first).
    Pixels whose target is ``ignore_index`` (for example 255, the usual 'void' label) are not counted.
    Summing the matrices of all batches and scoring once gives dataset-level scores, which is what
    segmentation benchmarks report (the mean of per-image IoUs is a different, noisier number).
    """
    if pred.shape != target.shape:
        raise CnnlabError(f"pred and target must have the same shape, got {tuple(pred.shape)} and "
                          f"{tuple(target.shape)}; pass class labels (logits.argmax(1)), not logits")
    if pred.is_floating_point() or target.is_floating_point():
        raise CnnlabError("pred and target must be integer class labels; pass logits.argmax(1), not logits")
    pred, target = pred.reshape(-1).long(), target.reshape(-1).long()
    if ignore_index is not None:
        keep = target != ignore_index
        pred, target = pred[keep], target[keep]
    for name, t in (("target", target), ("pred", pred)):
        if t.numel() and (int(t.min()) < 0 or int(t.max()) >= num_classes):
            raise CnnlabError(f"{name} has labels outside 0..{num_classes - 1} (min {int(t.min())}, "
                              f"max {int(t.max())}); check num_classes or pass ignore_index")
    counts = torch.bincount(target * num_classes + pred, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes)


def _ratio(num: torch.Tensor, den: torch.Tensor) -> torch.Tensor:
    """num / den elementwise, NaN where den == 0 (a class with no pixels anywhere has no score)."""
    num, den = _float(num), _float(den)
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(den, float("nan")))


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union per class, TP / (TP + FP + FN), float64 (K,); NaN for a class absent from
    both target and prediction, so that it neither rewards nor punishes the model."""
    tp = confusion.diagonal()
    return _ratio(tp, confusion.sum(0) + confusion.sum(1) - tp)


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU over the classes that occur (NaN entries skipped); NaN if no class occurs."""
    return float(torch.nanmean(iou_per_class(confusion)))


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of counted pixels labelled correctly; NaN for an empty matrix. Dominated by large classes
    such as background, which is why mean IoU is reported next to it."""
    total = confusion.sum()
    return float(confusion.diagonal().sum()) / float(total) if total > 0 else float("nan")


def dice_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """Dice (F1) per class, 2 TP / (2 TP + FP + FN) = 2 IoU / (1 + IoU), float64 (K,); NaN like IoU."""
    tp = confusion.diagonal()
    return _ratio(2 * tp, confusion.sum(0) + confusion.sum(1))


__all__ = ["confusion_matrix", "dice_per_class", "iou_per_class", "mean_iou", "pixel_accuracy", "psnr",
           "rgb_to_y", "shave", "sr_crop", "sr_scores", "ssim", "to_levels"]
