"""Exact reference ops in NumPy float64 and the shape arithmetic behind them (no torch needed).

Used for teaching (worked sums, animations, the tour) and as oracles for the torch layers.
All ops are cross-correlations, like every framework; semantics match torch.nn.functional.
"""

from cnnlab.ops.conv import conv1d, conv2d, separable_conv2d
from cnnlab.ops.conv_transpose import TransposeSteps, conv_transpose1d, conv_transpose2d, transpose_steps
from cnnlab.ops.pool import pool1d, pool2d
from cnnlab.ops.shape import (
    TransposeArithmetic,
    conv_output_size,
    conv_transpose_output_size,
    pool_output_size,
    receptive_field,
    same_padding,
    solve_output_padding,
    torch_same_padding,
)

__all__ = [
    "TransposeArithmetic",
    "TransposeSteps",
    "conv1d",
    "conv2d",
    "conv_output_size",
    "conv_transpose1d",
    "conv_transpose2d",
    "conv_transpose_output_size",
    "pool1d",
    "pool2d",
    "pool_output_size",
    "receptive_field",
    "same_padding",
    "separable_conv2d",
    "solve_output_padding",
    "torch_same_padding",
    "transpose_steps",
]
