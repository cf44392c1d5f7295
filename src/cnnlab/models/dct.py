"""Classifiers that read JPEG's DCT coefficients directly (Gueguen et al. 2018, "Faster Neural Networks
Straight from JPEG", NeurIPS), plus two small versions for CPUs.

Input: the packed 4:2:0 layout (N, 384, H/16, W/16) of docs (issue 13): channels 0..255 are Y's 64
coefficients at H/8 folded by ``pixel_unshuffle(y, 2)``, 256..319 Cb and 320..383 Cr at H/16.
:func:`unpack` undoes the fold. Every model ends in (N, num_classes) logits.

What we followed: the paper's figure S1 (variant diagrams; its legend: CB_n = ResNet-50's conv block n
with that stage's channels, kernel 3, stride 2 unless marked; IB = identity block) and, where the
figure leaves channel splits to the text, the Keras reimplementation by B. Deguerre
(github.com/D3lt4lph4/jpeg_deep, ``networks/resnet_dct.py``), which matches every diagram:

- ``resnet50_dct_upsampling`` (paper: UpSampling): Cb and Cr upsampled x2 by **nearest neighbour**
  (the paper's U layer; ``upsample="deconv"`` gives its learned 2x2/2 deconvolution, one per chroma
  plane), concatenated with Y (192 ch at H/8), batch norm, then ResNet-50's conv3_x with stride 1
  (the H/8 grid is already conv3's resolution), conv4_x, conv5_x. The stem, pool and conv2_x are
  skipped. The paper has no conv between the join and conv3; ``adapter=True`` adds a 1x1
  conv-BN-ReLU to 256 ch, so that conv3_x onward sees exactly ResNet-50's shapes.
- ``resnet50_dct_upsampling_rfa`` / ``resnet50_dct_deconvolution_rfa``: the same with the paper's
  receptive-field-aware prefix (below) between the join and conv3_x.
- ``resnet50_dct_late_concat``: Y alone: BN, conv3_x (stride 1) at H/8, then one strided
  bottleneck (width 128 -> 512 ch) down to H/16; Cb/Cr: BN, one 1x1 bottleneck (512 ch) at H/16;
  concatenated (1024 ch, conv4's width) in place of conv4's first block, then conv4's five identity
  blocks and conv5_x.
- ``resnet50_dct_late_concat_rfa``: receptive-field-aware: the DCT input starts with an 8 px field
  at stride 8, where RGB ResNet-50 has 35 px by conv3 (stem, pool and conv2_x add them). The
  paper gives the Y branch three extra blocks at H/8 with conv4's channels and growing kernels,
  a 1x1 conv block, identity blocks with 2x2 and 3x3 middle convs (+0, +8, +16 px: 32 px before
  conv3), so the field grows gradually to ResNet-50's instead of starting small.
- ``resnet50_dct_late_concat_rfa_thinner``: the same with fewer channels (the paper's 1.77x-faster
  one): the prefix outputs 384 (bottleneck 256), conv3 outputs 384, the strided Y block 768 and the
  chroma block 256 (still 1024 at the join).

Block detail: our bottlenecks stride on the 3x3 (torchvision's "v1.5", as ``resnet50`` here), where
the paper's Keras ResNet strides the first 1x1; parameter counts are the same. Shortcuts project
only where shapes change (option B, as ``resnet50``), so the thinner's conv3 first block, 384 -> 384
at stride 1, keeps an identity shortcut where a Keras conv block would add a 1x1 conv (148k params). Inputs get a batch
norm first, as in the paper, on top of the data pipeline's per-frequency standardisation.

Small versions (2-core CPUs): ``mini_xception_dct`` runs the lecture's mini_xception stages (default
widths 128, 256, 512, the ones whose outputs are at H/8 and below in mini_xception) on the
upsampling join; like the paper's CB3, the first stage keeps stride 1 because the join already is
at H/8, so the last map is H/32 as in mini_xception (7x7 at 224 px). ``resnet_dct_small`` is a
CIFAR-style ResNet (3x3 stem, three stages of basic blocks, option-A shortcuts) on the same join.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ClassifierHead,
    Concat,
    ConvNormAct,
    MaxPoolSame,
    Residual,
    SeparableBlock,
    annotate_names,
)
from cnnlab.models._registry import Backbone, register_model
from cnnlab.models.resnet import basic_block, bottleneck_block

DCT_CHANNELS = 384  # 256 folded Y + 64 Cb + 64 Cr
_Y_FOLDED, _Y, _CHROMA = 256, 64, 128


def unpack(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Packed (N, 384, H/16, W/16) -> (y (N, 64, H/8, W/8), chroma (N, 128, H/16, W/16): Cb then Cr)."""
    if x.dim() != 4 or x.shape[1] != DCT_CHANNELS:
        raise CnnlabError(f"DCT models take the packed layout (N, 384, H/16, W/16), got an input of shape "
                          f"{tuple(x.shape)}; feed the DCT reader's packed tensors, not RGB images")
    y = F.pixel_shuffle(x[:, :_Y_FOLDED], 2)  # (N, 256, h, w) -> (N, 64, 2h, 2w): inverse of the fold
    return y, x[:, _Y_FOLDED:]


