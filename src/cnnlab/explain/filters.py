"""Filter visualisation by gradient ascent on the input, all requested channels in ONE batch.

Row i of the batch maximises channel ``channels[i]`` of ``layer``: its mean activation with a border
of ``border`` positions left out (edge effects of padding otherwise dominate). The loss is the SUM of
the rows' objectives, so row i's gradient is exactly the gradient of its own objective: the model
runs in eval mode (batch norm uses running statistics) so no row sees another. Every row draws its
start noise and its random transforms from its own generator, seeded from (seed, channel): a batch
gives the same images as visualising the channels one at a time with the same seed.

Two recipes:

* ``"plain"``: the lecture / Keras recipe. Start from grey noise (0.5 +- 0.125), step along the
  gradient normalised to unit RMS per image (``lr`` = RMS change per pixel per step), then
  standardise the result for display (mean 0.5, std 0.15, clipped to [0, 1]).
* ``"robust"``: a lucent-style recipe that gives more natural images: the image is a decorrelated
  Fourier spectrum (1/f scaled, colour-decorrelated for RGB) squashed by a sigmoid, optimised with
  normalised gradient steps under padding and random jitter, scaling and rotation each step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain.hooks import explain_mode, forward_to, input_layout, model_device, model_dtype

# lucent's square root of the ImageNet colour covariance (rows: RGB), normalised below.
_COLOR_SQRT = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
_COLOR = _COLOR_SQRT / _COLOR_SQRT.norm(dim=0).max()


def visualize_filters(
    model: nn.Module,
    layer: str,
    channels: Sequence[int] | None = None,
    *,
    steps: int | None = None,
    lr: float | None = None,
    size: int | Sequence[int] = 64,
    seed: int = 0,
    method: str = "plain",
    border: int = 2,
    in_channels: int | None = None,
    batch_size: int = 64,
    on_step: Callable[[int, int], None] | None = None,
) -> torch.Tensor:
    """Images that maximise each channel of ``layer``: (K, C_in, *size) in [0, 1], one per channel.

    ``channels=None`` means every channel of the layer. ``steps`` defaults to 30 ("plain") or 128
    ("robust"); ``lr`` to 0.02 (plain: RMS change per pixel per step) or 0.05 (robust: RMS change per spectrum coefficient per step).
    ``size`` is H = W (or a tuple) for 2-D models and T for 1-D ones. Channels are optimised
    ``batch_size`` at a time; every row is independent so this does not change the result.
    The model's training modes are restored afterwards and its parameters are never changed.
    ``on_step(done, total)`` is called after every ascent step of every batch (a progress bar: a
    64-channel atlas takes 20 s and more on a CPU).
    """
    if method not in ("plain", "robust"):
        raise CnnlabError(f"unknown filter method {method!r}; choose 'plain' or 'robust'")
    shape = _input_shape(model, size, in_channels)
    channels = _channels(model, layer, shape, channels)
    steps = steps if steps is not None else (30 if method == "plain" else 128)
    lr = lr if lr is not None else (0.02 if method == "plain" else 0.05)
    run = _ascend_plain if method == "plain" else _ascend_robust
    chunks = []
    total, done = steps * math.ceil(len(channels) / batch_size), 0

    def tick() -> None:
        nonlocal done
        done += 1
        if on_step is not None:
            on_step(done, total)

    # No TF32 and no autotuned cuDNN algorithms: both round differently for different batch sizes,
    # and ascent amplifies rounding, so batched and one-at-a-time runs would drift apart on a GPU.
    cudnn = torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, benchmark=False,
                                       deterministic=True, allow_tf32=False)
    with explain_mode(model), torch.enable_grad(), cudnn:
        for start in range(0, len(channels), batch_size):
            chunk = channels[start : start + batch_size]
            gens = [torch.Generator().manual_seed(_row_seed(seed, c)) for c in chunk]
            chunks.append(run(model, layer, chunk, shape, gens, steps, lr, border, tick))
    return torch.cat(chunks)


def filter_atlas(images: torch.Tensor, nrow: int | None = None, pad: int = 2) -> torch.Tensor:
    """The images of :func:`visualize_filters` tiled into one (C, H', W') grid (white padding).

    ``nrow`` images per row (default: near-square). Plain torch, the same layout as
    render's ``make_grid``, kept here so that explain computes tensors without
    importing render (render draws what it is handed and imports nothing from explain).
    """
    n, c, h, w = images.shape
    nrow = nrow or max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / nrow)
    grid = images.new_full((c, rows * (h + pad) + pad, nrow * (w + pad) + pad), 1.0)
    for i in range(n):
        r, col = divmod(i, nrow)
        top, left = pad + r * (h + pad), pad + col * (w + pad)
        grid[:, top : top + h, left : left + w] = images[i]
    return grid


# ------------------------------------------------------------------------------------------ setup
def _row_seed(seed: int, channel: int) -> int:
    # Distinct, well-separated seeds per (seed, channel): seed s, channel c+1 must not equal seed s+1, c.
    return (seed * 1_000_003 + channel * 7_919 + 12_345) % (2**63)


def _input_shape(model: nn.Module, size: int | Sequence[int], in_channels: int | None) -> tuple[int, ...]:
    channels, dims = input_layout(model)
    channels = in_channels or channels
    if channels is None or dims is None:
        raise CnnlabError("cannot tell the model's input layout (no convolution); pass in_channels= and a size tuple")
    spatial = (size,) * dims if isinstance(size, int) else tuple(size)
    if len(spatial) != dims:
        raise CnnlabError(f"size {size} has {len(spatial)} axes but the model's input has {dims} spatial axes")
    return (channels, *spatial)


def _channels(model: nn.Module, layer: str, shape: tuple[int, ...], channels: Sequence[int] | None) -> list[int]:
    probe = torch.full((1, *shape), 0.5, device=model_device(model), dtype=model_dtype(model))
    with explain_mode(model), torch.no_grad():
        act = forward_to(model, probe, layer)
    if act.dim() < 2:
        raise CnnlabError(f"layer {layer!r} outputs shape {tuple(act.shape)}, which has no channel axis")
    count = act.shape[1]
    if channels is None:
        return list(range(count))
    channels = [int(c) for c in channels]
    if not channels:  # an empty batch would fail deep inside as torch.cat of nothing
        raise CnnlabError(f"no channels to visualise; pass at least one channel index of layer {layer!r} "
                          f"(0..{count - 1})")
    bad = [c for c in channels if not 0 <= c < count]
    if bad:
        raise CnnlabError(f"channel(s) {bad} out of range; layer {layer!r} has channels 0..{count - 1}")
    return channels


def _layout(x: torch.Tensor) -> torch.Tensor:
    """Channels-last images on CPU: oneDNN's NHWC convolutions ran the ascent ~2x faster here (measured
    on mini_xception, batch 64 and batch 1 alike); the numbers agree with NCHW to rounding."""
    return x.contiguous(memory_format=torch.channels_last) if x.device.type == "cpu" and x.dim() == 4 else x


def _objective(act: torch.Tensor, chunk: list[int], border: int) -> torch.Tensor:
    """Sum over rows of row i's mean activation of channel chunk[i], border excluded."""
    rows = act[torch.arange(len(chunk), device=act.device), torch.tensor(chunk, device=act.device)]  # (K, *sp)
    for axis in range(1, rows.dim()):
        b = border if rows.shape[axis] > 2 * border else 0  # too small a map: keep it all
        rows = rows.narrow(axis, b, rows.shape[axis] - 2 * b)
    return rows.flatten(1).float().mean(dim=1).sum()


