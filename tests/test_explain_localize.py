"""CAMs localise: a tiny CNN trained here on builtin:shapes puts its CAM peak inside the shape far
more often than a random pixel would land there."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data import load_data
from cnnlab.explain import cam


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU())


def _net(seed: int) -> nn.Sequential:
    torch.manual_seed(seed)
    return nn.Sequential(
        _block(3, 16), nn.MaxPool2d(2), _block(16, 32), nn.MaxPool2d(2), _block(32, 32),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(32, 3),
    )  # fmt: skip


def _hit_rate(net: nn.Module, x: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, method: str) -> float:
    """Share of examples whose CAM maximum lies on a pixel of the object."""
    maps = cam(net, x, "4", target=y, method=method)
    peak = maps.flatten(1).argmax(dim=1)
    return (mask.flatten(1).gather(1, peak[:, None])[:, 0] > 0).float().mean().item()


def _train(x: torch.Tensor, y: torch.Tensor) -> nn.Module:
    net = _net(seed=0)
    opt = torch.optim.Adam(net.parameters(), 1e-2)
    gen = torch.Generator().manual_seed(0)
    for _ in range(120):  # ~5 s on one core; the map needs "where", not a good classifier
        idx = torch.randint(0, len(x), (48,), generator=gen)
        loss = F.cross_entropy(net(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    return net.eval()


@pytest.mark.slow
def test_cam_peak_falls_inside_the_object() -> None:
    # One test, not one per method: under pytest-xdist a shared fixture would be trained once per worker.
    bundle = load_data("builtin:shapes?n=1500&size=32&classes=3", seed=0)
    net = _train(bundle.train.x.float() / 255, bundle.train.y)
    x, y, mask = bundle.val.x.float() / 255, bundle.val.y, bundle.val.mask
    chance = (mask > 0).float().mean().item()  # where a peak at a random pixel would land
    assert chance < 0.3
    rates = {method: _hit_rate(net, x, y, mask, method) for method in ("gradcam", "gradcam++", "hirescam")}
    for method, rate in rates.items():
        assert rate > max(3 * chance, 0.45), (method, rate, chance)
    # Same architecture, random weights: clearly worse, so this measures what training taught the
    # model, not a bias of the method towards bright or central pixels.
    assert _hit_rate(_net(seed=1).eval(), x, y, mask, "gradcam") < rates["gradcam"] - 0.15
