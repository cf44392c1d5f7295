"""1D CNNs for sound classification: raw-waveform M5 and its residual and separable cousins, with an
optional log-mel front end computed in the model (so ONNX export carries it).

The lecture's point: a 1D convolution does for time what a 2D one does for images. ``m5`` is
Dai et al. 2017 ("Very deep convolutional neural networks for raw waveforms", their M5)::

    Conv1d(128, 80, stride 4)                  # a 10 ms filter at 8 kHz, hopping 0.5 ms
    BN -> ReLU -> MaxPool(4)
    for width in 128, 256, 512:
        Conv1d(width, 3) -> BN -> ReLU -> MaxPool(4)
    GlobalAveragePool -> Linear

``m5_res`` makes each stage a residual block (two convs and a projected shortcut, He et al.), and
``mini_xception1d`` is the lecture's mini-Xception in 1D: pre-activation depthwise-separable blocks
with wide (9-tap) kernels, strided max pooling and 1x1 projected shortcuts.

Every model starts with ``WaveNorm`` (per-clip DC removal and RMS scaling: loudness is not a class),
then either the raw stem (a long strided convolution) or, with ``frontend="mel"``, ``LogMel``: a
short-time Fourier transform as a strided convolution with fixed windowed-DFT kernels, power,
a mel filterbank (HTK mel scale, area-normalised triangles) and a log, then batch norm per mel band.
The time axis of the mel frames is then convolved like the waveform's: ``n_mels`` input channels.
``sample_rate`` (given by the audio task from the data) places the mel filters and sizes the raw stem.

For voices the model never heard (the `audio-fsdd` recipe), three mel options matter more than size:
``top_db`` floors the frames that far below the clip's peak, so one recording's hiss and another's
digital silence look alike; ``mel_norm="instance"`` normalises each clip's bands over its own frames
instead of by training-set statistics (a microphone's colouring is a constant per band); and
SpecAugment's masks (``freq_mask``, ``time_mask``) in training.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from contextlib import nullcontext

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import ClassifierHead, ConvNormAct, MaxPoolSame, Residual, SeparableBlock, annotate_names
from cnnlab.models._registry import Backbone, register_model

BLOCKS = ("plain", "residual", "separable")
FRONTENDS = ("raw", "mel")


class WaveNorm(nn.Module):
    """(N, C, T) -> the same with each channel's mean removed and each clip scaled to unit RMS."""

    def __init__(self, eps: float = 1e-8) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x - x.mean(dim=-1, keepdim=True)
        return x * torch.rsqrt(x.pow(2).mean(dim=(1, 2), keepdim=True) + self.eps)


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, fmin: float, fmax: float) -> torch.Tensor:
    """(n_mels, n_fft // 2 + 1) triangular filters equally spaced on the HTK mel scale
    (mel = 2595 log10(1 + f / 700)), each of unit area so that wide high filters do not dominate."""

    def to_mel(f: float) -> float:
        return 2595.0 * math.log10(1.0 + f / 700.0)

    bins = torch.linspace(0, sample_rate / 2, n_fft // 2 + 1, dtype=torch.float64)  # (F,) bin centres, Hz
    # (plain floats for the band's ends: the model is also built on the meta device, which has no values)
    mels = torch.linspace(to_mel(fmin), to_mel(fmax), n_mels + 2, dtype=torch.float64)
    edges = 700.0 * (10 ** (mels / 2595.0) - 1.0)
    lo, mid, hi = edges[:-2, None], edges[1:-1, None], edges[2:, None]  # (n_mels, 1)
    rise, fall = (bins - lo) / (mid - lo), (hi - bins) / (hi - mid)
    tri = torch.clamp(torch.minimum(rise, fall), min=0.0)  # (n_mels, F)
    return (tri * (2.0 / (hi - lo))).float()


class LogMel(nn.Module):
    """Waveforms (N, C, T) -> log-mel spectrograms (N, C * n_mels, T // hop + 1), centred frames.

    The STFT is a Conv1d with fixed kernels (cosine and sine rows of a Hann-windowed DFT), so the
    graph is plain convolution, multiply and log: it exports to ONNX and runs under torch.compile.
    It runs in fp32 even under autocast (a power spectrum spans more range than bf16's 3 digits).
    """

    def __init__(self, sample_rate: int, in_channels: int = 1, n_mels: int = 40, win_ms: float = 25.0,
                 hop_ms: float = 10.0, fmin: float = 20.0, fmax: float | None = None, eps: float = 1e-6,
                 top_db: float | None = None) -> None:
        super().__init__()
        if top_db is not None and top_db <= 0:
            raise CnnlabError(f"top_db={top_db}: the floor below each clip's loudest mel value, in dB, must be positive")
        self.top_db = top_db
        win = max(8, round(sample_rate * win_ms / 1000))
        self.n_fft = 1 << (win - 1).bit_length()  # the next power of two
        self.hop = max(1, round(sample_rate * hop_ms / 1000))
        self.n_mels, self.in_channels, self.eps = n_mels, in_channels, eps
        fmax = sample_rate / 2 if fmax is None else fmax
        if not 0 <= fmin < fmax <= sample_rate / 2:
            raise CnnlabError(f"mel band {fmin}..{fmax} Hz does not fit a {sample_rate} Hz rate; keep "
                              f"0 <= fmin < fmax <= {sample_rate // 2}")
        window = torch.zeros(self.n_fft, dtype=torch.float64)
        left = (self.n_fft - win) // 2
        window[left:left + win] = torch.hann_window(win, periodic=True, dtype=torch.float64)
        k = torch.arange(self.n_fft // 2 + 1, dtype=torch.float64)[:, None]
        angle = 2 * math.pi * k * torch.arange(self.n_fft, dtype=torch.float64)[None] / self.n_fft  # (F, n_fft)
        dft = torch.cat([torch.cos(angle), -torch.sin(angle)]) * window  # (2F, n_fft): real rows, imaginary rows
        # Not persistent: rebuilt from the model's kwargs, so checkpoints hold only what is learned.
        self.register_buffer("dft", dft.float()[:, None], persistent=False)  # (2F, 1, n_fft)
        self.register_buffer("filters", mel_filterbank(sample_rate, self.n_fft, n_mels, fmin, fmax), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, t = x.shape
        # fp32 under autocast; the meta device (shape checks) has no autocast to turn off
        off = torch.autocast(x.device.type, enabled=False) if x.device.type in ("cpu", "cuda") else nullcontext()
        with off:
            x = x.float().reshape(n * c, 1, t)
            x = F.pad(x, (self.n_fft // 2, self.n_fft // 2))  # frame i centred on sample i * hop
            spec = F.conv1d(x, self.dft, stride=self.hop)  # (N*C, 2F, frames)
            re, im = spec.chunk(2, dim=1)
            mel = torch.matmul(self.filters, re * re + im * im)  # (N*C, n_mels, frames)
            out = torch.log(mel + self.eps)
            if self.top_db is not None:  # silence, digital or recorded, at one floor below the clip's peak
                floor = out.amax(dim=(1, 2), keepdim=True) - self.top_db * math.log(10) / 10
                out = torch.maximum(out, floor)
        return out.reshape(n, c * self.n_mels, -1)  # (N, C*n_mels, frames)

    def extra_repr(self) -> str:
        top = "" if self.top_db is None else f", top_db={self.top_db:g}"
        return f"n_fft={self.n_fft}, hop={self.hop}, n_mels={self.n_mels}{top}"


MEL_NORMS = ("batch", "instance")


class InstanceMelNorm(nn.Module):
    """(N, B, T) log-mel frames -> each clip's bands at zero mean and unit variance over time
    (cepstral mean and variance normalisation): a microphone's or a room's fixed colouring is a
    constant per band in the log domain, so it is removed, whoever recorded the clip. No statistics
    are kept, so an unheard speaker is normalised by their own clip, not by the training set's."""

    def __init__(self, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mean = x.mean(dim=-1, keepdim=True)  # (N, B, 1)
        var = (x - mean).pow(2).mean(dim=-1, keepdim=True)
        return (x - mean) * torch.rsqrt(var + self.eps)


class SpecAugment(nn.Module):
    """SpecAugment's masking (Park et al. 2019) in training only: ``masks`` bands of up to ``freq``
    mel bins and ``masks`` spans of up to ``time`` frames per clip set to zero (the mean, after
    instance normalisation). Identity in eval mode, like dropout, and drawn from torch's global
    generator as dropout is (the trainer seeds it)."""

    def __init__(self, freq: int = 0, time: int = 0, masks: int = 2) -> None:
        super().__init__()
        if freq < 0 or time < 0 or masks < 0:
            raise CnnlabError(f"freq_mask={freq}, time_mask={time}, masks={masks}: widths and counts must be >= 0")
        self.freq, self.time, self.masks = freq, time, masks

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.masks == 0 or (self.freq == 0 and self.time == 0):
            return x
        n, bands, frames = x.shape
        keep = torch.ones_like(x, dtype=torch.bool)
        for size, axis, width in ((bands, 1, self.freq), (frames, 2, self.time)):
            if width == 0:
                continue
            position = torch.arange(size, device=x.device)
            for _ in range(self.masks):
                w = torch.randint(0, min(width, size) + 1, (n, 1), device=x.device)
                start = (torch.rand(n, 1, device=x.device) * (size - w + 1)).long()  # (N, 1)
                hit = (position >= start) & (position < start + w)  # (N, size)
                keep &= ~(hit[:, :, None] if axis == 1 else hit[:, None, :])
        return x * keep

    def extra_repr(self) -> str:
        return f"freq={self.freq}, time={self.time}, masks={self.masks}"


def _stage(block: str, c_in: int, c_out: int, depth: int, kernel: int, pool: int) -> nn.Module:
    """One stage at one time resolution: ``depth`` convolutions (plain, residual or separable) that
    end ``pool`` times shorter."""
    pool_layer = MaxPoolSame(max(pool, 2), pool, dims=1) if pool > 1 else nn.Identity()
    if block == "plain":
        convs = [ConvNormAct(c_in if i == 0 else c_out, c_out, kernel, dims=1) for i in range(depth)]
        return nn.Sequential(*convs, pool_layer)
    if block == "residual":
        units = []
        for i in range(depth):
            a = c_in if i == 0 else c_out
            main = nn.Sequential(ConvNormAct(a, c_out, kernel, dims=1),
                                 ConvNormAct(c_out, c_out, kernel, dims=1, order="conv-bn", act=None))
            units.append(Residual(main, a, c_out, project=True, act="relu", dims=1))
        return nn.Sequential(*units, pool_layer)
    # separable: the mini-Xception stage, pooling inside the residual so the shortcut is strided
    blocks = [SeparableBlock(c_in if i == 0 else c_out, c_out, kernel, order="bn-relu-conv", dims=1) for i in range(depth)]
    main = nn.Sequential(*blocks, pool_layer)
    return Residual(main, c_in, c_out, stride=pool, project=True, projection_norm=None, dims=1)


class WaveCNN(Backbone):
    """WaveNorm, a raw or log-mel front end, stages of 1D blocks, global-average-pool classifier.

    Args:
        widths: the stem's filters, then each stage's.
        block: ``plain`` (conv-BN-ReLU), ``residual`` or ``separable`` (see the module doc).
        depth: convolutions (blocks) per stage; kernel: their size in time steps.
        frontend: ``raw`` (a ``stem_kernel``-tap convolution with stride ``stem_stride``, then pooling)
            or ``mel`` (``LogMel`` with ``n_mels`` bands, then a ``kernel``-tap convolution).
        pool: how much shorter each stage ends (default 4 on raw samples, 2 on mel frames).
        stem_kernel: taps of the raw stem (default 10 ms at ``sample_rate``: 80 at 8 kHz, as M5).
        mel_norm: ``batch`` (a BatchNorm per mel band, with training-set statistics) or ``instance``
            (each clip's bands normalised over its own frames: ``InstanceMelNorm``).
        top_db: floor the log-mel frames this many dB below each clip's loudest value (None: no floor).
        freq_mask, time_mask, masks: SpecAugment in training (``SpecAugment``; 0 = off).
    """

    dims = 1

    def __init__(self, num_classes: int = 10, in_channels: int = 1, *, sample_rate: int = 8000,
                 widths: Sequence[int] = (128, 128, 256, 512), block: str = "plain", depth: int = 1,
                 kernel: int = 3, frontend: str = "raw", pool: int | None = None, stem_kernel: int | None = None,
                 stem_stride: int = 4, n_mels: int = 40, dropout: float = 0.0, mel_norm: str = "batch",
                 top_db: float | None = None, freq_mask: int = 0, time_mask: int = 0, masks: int = 2) -> None:
        super().__init__()
        widths = _int_list("widths", widths)
        if block not in BLOCKS:
            raise CnnlabError(f"block={block!r}: choose one of {', '.join(BLOCKS)}")
        if frontend not in FRONTENDS:
            raise CnnlabError(f"frontend={frontend!r}: choose raw (waveform convolutions) or mel (log-mel frames)")
        if mel_norm not in MEL_NORMS:
            raise CnnlabError(f"mel_norm={mel_norm!r}: choose batch (per-band, training-set statistics) or instance "
                              "(each clip by its own frames)")
        if frontend == "raw" and (mel_norm != "batch" or top_db is not None or freq_mask or time_mask):
            raise CnnlabError("mel_norm, top_db, freq_mask and time_mask shape the log-mel frames; add "
                              "--model-arg frontend=mel")
        if len(widths) < 2 or depth < 1:
            raise CnnlabError(f"widths needs the stem's and at least one stage's width and depth >= 1, got "
                              f"widths={list(widths)}, depth={depth}")
        self.num_classes, self.in_channels, self.sample_rate = num_classes, in_channels, sample_rate
        self.frontend_name = frontend
        self.norm = WaveNorm()
        if frontend == "raw":
            pool = 4 if pool is None else pool
            taps = stem_kernel or max(3, round(sample_rate / 100))
            self.mel = None
            self.spec_augment = None
            self.stem = nn.Sequential(ConvNormAct(in_channels, widths[0], taps, stem_stride, dims=1),
                                      MaxPoolSame(pool, pool, dims=1))
        else:
            pool = 2 if pool is None else pool
            self.mel = LogMel(sample_rate, in_channels, n_mels, top_db=top_db)
            # stem.0: per-band level and spread, the training set's (batch) or each clip's own (instance);
            # SpecAugment masks its output (forward_features), so masked cells sit at the mean
            bands = in_channels * n_mels
            self.spec_augment = SpecAugment(freq_mask, time_mask, masks)
            self.stem = nn.Sequential(nn.BatchNorm1d(bands) if mel_norm == "batch" else InstanceMelNorm(),
                                      ConvNormAct(bands, widths[0], kernel, dims=1))
        stages, channels = [], widths[0]
        for width in widths[1:]:
            stages.append(_stage(block, channels, width, depth, kernel, pool))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = ClassifierHead(channels, num_classes, dropout=dropout, dims=1)
        annotate_names(self)

    def spectrogram(self, x: torch.Tensor) -> torch.Tensor | None:
        """The log-mel frames the model sees, averaged over channels, (N, n_mels, frames); None for raw models."""
        if self.mel is None:
            return None
        n = x.shape[0]
        return self.mel(self.norm(x)).reshape(n, self.in_channels, self.mel.n_mels, -1).mean(dim=1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, T) waveform -> (N, widths[-1], T') features over time."""
        x = self.norm(x)
        if self.mel is None:
            return self.stages(self.stem(x))
        x = self.spec_augment(self.stem[0](self.mel(x)))  # (N, C*n_mels, frames), normalised per band
        return self.stages(self.stem[1:](x))


def _int_list(name: str, value: object) -> list[int]:
    """A list of positive integers from a sequence or a "32,64" string (--model-arg already turns
    widths=32,64 into a list; Python callers may still pass the string)."""
    items = value.split(",") if isinstance(value, str) else value
    try:
        numbers = [int(v) for v in items]  # type: ignore[union-attr]
        ok = all(float(v) == n and n > 0 for v, n in zip(items, numbers, strict=True))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise CnnlabError(f"{name}={value!r} must be a list of positive integers, e.g. --model-arg {name}=[32,64]")
    return numbers


@register_model(tags=("audio", "1d"))
def m5(num_classes: int = 10, in_channels: int = 1, **kwargs) -> WaveCNN:
    """M5 (Dai et al. 2017) on raw waveforms: 0.56M parameters at 10 classes; --model-arg frontend=mel for log-mel."""
    return WaveCNN(num_classes, in_channels, **{"widths": (128, 128, 256, 512), "block": "plain", **kwargs})


@register_model(tags=("audio", "1d"))
def m5_res(num_classes: int = 10, in_channels: int = 1, **kwargs) -> WaveCNN:
    """M5 with residual stages (two 3-tap convs and a projected shortcut each)."""
    return WaveCNN(num_classes, in_channels, **{"widths": (64, 64, 128, 256), "block": "residual", **kwargs})


@register_model(tags=("audio", "1d"))
def mini_xception1d(num_classes: int = 10, in_channels: int = 1, **kwargs) -> WaveCNN:
    """The lecture's mini-Xception in 1D: separable 9-tap blocks, two per stage, pooled residual stages."""
    return WaveCNN(num_classes, in_channels, **{"widths": (64, 64, 128, 256), "block": "separable", "depth": 2,
                                                "kernel": 9, **kwargs})
