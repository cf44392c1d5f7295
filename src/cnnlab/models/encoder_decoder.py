"""The lecture's encoder-decoder for semantic segmentation, and U-Net (Ronneberger et al. 2015).

Encoder: one stage per width. Stage 0 runs at the input resolution; every later stage starts with a
*strided* 3x3 convolution (stride 2, padding 1) that halves the size: there is no pooling anywhere,
the network learns how to downsample (the lecture's point: pooling throws away the *where* that a
segmenter has to give back). Decoder: per encoder stage but the last, a 2x2 transposed convolution
with stride 2 (U-Net's "up-conv", exactly doubling the size, no overlapping taps) + BN + ReLU, then
the stage's blocks. ``skips=True`` concatenates the encoder's feature map of the same resolution
onto the upsampled one (U-Net), so the decoder's first block of each stage sees twice the channels.
A 1x1 convolution turns the last decoder map into per-pixel logits.

Blocks (``block=``): ``"conv"`` (3x3 conv-BN-ReLU), ``"separable"`` (depthwise-separable 3x3 conv,
BN, ReLU) or ``"residual"`` (the ResNet basic block, 1x1 projection where the shape changes);
``blocks_per_stage`` of them per stage, the first one of encoder stages 1+ strided.

Input sizes. With ``depth = len(widths)`` the chain of ``depth - 1`` strided convs maps n to
ceil(n / 2) each time, and the transposed convs double, so only sizes the chain maps back onto
itself (multiples of ``2**(depth-1)``; computed with :mod:`cnnlab.ops.shape`, not assumed) let the
skips line up and the logits come out at the input size. Any other size is padded on the bottom and
right up to the next such size, and the decoder's output is cropped back, so every input (N, C, H, W)
gives logits (N, num_classes, H, W). The padding *replicates* the border pixels: reflect padding
would look more natural but needs the pad to be smaller than the image, which fails for small inputs
(a 5-pixel-wide image padded to 8 with depth 4); the padded cells are cropped away and only feed the
receptive fields of pixels near the bottom/right edge.

``forward_features`` returns the decoder's last feature map (N, widths[0], H, W) and ``forward_head``
the 1x1 classifier conv, so Grad-CAM can hook any decoder layer (for a padded input the hooked maps
have the padded size, which the CAM's resize to the input stretches by at most 2**(depth-1) - 1
pixels). Default ``num_classes=7``: the built-in shapes data (background + 6 shapes), ``in_channels=3``.

CPU budget: the defaults (widths 32-256, one block per stage) cost 3.2 G mult-adds per 256x256 image
without skips, 5.0 G with them. On 2 CPU cores, a unet forward + backward on a batch of 4 crops of
256x256 ran at ~2 images/s in fp32 NCHW, ~4 in channels_last and ~9 with bf16 autocast.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import Concat, ConvNormAct, Residual, annotate_names
from cnnlab.models._registry import Backbone, register_model
from cnnlab.ops.shape import conv_output_size, conv_transpose_output_size

# (kernel, stride, padding) of every downsampling conv and every upsampling transposed conv. The size
# arithmetic below reads these same constants, so the padding rule cannot drift from the layers.
DOWN = (3, 2, 1)
UP = (2, 2, 0)
BLOCKS = ("conv", "separable", "residual")


def make_block(kind: str, in_channels: int, out_channels: int, stride: int = 1) -> nn.Module:
    """One block of type ``kind``; 3x3 with padding 1, so stride 2 maps n to ceil(n / 2) as DOWN does."""
    kernel, _, pad = DOWN
    if kind == "conv":
        return ConvNormAct(in_channels, out_channels, kernel, stride, padding=pad)
    if kind == "separable":
        return ConvNormAct(in_channels, out_channels, kernel, stride, padding=pad, separable=True)
    main = nn.Sequential(
        ConvNormAct(in_channels, out_channels, kernel, stride, padding=pad),
        ConvNormAct(out_channels, out_channels, kernel, padding=pad, act=None),
    )
    return Residual(main, in_channels, out_channels, stride, project=True, projection_norm="bn", act="relu")


def up_conv(in_channels: int, out_channels: int) -> nn.Sequential:
    """U-Net's 2x2 up-convolution with stride 2 (exactly doubles the size), then BN and ReLU."""
    kernel, stride, pad = UP
    return nn.Sequential(OrderedDict(
        conv=nn.ConvTranspose2d(in_channels, out_channels, kernel, stride, pad, bias=False),
        bn=nn.BatchNorm2d(out_channels),
        act=nn.ReLU(),
    ))


def _round_trips(n: int, depth: int) -> bool:
    """True when ``depth - 1`` strided convs and as many transposed convs bring size n back to n.

    Every decoder stage must also meet its encoder stage's size, or the U-Net concatenation fails.
    """
    sizes = [n]
    for _ in range(depth - 1):
        sizes.append(conv_output_size(sizes[-1], *DOWN))
    size = sizes[-1]
    for skip in reversed(sizes[:-1]):
        size = conv_transpose_output_size(size, *UP)
        if size != skip:
            return False
    return True


def fitted_size(n: int, depth: int) -> int:
    """The smallest size >= n that the encoder-decoder maps back onto itself (a multiple of 2**(depth-1)).

    At most 2**(depth-1) tries of a few integer operations each, so it runs on every forward pass
    (uncached: torch.compile traces it as plain Python on static sizes).
    """
    m = n
    while not _round_trips(m, depth):
        m += 1
    return m


