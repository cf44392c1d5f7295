"""The model zoo against the papers, the layer summary, and the `cnnlab models` CLI."""

from __future__ import annotations

import pytest
import torch
from click.testing import CliRunner

from cnnlab.cli import cli
from cnnlab.models import create_model
from cnnlab.models._summary import summarize

PUBLISHED = {  # parameters at the papers' class counts (Keras for Xception, torchvision for ResNets)
    ("xception", 1000): 22_855_952,
    ("resnet18", 1000): 11_689_512,
    ("resnet34", 1000): 21_797_672,
    ("resnet50", 1000): 25_557_032,
    ("resnet20", 10): 269_722,  # He et al. 2016, table 6: 0.27M
    ("resnet32", 10): 464_154,  # 0.46M
    ("resnet56", 10): 853_018,  # 0.85M
    # DLwP ch. 9 listing (Dense(1)): Keras reports 721,857 of which 3,008 are BN moving statistics.
    ("mini_xception", 1): 721_857 - 3_008,
}


def _meta(name: str, **kwargs: object) -> torch.nn.Module:
    with torch.device("meta"):
        return create_model(name, **kwargs)


@pytest.mark.parametrize(("name", "classes"), list(PUBLISHED))
def test_parameter_counts_match_the_papers(name: str, classes: int) -> None:
    model = _meta(name, num_classes=classes)
    assert sum(p.numel() for p in model.parameters()) == PUBLISHED[(name, classes)]


def test_xception_299_gives_10x10_features_and_papers_mult_adds() -> None:
    model = _meta("xception")
    assert model.forward_features(torch.empty(1, 3, 299, 299, device="meta")).shape == (1, 2048, 10, 10)
    summary = summarize(model, (3, 299, 299))
    assert summary.error is None and summary.output_shape == (1000,)
    assert 8.3e9 < summary.total_macs < 8.45e9  # the paper: 8.4 billion mult-adds


def test_summary_rows_shapes_params_and_macs() -> None:
    model = _meta("resnet20")
    summary = summarize(model, (3, 32, 32))
    first = summary.rows[0]
    assert (first.name, first.type, first.output_shape) == ("stem.0.conv", "Conv2d", (16, 32, 32))
    assert first.params == 16 * 3 * 3 * 3 and first.macs == 32 * 32 * 16 * 27
    assert sum(r.params for r in summary.rows) == summary.total_params == 269_722
    assert summary.rows[-1].name == "head.fc" and summary.rows[-1].macs == 64 * 10
    assert 40e6 < summary.total_macs < 41e6  # ~41M mult-adds, the usual figure for ResNet-20


def test_summary_of_a_real_model_leaves_its_mode_and_hooks_alone() -> None:
    model = create_model("mini_xception", widths=(8, 16), num_classes=3).train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    summary = summarize(model, (3, 40, 40))
    assert summary.error is None and summary.output_shape == (3,)
    assert model.training and all(m.training for m in model.modules())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # BN stats untouched
    assert not any(m._forward_hooks or m._forward_pre_hooks for m in model.modules())


def test_summary_stops_at_the_failing_block_and_keeps_the_rows_before() -> None:
    summary = summarize(_meta("mini_xception", project=False), (3, 64, 64))
    assert summary.rows and summary.rows[-1].name == "stages.0.main.2"
    assert summary.error == ("block 'stages.0.merge': shortcut is (32, 60, 60), main branch (32, 30, 30): "
                             "addition needs equal shapes; project the shortcut with a 1x1 conv, stride 2, "
                             "32 filters (set project=True)")


def test_cli_models_list_shows_every_model_with_counts() -> None:
    result = CliRunner().invoke(cli, ["models", "list"])
    assert result.exit_code == 0, result.output
    assert "xception" in result.output and "22,855,952" in result.output and "11,689,512" in result.output
    assert "resnet*" not in result.output
    only = CliRunner().invoke(cli, ["models", "list", "resnet5*"])
    assert "resnet50" in only.output and "resnet56" in only.output and "xception" not in only.output


def test_cli_models_summary_table_and_totals() -> None:
    result = CliRunner().invoke(cli, ["models", "summary", "resnet20", "--input-size", "3,32,32",
                                      "--num-classes", "7"])
    assert result.exit_code == 0, result.output
    assert "stages.2.2.merge" in result.output and "(64, 8, 8)" in result.output
    assert "output (7,); params 269,527" in result.output  # 269,722 - 3 classes * 65


def test_cli_models_summary_shows_the_table_then_the_named_error() -> None:
    result = CliRunner().invoke(cli, ["models", "summary", "mini_xception", "--input-size", "3,64,64",
                                      "--set", "project=false"])
    assert result.exit_code != 0
    assert "stages.0.main.2" in result.output  # the rows before the failure were printed
    assert isinstance(result.exception, ValueError) and "'stages.0.merge'" in str(result.exception)


def test_cli_models_summary_rejects_bad_input_size() -> None:
    result = CliRunner().invoke(cli, ["models", "summary", "resnet20", "--input-size", "3,32,x"])
    assert result.exit_code != 0 and "--input-size" in str(result.exception)


def test_cli_models_summary_names_the_input_a_torch_layer_cannot_take() -> None:
    # C,H without W on a 2-D model: torch only says "Invalid channel dimensions"
    result = CliRunner().invoke(cli, ["models", "summary", "resnet20", "--input-size", "32,32"])
    assert result.exit_code != 0 and isinstance(result.exception, ValueError)
    message = str(result.exception)
    assert "'stem.0.conv' (Conv2d) cannot take an input of shape (32, 32)" in message
    assert "C,H,W for 2-D models" in message


def test_mini_xception_traces_into_one_graph_in_channels_last() -> None:
    torch.manual_seed(0)
    model = create_model("mini_xception", widths=(8, 16), num_classes=3).eval()
    model = model.to(memory_format=torch.channels_last)
    x = torch.rand(2, 3, 37, 40).contiguous(memory_format=torch.channels_last)
    compiled = torch.compile(model, backend="eager", fullgraph=True)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), model(x))


def test_mini_xception_follows_the_listing() -> None:
    model = create_model("mini_xception", num_classes=1)
    assert model.stem.conv.kernel_size == (5, 5) and model.stem.conv.bias is None
    assert [s.out_channels for s in model.stages] == [32, 64, 128, 256, 512]
    stage = model.stages[1]
    assert [n for n, _ in stage.main[0].named_children()] == ["bn", "act", "conv"]  # BN -> ReLU -> SepConv
    assert stage.shortcut.conv.kernel_size == (1, 1) and stage.shortcut.conv.stride == (2, 2)
    assert model.head.drop.p == 0.5 and model.head.fc.out_features == 1
    # Our inputs are already in [0, 1], which the listing's Rescaling(1/255) produces from [0, 255].
    assert model.rescale.scale == 1.0
    assert create_model("mini_xception", input_scale=1 / 255).rescale.scale == 1 / 255
