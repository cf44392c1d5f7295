"""Building blocks: separable conv against the NumPy oracle, Keras 'same' padding, merges, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.layers import (
    ClassifierHead,
    ConvNormAct,
    MaxPoolSame,
    PadShortcut,
    PixelShuffleUp,
    Residual,
    ResizeConvUp,
    SamePad,
    SeparableBlock,
    SeparableConv,
    TransposedUp,
    annotate_names,
    parse_order,
)
from cnnlab.ops.shape import same_padding


@pytest.mark.parametrize(("size", "stride", "kernel"), [(9, 2, 3), (10, 2, 3), (11, 2, 5), (8, 1, 4)])
def test_separable_conv_equals_numpy_depthwise_then_pointwise(size: int, stride: int, kernel: int) -> None:
    from cnnlab.ops import conv2d, same_padding

    torch.manual_seed(0)
    layer = SeparableConv(3, 4, kernel, stride, padding="same", bias=True).double()
    x = torch.rand(2, 3, size, size + 1, dtype=torch.float64)
    pads = (same_padding(size, kernel, stride), same_padding(size + 1, kernel, stride))
    # Independent composition with the NumPy reference: depthwise = conv2d with groups=C, then 1x1.
    depth = conv2d(x.numpy(), layer.depthwise.weight.detach().numpy(), stride, pads, groups=3)
    want = conv2d(depth, layer.pointwise.weight.detach().numpy(), bias=layer.pointwise.bias.detach().numpy())
    got = layer(x).detach().numpy()
    assert got.shape == (2, 4, math.ceil(size / stride), math.ceil((size + 1) / stride))
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(("size", "want"), [(7, (1, 1)), (8, (0, 1)), (9, (1, 1)), (10, (0, 1))])
def test_keras_same_padding_stride_2_puts_the_odd_cell_last(size: int, want: tuple[int, int]) -> None:
    # Hand-worked TF rule for k=3, s=2: total = (ceil(n/2)-1)*2 + 3 - n.
    x = torch.arange(1, size + 1, dtype=torch.float32).reshape(1, 1, size)
    padded = SamePad(3, 2, dims=1)(x)
    left, right = want
    assert padded.shape[-1] == size + left + right
    assert torch.equal(padded[..., left : left + size], x)
    assert padded[..., :left].abs().sum() == 0 and padded[..., left + size :].abs().sum() == 0
    # In 2-D each axis is padded by its own size: (H=size, W=size+1).
    assert SamePad(3, 2)(torch.rand(1, 1, size, size + 1)).shape[-2] == size + left + right


def test_separable_parameter_count_matches_keras() -> None:
    layer = SeparableConv(32, 64, 3, bias=False)
    assert sum(p.numel() for p in layer.parameters()) == 3 * 3 * 32 + 32 * 64


def test_maxpool_same_matches_tf_on_even_input() -> None:
    # TF pads an even input only on the right for k=3, s=2: windows start at 0, 2, 4.
    x = torch.tensor([[[[1.0, 5.0, 2.0, 0.0, 3.0, 4.0]]]])
    y = MaxPoolSame(3, 2, dims=1)(x[0])
    assert y.tolist() == [[[5.0, 3.0, 4.0]]]


@pytest.mark.parametrize("dims", [1, 2])
def test_maxpool_same_equals_explicit_minus_inf_padding(dims: int) -> None:
    # MaxPoolSame pools with symmetric padding + ceil_mode instead of writing a padded copy; the
    # windows, values and gradient routing must equal TF's pad-(P//2, P-P//2)-with--inf-then-pool.
    for n in range(1, 14):
        for k in range(1, 6):
            for s in range(1, 5):
                x = torch.randn(2, 3, *([n] * dims), dtype=torch.float64, requires_grad=True)
                pads: list[int] = []
                for size in reversed(x.shape[2:]):
                    pads.extend(same_padding(size, k, s))
                pool = F.max_pool2d if dims == 2 else F.max_pool1d
                want = pool(F.pad(x, pads, value=float("-inf")), k, s)
                got = MaxPoolSame(k, s, dims=dims)(x)
                assert got.shape == want.shape and torch.equal(got, want), (n, k, s)
                g = torch.randn_like(want)
                (gw,) = torch.autograd.grad(want, x, g)
                (gg,) = torch.autograd.grad(got, x, g)
                assert torch.equal(gg, gw), (n, k, s)


def test_order_is_explicit_and_validated() -> None:
    assert parse_order("bn-relu-conv") == ["bn", "act", "conv"]
    pre = SeparableBlock(8, 16, order="bn-relu-conv")
    post = SeparableBlock(8, 16, order="relu-conv-bn")
    assert [n for n, _ in pre.named_children()] == ["bn", "act", "conv"]
    assert [n for n, _ in post.named_children()] == ["act", "conv", "bn"]
    assert pre.bn.num_features == 8 and post.bn.num_features == 16  # BN sees what flows at its place
    with pytest.raises(CnnlabError, match="order"):
        parse_order("bn-bn-conv")
    with pytest.raises(TypeError):
        SeparableBlock(8, 16)  # type: ignore[call-arg]


def test_conv_norm_act_1d_and_2d_same_shapes() -> None:
    assert ConvNormAct(2, 5, 4, 2, dims=1)(torch.rand(3, 2, 11)).shape == (3, 5, 6)
    assert ConvNormAct(2, 5, 3, 2)(torch.rand(3, 2, 11, 10)).shape == (3, 5, 6, 5)


def _branch(c_in: int, c_out: int, stride: int) -> nn.Module:
    return ConvNormAct(c_in, c_out, 3, stride)


def test_add_merge_with_matching_and_projected_shapes() -> None:
    x = torch.rand(2, 8, 12, 12)
    same = Residual(_branch(8, 8, 1), 8, 8)
    assert isinstance(same.shortcut, nn.Identity) and same(x).shape == (2, 8, 12, 12)
    proj = Residual(_branch(8, 16, 2), 8, 16, stride=2, project=True)
    assert proj.shortcut.conv.stride == (2, 2) and proj.shortcut.conv.out_channels == 16
    assert proj(x).shape == (2, 16, 6, 6)


def test_concat_merge_stacks_channels_and_projects_spatially() -> None:
    x = torch.rand(2, 8, 12, 12)
    block = Residual(_branch(8, 4, 1), 8, 4, merge="concat")
    assert block(x).shape == (2, 12, 12, 12) and block.out_channels == 12
    down = Residual(_branch(8, 4, 2), 8, 4, stride=2, merge="concat", project=True)
    assert down(x).shape == (2, 12, 6, 6)


def test_mismatched_add_names_the_block_shapes_and_fix() -> None:
    model = nn.Sequential()
    model.stages = nn.Sequential(Residual(_branch(3, 64, 1), 3, 64, project=True),
                                 nn.Identity(),
                                 Residual(_branch(64, 128, 2), 64, 128, stride=2, project=False))
    annotate_names(model)
    with pytest.raises(CnnlabError) as err:
        model(torch.rand(1, 3, 90, 90))
    msg = str(err.value)
    assert msg.startswith("block 'stages.2.merge': shortcut is (64, 90, 90), main branch (128, 45, 45)")
    assert "1x1 conv, stride 2, 128 filters (set project=True)" in msg


def test_mismatched_concat_and_wrong_channels_raise_named_errors() -> None:
    block = annotate_names(Residual(_branch(8, 4, 2), 8, 4, stride=2, merge="concat"))
    with pytest.raises(CnnlabError, match=r"'merge'.*\(8, 10, 10\).*\(4, 5, 5\).*stride 2, 8 filters"):
        block(torch.rand(1, 8, 10, 10))
    with pytest.raises(CnnlabError, match=r"'main': expects 8 input channels.*in_channels=3"):
        block(torch.rand(1, 3, 10, 10))


def test_pad_shortcut_is_parameter_free_option_a() -> None:
    sc = PadShortcut(16, 32, 2)
    x = torch.rand(1, 16, 8, 8)
    y = sc(x)
    assert y.shape == (1, 32, 4, 4) and not list(sc.parameters())
    assert torch.equal(y[:, 8:24], x[:, :, ::2, ::2]) and y[:, :8].abs().sum() == 0


@pytest.mark.parametrize("dims", [1, 2])
@pytest.mark.parametrize("cls", [TransposedUp, PixelShuffleUp, ResizeConvUp])
@pytest.mark.parametrize("scale", [2, 3])
def test_upsampling_blocks_multiply_every_spatial_size(cls: type, dims: int, scale: int) -> None:
    shape = (2, 4, 5, 7) if dims == 2 else (2, 4, 9)
    y = cls(4, 6, scale, dims=dims)(torch.rand(shape))
    assert y.shape == (2, 6, *(s * scale for s in shape[2:]))


def test_pixel_shuffle_icnr_starts_as_nearest_neighbour() -> None:
    up = PixelShuffleUp(3, 2, 2)
    y = up(torch.rand(1, 3, 4, 4))
    assert torch.allclose(y[..., 0::2, 0::2], y[..., 1::2, 1::2])


def test_classifier_head_pools_and_projects() -> None:
    head = ClassifierHead(8, 3, dropout=0.5)
    assert head(torch.rand(2, 8, 5, 5)).shape == (2, 3)
    assert ClassifierHead(8, 3, dims=1)(torch.rand(2, 8, 7)).shape == (2, 3)


def test_blocks_trace_into_one_graph_for_torch_compile() -> None:
    # fullgraph=True fails on any graph break (data-dependent Python control flow); the eager backend
    # traces without code generation, so this stays cheap.
    torch.manual_seed(0)
    net = nn.Sequential(
        SeparableConv(3, 8, 3, 2),
        Residual(ConvNormAct(8, 8, 3), 8, 8, merge="concat"),
        Residual(SeparableBlock(16, 24, 3, 2, order="bn-relu-conv"), 16, 24, stride=2, project=True),
        MaxPoolSame(3, 2),
        PixelShuffleUp(24, 8, 2),
        ResizeConvUp(8, 8, 2),
        TransposedUp(8, 4, 2),
    ).eval()
    x = torch.rand(2, 3, 13, 14)
    compiled = torch.compile(net, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), net(x))


def test_main_branch_larger_than_shortcut_is_explained_not_projected() -> None:
    up = annotate_names(Residual(TransposedUp(4, 4, 2), 4, 4, project=True))
    with pytest.raises(CnnlabError, match=r"'merge'.*larger than the shortcut.*padding and strides"):
        up(torch.rand(1, 4, 6, 6))


def test_one_dimensional_separable_conv_and_projected_residual() -> None:
    from cnnlab.ops import conv1d

    torch.manual_seed(0)
    sep = SeparableConv(2, 3, 4, 2, dims=1).double()
    x = torch.rand(1, 2, 11, dtype=torch.float64)
    # 'same' with k=4, s=2 on 11 cells: total = (6-1)*2 + 4 - 11 = 3 -> (1, 2), the extra cell last.
    depth = conv1d(x.numpy(), sep.depthwise.weight.detach().numpy(), 2, [(1, 2)], groups=2)
    want = conv1d(depth, sep.pointwise.weight.detach().numpy())
    np.testing.assert_allclose(sep(x).detach().numpy(), want, rtol=1e-10)
    block = Residual(ConvNormAct(2, 6, 3, 2, dims=1), 2, 6, stride=2, project=True, dims=1)
    assert block(torch.rand(2, 2, 11)).shape == (2, 6, 6)