class DecoderStage(nn.Module):
    """Upsample x2, concatenate the encoder's map of that size (U-Net only), then the blocks."""

    def __init__(self, in_channels: int, out_channels: int, skip_channels: int, block: str, n: int) -> None:
        super().__init__()
        self.up = up_conv(in_channels, out_channels)
        self.merge = Concat() if skip_channels else None
        first = out_channels + skip_channels
        self.blocks = nn.Sequential(*[make_block(block, first if j == 0 else out_channels, out_channels)
                                      for j in range(n)])
        self.in_channels, self.out_channels = in_channels, out_channels

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None = None) -> torch.Tensor:
        x = self.up(x)  # (N, out, 2h, 2w)
        if self.merge is not None:
            x = self.merge(x, skip)  # (N, out + skip, 2h, 2w)
        return self.blocks(x)


class EncoderDecoder(Backbone):
    """Strided-conv encoder, transposed-conv decoder, optional U-Net skips, 1x1 classifier.

    Args:
        widths: channels per stage, encoder order; ``len(widths)`` stages, ``len(widths) - 1`` halvings.
        skips: concatenate encoder features into the decoder (U-Net).
        block: ``"conv"``, ``"separable"`` or ``"residual"``, the block every stage is built from.
        blocks_per_stage: blocks per encoder and decoder stage (1 or 2).
    """

    def __init__(self, num_classes: int = 7, in_channels: int = 3, *,
                 widths: Sequence[int] = (32, 64, 128, 256), skips: bool = False, block: str = "conv",
                 blocks_per_stage: int = 1) -> None:
        super().__init__()
        widths = tuple(int(w) for w in widths)
        if block not in BLOCKS:
            raise CnnlabError(f"encoder_decoder: block must be one of {', '.join(BLOCKS)}, got {block!r}")
        if not widths or min(widths) < 1 or blocks_per_stage not in (1, 2):
            raise CnnlabError(f"encoder_decoder needs at least one positive width and blocks_per_stage 1 or 2, "
                              f"got widths={widths}, blocks_per_stage={blocks_per_stage!r}")
        self.num_classes, self.in_channels = num_classes, in_channels
        self.widths, self.skips, self.depth = widths, bool(skips), len(widths)
        self.encoder = nn.ModuleList(self._encoder_stage(i, block, blocks_per_stage) for i in range(self.depth))
        self.decoder = nn.ModuleList(
            DecoderStage(widths[i], widths[i - 1], widths[i - 1] if skips else 0, block, blocks_per_stage)
            for i in reversed(range(1, self.depth))
        )
        self.num_features = widths[0]
        self.head = nn.Conv2d(widths[0], num_classes, 1)  # logits per pixel: one linear map of the features
        annotate_names(self)

    def _encoder_stage(self, i: int, block: str, n: int) -> nn.Sequential:
        # Stage 0 keeps the input resolution; stages 1+ halve it with their first (strided) block.
        in_ch = self.in_channels if i == 0 else self.widths[i - 1]
        stride = DOWN[1] if i > 0 else 1
        return nn.Sequential(*[make_block(block, in_ch if j == 0 else self.widths[i], self.widths[i],
                                          stride if j == 0 else 1) for j in range(n)])

    def pad_to_fit(self, x: torch.Tensor) -> torch.Tensor:
        """Replicate-pad the bottom and right up to the next size the strided chain maps onto itself."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        ph, pw = fitted_size(h, self.depth) - h, fitted_size(w, self.depth) - w
        if not (ph or pw):
            return x
        return F.pad(x, (0, pw, 0, ph), mode="replicate")  # (N, C, H + ph, W + pw)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> the decoder's last map (N, widths[0], H, W), any H and W."""
        h, w = int(x.shape[-2]), int(x.shape[-1])
        x = self.pad_to_fit(x)
        encoded = []
        for stage in self.encoder:
            x = stage(x)
            encoded.append(x)
        # The decoder runs deepest first; its i-th stage meets the encoder map one level up.
        for stage, skip in zip(self.decoder, reversed(encoded[:-1]), strict=True):
            x = stage(x, skip if self.skips else None)
        return x[..., :h, :w]  # crop the padding: (N, widths[0], H, W)



@register_model(tags=("segment", "lecture"))
def encoder_decoder(num_classes: int = 7, in_channels: int = 3, **kwargs) -> EncoderDecoder:
    """The lecture's encoder-decoder: strided convs down, transposed convs up, no skips, conv blocks."""
    return EncoderDecoder(num_classes, in_channels, **{"skips": False, "block": "conv", **kwargs})


@register_model(tags=("segment",))
def unet(num_classes: int = 7, in_channels: int = 3, **kwargs) -> EncoderDecoder:
    """U-Net: encoder features concatenated into the decoder.

    Sized for a CPU, not the paper's: widths 32-256 (paper 64-1024), 'same' padding (paper 'valid',
    cropping the skips), strided convs instead of max pooling, one block per stage (``blocks_per_stage=2``
    gives the paper's two convs).
    """
    return EncoderDecoder(num_classes, in_channels, **{"skips": True, **kwargs})


@register_model(tags=("segment", "small"))
def unet_small(num_classes: int = 7, in_channels: int = 3, **kwargs) -> EncoderDecoder:
    """U-Net with widths 16-128: a quarter of the parameters and mult-adds, for quick CPU runs."""
    return EncoderDecoder(num_classes, in_channels, **{"skips": True, "widths": (16, 32, 64, 128), **kwargs})
