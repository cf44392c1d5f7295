"""A small, fast CIFAR-10 network in the style of airbench94 (Keller Jordan, 2024).

Lineage and credit: David Page's ResNet-9 ("How to train your ResNet", 2018) showed that a narrow
VGG-like net with max-pooling after the first conv of each group trains to 94% in minutes;
tysam-code's hlb-CIFAR10 added the fixed patch-whitening first layer and the scaled output; Keller
Jordan's airbench94 (https://github.com/KellerJordan/airbench) put the pieces together. This file
keeps airbench94's architecture:

    whiten (2x2 conv, fixed from data) -> GELU
    3 x ConvGroup: conv3x3 -> maxpool2 -> BN -> GELU -> conv3x3 -> BN -> GELU    (64, 256, 256 wide)
    maxpool3 -> flatten -> linear (no bias) -> x 1/9

Spatial sizes at 32x32 input: 31 (whiten, no padding) -> 15 -> 7 -> 3 -> 1.

``init_from_data(x)`` sets the input normalisation and the whitening weights from a sample of
training images (ZCA-like: the eigenvectors of the 2x2-patch covariance scaled by 1/sqrt(eigenvalue),
and their negatives, so the GELU after it sees both signs). The trainer calls it once before training.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.models._registry import Backbone, register_model

# CIFAR-10 training statistics, used until init_from_data measures the real data.
_CIFAR_MEAN = (0.4914, 0.4822, 0.4465)
_CIFAR_STD = (0.2470, 0.2435, 0.2616)


class ConvGroup(nn.Module):
    """conv3x3 -> maxpool 2 -> BN -> GELU -> conv3x3 -> BN -> GELU (pooling early saves 3/4 of the compute)."""

    def __init__(self, in_ch: int, out_ch: int, bn_momentum: float = 0.4) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_ch, out_ch, 3, padding=1, bias=False)
        self.pool = nn.MaxPool2d(2)
        self.norm1 = nn.BatchNorm2d(out_ch, momentum=bn_momentum, eps=1e-12)
        self.conv2 = nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False)
        self.norm2 = nn.BatchNorm2d(out_ch, momentum=bn_momentum, eps=1e-12)
        self.act = nn.GELU()
        # airbench: BN scale fixed at 1 (only the shift learns), which the high LR needs for stability.
        for norm in (self.norm1, self.norm2):
            norm.weight.requires_grad_(False)
        # Identity-like init for the 3x3 convs: the first in_ch filters pass their input through.
        for conv in (self.conv1, self.conv2):
            _dirac_init(conv)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act(self.norm1(self.pool(self.conv1(x))))
        return self.act(self.norm2(self.conv2(x)))


def _dirac_init(conv: nn.Conv2d) -> None:
    """Default init, then the first min(in, out) filters become identities (airbench's trick)."""
    n = min(conv.in_channels, conv.out_channels)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:n])


class CifarFast(Backbone):
    """airbench94's network. Input: float NCHW in [0, 1], 32x32 (other sizes work; the head pools globally)."""

    def __init__(self, num_classes: int = 10, in_channels: int = 3, widths: tuple[int, int, int] = (64, 256, 256),
                 scaling: float = 1 / 9, bn_momentum: float = 0.4) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.in_channels = in_channels
        self.scaling = scaling
        whiten_width = 2 * in_channels * 2 * 2  # every 2x2 patch direction, both signs
        self.register_buffer("mean", torch.tensor(_stats(_CIFAR_MEAN, in_channels)).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(_stats(_CIFAR_STD, in_channels)).view(1, -1, 1, 1))
        self.whiten = nn.Conv2d(in_channels, whiten_width, 2, padding=0, bias=True)
        # Fixed weights (set from data); only its bias learns, and the recipe trains it for a few epochs.
        self.whiten.weight.requires_grad_(False)
        self.act = nn.GELU()
        self.group1 = ConvGroup(whiten_width, widths[0], bn_momentum)
        self.group2 = ConvGroup(widths[0], widths[1], bn_momentum)
        self.group3 = ConvGroup(widths[1], widths[2], bn_momentum)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(widths[2], num_classes, bias=False)

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor, eps: float = 5e-4) -> None:
        """Set the normalisation and the whitening filters from training images x: float (N, C, H, W) in [0, 1].

        The 2x2 patches of the normalised images have covariance V diag(l) V^T; the filters are
        V^T / sqrt(l + eps) (decorrelated, unit variance), stacked with their negatives.
        """
        x = x.float()
        self.mean.copy_(x.mean(dim=(0, 2, 3)).view(1, -1, 1, 1))
        self.std.copy_(x.std(dim=(0, 2, 3)).view(1, -1, 1, 1).clamp_min(1e-6))
        xn = (x - self.mean) / self.std
        c = self.in_channels
        patches = xn.unfold(2, 2, 1).unfold(3, 2, 1)  # (N, C, H-1, W-1, 2, 2)
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(-1, c * 4).double()  # (P, C*2*2)
        cov = patches.T @ patches / len(patches)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)
        filters = (eigenvectors.T / torch.sqrt(eigenvalues + eps)[:, None]).view(c * 4, c, 2, 2)
        self.whiten.weight.copy_(torch.cat([filters, -filters]).to(self.whiten.weight.dtype))
        self.whiten.bias.zero_()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std  # (N, C, 32, 32)
        x = self.act(self.whiten(x))  # (N, 24, 31, 31)
        x = self.group3(self.group2(self.group1(x)))  # (N, 256, 3, 3)
        return self.pool(x).flatten(1)  # (N, 256)

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc(features) * self.scaling  # small logits at init, as airbench/hlb scale them


def _stats(values: tuple[float, ...], channels: int) -> list[float]:
    """CIFAR statistics for 3 channels; their average repeated for any other channel count."""
    if channels == len(values):
        return list(values)
    return [sum(values) / len(values)] * channels


@register_model(tags=("classify", "images32"))
def cifar_fast(num_classes: int = 10, in_channels: int = 3, width: int = 256) -> CifarFast:
    """airbench94's CIFAR net (~2M params); train it with `--recipe cifar10-fast`.

    airbench94 reports 94% on CIFAR-10 after 9.9 epochs of its full recipe (with lookahead and
    test-time augmentation); benchmarks/cifar10_time_to_acc.py measured 92.2% after a 5-epoch schedule on a 2-core CPU.

    ``width`` sets the last two groups (the first is width // 4); 256 is airbench94's.
    """
    return CifarFast(num_classes, in_channels, widths=(width // 4, width, width))
