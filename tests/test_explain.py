"""cnnlab.explain on plain nn.Modules: hooks released, caller's model untouched, errors, CAM maths
against captum, batched filter ascent == one channel at a time, 1-D CAMs."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.explain import (
    PixelTarget,
    cam,
    capture,
    channel_order,
    feature_maps,
    grad_cam,
    list_layers,
    silent_channels,
    silent_share_by_depth,
    visualize_filters,
)


class Block(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, padding=1)
        self.bn = nn.BatchNorm2d(cout)
        self.act = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.bn(self.conv(x)))


class Net(nn.Module):
    """A tiny classifier with named blocks, batch norm and dropout (so eval vs train matters)."""

    def __init__(self, num_classes: int = 5, in_channels: int = 3) -> None:
        super().__init__()
        self.in_channels = in_channels
        self.blocks = nn.Sequential(Block(in_channels, 8), nn.MaxPool2d(2), Block(8, 12))
        self.drop = nn.Dropout(0.5)
        self.head = nn.Linear(12, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.blocks(x)
        return self.head(self.drop(f.mean(dim=(2, 3))))


def _net(seed: int = 0) -> Net:
    torch.manual_seed(seed)
    net = Net()
    # Non-trivial running statistics, so eval and train mode really differ.
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net


def _x(n: int = 3, size: int = 16) -> torch.Tensor:
    return torch.rand(n, 3, size, size, generator=torch.Generator().manual_seed(1))


def _hook_count(model: nn.Module) -> int:
    return sum(len(m._forward_hooks) + len(m._backward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


# --------------------------------------------------------------------------------- hooks and state
def test_hooks_released_after_success_and_after_an_exception() -> None:
    net, x = _net(), _x()
    feature_maps(net, x, "blocks.2.conv")
    grad_cam(net, x, "blocks.2")
    visualize_filters(net, "blocks.0.conv", channels=[0, 1], steps=2, size=16)
    assert _hook_count(net) == 0
    with pytest.raises(RuntimeError, match="boom"), capture(net, ["blocks.0", "head"]):
        assert _hook_count(net) == 2
        raise RuntimeError("boom")
    assert _hook_count(net) == 0
    with pytest.raises(CnnlabError):
        grad_cam(net, x, "head")  # fails after the hook is registered
    with pytest.raises(CnnlabError):
        grad_cam(net, x, "blocks.2", target=99)
    assert _hook_count(net) == 0


def _state(net: nn.Module) -> tuple:
    return (
        [(n, m.training) for n, m in net.named_modules()],
        [(n, p.requires_grad, p.device, p.grad is None) for n, p in net.named_parameters()],
        {k: v.clone() for k, v in net.state_dict().items()},
    )


def _assert_same_state(before: tuple, after: tuple) -> None:
    assert before[0] == after[0]
    assert before[1] == after[1]
    for key, value in before[2].items():
        assert torch.equal(value, after[2][key]), key


@pytest.mark.parametrize("training", [True, False])
def test_model_state_is_unchanged(training: bool) -> None:
    net, x = _net(), _x()
    net.train(training)
    net.blocks[0].bn.eval()  # a mixed-mode model: each submodule's own flag must come back
    net.blocks[2].conv.weight.requires_grad_(False)
    before = _state(net)
    feature_maps(net, x, "blocks.0.act")
    for method in ("gradcam", "gradcam++", "hirescam"):
        cam(net, x, "blocks.2", method=method)
    visualize_filters(net, "blocks.2.conv", channels=[0, 3], steps=3, size=16)
    visualize_filters(net, "blocks.2.conv", channels=[1], steps=3, size=16, method="robust")
    list_layers(net, x)
    _assert_same_state(before, _state(net))
    with pytest.raises(CnnlabError):
        grad_cam(net, x, "head")
    _assert_same_state(before, _state(net))


def test_explains_in_eval_mode_whatever_the_callers_mode() -> None:
    net, x = _net(), _x()
    net.train()
    expected = net.eval().blocks(x)
    net.train()
    assert torch.allclose(feature_maps(net, x, "blocks"), expected.detach())
    assert net.training


def test_input_tensor_is_not_modified_and_may_come_from_inference_mode() -> None:
    net = _net()
    with torch.inference_mode():
        x = _x()
    copy = x.clone()
    assert grad_cam(net, x, "blocks.2").shape == (3, 16, 16)
    assert torch.equal(x, copy)


# ------------------------------------------------------------------------------------------ layers
def test_list_layers_gives_names_types_and_shapes() -> None:
    net = _net()
    infos = {i.name: i for i in list_layers(net, _x(2))}
    assert infos["blocks.2.conv"].type == "Conv2d"
    assert infos["blocks.2.conv"].output_shape == (2, 12, 8, 8)
    assert infos["head"].output_shape == (2, 5)
    assert not infos["head"].spatial and infos["blocks.1"].spatial
    assert [i.output_shape for i in list_layers(net)] == [None] * len(infos)


def test_unknown_layer_suggests_close_names() -> None:
    with pytest.raises(CnnlabError, match=r"unknown layer 'blocks.2.cnv'.*did you mean: blocks.2.conv"):
        feature_maps(_net(), _x(), "blocks.2.cnv")


# ------------------------------------------------------------------------------------ feature maps
def test_feature_maps_channel_order_and_silent_channels() -> None:
    net, x = _net(), _x()
    with torch.no_grad():
        net.blocks[0].conv.bias[2] = -100.0  # channel 2 can never be positive
        net.blocks[0].conv.bias[5] = +100.0  # channel 5 is always the strongest
    maps = feature_maps(net, x, "blocks.0.act")
    assert maps.shape == (3, 8, 16, 16) and not maps.requires_grad
    assert channel_order(maps)[0] == 5 and channel_order(maps)[-1] == 2
    silent = silent_channels(maps)
    assert silent[2] and not silent[5]
    rows = silent_share_by_depth(net, x)
    assert [r.layer for r in rows] == ["blocks.0.act", "blocks.2.act"]  # the ReLU modules, in order
    assert rows[0].silent >= 1 and rows[0].channels == 8
    assert rows[0].share == rows[0].silent / 8


# ---------------------------------------------------------------------------------- CAMs and errors
def test_grad_cam_shape_range_and_default_target_is_prediction() -> None:
    net, x = _net(), _x(4, 20)
    maps = grad_cam(net, x, "blocks.2")
    assert maps.shape == (4, 20, 20)
    assert maps.min() >= 0 and torch.allclose(maps.flatten(1).amax(1)[maps.flatten(1).amax(1) > 0], torch.tensor(1.0))
    predicted = net.eval()(x).argmax(1)
    assert torch.equal(maps, grad_cam(net, x, "blocks.2", target=predicted.tolist()))


def test_captum_layer_grad_cam_agrees() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    net, x = _net().eval(), _x(4, 20)
    target = [0, 3, 1, 4]
    ours = grad_cam(net, x, "blocks.2", target=target)
    attr = captum_attr.LayerGradCam(net, net.blocks[2]).attribute(x, target=target, relu_attributions=True)
    up = captum_attr.LayerAttribution.interpolate(attr, (20, 20), interpolate_mode="bilinear")[:, 0]
    # captum's interpolate leaves align_corners to F.interpolate's default (False), as we do.
    theirs = up / up.flatten(1).amax(1).clamp(min=1e-30)[:, None, None]
    assert torch.allclose(ours, theirs, atol=1e-5)


def test_frozen_parameters_still_give_cams() -> None:
    net, x = _net(), _x()
    for p in net.parameters():
        p.requires_grad_(False)
    with torch.no_grad():  # even inside the caller's no_grad block
        maps = grad_cam(net, x, "blocks.2")
    assert maps.shape == (3, 16, 16) and maps.max() > 0
    assert all(p.grad is None and not p.requires_grad for p in net.parameters())


def test_models_that_work_in_place_on_their_input() -> None:
    torch.manual_seed(0)
    net = nn.Sequential(nn.ReLU(inplace=True), nn.Conv2d(3, 4, 3), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(1),
                        nn.Flatten(), nn.Linear(4, 2))
    for p in net.parameters():
        p.requires_grad_(False)
    x = _x() - 0.5
    copy = x.clone()
    assert grad_cam(net, x, "1").shape == (3, 16, 16)
    assert visualize_filters(net, "1", [0], steps=2, size=12).shape == (1, 3, 12, 12)
    assert torch.equal(x, copy)  # the caller's tensor was not rectified in place


def test_bad_inputs_give_one_line_fixes() -> None:
    net, x = _net(), _x()
    with pytest.raises(CnnlabError, match=r"no spatial extent.*such as .blocks.*--list-layers"):
        grad_cam(net, x, "head")
    with pytest.raises(CnnlabError, match=r"valid classes are 0\.\.4"):
        grad_cam(net, x, "blocks.2", target=5)
    with pytest.raises(CnnlabError, match="1 channel\\(s\\) but the model expects 3"):
        grad_cam(net, x[:, :1], "blocks.2")
    with pytest.raises(CnnlabError, match="batch shaped"):
        grad_cam(net, x[0], "blocks.2")
    with pytest.raises(CnnlabError, match="unknown CAM method"):
        cam(net, x, "blocks.2", method="gradcum")
    with pytest.raises(CnnlabError, match=r"target class 9 is out of range"):
        grad_cam(net, x, "blocks.2", target=torch.tensor([0, 9, 1]))
    with pytest.raises(CnnlabError, match="2 target classes for a batch of 3"):
        grad_cam(net, x, "blocks.2", target=[1, 2])


def test_hirescam_equals_gradcam_for_a_single_channel_layer() -> None:
    # With one channel, Grad-CAM's weight is a positive or negative constant times the map, while
    # HiResCAM multiplies elementwise: they agree exactly when the gradient is constant over positions,
    # which a global-average-pool + linear head guarantees.
    torch.manual_seed(3)
    net = nn.Sequential(nn.Conv2d(3, 1, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(1, 2))
    x = _x()
    assert torch.allclose(cam(net, x, "1", method="gradcam"), cam(net, x, "1", method="hirescam"), atol=1e-6)


class Seg(nn.Module):
    in_channels = 3

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.out = nn.Conv2d(8, 3, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.body(x))


def test_segmentation_targets_pixels_of_a_class_or_a_user_mask() -> None:
    torch.manual_seed(0)
    net, x = Seg(), _x(2)
    by_prediction = grad_cam(net, x, "body", target=1)
    assert by_prediction.shape == (2, 16, 16)
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[:4, :4] = True
    # 1x1 head: a pixel's logit depends on that pixel's features only, so the HiResCAM map of a
    # masked score lives inside the mask.
    local = cam(net, x, "body", target=PixelTarget(1, mask), method="hirescam")
    assert local[:, ~mask].max() == 0 and local[:, mask].max() == 1
    assert grad_cam(net, x, "body").shape == (2, 16, 16)  # None: every pixel's predicted class
    with pytest.raises(CnnlabError, match="out of range"):
        grad_cam(net, x, "body", target=7)


def test_single_logit_binary_classifier_targets() -> None:
    from cnnlab.explain.cam import target_scores

    logits = torch.tensor([[2.0], [-1.0]])
    assert torch.equal(target_scores(logits, None), torch.tensor([2.0, 1.0]))  # evidence for the prediction
    assert torch.equal(target_scores(logits, 0), torch.tensor([-2.0, 1.0]))
    with pytest.raises(CnnlabError, match=r"valid classes are 0\.\.1"):
        target_scores(logits, 2)


class Audio1d(nn.Module):
    in_channels = 1

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv1d(1, 8, 9, stride=4, padding=4), nn.ReLU(), nn.Conv1d(8, 8, 5, stride=2, padding=2), nn.ReLU())
        self.head = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x).mean(dim=2))


def test_1d_cam_is_over_time_and_matches_captum() -> None:
    captum_attr = pytest.importorskip("captum.attr")
    torch.manual_seed(0)
    net, x = Audio1d(), torch.randn(2, 1, 400)
    maps = grad_cam(net, x, "features.3", target=2)
    assert maps.shape == (2, 400)
    attr = captum_attr.LayerGradCam(net, net.features[3]).attribute(x, target=2, relu_attributions=True)
    up = captum_attr.LayerAttribution.interpolate(attr, 400, interpolate_mode="linear")[:, 0]
    theirs = up / up.amax(1, keepdim=True).clamp(min=1e-30)
    assert torch.allclose(maps, theirs, atol=1e-5)
    assert visualize_filters(net, "features.0", channels=[0, 1], steps=3, size=64).shape == (2, 1, 64)


# ------------------------------------------------------------------------------- filter ascent
@pytest.mark.parametrize("method", ["plain", "robust"])
def test_batched_filter_ascent_equals_one_at_a_time(method: str) -> None:
    net = _net()
    channels = [0, 5, 11]
    batch = visualize_filters(net, "blocks.2.conv", channels, steps=8, size=20, seed=4, method=method)
    assert batch.shape == (3, 3, 20, 20) and batch.min() >= 0 and batch.max() <= 1
    for row, channel in enumerate(channels):
        alone = visualize_filters(net, "blocks.2.conv", [channel], steps=8, size=20, seed=4, method=method)
        assert torch.allclose(batch[row], alone[0], atol=1e-4), (method, channel)
    # Chunking into smaller batches changes nothing either; a different seed does.
    assert torch.allclose(batch, visualize_filters(net, "blocks.2.conv", channels, steps=8, size=20, seed=4, method=method, batch_size=2), atol=1e-4)
    other = visualize_filters(net, "blocks.2.conv", channels[:1], steps=8, size=20, seed=5, method=method)
    assert not torch.allclose(batch[0], other[0], atol=1e-2)


def test_filter_ascent_raises_the_channel_it_targets() -> None:
    net = _net()
    start = torch.full((1, 3, 24, 24), 0.5)
    images = visualize_filters(net, "blocks.2.conv", [3, 7], steps=20, size=24)
    acts = feature_maps(net, torch.cat([images, start]), "blocks.2.conv")[:, :, 2:-2, 2:-2].mean(dim=(2, 3))
    assert acts[0, 3] > acts[2, 3] and acts[1, 7] > acts[2, 7]
    assert acts[0, 3] > acts[1, 3]  # the image made for channel 3 excites it more than channel 7's image


def test_filter_errors() -> None:
    net = _net()
    with pytest.raises(CnnlabError, match=r"channels 0\.\.11"):
        visualize_filters(net, "blocks.2.conv", [12], steps=1)
    with pytest.raises(CnnlabError, match="choose 'plain' or 'robust'"):
        visualize_filters(net, "blocks.2.conv", [1], method="fancy")
    with pytest.raises(CnnlabError, match=r"no channels to visualise.*\(0\.\.11\)"):  # was torch.cat([])
        visualize_filters(net, "blocks.2.conv", [], steps=1)


def test_default_cam_layer_is_the_last_block_at_the_coarsest_useful_resolution() -> None:
    from cnnlab.explain import last_spatial_layer

    assert last_spatial_layer(_net(), _x(1, 16)) == "blocks.2"  # 8x8, named as the block, not its ReLU
    assert last_spatial_layer(Audio1d(), torch.randn(1, 1, 400)) == "features.3"
    # Below 4 positions a map says little about "where": a 6x6 input stops at the 6x6 layers.
    assert last_spatial_layer(_net(), _x(1, 6), min_size=4) == "blocks.0"
