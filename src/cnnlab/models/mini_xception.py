"""The lecture's small Xception-like network (Chollet, *Deep Learning with Python*, 2nd ed., ch. 9).

The listing, layer for layer::

    Rescaling(1/255) -> Conv2D(32, 5, use_bias=False)               # 'valid' padding
    for size in 32, 64, 128, 256, 512:
        residual = x
        [BN -> ReLU -> SeparableConv2D(size, 3, 'same', no bias)] x 2
        MaxPooling2D(3, strides=2, padding='same')
        residual = Conv2D(size, 1, strides=2, padding='same', use_bias=False)(residual)
        x = add([x, residual])
    GlobalAveragePooling2D -> Dropout(0.5) -> Dense

Rescaling: the listing's ``Rescaling(1/255)`` maps its raw [0, 255] pixels to [0, 1]. Our inputs
already arrive as floats in [0, 1] (the trainer's preprocessing), so the equivalent in-model rescale
is ``input_scale=1.0``; pass ``input_scale=1/255`` to feed raw [0, 255] tensors instead.

Head: ``num_classes`` logits (the listing's binary ``Dense(1, 'sigmoid')`` is ``num_classes=1``).
Default ``num_classes=10``, ``in_channels=3``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ClassifierHead,
    ConvNormAct,
    MaxPoolSame,
    Rescale,
    Residual,
    SeparableBlock,
    annotate_names,
)
from cnnlab.models._registry import Backbone, register_model


class MiniXception(Backbone):
    """Stem conv, one residual stage per width, global-average-pool classifier.

    Args:
        widths: filters per stage (each stage halves the spatial size).
        depth: separable blocks per stage (2 in the listing).
        stem_width, stem_kernel: the first plain conv (32 filters, 5x5, 'valid').
        order: order inside each separable block; the listing's pre-activation ``"bn-relu-conv"``.
        project: 1x1 strided conv on each shortcut, as in the listing (False only for experiments:
            the stages then fail with a shape error naming the block).
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 3, *,
                 widths: Sequence[int] = (32, 64, 128, 256, 512), depth: int = 2, stem_width: int = 32,
                 stem_kernel: int = 5, dropout: float = 0.5, input_scale: float = 1.0,
                 order: str = "bn-relu-conv", project: bool = True) -> None:
        super().__init__()
        if depth < 1 or not widths:
            raise CnnlabError(f"mini_xception needs depth >= 1 and at least one width, got depth={depth}, "
                              f"widths={tuple(widths)}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.rescale = Rescale(input_scale)
        self.stem = ConvNormAct(in_channels, stem_width, stem_kernel, padding="valid", norm=None, act=None,
                                bias=False, order="conv")
        stages = []
        channels = stem_width
        for width in widths:
            blocks = [SeparableBlock(channels if i == 0 else width, width, 3, order=order) for i in range(depth)]
            main = nn.Sequential(*blocks, MaxPoolSame(3, 2))
            stages.append(Residual(main, channels, width, stride=2, project=project, projection_norm=None))
            channels = width
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) in [0, 1] -> (N, widths[-1], ~H/32, ~W/32)."""
        return self.stages(self.stem(self.rescale(x)))



@register_model(tags=("classify", "small", "lecture"))
def mini_xception(num_classes: int = 10, in_channels: int = 3, **kwargs) -> MiniXception:
    """The lecture's small Xception (DLwP 2nd ed. ch. 9), ~0.72M parameters at the defaults."""
    return MiniXception(num_classes, in_channels, **kwargs)