def check_dct_channels(name: str, in_channels: int) -> None:
    """CnnlabError unless ``in_channels`` is the packed layout's 384."""
    if in_channels != DCT_CHANNELS:
        raise CnnlabError(f"{name}: in_channels={in_channels!r}, but the DCT layout has 384 channels "
                          "(256 folded Y + 64 Cb + 64 Cr); leave in_channels unset or pass 384")


class UpsampleJoin(nn.Module):
    """Unpack, bring Cb/Cr to Y's H/8 grid, concatenate: (N, 384, h, w) -> (N, 192, 2h, 2w), batch-normed.

    ``mode="nearest"`` repeats each chroma value 2x2 (no parameters); ``"deconv"`` is the paper's
    learned 2x2 stride-2 transposed conv, 64 filters each for Cb and Cr (``groups=2`` keeps them apart).
    ``frequencies=k`` keeps only the first k zig-zag coefficients of each plane (the k lowest
    frequencies; 3k channels out). Xu et al. ("Learning in the Frequency Domain", CVPR 2020) found
    that CNNs lean on the low frequencies; on a few hundred photos the rest is mostly room to overfit.
    """

    def __init__(self, mode: str = "nearest", frequencies: int = _Y) -> None:
        super().__init__()
        if not isinstance(frequencies, int) or not 1 <= frequencies <= _Y:
            raise CnnlabError(f"frequencies={frequencies!r}: keep between 1 and 64 zig-zag coefficients per plane "
                              "(64 keeps them all, 16 the lowest quarter)")
        self.frequencies = frequencies
        self.out_channels = 3 * frequencies
        chroma = 2 * frequencies
        if mode == "nearest":
            self.up: nn.Module = nn.Upsample(scale_factor=2, mode="nearest")
        elif mode == "deconv":
            self.up = nn.ConvTranspose2d(chroma, chroma, 2, stride=2, groups=2)
        else:
            raise CnnlabError(f"upsample={mode!r} is not a chroma upsampling: use 'nearest' or 'deconv'")
        self.merge = Concat()
        self.bn = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, chroma = unpack(x)
        k = self.frequencies
        if k < _Y:
            y, chroma = y[:, :k], torch.cat([chroma[:, :k], chroma[:, _Y:_Y + k]], dim=1)
        return self.bn(self.merge(y, self.up(chroma)))  # (N, 3k, H/8, W/8): Y, Cb, Cr


