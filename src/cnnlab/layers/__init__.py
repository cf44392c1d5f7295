"""Reusable, model-agnostic building blocks (1D and 2D via ``dims``).

All are channels_last, bf16-autocast and torch.compile friendly: weight-free parts are torch ops and
no forward has data-dependent Python control flow (only checks on static shapes).
"""

from cnnlab.layers.act import make_act
from cnnlab.layers.conv_norm_act import ConvNormAct, SeparableBlock, parse_order
from cnnlab.layers.heads import ClassifierHead, GlobalAvgPool, Rescale
from cnnlab.layers.naming import annotate_names, check_channels, name_of
from cnnlab.layers.padding import MaxPoolSame, SamePad
from cnnlab.layers.residual import Add, Concat, PadShortcut, Residual
from cnnlab.layers.separable import SeparableConv
from cnnlab.layers.upsample import PixelShuffleUp, ResizeConvUp, TransposedUp

__all__ = [
    "Add", "ClassifierHead", "Concat", "ConvNormAct", "GlobalAvgPool", "MaxPoolSame", "PadShortcut",
    "PixelShuffleUp", "Rescale", "ResizeConvUp", "Residual", "SamePad", "SeparableBlock", "SeparableConv",
    "TransposedUp", "annotate_names", "check_channels", "make_act", "name_of", "parse_order",
]
