"""ResNets (He et al. 2015/2016): ImageNet resnet18/34/50 and the CIFAR resnet20/32/56.

ImageNet variants follow torchvision exactly (7x7/2 stem + 3x3/2 max pool, stages 64-512, projection
shortcuts "option B", stride on the bottleneck's 3x3 "v1.5"), so the parameter counts for 1000
classes are the published 11,689,512 / 21,797,672 / 25,557,032. CIFAR variants follow the paper's
section 4.2: a 3x3 conv with 16 filters, three stages of n basic blocks (16, 32, 64 filters; depth
6n+2) and the parameter-free "option A" shortcut, giving 0.27M / 0.46M / 0.85M parameters.
plain20/32/56 are the paper's "plain" baselines (its figure 1 and section 4.2): the same layers with
every shortcut removed (``shortcut="none"``); option A has no parameters, so each plain net counts
exactly as many as its ResNet.

Defaults: ``num_classes=1000`` for the ImageNet family, ``10`` for the CIFAR family; ``in_channels=3``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import ClassifierHead, ConvNormAct, PadShortcut, Residual, annotate_names
from cnnlab.models._registry import Backbone, register_model


def basic_block(in_ch: int, width: int, stride: int, shortcut: str) -> Residual:
    """3x3 conv-BN-ReLU, 3x3 conv-BN, add the shortcut, ReLU. Output channels: ``width``."""
    main = nn.Sequential(
        ConvNormAct(in_ch, width, 3, stride, padding=1),
        ConvNormAct(width, width, 3, padding=1, act=None),
    )
    return _residual(main, in_ch, width, stride, shortcut)


def bottleneck_block(in_ch: int, width: int, stride: int, shortcut: str) -> Residual:
    """1x1 reduce, 3x3 (strided), 1x1 expand to ``4 * width``; add; ReLU."""
    main = nn.Sequential(
        ConvNormAct(in_ch, width, 1, padding=0),
        ConvNormAct(width, width, 3, stride, padding=1),
        ConvNormAct(width, 4 * width, 1, padding=0, act=None),
    )
    return _residual(main, in_ch, 4 * width, stride, shortcut)


def _residual(main: nn.Module, in_ch: int, out_ch: int, stride: int, shortcut: str) -> nn.Module:
    if shortcut == "none":  # the plain baseline: the same layers and the same ReLU, nothing added
        return nn.Sequential(OrderedDict(main=main, act=nn.ReLU()))
    if shortcut == "pad" and (in_ch != out_ch or stride != 1):
        return Residual(main, in_ch, out_ch, stride, shortcut=PadShortcut(in_ch, out_ch, stride), act="relu")
    return Residual(main, in_ch, out_ch, stride, project=True, projection_norm="bn", act="relu")


_BLOCKS = {"basic": (basic_block, 1), "bottleneck": (bottleneck_block, 4)}


class ResNet(Backbone):
    """A stem, ``len(layers)`` stages of residual blocks (the first block of stages 2+ strides by 2), a head.

    Args:
        block: ``"basic"`` or ``"bottleneck"``.
        layers: blocks per stage, e.g. (2, 2, 2, 2) for resnet18.
        widths: base filters per stage (a bottleneck stage outputs 4x as many).
        stem: ``"imagenet"`` (7x7/2 conv + 3x3/2 max pool) or ``"cifar"`` (one 3x3 conv).
        shortcut: ``"projection"`` (1x1 conv + BN where shapes change), ``"pad"`` (CIFAR option A) or
            ``"none"`` (a plain network: no shortcut at all).
    """

    def __init__(self, num_classes: int = 1000, in_channels: int = 3, *, block: str = "basic",
                 layers: Sequence[int] = (2, 2, 2, 2), widths: Sequence[int] = (64, 128, 256, 512),
                 stem: str = "imagenet", shortcut: str = "projection", dropout: float = 0.0) -> None:
        super().__init__()
        if block not in _BLOCKS or stem not in ("imagenet", "cifar") or shortcut not in ("projection", "pad", "none"):
            raise CnnlabError(f"resnet: block must be basic|bottleneck, stem imagenet|cifar, shortcut "
                              f"projection|pad|none; got {block!r}, {stem!r}, {shortcut!r}")
        if len(layers) != len(widths):
            raise CnnlabError(f"resnet: layers {tuple(layers)} and widths {tuple(widths)} differ in length")
        self.num_classes, self.in_channels = num_classes, in_channels
        make_block, expansion = _BLOCKS[block]
        if stem == "imagenet":
            self.stem = nn.Sequential(ConvNormAct(in_channels, widths[0], 7, 2, padding=3),
                                      nn.MaxPool2d(3, 2, padding=1))
        else:
            self.stem = nn.Sequential(ConvNormAct(in_channels, widths[0], 3, padding=1))
        stages, channels = [], widths[0]
        for i, (n, width) in enumerate(zip(layers, widths, strict=True)):
            blocks = []
            for j in range(n):
                stride = 2 if i > 0 and j == 0 else 1
                blocks.append(make_block(channels, width, stride, shortcut))
                channels = width * expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.num_features = channels
        self.head = ClassifierHead(channels, num_classes, dropout=dropout)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, num_features, H/32, W/32) (ImageNet stem) or (N, 64, H/4, W/4) (CIFAR)."""
        return self.stages(self.stem(x))



def _imagenet(block: str, layers: tuple[int, ...], num_classes: int, in_channels: int, **kwargs) -> ResNet:
    return ResNet(num_classes, in_channels, block=block, layers=layers, **kwargs)


def _cifar(n: int, num_classes: int, in_channels: int, **kwargs) -> ResNet:
    kwargs = {"widths": (16, 32, 64), "stem": "cifar", "shortcut": "pad", **kwargs}
    return ResNet(num_classes, in_channels, block="basic", layers=(n, n, n), **kwargs)


@register_model(tags=("classify", "imagenet", "paper"))
def resnet18(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-18 (11,689,512 parameters for 1000 classes)."""
    return _imagenet("basic", (2, 2, 2, 2), num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "imagenet", "paper"))
def resnet34(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-34 (21,797,672 parameters for 1000 classes)."""
    return _imagenet("basic", (3, 4, 6, 3), num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "imagenet", "paper"))
def resnet50(num_classes: int = 1000, in_channels: int = 3, **kwargs) -> ResNet:
    """ResNet-50 with bottlenecks (25,557,032 parameters for 1000 classes)."""
    return _imagenet("bottleneck", (3, 4, 6, 3), num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def resnet20(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """CIFAR ResNet-20 (n=3, 0.27M parameters)."""
    return _cifar(3, num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def resnet32(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """CIFAR ResNet-32 (n=5, 0.46M parameters)."""
    return _cifar(5, num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def resnet56(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """CIFAR ResNet-56 (n=9, 0.85M parameters)."""
    return _cifar(9, num_classes, in_channels, **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def plain20(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """resnet20 without its shortcuts: He et al.'s plain-20 (0.27M parameters, as resnet20)."""
    return _cifar(3, num_classes, in_channels, shortcut="none", **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def plain32(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """resnet32 without its shortcuts: plain-32 (0.46M parameters)."""
    return _cifar(5, num_classes, in_channels, shortcut="none", **kwargs)


@register_model(tags=("classify", "cifar", "paper"))
def plain56(num_classes: int = 10, in_channels: int = 3, **kwargs) -> ResNet:
    """resnet56 without its shortcuts: plain-56, whose training error is above plain-20's (0.85M parameters)."""
    return _cifar(9, num_classes, in_channels, shortcut="none", **kwargs)
