"""Image-to-image models: the segmenters (encoder_decoder, unet) and super-resolution (espcn, edsr_cpu).

What the general contract in test_models_registry.py cannot see: pad-and-crop at sizes the strided
chain does not fit, that downsampling is only by strided convs and upsampling only by transposed
convs, that the U-Net skips widen the decoder, ESPCN's parameter count from the paper's layers,
edsr_cpu starting near bicubic, exact scale factors, and that every model trains. Widths are tiny so
that each test stays well under 2 s on a CPU.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from torch import nn

from cnnlab.cli import cli
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.models.encoder_decoder import BLOCKS, fitted_size
from cnnlab.models.superres import bicubic

SEGMENTERS = ("encoder_decoder", "unet", "unet_small")
TINY = (4, 8, 16, 32)  # depth 4: three halvings, valid sizes are multiples of 8


def _segmenter(name: str, num_classes: int = 3, **kwargs: object) -> nn.Module:
    torch.manual_seed(0)
    return create_model(name, num_classes=num_classes, widths=TINY, **kwargs)


def _smooth_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """Low-frequency random images in [0, 1] (N, C, size, size): learnable, unlike white noise."""
    gen = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, size // 4, size // 4, generator=gen)
    return F.interpolate(coarse, size=(size, size), mode="bilinear", align_corners=False)


# ------------------------------------------------------------------------------------- segmenters
def test_fitted_size_is_the_next_multiple_of_the_total_stride() -> None:
    assert [fitted_size(n, 4) for n in (1, 8, 37, 53, 64)] == [8, 8, 40, 56, 64]
    assert fitted_size(37, 1) == 37  # one stage: no halving, every size fits
    assert fitted_size(37, 2) == 38


@pytest.mark.parametrize("name", SEGMENTERS)
@pytest.mark.parametrize("size", [(37, 53), (1, 1), (15, 16)])
def test_segmenters_give_logits_at_any_input_size(name: str, size: tuple[int, int]) -> None:
    model = _segmenter(name).eval()
    x = torch.rand(2, 3, *size)
    with torch.no_grad():
        features = model.forward_features(x)
        out = model(x)
    assert features.shape == (2, TINY[0], *size)
    assert out.shape == (2, 3, *size)


@pytest.mark.parametrize("name", ["encoder_decoder", "unet"])
def test_odd_sizes_are_replicate_padded_then_cropped(name: str) -> None:
    # 37x53 runs as 40x56 with the border rows/columns repeated; the logits are that run's top-left crop.
    model = _segmenter(name).eval()
    x = torch.rand(1, 3, 37, 53)
    padded = F.pad(x, (0, 3, 0, 3), mode="replicate")  # (1, 3, 40, 56)
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(padded)[..., :37, :53])


def _spatial_changes(model: nn.Module, x: torch.Tensor) -> list[tuple[nn.Module, tuple, tuple]]:
    """Every leaf module whose output's spatial size differs from its input's: (module, in, out)."""
    changes, handles = [], []

    def hook(module: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
        if tuple(inputs[0].shape[2:]) != tuple(out.shape[2:]):
            changes.append((module, tuple(inputs[0].shape[2:]), tuple(out.shape[2:])))

    for module in model.modules():
        if not list(module.children()):
            handles.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(x)
    finally:
        for handle in handles:
            handle.remove()
    return changes


@pytest.mark.parametrize("block", BLOCKS)
@pytest.mark.parametrize("skips", [False, True])
def test_encoder_downsamples_only_by_strided_convs_and_decoder_only_by_transposed_convs(
        block: str, skips: bool) -> None:
    model = _segmenter("encoder_decoder", block=block, skips=skips).eval()
    assert not [m for m in model.modules() if "pool" in type(m).__name__.lower() or isinstance(m, nn.Upsample)]
    encoder_ids = {id(m) for m in model.encoder.modules()}
    changes = _spatial_changes(model, torch.rand(1, 3, 32, 32))
    shrink = [(m, a, b) for m, a, b in changes if b < a]
    grow = [(m, a, b) for m, a, b in changes if b > a]
    assert shrink and all(type(m) is nn.Conv2d and m.stride == (2, 2) and id(m) in encoder_ids
                          for m, _, _ in shrink)
    # Each encoder stage after the first halves once (a residual block's 1x1 projection halves too).
    assert sorted({a for _, a, _ in shrink}, reverse=True) == [(32, 32), (16, 16), (8, 8)]
    assert [(type(m), a, b) for m, a, b in grow] == [(nn.ConvTranspose2d, (4, 4), (8, 8)),
                                                     (nn.ConvTranspose2d, (8, 8), (16, 16)),
                                                     (nn.ConvTranspose2d, (16, 16), (32, 32))]
    assert all(id(m) not in encoder_ids and m.stride == (2, 2) for m, _, _ in grow)
    assert len(changes) == len(shrink) + len(grow)


@pytest.mark.parametrize("block", BLOCKS)
def test_unet_skips_double_the_decoder_blocks_input_channels(block: str) -> None:
    plain = _segmenter("encoder_decoder", block=block)
    unet = _segmenter("unet", block=block)
    # The decoder runs deepest first, upsampling to widths 16, 8, 4.
    assert [s.blocks[0].in_channels for s in plain.decoder] == [16, 8, 4]
    assert [s.blocks[0].in_channels for s in unet.decoder] == [32, 16, 8]
    assert [s.up.conv.out_channels for s in unet.decoder] == [16, 8, 4]
    assert all(s.merge is None for s in plain.decoder) and all(s.merge is not None for s in unet.decoder)
    assert sum(p.numel() for p in unet.parameters()) > sum(p.numel() for p in plain.parameters())


def test_unet_output_depends_on_the_skip_from_the_first_stage() -> None:
    # Zeroing the full-resolution encoder map changes the U-Net's logits only through the skip.
    model = _segmenter("unet").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        ref = model(x)
        handle = model.decoder[-1].register_forward_pre_hook(lambda m, a: (a[0], torch.zeros_like(a[1])))
        try:
            cut = model(x)
        finally:
            handle.remove()
    assert not torch.allclose(ref, cut)


def test_blocks_per_stage_and_block_types() -> None:
    two = _segmenter("unet", block="residual", blocks_per_stage=2)
    assert all(len(stage) == 2 for stage in two.encoder) and all(len(s.blocks) == 2 for s in two.decoder)
    separable = _segmenter("unet", block="separable")
    assert any(type(m).__name__ == "SeparableConv" for m in separable.modules())
    with pytest.raises(CnnlabError, match="block must be one of conv, separable, residual"):
        create_model("unet", block="dense")
    with pytest.raises(CnnlabError, match="blocks_per_stage 1 or 2"):
        create_model("unet", blocks_per_stage=3)


def test_grad_cam_on_a_decoder_layer_gives_a_map_at_the_input_size() -> None:
    from cnnlab.explain import PixelTarget, grad_cam

    model = _segmenter("unet")
    maps = grad_cam(model, torch.rand(2, 3, 32, 32), "decoder.2", target=PixelTarget(1))
    assert maps.shape == (2, 32, 32) and torch.isfinite(maps).all()


# ----------------------------------------------------------------------------------- super-resolution
@pytest.mark.parametrize(("channels", "scale"), [(3, 3), (1, 2), (3, 4)])
def test_espcn_parameters_follow_the_papers_layers(channels: int, scale: int) -> None:
    model = create_model("espcn", scale=scale, in_channels=channels)
    out = channels * scale * scale
    # conv 5x5 C->64, conv 3x3 64->32, conv 3x3 32->C*s^2, every one with a bias (Shi et al. 2016).
    by_hand = (5 * 5 * channels * 64 + 64) + (3 * 3 * 64 * 32 + 32) + (3 * 3 * 32 * out + out)
    assert sum(p.numel() for p in model.parameters()) == by_hand
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [c.kernel_size for c in convs] == [(5, 5), (3, 3), (3, 3)]
    assert [type(m) for m in model.modules() if isinstance(m, nn.Tanh | nn.ReLU)] == [nn.Tanh, nn.Tanh]
    assert [m.upscale_factor for m in model.modules() if isinstance(m, nn.PixelShuffle)] == [scale]
    assert (model.scale, model.num_classes, model.out_channels) == (scale, channels, channels)


def test_espcn_rgb_x3_is_31131_parameters() -> None:
    assert sum(p.numel() for p in create_model("espcn", scale=3).parameters()) == 31_131


@pytest.mark.parametrize("name", ["espcn", "edsr_cpu"])
@pytest.mark.parametrize("scale", [2, 3, 4])
def test_superres_output_is_exactly_scale_times_the_input(name: str, scale: int) -> None:
    kwargs = {"width": 8, "n_blocks": 1} if name == "edsr_cpu" else {}
    model = create_model(name, scale=scale, **kwargs).eval()
    x = torch.rand(2, 3, 7, 11)
    with torch.no_grad():
        assert model(x).shape == (2, 3, 7 * scale, 11 * scale)


@pytest.mark.parametrize("scale", [2, 3, 4])
def test_edsr_cpu_starts_close_to_bicubic(scale: int) -> None:
    torch.manual_seed(0)
    model = create_model("edsr_cpu", scale=scale).eval()
    x = _smooth_images(2, 3, 16)
    with torch.no_grad():
        out, ref = model(x), bicubic(x, scale)
    assert float((out - ref).norm() / ref.norm()) < 0.05
    # x4 is two x2 pixel-shuffle stages; x2 and x3 one stage each.
    assert [m.scale for m in model.upsample] == ([2, 2] if scale == 4 else [scale])


def test_edsr_cpu_without_global_skip_adds_the_mean_back_instead() -> None:
    torch.manual_seed(0)
    model = create_model("edsr_cpu", scale=2, width=8, n_blocks=1, global_skip=False).eval()
    x = torch.rand(1, 3, 6, 6)
    with torch.no_grad():
        features = model.forward_features(x)
        out = model(x)
    assert features.shape == (1, 8, 6, 6)  # no LR image carried along: the head does not need it
    torch.testing.assert_close(out, model.tail(model.upsample(features)) + model.mean)
    torch.testing.assert_close(model.mean.flatten(), torch.tensor([0.4488, 0.4371, 0.4040]))
    assert create_model("edsr_cpu", in_channels=1).mean.flatten().tolist() == [0.5]


def test_superres_rejects_bad_scales() -> None:
    with pytest.raises(CnnlabError, match="scale must be an integer >= 2"):
        create_model("espcn", scale=1)
    with pytest.raises(CnnlabError, match="scale must be an integer >= 2"):
        create_model("edsr_cpu", scale=2.5)
    with pytest.raises(CnnlabError, match="scale must be 2, 3 or a power of two"):
        create_model("edsr_cpu", scale=5)


# --------------------------------------------------------------------------------------- training
def _train(model: nn.Module, x: torch.Tensor, loss_fn, steps: int = 20, lr: float = 3e-3) -> list[float]:  # type: ignore[no-untyped-def]
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    model.train()
    for _ in range(steps):
        loss = loss_fn(model(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


@pytest.mark.parametrize(("name", "block"), [("encoder_decoder", "conv"), ("unet", "conv"),
                                             ("unet", "separable"), ("unet_small", "residual")])
def test_segmenters_train(name: str, block: str) -> None:
    model = _segmenter(name, num_classes=2, block=block)
    x = _smooth_images(4, 3, 24)
    target = (x[:, 0] > x[:, 1]).long()  # (N, H, W) per-pixel labels the input determines
    losses = _train(model, x, lambda out: F.cross_entropy(out, target), lr=1e-2)
    assert losses[-1] < 0.8 * losses[0], losses  # measured 0.15-0.64


@pytest.mark.parametrize(("name", "kwargs"), [("espcn", {}), ("edsr_cpu", {"width": 16, "n_blocks": 2}),
                                              ("edsr_cpu", {"width": 16, "n_blocks": 2, "global_skip": False})])
def test_superres_models_train(name: str, kwargs: dict) -> None:
    torch.manual_seed(0)
    model = create_model(name, scale=2, **kwargs)
    hr = _smooth_images(4, 3, 32)  # (N, 3, 32, 32) targets
    lr_images = F.avg_pool2d(hr, 2)  # (N, 3, 16, 16) inputs
    losses = _train(model, lr_images, lambda out: F.mse_loss(out, hr), lr=1e-3)
    assert losses[-1] < 0.8 * losses[0], losses  # measured 0.14-0.59


def test_edsr_cpu_global_skip_starts_at_the_bicubic_error() -> None:
    # Why the skip is the default: the untrained model's error is already bicubic's, ~100x below
    # the error of the same network that has to learn the whole image.
    hr = _smooth_images(4, 3, 32)
    lr_images = F.avg_pool2d(hr, 2)
    errors = {}
    for skip in (True, False):
        torch.manual_seed(0)
        model = create_model("edsr_cpu", scale=2, width=16, n_blocks=2, global_skip=skip).eval()
        with torch.no_grad():
            errors[skip] = float(F.mse_loss(model(lr_images), hr))
    bicubic_error = float(F.mse_loss(bicubic(lr_images, 2), hr))
    assert errors[True] < 1.5 * bicubic_error and errors[True] < 0.1 * errors[False], errors


# -------------------------------------------------------------------------------------------- CLI
def test_cli_lists_and_summarises_the_dense_models() -> None:
    listing = CliRunner().invoke(cli, ["models", "list"])
    assert listing.exit_code == 0, listing.output
    assert "unet" in listing.output and "espcn" in listing.output and "x2 (3 ch)" in listing.output
    sr = CliRunner().invoke(cli, ["models", "summary", "espcn", "--input-size", "3,20,20", "--set", "scale=3"])
    assert sr.exit_code == 0, sr.output
    assert "espcn x3" in sr.output and "output (3, 60, 60); params 31,131" in sr.output
    seg = CliRunner().invoke(cli, ["models", "summary", "unet", "--input-size", "3,37,53", "--num-classes", "12"])
    assert seg.exit_code == 0, seg.output
    assert "output (12, 37, 53)" in seg.output


def test_cli_summary_of_a_superres_model_refuses_num_classes() -> None:
    result = CliRunner().invoke(cli, ["models", "summary", "edsr_cpu", "--input-size", "3,8,8", "--num-classes", "4"])
    assert result.exit_code != 0
    assert "drop --num-classes" in str(result.exception)
