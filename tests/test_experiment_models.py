"""The experiments' networks: plain CIFAR nets with the depths and parameter counts claimed, and the
Inception/Xception pair matched in parameters within 2%."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.experiments.degradation import depth
from cnnlab.layers import Residual
from cnnlab.models import create_model
from cnnlab.models.inception import Towers, grid_reduction, inception_module


def _params(name: str, **kwargs: object) -> int:
    with torch.device("meta"):
        return sum(p.numel() for p in create_model(name, **kwargs).parameters())


@pytest.mark.parametrize(("plain", "resnet", "layers", "params"), [
    ("plain20", "resnet20", 20, 269_722), ("plain32", "resnet32", 32, 464_154), ("plain56", "resnet56", 56, 853_018),
])
def test_plain_nets_have_the_depth_and_parameters_of_their_resnets(plain: str, resnet: str, layers: int,
                                                                  params: int) -> None:
    assert depth(plain) == depth(resnet) == layers  # 6n + 1 convolutions + the linear head
    assert _params(plain) == _params(resnet) == params  # option A shortcuts have no parameters


def test_plain_nets_have_no_shortcut_and_resnets_one_per_block() -> None:
    with torch.device("meta"):
        plain, resnet = create_model("plain56"), create_model("resnet56")
    assert not any(isinstance(m, Residual) for m in plain.modules())
    assert sum(isinstance(m, Residual) for m in resnet.modules()) == 27  # 3 stages x 9 blocks
    torch.manual_seed(0)
    model = create_model("plain20", num_classes=4).eval()
    assert model(torch.rand(2, 3, 32, 32)).shape == (2, 4)
    # The same layer names as the ResNet (stages.S.B.main...), so the two compare layer by layer.
    names = {n for n, _ in create_model("plain20").named_modules()}
    assert "stages.2.2.main.1.conv" in names and "stages.2.2.merge" not in names


@pytest.mark.parametrize("classes", [1, 2, 10, 100, 1000])
def test_inception_and_xception_twins_match_in_parameters_within_2_percent(classes: int) -> None:
    inception, xception = _params("inception_small", num_classes=classes), _params("xception_small", num_classes=classes)
    assert abs(xception / inception - 1) < 0.02, (inception, xception)
    if classes == 10:
        assert (inception, xception) == (826_938, 819_794)  # the counts the module docstring quotes


def test_the_twins_differ_in_their_modules_only() -> None:
    with torch.device("meta"):
        inception, xception = create_model("inception_small"), create_model("xception_small")
    depthwise = [m for m in xception.modules() if isinstance(m, nn.Conv2d) and m.groups == m.in_channels > 1]
    assert depthwise and not any(isinstance(m, nn.Conv2d) and m.groups > 1 for m in inception.modules())
    assert not any(isinstance(m, Residual) for m in inception.modules())  # Inception v3 has no residuals
    assert sum(isinstance(m, Residual) for m in xception.modules()) == 8  # 3 stages x 2 modules + 2 reductions
    for net in (inception, xception):
        assert len(net.stages) == 3 and net.head.fc.in_features == net.num_features
        out = net.forward_features(torch.empty(2, 3, 32, 32, device="meta"))
        assert out.shape[2:] == (8, 8)  # two /2 reductions
    out = create_model("inception_small", stem_stride=2).to("meta")(torch.empty(1, 3, 128, 128, device="meta"))
    assert out.shape == (1, 10)


def test_inception_module_and_grid_reduction_channels_and_sizes() -> None:
    torch.manual_seed(0)
    module, reduction = inception_module(40, 8).eval(), grid_reduction(72, 8).eval()
    assert isinstance(module, Towers) and len(module.towers) == 4
    x = torch.rand(2, 40, 15, 15)
    assert module(x).shape == (2, 72, 15, 15)  # 9c
    assert reduction(torch.rand(2, 72, 15, 15)).shape == (2, 144, 8, 8)  # 18c at ceil(15 / 2)


def test_inception_rejects_widths_its_reductions_cannot_make() -> None:
    with pytest.raises(CnnlabError, match=r"9c, 18c, 36c"):
        create_model("inception_small", widths=[64, 128, 256])
    with pytest.raises(CnnlabError, match="inception|xception"):
        create_model("inception_small", module="resnet")