class LateConcatJoin(nn.Module):
    """Unpack, run Y and chroma through their own branches to the same grid, concatenate [Y, chroma]."""

    def __init__(self, y_branch: nn.Module, chroma_branch: nn.Module, out_channels: int) -> None:
        super().__init__()
        self.y_branch, self.chroma_branch = y_branch, chroma_branch
        self.merge = Concat()
        self.out_channels = out_channels

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y, chroma = unpack(x)
        return self.merge(self.y_branch(y), self.chroma_branch(chroma))


class DctNet(Backbone):
    """``join`` (packed DCT -> one feature map), ``stem``, ``stages``, global-average-pool classifier."""

    def __init__(self, join: nn.Module, stages: nn.Sequential, num_features: int, num_classes: int, *,
                 stem: nn.Module | None = None, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_classes, self.in_channels, self.num_features = num_classes, DCT_CHANNELS, num_features
        self.join = join
        self.stem = stem if stem is not None else nn.Identity()
        self.stages = stages
        self.head = ClassifierHead(num_features, num_classes, dropout=dropout)
        annotate_names(self)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, 384, H/16, W/16) packed DCT -> (N, num_features, h, w); the join checks the layout."""
        return self.stages(self.stem(self.join(x)))



# --- ResNet-50 pieces -------------------------------------------------------------------------------

def bottleneck(in_ch: int, width: int, out_ch: int, stride: int = 1, kernel: int = 3) -> nn.Module:
    """ResNet's bottleneck with the paper's two extra knobs: the middle conv's ``kernel`` and an
    ``out_ch`` other than ``4 * width``. The standard shape is ``resnet.bottleneck_block`` itself."""
    if kernel == 3 and out_ch == 4 * width:
        return bottleneck_block(in_ch, width, stride, "projection")
    if stride != 1 and kernel != 3:
        raise CnnlabError(f"bottleneck: kernel {kernel} is only used at stride 1 here, got stride {stride}")
    pad = 1 if kernel == 3 else "same"  # kernel 2: TF 'same' (extra row/column at the end), as Keras
    main = nn.Sequential(
        ConvNormAct(in_ch, width, 1, padding=0),
        ConvNormAct(width, width, kernel, stride, padding=pad),
        ConvNormAct(width, out_ch, 1, padding=0, act=None),
    )
    return Residual(main, in_ch, out_ch, stride, project=True, projection_norm="bn", act="relu")


def stage(in_ch: int, width: int, out_ch: int, blocks: int, stride: int,
          kernels: Sequence[int] | None = None) -> nn.Sequential:
    """``blocks`` bottlenecks; the first takes ``in_ch`` and the stride (a conv block), the rest are
    identity blocks. ``kernels`` gives each block's middle kernel (3 by default)."""
    kernels = list(kernels) if kernels is not None else [3] * blocks
    return nn.Sequential(*(bottleneck(in_ch if i == 0 else out_ch, width, out_ch, stride if i == 0 else 1, k)
                           for i, k in enumerate(kernels)))


# ResNet-50's stages (bottleneck width, output channels, blocks), conv3_x to conv5_x.
_CONV3, _CONV4, _CONV5 = (128, 512, 4), (256, 1024, 6), (512, 2048, 3)


def _rfa_prefix(in_ch: int, width: int, out_ch: int) -> nn.Sequential:
    """The paper's receptive-field-aware blocks at H/8: a 1x1 conv block, identity blocks with 2x2, 3x3."""
    return stage(in_ch, width, out_ch, 3, 1, kernels=(1, 2, 3))


