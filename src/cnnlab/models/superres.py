"""Single-image super-resolution: ESPCN (Shi et al. 2016) and a CPU-sized EDSR-baseline.

Input: the low-resolution image (N, C, h, w), floats in [0, 1] (not mean/std normalised). Output:
the super-resolved image (N, C, scale*h, scale*w) on the same [0, 1] scale, not clamped (clamping
would stop the gradient of pixels that overshoot; clamp for display). Any h, w work.

Contract: ``num_classes`` is the number of *output channels*, which is ``in_channels`` (the models
are built without ``num_classes``); ``out_channels`` and ``scale`` say the same plainly.

- ``espcn``: the paper's network: conv 5x5 (64) tanh -> conv 3x3 (32) tanh -> conv 3x3 to
  C * scale**2 -> pixel shuffle, all in LR space. 'same' padding so the output is exactly scale times
  the input (the paper trained on valid-padded patches). The sub-pixel conv is
  :class:`cnnlab.layers.PixelShuffleUp`, whose ICNR initialisation (Aitken et al. 2017) starts it
  free of checkerboard patterns: only the initial weights differ from the paper, not the layers or
  the parameter count. ``forward_features`` is the two tanh layers, ``forward_head`` the sub-pixel conv.
- ``edsr_cpu``: EDSR-baseline (Lim et al. 2017) sized for a CPU: mean shift, head conv, ``n_blocks``
  residual blocks (conv-ReLU-conv, no BN, optional residual scaling), a conv, the skip from the head,
  a pixel-shuffle upsampler (one x2/x3 stage, or x2 stages for powers of two), a final conv to C.
  ``global_skip=True`` (default) adds the bicubic upsampling of the input, so the network only learns
  the missing detail; its last conv starts with small weights, so at initialisation the model is
  close to bicubic interpolation and early training is much faster.
"""

from __future__ import annotations

import math
import operator

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import ConvNormAct, PixelShuffleUp, Rescale, Residual, annotate_names
from cnnlab.models._registry import Backbone, register_model

# DIV2K's RGB training mean (the EDSR code's rgb_mean); other channel counts use the mid-grey 0.5.
DIV2K_RGB_MEAN = (0.4488, 0.4371, 0.4040)
# Gain on edsr_cpu's default-initialised last conv when the bicubic skip is on: the learned residual
# starts ~10x smaller than with the default init, so the model starts near bicubic, not near noise.
TAIL_INIT_GAIN = 0.1


def _conv(in_channels: int, out_channels: int, kernel_size: int = 3, act: str | None = None) -> ConvNormAct:
    """A 'same' conv with bias and no norm (SR networks drop BN: it removes the range an image needs)."""
    return ConvNormAct(in_channels, out_channels, kernel_size, order="conv-act", norm=None, act=act)


def _check_scale(scale: object, name: str, allowed: str) -> int:
    """``scale`` as an int >= 2 (NumPy integers too), else a CnnlabError naming the model."""
    try:
        value = None if isinstance(scale, bool) else operator.index(scale)  # type: ignore[call-overload]
    except TypeError:
        value = None
    if value is None or value < 2:
        raise CnnlabError(f"{name}: scale must be an integer >= 2 ({allowed}), got {scale!r}")
    return value


def upsample_factors(scale: int) -> tuple[int, ...]:
    """The x2/x3 pixel-shuffle stages for ``scale``: (2,), (3,), (2, 2) for 4, (2, 2, 2) for 8."""
    if scale in (2, 3):
        return (scale,)
    if scale & (scale - 1) == 0:  # a power of two: x2 stages, as EDSR does for x4
        return (2,) * int(math.log2(scale))
    raise CnnlabError(f"edsr_cpu: scale must be 2, 3 or a power of two, got {scale}")


def bicubic(x: torch.Tensor, scale: int) -> torch.Tensor:
    """(N, C, h, w) -> (N, C, scale*h, scale*w), bicubic with align_corners=False (PIL/MATLAB-like grid)."""
    size = (int(x.shape[-2]) * scale, int(x.shape[-1]) * scale)
    return F.interpolate(x, size=size, mode="bicubic", align_corners=False)


