"""Xception (Chollet, CVPR 2017), built exactly as Keras's ``keras.applications.Xception``.

Entry flow: two plain 3x3 convs (32 stride 2 'valid', 64 'valid'), then three residual blocks (128,
256, 728) of [ReLU] -> SeparableConv -> BN twice and a 3x3/2 'same' max pool, with a 1x1/2 conv + BN
on the shortcut. Middle flow: eight blocks of 3 x (ReLU -> SeparableConv 728 -> BN), identity shortcut.
Exit flow: one residual block (728, 1024) with a pool, then SeparableConv 1536 and 2048 each followed
by BN and ReLU, global average pooling and a linear classifier (no dropout, as in Keras).

With ``num_classes=1000`` the trainable parameter count is 22,855,952 (Keras: 22,910,480 total, of
which 54,528 are BN moving statistics, which PyTorch keeps as buffers). A 299x299 input gives 10x10
feature maps. Separable convs have no bias (the BN after them has one), matching Keras exactly.
Defaults follow the paper: ``num_classes=1000``, ``in_channels=3``.
"""

from __future__ import annotations

import torch
from torch import nn

from cnnlab.layers import (
    ClassifierHead,
    ConvNormAct,
    MaxPoolSame,
    Residual,
    SeparableBlock,
    annotate_names,
)
from cnnlab.models._registry import Backbone, register_model

_ORDER = "relu-conv-bn"  # Keras Xception: activation first, BN after the separable conv


def _down_block(in_ch: int, mid: int, out_ch: int, first_relu: bool) -> Residual:
    """[ReLU] SepConv(mid) BN, ReLU SepConv(out) BN, MaxPool 3/2 'same'; 1x1/2 conv + BN shortcut."""
    main = nn.Sequential(
        SeparableBlock(in_ch, mid, 3, order=_ORDER if first_relu else "conv-bn"),
        SeparableBlock(mid, out_ch, 3, order=_ORDER),
        MaxPoolSame(3, 2),
    )
    return Residual(main, in_ch, out_ch, stride=2, project=True, projection_norm="bn")


def _middle_block(channels: int) -> Residual:
    main = nn.Sequential(*[SeparableBlock(channels, channels, 3, order=_ORDER) for _ in range(3)])
    return Residual(main, channels, channels)


class Xception(Backbone):
    """Entry, middle (``middle_blocks`` x 728) and exit flows; ``forward_features`` -> (N, 2048, h, w)."""

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, middle_blocks: int = 8,
                 dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.stem = nn.Sequential(
            ConvNormAct(in_channels, 32, 3, 2, padding="valid", bias=False),
            ConvNormAct(32, 64, 3, padding="valid", bias=False),
        )
        self.entry = nn.Sequential(
            _down_block(64, 128, 128, first_relu=False),
            _down_block(128, 256, 256, first_relu=True),
            _down_block(256, 728, 728, first_relu=True),
        )
        self.middle = nn.Sequential(*[_middle_block(728) for _ in range(middle_blocks)])
        self.exit = nn.Sequential(
            _down_block(728, 728, 1024, first_relu=True),
            SeparableBlock(1024, 1536, 3, order="conv-bn-relu"),
            SeparableBlock(1536, 2048, 3, order="conv-bn-relu"),
        )
        self.num_features = 2048
        self.head = ClassifierHead(2048, num_classes, dropout=dropout)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, 299, 299) -> (N, 2048, 10, 10); any size >= 71 works."""
        return self.exit(self.middle(self.entry(self.stem(x))))



@register_model(tags=("classify", "imagenet", "paper"))
def xception(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> Xception:
    """Xception as in the paper and Keras (22,855,952 parameters for 1000 classes)."""
    return Xception(num_classes, in_channels, **kwargs)
