"""DCT-input models (cnnlab.models.dct): the packed layout, shapes, refusals, sizes, gradients, training.

The layout oracle below indexes the packed tensor by the documented formula (channel k*4 + dy*2 + dx
holds Y coefficient k at pixel-block (2i+dy, 2j+dx)), not by calling pixel_unshuffle, and the
parameter counts are summed by hand from the paper's block list (a bottleneck is three convs, their
BNs and, where shapes change, a 1x1 projection), so neither side is a copy of the code under test.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.models import create_model, list_models, model_tags
from cnnlab.models.dct import UpsampleJoin, unpack

RESNET50_DCT = ["resnet50_dct_upsampling", "resnet50_dct_upsampling_rfa", "resnet50_dct_deconvolution_rfa",
                "resnet50_dct_late_concat", "resnet50_dct_late_concat_rfa", "resnet50_dct_late_concat_rfa_thinner"]
SMALL_DCT = ["mini_xception_dct", "resnet_dct_small"]
ALL_DCT = RESNET50_DCT + SMALL_DCT


def _packed(px: int, batch: int = 2, seed: int = 0) -> torch.Tensor:
    torch.manual_seed(seed)
    return torch.randn(batch, 384, px // 16, px // 16)  # standardised coefficients, (N, 384, H/16, W/16)


def _params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_registry_lists_every_dct_model_with_its_tags() -> None:
    assert list_models("*dct*") == sorted(ALL_DCT)
    for name in ALL_DCT:
        assert {"classify", "dct"} <= set(model_tags(name)), name


# --- the packed layout -----------------------------------------------------------------------------

def test_unpack_is_the_exact_inverse_of_the_packing() -> None:
    torch.manual_seed(0)
    y = torch.randn(2, 64, 28, 20)  # (N, 64, H/8, W/8)
    chroma = torch.randn(2, 128, 14, 10)  # (N, 128, H/16, W/16): Cb then Cr
    packed = torch.cat([F.pixel_unshuffle(y, 2), chroma], dim=1)  # (N, 384, H/16, W/16)
    y2, chroma2 = unpack(packed)
    assert torch.equal(y2, y) and torch.equal(chroma2, chroma)


def test_packed_channel_index_is_k_times_4_plus_dy_times_2_plus_dx() -> None:
    torch.manual_seed(1)
    packed = torch.randn(1, 384, 3, 4)
    y, chroma = unpack(packed)
    for k in (0, 1, 17, 63):
        for dy in (0, 1):
            for dx in (0, 1):
                for i in range(3):
                    for j in range(4):
                        assert y[0, k, 2 * i + dy, 2 * j + dx] == packed[0, k * 4 + dy * 2 + dx, i, j]
    assert torch.equal(chroma[:, :64], packed[:, 256:320]) and torch.equal(chroma[:, 64:], packed[:, 320:])


def test_unpack_refuses_rgb_images() -> None:
    with pytest.raises(CnnlabError, match=r"packed layout \(N, 384, H/16, W/16\).*\(2, 3, 224, 224\)"):
        unpack(torch.rand(2, 3, 224, 224))
    model = create_model("mini_xception_dct")
    with pytest.raises(CnnlabError, match="packed layout"):
        model(torch.rand(1, 3, 64, 64))


def test_nearest_join_puts_y_first_then_each_chroma_value_repeated_2x2() -> None:
    join = UpsampleJoin("nearest").eval()  # fresh BN in eval: x / sqrt(1 + eps)
    x = _packed(64, batch=1)
    y, chroma = unpack(x)
    out = join(x) * (1 + join.bn.eps) ** 0.5
    assert out.shape == (1, 192, 8, 8)
    torch.testing.assert_close(out[:, :64], y)
    torch.testing.assert_close(out[:, 64:, ::2, ::2], chroma)
    torch.testing.assert_close(out[:, 64:, 1::2, 1::2], chroma)


def test_deconv_join_keeps_cb_and_cr_apart() -> None:
    join = UpsampleJoin("deconv").eval()
    x = _packed(64, batch=1)
    bumped = x.clone()
    bumped[:, 256:320] += 1.0  # change Cb only
    with torch.no_grad():
        a, b = join(x), join(bumped)
    assert not torch.allclose(a[:, 64:128], b[:, 64:128])  # Cb's 64 deconv outputs move
    assert torch.equal(a[:, 128:], b[:, 128:]) and torch.equal(a[:, :64], b[:, :64])  # Cr and Y do not



@pytest.mark.parametrize("k", [1, 6, 16])
def test_frequencies_keeps_the_k_lowest_zigzag_coefficients_of_y_cb_and_cr(k: int) -> None:
    x = _packed(64, batch=1)
    y, chroma = unpack(x)  # zig-zag order within each plane: index < k are the k lowest frequencies
    join = UpsampleJoin("nearest", frequencies=k).eval()
    out = join(x) * (1 + join.bn.eps) ** 0.5
    assert join.out_channels == 3 * k and out.shape == (1, 3 * k, 8, 8)
    torch.testing.assert_close(out[:, :k], y[:, :k])
    torch.testing.assert_close(out[:, k:2 * k, ::2, ::2], chroma[:, :k])  # Cb
    torch.testing.assert_close(out[:, 2 * k:, 1::2, 1::2], chroma[:, 64:64 + k])  # Cr
    dropped = x.clone()
    dropped[:, 256 + k:320] += 5.0  # Cb's higher frequencies
    dropped[:, 4 * k:256] += 5.0  # Y's higher frequencies (packed channel = 4 * frequency + position)
    with torch.no_grad():
        assert torch.equal(join(dropped), join(x))


def test_frequencies_reach_the_small_models_and_bad_values_are_refused() -> None:
    for name in SMALL_DCT:
        model = create_model(name, num_classes=3, frequencies=8, upsample="deconv").eval()
        assert model.join.out_channels == 24 and model(_packed(64)).shape == (2, 3)
    for bad in (0, 65, 2.5):
        with pytest.raises(CnnlabError, match="between 1 and 64"):
            UpsampleJoin(frequencies=bad)

# --- the models ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ALL_DCT)
def test_shapes_at_224_and_128_px(name: str) -> None:
    model = create_model(name, num_classes=7).eval()
    for px, grid in ((224, 7), (128, 4)):  # 14x14 and 8x8 packed grids; every model ends at H/32
        x = _packed(px)
        with torch.no_grad():
            features = model.forward_features(x)
            logits = model.forward_head(features)
        assert features.shape == (2, model.num_features, grid, grid), (name, px, features.shape)
        assert logits.shape == (2, 7) and torch.isfinite(logits).all()
        assert torch.equal(logits, model(x))
    assert model.in_channels == 384 and model.num_classes == 7


@pytest.mark.parametrize("name", ALL_DCT)
def test_other_in_channels_are_refused(name: str) -> None:
    for channels in (3, 192, 385):
        with pytest.raises(CnnlabError, match=f"{name}: in_channels={channels}, but the DCT layout has 384"):
            create_model(name, in_channels=channels)
    assert create_model(name, in_channels=384, num_classes=2).in_channels == 384


def _bn(c: int) -> int:
    return 2 * c  # weight and bias


def _bottleneck(i: int, w: int, o: int, k: int = 3, stride: int = 1) -> int:
    main = i * w + _bn(w) + w * w * k * k + _bn(w) + w * o + _bn(o)
    return main + (i * o + _bn(o) if i != o or stride != 1 else 0)  # projection only where shapes change


def _stage(i: int, w: int, o: int, n: int, stride: int = 1, kernels: tuple[int, ...] | None = None) -> int:
    kernels = kernels or (3,) * n
    return sum(_bottleneck(i if b == 0 else o, w, o, k, stride if b == 0 else 1) for b, k in enumerate(kernels))


CONV4_REST = _stage(1024, 256, 1024, 5)
CONV5 = _stage(1024, 512, 2048, 3, 2)
FC = 2048 * 1000 + 1000
HAND_COUNTS = {
    "resnet50": 3 * 64 * 49 + _bn(64) + _stage(64, 64, 256, 3) + _stage(256, 128, 512, 4, 2)
    + _stage(512, 256, 1024, 6, 2) + CONV5 + FC,
    # BN(192) on the join, conv3_x at stride 1 from 192 channels, conv4_x, conv5_x.
    "resnet50_dct_upsampling": _bn(192) + _stage(192, 128, 512, 4) + _stage(512, 256, 1024, 6, 2) + CONV5 + FC,
    # Y: BN, conv3_x (stride 1), strided 128->512 block; chroma: BN, 1x1 block to 512; conv4's 5 IBs.
    "resnet50_dct_late_concat": _bn(64) + _stage(64, 128, 512, 4) + _bottleneck(512, 128, 512, stride=2)
    + _bn(128) + _bottleneck(128, 128, 512, k=1) + CONV4_REST + CONV5 + FC,
    "resnet50_dct_late_concat_rfa": _bn(64) + _stage(64, 256, 1024, 3, kernels=(1, 2, 3))
    + _stage(1024, 128, 512, 4) + _bottleneck(512, 128, 512, stride=2)
    + _bn(128) + _bottleneck(128, 128, 512, k=1) + CONV4_REST + CONV5 + FC,
    "resnet50_dct_late_concat_rfa_thinner": _bn(64) + _stage(64, 256, 384, 3, kernels=(1, 2, 3))
    + _stage(384, 128, 384, 4) + _bottleneck(384, 128, 768, stride=2)
    + _bn(128) + _bottleneck(128, 128, 256, k=1) + CONV4_REST + CONV5 + FC,
}


def test_parameter_counts_match_the_block_lists_by_hand() -> None:
    counts = {}
    for name in ["resnet50", *RESNET50_DCT]:
        with torch.device("meta"):
            counts[name] = _params(create_model(name))
    print("\nparameters at 1000 classes:")
    for name, n in counts.items():
        print(f"  {name:40s} {n:>12,} ({n / counts['resnet50']:.3f}x resnet50)")
    assert HAND_COUNTS["resnet50"] == counts["resnet50"] == 25_557_032  # torchvision's count: formula is right
    for name, expected in HAND_COUNTS.items():
        assert counts[name] == expected, (name, counts[name], expected)
    # Thinner is thinner than the RFA net it slims; conv4's last 5 blocks and conv5 (22.4M of ResNet-50's
    # 25.6M) are common to all, so at the paper's channel list it lands 0.7% *above* ResNet-50 (see report).
    thinner = counts["resnet50_dct_late_concat_rfa_thinner"]
    assert thinner < counts["resnet50_dct_late_concat_rfa"]
    assert counts["resnet50_dct_late_concat"] < counts["resnet50"]
    assert counts["resnet50_dct_upsampling"] < counts["resnet50"]


def test_thinner_needs_fewer_mult_adds_than_resnet50_and_than_rfa() -> None:
    from cnnlab.models._summary import summarize

    macs = {}
    for name, shape in (("resnet50", (3, 224, 224)), ("resnet50_dct_late_concat_rfa", (384, 14, 14)),
                        ("resnet50_dct_late_concat_rfa_thinner", (384, 14, 14))):
        with torch.device("meta"):
            macs[name] = summarize(create_model(name), shape).total_macs
    print({k: f"{v / 1e9:.2f} GMAC" for k, v in macs.items()})
    assert macs["resnet50_dct_late_concat_rfa_thinner"] < macs["resnet50"] < macs["resnet50_dct_late_concat_rfa"]


def test_rfa_prefix_grows_the_y_receptive_field_by_kernels_1_2_3() -> None:
    # Impulse response of the Y branch's three RFA blocks on the H/8 grid: 1x1, 2x2, 3x3 middle convs
    # see 1 + 1 + 2 = 4 cells (32 px), so a centre output depends on exactly a 4x4 patch of Y.
    model = create_model("resnet50_dct_late_concat_rfa").eval()
    prefix = model.join.y_branch[1]
    y = torch.randn(1, 64, 12, 12, requires_grad=True)
    prefix(y)[0, :, 6, 6].sum().backward()
    rows = torch.nonzero(y.grad.abs().sum(dim=(0, 1, 3))).flatten().tolist()
    cols = torch.nonzero(y.grad.abs().sum(dim=(0, 1, 2))).flatten().tolist()
    assert rows == cols == [5, 6, 7, 8]  # TF 'same' for the 2x2: the extra cell is after the centre


@pytest.mark.parametrize("name", ALL_DCT)
def test_gradients_reach_y_and_chroma_inputs(name: str) -> None:
    model = create_model(name, num_classes=3).train()
    x = _packed(128).requires_grad_(True)
    model(x).square().mean().backward()
    grad = x.grad.abs()
    assert grad[:, :256].sum() > 0 and grad[:, 256:320].sum() > 0 and grad[:, 320:].sum() > 0
    assert torch.isfinite(grad).all()


def test_a_few_training_steps_reduce_the_loss_of_mini_xception_dct() -> None:
    torch.manual_seed(0)
    model = create_model("mini_xception_dct", num_classes=4, widths=(32, 64), dropout=0.0).train()
    x, target = _packed(64, batch=8, seed=1), torch.randint(0, 4, (8,))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        loss = F.cross_entropy(model(x), target)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


def test_mini_xception_dct_keywords_and_grad_cam_layer_names() -> None:
    from cnnlab.explain import last_spatial_layer
    from cnnlab.layers import name_of

    model = create_model("mini_xception_dct", widths=(16, 32, 48), depth=1).eval()
    assert model.num_features == 48 and len(model.stages) == 3 and len(model.stages[0].main) == 1
    assert name_of(model.stages[2]) == "stages.2"
    assert last_spatial_layer(model, _packed(224, batch=1)).startswith("stages.2")
    with pytest.raises(CnnlabError, match="depth >= 1"):
        create_model("mini_xception_dct", depth=0)
    with pytest.raises(CnnlabError, match="upsample='bilinear'"):
        create_model("resnet_dct_small", upsample="bilinear")
    with pytest.raises(CnnlabError, match="set rfa=True"):
        create_model("resnet50_dct_late_concat", thinner=True)
