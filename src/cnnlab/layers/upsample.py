"""Three ways to upsample by an integer factor, for image-to-image (and signal-to-signal) models.

- ``TransposedUp``: a learned transposed conv; kernel ``scale`` (odd) or ``2*scale`` (even) so that
  the output is exactly ``scale`` times the input.
- ``PixelShuffleUp``: conv to ``out * scale**dims`` channels then rearrange channels into space
  (sub-pixel conv, Shi et al. 2016), initialised ICNR so it starts free of checkerboard artefacts.
- ``ResizeConvUp``: nearest/linear resize then a conv (Odena et al. 2016's checkerboard-free choice).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.layers.act import make_act
from cnnlab.layers.conv_norm_act import ConvNormAct
from cnnlab.layers.naming import check_channels


class TransposedUp(nn.Module):
    """Transposed conv (+ optional BN and activation) that multiplies every spatial size by ``scale``."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, *, dims: int = 2,
                 norm: str | None = None, act: str | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        # Output = (in-1)*s - 2p + k: k=s, p=0 gives s*in; for even s, k=2s, p=s/2 also does (less aliasing).
        kernel, pad = (scale, 0) if scale % 2 else (2 * scale, scale // 2)
        conv = nn.ConvTranspose2d if dims == 2 else nn.ConvTranspose1d
        self.conv = conv(in_channels, out_channels, kernel, scale, pad, bias=norm is None)
        bn = nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d
        self.bn = bn(out_channels) if norm == "bn" else nn.Identity()
        self.act = nn.Identity() if act is None else make_act(act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(self, x, self.in_channels)
        return self.act(self.bn(self.conv(x)))


def _shuffle_1d(x: torch.Tensor, scale: int) -> torch.Tensor:
    n, c, t = x.shape
    x = x.reshape(n, c // scale, scale, t)  # (N, C, s, T)
    return x.permute(0, 1, 3, 2).reshape(n, c // scale, t * scale)  # (N, C, T*s)


class PixelShuffleUp(nn.Module):
    """Conv to ``out * scale**dims`` channels, then move those channels into space."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3, *,
                 dims: int = 2, act: str | None = None) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale, self.dims = in_channels, out_channels, scale, dims
        self.conv = ConvNormAct(in_channels, out_channels * scale**dims, kernel_size, dims=dims,
                                order="conv-act", norm=None, act=None)
        self.shuffle = nn.PixelShuffle(scale) if dims == 2 else nn.Identity()
        self.act = nn.Identity() if act is None else make_act(act)
        self._icnr()

    @torch.no_grad()
    def _icnr(self) -> None:
        # ICNR (Aitken et al. 2017): the scale**dims sub-filters of each output channel start equal,
        # so the initial upsampling is nearest-neighbour rather than a random checkerboard.
        conv, r = self.conv.conv, self.scale**self.dims
        for p in (conv.weight, conv.bias):  # the bias too, or the sub-pixels differ by a constant
            if p is not None:
                p.copy_(p[::r].clone().repeat_interleave(r, dim=0))  # one filter per output channel

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv(x)
        x = self.shuffle(x) if self.dims == 2 else _shuffle_1d(x, self.scale)
        return self.act(x)


class ResizeConvUp(nn.Module):
    """Resize by ``scale`` (nearest or (bi)linear), then a 'same' conv with BN and activation."""

    def __init__(self, in_channels: int, out_channels: int, scale: int = 2, kernel_size: int = 3, *,
                 dims: int = 2, mode: str = "nearest", norm: str | None = "bn",
                 act: str | None = "relu") -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.scale = in_channels, out_channels, scale
        self.mode = {"linear": "bilinear" if dims == 2 else "linear"}.get(mode, mode)
        self.conv = ConvNormAct(in_channels, out_channels, kernel_size, dims=dims, norm=norm, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_channels(self, x, self.in_channels)
        align = None if self.mode == "nearest" else False
        return self.conv(F.interpolate(x, scale_factor=self.scale, mode=self.mode, align_corners=align))