class ESPCN(Backbone):
    """Shi et al. 2016: two tanh conv layers in LR space, then one sub-pixel conv layer."""

    def __init__(self, scale: int = 2, in_channels: int = 3) -> None:
        super().__init__()
        self.scale = _check_scale(scale, "espcn", "2, 3, 4, ...")
        self.in_channels = self.out_channels = self.num_classes = in_channels
        self.features = nn.Sequential(_conv(in_channels, 64, 5, act="tanh"), _conv(64, 32, 3, act="tanh"))
        self.num_features = 32
        self.upsample = PixelShuffleUp(32, in_channels, self.scale, 3)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) in [0, 1] -> (N, 32, h, w) LR feature maps."""
        return self.features(x)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """(N, 32, h, w) -> conv to (N, C*s*s, h, w) -> pixel shuffle to (N, C, s*h, s*w)."""
        return self.upsample(features)


def res_block(width: int, res_scale: float) -> Residual:
    """EDSR's block: x + res_scale * conv(ReLU(conv(x))), no batch norm."""
    main = nn.Sequential(_conv(width, width, act="relu"), _conv(width, width), Rescale(res_scale))
    return Residual(main, width, width)


class EDSR(Backbone):
    """EDSR-baseline family: mean shift, head, residual body with its own skip, upsampler, tail.

    Args:
        width: channels of every body conv (EDSR-baseline 64; 48 here for a CPU).
        n_blocks: residual blocks (EDSR-baseline 16).
        res_scale: residual scaling inside each block (EDSR uses 0.1 for its wide model; 1.0 is fine
            at this size).
        global_skip: add bicubic(x) to the output; without it the mean is added back instead.
    """

    def __init__(self, scale: int = 2, in_channels: int = 3, *, width: int = 48, n_blocks: int = 8,
                 res_scale: float = 1.0, global_skip: bool = True) -> None:
        super().__init__()
        self.scale = _check_scale(scale, "edsr_cpu", "2, 3 or a power of two")
        if width < 1 or n_blocks < 0:
            raise CnnlabError(f"edsr_cpu: width must be >= 1 and n_blocks >= 0, got {width}, {n_blocks}")
        self.in_channels = self.out_channels = self.num_classes = in_channels
        self.width, self.global_skip = width, bool(global_skip)
        mean = DIV2K_RGB_MEAN if in_channels == 3 else (0.5,) * in_channels
        self.register_buffer("mean", torch.tensor(mean).reshape(1, in_channels, 1, 1), persistent=False)
        self.head = _conv(in_channels, width)
        body = nn.Sequential(*[res_block(width, res_scale) for _ in range(n_blocks)], _conv(width, width))
        self.body = Residual(body, width, width)  # the long skip from the head's output
        self.upsample = nn.Sequential(*[PixelShuffleUp(width, width, f) for f in upsample_factors(self.scale)])
        self.tail = _conv(width, in_channels)
        self.num_features = width + (in_channels if self.global_skip else 0)
        if self.global_skip:
            self._shrink_tail()
        annotate_names(self)

    @torch.no_grad()
    def _shrink_tail(self) -> None:
        # With the bicubic skip the tail predicts a correction: start it small (bias 0) so the model
        # starts near bicubic, while every layer still gets a non-zero gradient from the first step.
        self.tail.conv.weight.mul_(TAIL_INIT_GAIN)
        self.tail.conv.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, h, w) -> LR features (N, width, h, w); with ``global_skip`` the LR image rides along.

        The bicubic skip needs the input in ``forward_head``; carrying it as the last C channels,
        (N, width + C, h, w), keeps ``forward(x) == forward_head(forward_features(x))`` without state.
        """
        features = self.body(self.head(x - self.mean))  # (N, width, h, w)
        return torch.cat([features, x], dim=1) if self.global_skip else features

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """LR features -> upsampler -> tail conv -> (N, C, s*h, s*w), plus bicubic(x) or the mean."""
        out = self.tail(self.upsample(features[:, : self.width]))  # (N, C, s*h, s*w)
        if self.global_skip:
            return out + bicubic(features[:, self.width :], self.scale)
        return out + self.mean


@register_model(tags=("superres", "paper"))
def espcn(scale: int = 2, in_channels: int = 3) -> ESPCN:
    """ESPCN (Shi et al. 2016): 2 tanh convs + a sub-pixel conv; 31,131 parameters for RGB x3."""
    return ESPCN(scale, in_channels)


@register_model(tags=("superres",))
def edsr_cpu(scale: int = 2, in_channels: int = 3, **kwargs) -> EDSR:
    """EDSR-baseline for a CPU: 8 residual blocks of 48 channels, bicubic global skip."""
    return EDSR(scale, in_channels, **kwargs)