def resnet50_upsampling_net(num_classes: int, *, upsample: str = "nearest", rfa: bool = False,
                            adapter: bool = False, dropout: float = 0.0) -> DctNet:
    """UpSampling / UpSampling-RFA / Deconvolution-RFA: join at H/8, conv3_x (stride 1) to conv5_x."""
    join = UpsampleJoin(upsample)
    stem = ConvNormAct(join.out_channels, 256, 1, padding=0) if adapter else None
    channels = 256 if adapter else join.out_channels
    stages = []
    if rfa:
        stages.append(_rfa_prefix(channels, *_CONV4[:2]))
        channels = _CONV4[1]
    for (width, out_ch, blocks), stride in zip((_CONV3, _CONV4, _CONV5), (1, 2, 2), strict=True):
        stages.append(stage(channels, width, out_ch, blocks, stride))
        channels = out_ch
    return DctNet(join, nn.Sequential(*stages), channels, num_classes, stem=stem, dropout=dropout)


def resnet50_late_concat_net(num_classes: int, *, rfa: bool = False, thinner: bool = False,
                             dropout: float = 0.0) -> DctNet:
    """Late-Concat (-RFA, -RFA-Thinner): Y alone down to H/16, chroma joins before conv4's identity blocks."""
    if thinner and not rfa:
        raise CnnlabError("thinner=True is the paper's Late-Concat-RFA-Thinner: set rfa=True too")
    # (RFA prefix out, conv3 out, strided Y block out, chroma out); Y + chroma = conv4's 1024 channels.
    prefix_out, conv3_out, y_out, chroma_out = (384, 384, 768, 256) if thinner else (1024, 512, 512, 512)
    y_blocks: list[nn.Module] = [nn.BatchNorm2d(_Y)]
    channels = _Y
    if rfa:
        y_blocks.append(_rfa_prefix(channels, 256, prefix_out))
        channels = prefix_out
    y_blocks.append(stage(channels, _CONV3[0], conv3_out, _CONV3[2], 1))
    y_blocks.append(bottleneck(conv3_out, 128, y_out, stride=2))  # H/8 -> H/16, conv4's first block
    chroma = nn.Sequential(nn.BatchNorm2d(_CHROMA), bottleneck(_CHROMA, 128, chroma_out, kernel=1))
    join = LateConcatJoin(nn.Sequential(*y_blocks), chroma, y_out + chroma_out)
    width4, out4, blocks4 = _CONV4
    stages = nn.Sequential(stage(out4, width4, out4, blocks4 - 1, 1), stage(out4, *_CONV5, 2))
    return DctNet(join, stages, _CONV5[1], num_classes, dropout=dropout)


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_upsampling(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """Gueguen et al.'s UpSampling: nearest-upsampled chroma + Y at H/8, conv3_x (stride 1) onward."""
    check_dct_channels("resnet50_dct_upsampling", in_channels)
    return resnet50_upsampling_net(num_classes, **kwargs)


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_upsampling_rfa(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """UpSampling-RFA: the upsampling join, the receptive-field-aware blocks, then conv3_x onward."""
    check_dct_channels("resnet50_dct_upsampling_rfa", in_channels)
    return resnet50_upsampling_net(num_classes, **{"rfa": True, **kwargs})


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_deconvolution_rfa(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """Deconvolution-RFA: UpSampling-RFA with learned 2x2/2 chroma deconvolutions (the paper's most accurate)."""
    check_dct_channels("resnet50_dct_deconvolution_rfa", in_channels)
    return resnet50_upsampling_net(num_classes, **{"upsample": "deconv", "rfa": True, **kwargs})


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_late_concat(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """Late-Concat: Y through conv3_x at H/8 and a strided block; chroma joins at H/16."""
    check_dct_channels("resnet50_dct_late_concat", in_channels)
    return resnet50_late_concat_net(num_classes, **kwargs)


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_late_concat_rfa(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """Late-Concat-RFA: Late-Concat whose Y branch starts with the receptive-field-aware blocks."""
    check_dct_channels("resnet50_dct_late_concat_rfa", in_channels)
    return resnet50_late_concat_net(num_classes, **{"rfa": True, **kwargs})


@register_model(tags=("classify", "dct", "imagenet", "paper"))
def resnet50_dct_late_concat_rfa_thinner(num_classes: int = 1000, in_channels: int = 384, **kwargs) -> DctNet:
    """Late-Concat-RFA-Thinner: fewer Y/chroma channels; the paper's 1.77x-faster-than-ResNet-50 one."""
    check_dct_channels("resnet50_dct_late_concat_rfa_thinner", in_channels)
    return resnet50_late_concat_net(num_classes, **{"rfa": True, "thinner": True, **kwargs})


# --- small versions ---------------------------------------------------------------------------------

def xception_stage(in_ch: int, width: int, depth: int, stride: int, order: str) -> Residual:
    """One MiniXception stage: ``depth`` separable blocks, a 3x3/2 'same' max pool unless ``stride``
    is 1, and the 1x1 (strided) projection shortcut without BN, as in the lecture's listing."""
    blocks: list[nn.Module] = [SeparableBlock(in_ch if i == 0 else width, width, 3, order=order)
                               for i in range(depth)]
    if stride == 2:
        blocks.append(MaxPoolSame(3, 2))
    return Residual(nn.Sequential(*blocks), in_ch, width, stride=stride, project=True, projection_norm=None)


def mini_xception_dct_net(num_classes: int, *, widths: Sequence[int] = (128, 256, 512), depth: int = 2,
                          dropout: float = 0.5, upsample: str = "nearest", frequencies: int = _Y,
                          order: str = "bn-relu-conv") -> DctNet:
    if depth < 1 or not widths:
        raise CnnlabError(f"mini_xception_dct needs depth >= 1 and at least one width, got depth={depth}, "
                          f"widths={tuple(widths)}")
    join = UpsampleJoin(upsample, frequencies)
    stages, channels = [], join.out_channels
    for i, width in enumerate(widths):
        stages.append(xception_stage(channels, width, depth, 1 if i == 0 else 2, order))  # join is at H/8
        channels = width
    return DctNet(join, nn.Sequential(*stages), channels, num_classes, dropout=dropout)


def resnet_dct_small_net(num_classes: int, *, widths: Sequence[int] = (64, 128, 256), depth: int = 2,
                         shortcut: str = "pad", upsample: str = "nearest", frequencies: int = _Y,
                         dropout: float = 0.0) -> DctNet:
    if depth < 1 or not widths:
        raise CnnlabError(f"resnet_dct_small needs depth >= 1 and at least one width, got depth={depth}, "
                          f"widths={tuple(widths)}")
    if shortcut not in ("projection", "pad"):
        raise CnnlabError(f"resnet_dct_small: shortcut must be 'projection' or 'pad', got {shortcut!r}")
    join = UpsampleJoin(upsample, frequencies)
    stem = ConvNormAct(join.out_channels, widths[0], 3, padding=1)
    stages, channels = [], widths[0]
    for i, width in enumerate(widths):
        blocks = [basic_block(channels if j == 0 else width, width, 2 if i > 0 and j == 0 else 1, shortcut)
                  for j in range(depth)]
        stages.append(nn.Sequential(*blocks))
        channels = width
    return DctNet(join, nn.Sequential(*stages), channels, num_classes, stem=stem, dropout=dropout)


@register_model(tags=("classify", "dct", "small"))
def mini_xception_dct(num_classes: int = 10, in_channels: int = 384, **kwargs) -> DctNet:
    """mini_xception's H/8-and-below stages (widths 128, 256, 512) on the upsampling join."""
    check_dct_channels("mini_xception_dct", in_channels)
    return mini_xception_dct_net(num_classes, **kwargs)


@register_model(tags=("classify", "dct", "small"))
def resnet_dct_small(num_classes: int = 10, in_channels: int = 384, **kwargs) -> DctNet:
    """A CIFAR-style ResNet (3x3 stem, basic blocks 64/128/256, option A) on the upsampling join."""
    check_dct_channels("resnet_dct_small", in_channels)
    return resnet_dct_small_net(num_classes, **kwargs)
