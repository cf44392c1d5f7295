"""Every registered model, including those other families add: the contract in docs/internals.md.

Forward shapes at two input sizes, no NaN, every parameter gets a gradient, eval-mode determinism,
and channels_last / bf16 autocast agree with plain fp32. Inputs stay small to fit the CI budget.
Classifiers (tag ``classify``/``audio``) must give (N, num_classes), segmenters (tag ``segment``)
(N, num_classes, H, W), super-resolution models (tag ``superres``, built without ``num_classes``)
(N, C, scale*H, scale*W) with ``num_classes`` = C output channels; other image-to-image models are
only held to the batch size and finiteness.
"""

from __future__ import annotations

import pytest
import torch

from cnnlab.models import create_model, list_models, model_tags

NUM_CLASSES = 5
# Smallest input a model accepts, when above the default 64 (Xception's valid convs + 5 halvings).
MIN_SIZE = {"xception": 71}


def _is_1d(name: str, model: torch.nn.Module) -> bool:
    return getattr(model, "dims", 2) == 1 or bool({"audio", "1d"} & set(model_tags(name)))


def _input(name: str, model: torch.nn.Module, size: int, batch: int = 2) -> torch.Tensor:
    torch.manual_seed(0)
    if _is_1d(name, model):
        return torch.rand(batch, model.in_channels, size * 16)  # (N, C, T)
    return torch.rand(batch, model.in_channels, size, size)  # (N, C, H, W) in [0, 1]


def _is_dct(name: str) -> bool:
    return "dct" in model_tags(name)


def _sizes(name: str) -> tuple[int, int]:
    if _is_dct(name):  # grids of 16-px cells: 64 and 96 px images (ResNet-50 variants end at H/32)
        return 4, 6
    # Multiples of 32 so that encoder-decoders with five halvings fit too.
    return max(64, MIN_SIZE.get(name, 0)), 96


def _second_channels(name: str) -> int | None:
    """in_channels of the second pass: 1, except for DCT models, whose layout fixes 384 channels."""
    return 384 if _is_dct(name) else 1


def _build(name: str, in_channels: int | None = None) -> torch.nn.Module:
    tags = set(model_tags(name))
    classes = {"num_classes": NUM_CLASSES} if tags & {"classify", "segment", "audio"} else {}
    return create_model(name, in_channels=in_channels, **classes)


def _check_output(name: str, model: torch.nn.Module, out: torch.Tensor, x: torch.Tensor) -> None:
    tags = set(model_tags(name))
    if tags & {"classify", "audio"}:
        assert out.shape == (x.shape[0], NUM_CLASSES), out.shape
    elif "segment" in tags:
        assert out.shape == (x.shape[0], NUM_CLASSES, *x.shape[2:]), out.shape
    elif "superres" in tags:
        scale = model.scale
        assert out.shape == (x.shape[0], x.shape[1], scale * x.shape[2], scale * x.shape[3]), out.shape
    else:
        assert out.shape[0] == x.shape[0], out.shape
    assert torch.isfinite(out).all()


def _relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-6))


@pytest.fixture(params=list_models())
def name(request: pytest.FixtureRequest) -> str:
    return request.param


def test_contract_shapes_at_two_sizes_and_in_channels(name: str) -> None:
    # The second size also uses in_channels=1, so both contract keywords are exercised in one pass.
    for size, in_channels in zip(_sizes(name), (None, _second_channels(name)), strict=True):
        torch.manual_seed(0)
        model = _build(name, in_channels).eval()
        assert model.in_channels == (in_channels or model.in_channels)
        if set(model_tags(name)) & {"classify", "segment", "audio"}:
            assert model.num_classes == NUM_CLASSES
        elif "superres" in model_tags(name):  # num_classes is the number of output channels
            assert model.num_classes == model.out_channels == model.in_channels
            assert isinstance(model.scale, int) and model.scale >= 2
        else:
            assert hasattr(model, "num_classes")
        x = _input(name, model, size)
        with torch.no_grad():
            out = model(x)
            _check_output(name, model, out, x)
            # Eval mode is deterministic, and forward == forward_head(forward_features(x)).
            assert torch.equal(out, model.forward_head(model.forward_features(x)))


def test_every_parameter_gets_a_gradient(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name).train()
    model(_input(name, model, _sizes(name)[0])).square().mean().backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert not missing, missing
    bad = [n for n, p in model.named_parameters() if p.grad is not None and not torch.isfinite(p.grad).all()]
    assert not bad, bad


def test_channels_last_and_bf16_agree_with_fp32(name: str) -> None:
    torch.manual_seed(0)
    model = _build(name).eval()
    x = _input(name, model, _sizes(name)[0])
    with torch.no_grad():
        ref = model(x)
        if x.dim() == 4:
            model_cl = model.to(memory_format=torch.channels_last)
            out_cl = model_cl(x.contiguous(memory_format=torch.channels_last))
            assert _relative_error(out_cl, ref) < 1e-4
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf16 = model(x)
        # bf16 keeps ~3 significant digits; measured 0.2-0.4% on the built-in families.
        assert _relative_error(out_bf16, ref) < 0.03, _relative_error(out_bf16, ref)


@pytest.mark.parametrize(("key", "value"), [("num_classes", -1), ("num_classes", 0), ("in_channels", 0),
                                            ("num_classes", 2.5)])
def test_common_keywords_must_be_positive_integers(key: str, value: object) -> None:
    from cnnlab.errors import CnnlabError

    # -1 used to reach torch as "Trying to create tensor with negative dimension"
    with pytest.raises(CnnlabError, match=f"{key}={value} for model 'resnet20' must be a positive integer"):
        create_model("resnet20", **{key: value})


def test_numpy_integer_keywords_are_accepted() -> None:
    import numpy as np

    assert create_model("resnet20", num_classes=np.int64(3)).num_classes == 3