# ------------------------------------------------------------------------------------------ plain
def _ascend_plain(model, layer, chunk, shape, gens, steps, lr, border, tick) -> torch.Tensor:  # type: ignore[no-untyped-def]
    device, dtype = model_device(model), model_dtype(model)
    x = torch.stack([0.5 + (torch.rand(shape, generator=g) - 0.5) * 0.25 for g in gens])
    x = x.to(device=device, dtype=dtype)
    for _ in range(steps):
        x = _layout(x).requires_grad_(True)
        loss = _objective(forward_to(model, x.clone(), layer), chunk, border)  # clone: see compute_cam
        (grad,) = torch.autograd.grad(loss, x)
        rms = grad.flatten(1).pow(2).mean(dim=1).sqrt().reshape(-1, *([1] * len(shape)))
        x = (x + lr * grad / (rms + 1e-8)).detach()
        tick()
    return _deprocess(x.float())


def _deprocess(x: torch.Tensor) -> torch.Tensor:
    """Per image: mean 0.5, standard deviation 0.15, clipped to [0, 1] (the Keras display recipe)."""
    flat = x.flatten(1)
    mean = flat.mean(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
    std = flat.std(dim=1).reshape(-1, *([1] * (x.dim() - 1)))
    return ((x - mean) / (std + 1e-5) * 0.15 + 0.5).clamp(0, 1)


# ----------------------------------------------------------------------------------------- robust
class _FourierImage:
    """Images as 1/f-scaled spectra: sigmoid(colour-decorrelate(irfft(spectrum * scale)))."""

    def __init__(self, shape: tuple[int, ...], gens: list[torch.Generator], device, dtype) -> None:  # type: ignore[no-untyped-def]
        self.shape = shape
        spatial = shape[1:]
        freqs = [torch.fft.fftfreq(n) for n in spatial[:-1]] + [torch.fft.rfftfreq(spatial[-1])]
        grid = torch.meshgrid(*freqs, indexing="ij")
        radius = torch.sqrt(sum(f**2 for f in grid))
        self.scale = (1.0 / radius.clamp(min=1.0 / max(spatial))).to(device)  # (*fft_shape)
        spec = [torch.randn(shape[0], *radius.shape, 2, generator=g) * 0.2 for g in gens]
        self.param = torch.stack(spec).to(device).requires_grad_(True)  # (K, C, *fft_shape, 2)
        self.dtype = dtype

    def step(self, grad: torch.Tensor, lr: float) -> None:
        """Move each row along its own gradient, normalised to unit RMS.

        Not Adam: Adam's per-element scaling turns rounding-level differences in near-zero gradients
        into full-size steps, so a batch would drift away from the one-at-a-time result.
        """
        rms = grad.flatten(1).pow(2).mean(dim=1).sqrt().reshape(-1, *([1] * (grad.dim() - 1)))
        with torch.no_grad():
            self.param += lr * grad / (rms + 1e-12)

    def __call__(self) -> torch.Tensor:
        spectrum = torch.view_as_complex(self.param) * self.scale
        dims = tuple(range(2, 2 + len(self.shape) - 1))
        image = torch.fft.irfftn(spectrum, s=self.shape[1:], dim=dims, norm="ortho") / 4.0
        if self.shape[0] == 3:
            image = torch.einsum("dc,nc...->nd...", _COLOR.to(image.device), image)
        return torch.sigmoid(image).to(self.dtype)


def _ascend_robust(model, layer, chunk, shape, gens, steps, lr, border, tick) -> torch.Tensor:  # type: ignore[no-untyped-def]
    device, dtype = model_device(model), model_dtype(model)
    image = _FourierImage(shape, gens, device, dtype)
    for _ in range(steps):
        x = _layout(_random_transform(image(), gens))
        loss = _objective(forward_to(model, x, layer), chunk, border)
        (grad,) = torch.autograd.grad(loss, image.param)
        image.step(grad, lr)
        tick()
    with torch.no_grad():
        return image().float()


def _random_transform(x: torch.Tensor, gens: list[torch.Generator]) -> torch.Tensor:
    """Pad by reflection, then per row a random jitter, scale and rotation (lucent's standard set).

    Implemented as one batched ``grid_sample`` with a per-row affine matrix, each row's parameters
    drawn from its own generator. 1-D inputs get the jitter and scaling only.
    """
    one_d = x.dim() == 3
    img = x[:, :, None] if one_d else x  # (K, C, H, W)
    # Reflection, not lucent's constant grey: a flat border gives near-ties in max pooling whose
    # winner then depends on rounding, and batched and single runs would drift apart.
    img = F.pad(img, (12, 12) if one_d else (12, 12, 12, 12), mode="reflect")
    h, w = img.shape[2:]
    thetas = []
    for g in gens:
        tx, ty = (torch.randint(-8, 9, (2,), generator=g).float() * 2 / torch.tensor([w, h])).tolist()
        scale = 1 + (torch.randint(0, 11, (1,), generator=g).item() - 5) / 50
        angle = 0.0 if one_d else math.radians(torch.randint(-10, 11, (1,), generator=g).item())
        cos, sin = math.cos(angle) / scale, math.sin(angle) / scale
        thetas.append([[cos, -sin, tx], [sin, cos, 0.0 if one_d else ty]])
    theta = torch.tensor(thetas, device=x.device, dtype=img.dtype)
    grid = F.affine_grid(theta, list(img.shape), align_corners=False)
    out = F.grid_sample(img, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return out[:, :, 0] if one_d else out
