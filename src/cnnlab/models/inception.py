"""A small Inception-v3-style network and its Xception-style twin, sized to the same parameter count.

The pair re-runs the comparison of Chollet's Xception paper (CVPR 2017, section 4) at CIFAR scale:
Xception replaces Inception's multi-tower modules (1x1 reductions, then 3x3 convolutions per tower)
with depthwise separable convolutions, the "extreme" form of the Inception hypothesis that
cross-channel and spatial correlations can be mapped separately. Both nets share one skeleton, so
the module type is the only difference:

    stem: 3x3 conv-BN-ReLU (stride ``stem_stride``)
    stage 1:  ``blocks`` modules                          (full resolution)
    stage 2:  grid reduction (/2), ``blocks`` modules     (1/2)
    stage 3:  grid reduction (/2), ``blocks`` modules     (1/4)
    head:     global average pool -> linear

``inception_small``: Inception-v3 module A (Szegedy et al. 2016, figure 5: the 5x5 tower factorised
into two 3x3), towers 1x1 | 1x1 -> 3x3 | 1x1 -> 3x3 -> 3x3 | avg-pool -> 1x1 in the ratio
2 : 2 : 3 : 2 of a unit ``c`` (torchvision's InceptionA at 35x35 is c = 32: 64 + 64 + 96 + 64 = 288
channels), so a module outputs 9c. The grid reduction is v3's figure 10 (torchvision's InceptionB):
3x3/2 | 1x1 -> 3x3 -> 3x3/2 | max-pool/2, concatenated, which doubles 9c to 18c. Every conv is
conv-BN-ReLU; like Inception v3 there are no residual connections.

``xception_small``: Xception's own blocks from ``cnnlab.models.xception`` (Keras order ReLU ->
SeparableConv -> BN): middle-flow modules of three separable convs with an identity shortcut, and
entry-flow reductions (two separable convs, 3x3/2 max pool, 1x1/2 conv + BN shortcut). Residual, as
in the paper, whose Xception has residual connections and whose Inception v3 has none.

The defaults (Inception widths 72, 144, 288; Xception 64, 128, 280; two modules per stage) give
826,938 / 819,794 parameters for 10 classes (0.9% apart; a test holds them within 2% for 1 to 1000
classes) and 116.7 M / 150.0 M mult-adds per 32x32 image. ``num_classes=10``, ``in_channels=3``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import ClassifierHead, ConvNormAct, annotate_names
from cnnlab.models._registry import Backbone, register_model

# Xception's blocks are reused as they are, so the twin is Xception's modules and nothing new.
from cnnlab.models.xception import _down_block, _middle_block


class Towers(nn.Module):
    """Parallel towers on one input, concatenated along channels: (N, C, H, W) -> (N, sum C_i, H', W')."""

    def __init__(self, *towers: nn.Module) -> None:
        super().__init__()
        self.towers = nn.ModuleList(towers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([tower(x) for tower in self.towers], dim=1)


def _cbr(in_ch: int, out_ch: int, kernel: int = 1, stride: int = 1) -> ConvNormAct:
    # Integer padding k // 2: a stride-2 3x3 conv then gives ceil(H / 2), exactly as the max pool beside it.
    return ConvNormAct(in_ch, out_ch, kernel, stride, padding=kernel // 2)


def inception_module(in_ch: int, c: int) -> Towers:
    """Inception-v3 module A with unit ``c``: 2c (1x1) + 2c (1x1 -> 3x3) + 3c (double 3x3) + 2c (pool) = 9c."""
    return Towers(
        _cbr(in_ch, 2 * c),
        nn.Sequential(_cbr(in_ch, 3 * c // 2), _cbr(3 * c // 2, 2 * c, 3)),
        nn.Sequential(_cbr(in_ch, 2 * c), _cbr(2 * c, 3 * c, 3), _cbr(3 * c, 3 * c, 3)),
        nn.Sequential(nn.AvgPool2d(3, 1, padding=1, count_include_pad=False), _cbr(in_ch, 2 * c)),
    )


def grid_reduction(in_ch: int, c: int) -> Towers:
    """Inception-v3 grid reduction from 9c channels: 6c (3x3/2) + 3c (1x1 -> 3x3 -> 3x3/2) + 9c (max pool) = 18c."""
    return Towers(
        _cbr(in_ch, 6 * c, 3, 2),
        nn.Sequential(_cbr(in_ch, 2 * c), _cbr(2 * c, 3 * c, 3), _cbr(3 * c, 3 * c, 3, 2)),
        nn.MaxPool2d(3, 2, padding=1),
    )


class TwinNet(Backbone):
    """The shared skeleton: stem, three stages (the last two open with a /2 reduction), GAP + linear.

    Args:
        module: ``"inception"`` or ``"xception"``.
        widths: output channels of the three stages. Inception needs 9c, 18c, 36c (unit c doubling per
            stage, which its grid reduction produces); Xception takes any widths.
        blocks: modules per stage.
        stem_width: channels of the 3x3 stem conv (Xception's stem outputs ``widths[0]`` directly,
            since its middle-flow modules keep their width).
        stem_stride: 1 for 32x32 images; 2 for 96-128 px photos (a quarter of the compute).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, *, module: str = "inception",
                 widths: Sequence[int] = (72, 144, 288), blocks: int = 2, stem_width: int = 32,
                 stem_stride: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if module not in ("inception", "xception") or len(widths) != 3 or blocks < 1:
            raise CnnlabError(f"twin net: module must be inception|xception, widths three numbers and blocks >= 1; "
                              f"got {module!r}, {widths}, {blocks}")
        if module == "inception" and (widths[0] % 18 or widths[1] != 2 * widths[0] or widths[2] != 4 * widths[0]):
            raise CnnlabError(f"inception widths {widths} must be 9c, 18c, 36c for an even unit c "
                              "(each grid reduction doubles the channels), e.g. widths=[72,144,288]")
        self.num_classes, self.in_channels, self.module = num_classes, in_channels, module
        stem_out = stem_width if module == "inception" else widths[0]
        self.stem = ConvNormAct(in_channels, stem_out, 3, stem_stride, padding=1)
        stages, channels = [], stem_out
        for i, width in enumerate(widths):
            layers: list[nn.Module] = []
            if module == "inception":
                c = width // 9
                if i > 0:
                    layers.append(grid_reduction(channels, c // 2))  # 9 (c/2) -> 18 (c/2) = 9c channels
                layers += [inception_module(channels if j == 0 and i == 0 else width, c) for j in range(blocks)]
            else:
                if i > 0:
                    layers.append(_down_block(channels, width, width, first_relu=True))
                layers += [_middle_block(width) for _ in range(blocks)]
            stages.append(nn.Sequential(*layers))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, widths[-1], H/4, W/4) (H/8 with ``stem_stride=2``)."""
        return self.stages(self.stem(x))



@register_model(tags=("classify", "cifar", "experiment"))
def inception_small(num_classes: int = 10, in_channels: int = 3, **kwargs) -> TwinNet:
    """Inception-v3-style: module A towers, v3 grid reductions, no residuals (0.81M parameters)."""
    return TwinNet(num_classes, in_channels, **{"module": "inception", **kwargs})


@register_model(tags=("classify", "cifar", "experiment"))
def xception_small(num_classes: int = 10, in_channels: int = 3, **kwargs) -> TwinNet:
    """Xception-style twin of inception_small: separable convs with residuals, the same parameter count."""
    return TwinNet(num_classes, in_channels, **{"module": "xception", "widths": (64, 128, 280), **kwargs})
