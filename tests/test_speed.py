"""Speed features: precision resolution, bf16 training against fp32, recipes, cifar_fast's whitening layer,
and the allocator setting. (Timings live in benchmarks/, never in tests.)"""

from __future__ import annotations

import ctypes
import ctypes.util
import platform
import resource

import pytest
import torch
from torch import nn

from cnnlab import _runtime
from cnnlab.errors import CnnlabError
from cnnlab.models import create_model
from cnnlab.train import precision as precision_mod
from cnnlab.train.config import TrainConfig, apply_overrides
from cnnlab.train.precision import make_precision, resolve_precision
from cnnlab.train.recipes import RECIPES, get_recipe

CPU = torch.device("cpu")


@pytest.mark.parametrize("fast_bf16, expected", [(True, "bf16"), (False, "fp32")])
def test_auto_picks_bf16_only_on_cpus_that_run_it_natively(monkeypatch, fast_bf16: bool, expected: str) -> None:
    monkeypatch.setattr(precision_mod, "cpu_has_fast_bf16", lambda: fast_bf16)
    assert resolve_precision("auto", CPU) == expected
    assert resolve_precision("fp32", CPU) == "fp32"  # explicit requests are kept as they are


@pytest.mark.parametrize("bad, fix", [("fp8", "choose from"), ("fp16", "use bf16")])
def test_bad_precisions_are_user_errors_that_name_the_fix(bad: str, fix: str) -> None:
    with pytest.raises(CnnlabError, match=fix):
        resolve_precision(bad, CPU)


def _tiny_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU(),
                         nn.Conv2d(16, 16, 3, padding=1), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 4))


def _train(name: str, steps: int) -> tuple[nn.Module, list[float]]:
    prec = make_precision(name, CPU)
    model = prec.prepare(_tiny_net())
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    gen = torch.Generator().manual_seed(1)
    y = torch.randint(0, 4, (32,), generator=gen)
    x = 0.5 * torch.rand(32, 3, 12, 12, generator=gen)
    for i, label in enumerate(y.tolist()):  # the class is the bright quadrant: learnable in a few steps
        r, c = divmod(label, 2)
        x[i, :, 6 * r:6 * r + 6, 6 * c:6 * c + 6] += 0.5
    losses = []
    for _ in range(steps):
        with prec.autocast():
            out = model(prec.batch(x))
        loss = nn.functional.cross_entropy(out.float(), y)
        opt.zero_grad()
        prec.backward(loss)
        prec.step(opt)
        losses.append(loss.item())
    return model, losses


def test_bf16_trains_like_fp32_and_keeps_fp32_master_weights() -> None:
    model32, loss32 = _train("fp32", 30)
    model16, loss16 = _train("bf16", 30)
    assert all(p.dtype == torch.float32 for p in model16.parameters())  # master weights stay fp32
    assert loss16[-1] < 0.5 * loss16[0]  # it learns
    assert abs(loss16[-1] - loss32[-1]) < 0.1 * loss32[0]  # and lands where fp32 does
    for p32, p16 in zip(model32.parameters(), model16.parameters(), strict=True):
        assert torch.allclose(p32, p16, atol=0.05, rtol=0.1)


def test_prepare_and_batch_use_channels_last_and_autocast_computes_in_bf16() -> None:
    prec = make_precision("bf16", CPU)
    model = prec.prepare(nn.Conv2d(3, 8, 3))
    x = prec.batch(torch.rand(2, 3, 9, 9))
    assert model.weight.is_contiguous(memory_format=torch.channels_last)
    assert x.is_contiguous(memory_format=torch.channels_last)
    with prec.autocast():
        assert model(x).dtype == torch.bfloat16
    with make_precision("fp32", CPU).autocast():
        assert model(x).dtype == torch.float32


def test_recipes_are_valid_train_configs_and_lookups_are_copies() -> None:
    for name in RECIPES:
        cfg = apply_overrides(TrainConfig(data="builtin:shapes", model="mini_xception"), get_recipe(name), name)
        cfg.resolved()  # raises a CnnlabError on any out-of-range value
    fast = get_recipe("cifar10-fast")
    assert fast["model"] == "cifar_fast" and fast["batch_size"] == 1024
    fast["epochs"] = 999
    assert get_recipe("cifar10-fast")["epochs"] != 999


def test_cifar10_fast_converts_airbench_units() -> None:
    # 11.5 per 1024 examples of a summed loss with momentum 0.85 -> a batch-mean lr of 11.5 / 7.667.
    fast = get_recipe("cifar10-fast")
    assert fast["lr"] == pytest.approx(11.5 / (1 + 1 / 0.15), rel=1e-3)
    assert fast["lr"] * fast["weight_decay"] == pytest.approx(0.0153 * 1024 / (1024 * (1 + 1 / 0.15)), rel=1e-3)


def test_unknown_recipe_suggests_the_close_name() -> None:
    with pytest.raises(CnnlabError, match="did you mean: cifar10-fast"):
        get_recipe("cifar10_fast")


def _correlated_images(n: int, seed: int) -> torch.Tensor:
    """Smooth, channel-correlated images: neighbouring pixels and channels are far from independent."""
    gen = torch.Generator().manual_seed(seed)
    base = torch.rand(n, 1, 8, 8, generator=gen)
    x = nn.functional.interpolate(base, size=(16, 16), mode="bilinear", align_corners=False)
    x = x.repeat(1, 3, 1, 1) * torch.tensor([1.0, 0.8, 0.5]).view(1, 3, 1, 1)
    return (x + 0.05 * torch.rand(n, 3, 16, 16, generator=gen)).clamp(0, 1)


def test_cifar_fast_whitening_layer_decorrelates_patches() -> None:
    torch.manual_seed(0)
    model = create_model("cifar_fast", num_classes=10, width=32)
    x = _correlated_images(256, seed=0)
    model.init_from_data(x, eps=1e-8)
    with torch.no_grad():
        z = model.whiten((x - model.mean) / model.std)  # (N, 24, 15, 15), before the GELU
    half = z[:, :12].permute(0, 2, 3, 1).reshape(-1, 12).double()
    cov = half.T @ half / len(half)
    assert torch.allclose(cov, torch.eye(12, dtype=torch.float64), atol=0.05)
    assert torch.allclose(z[:, 12:], -z[:, :12], atol=1e-5)  # the second half is the negation
    raw = nn.functional.unfold((x - model.mean) / model.std, 2).transpose(1, 2).reshape(-1, 12).double()
    raw_cov = raw.T @ raw / len(raw)
    assert (raw_cov - torch.diag(raw_cov.diag())).abs().max() > 0.5  # the input was correlated


def test_cifar_fast_follows_the_model_contract() -> None:
    model = create_model("cifar_fast", num_classes=7, in_channels=1, width=32).eval()
    x = torch.rand(2, 1, 32, 32)
    assert (model.num_classes, model.in_channels) == (7, 1)
    assert torch.equal(model(x), model.forward_head(model.forward_features(x)))
    assert model(x).shape == (2, 7)


def test_allocator_setting_is_applied_once_and_can_be_switched_off(monkeypatch) -> None:
    _runtime.tune_allocator.cache_clear()
    monkeypatch.setenv("CNNLAB_TUNE_MALLOC", "0")
    assert _runtime.tune_allocator() is False
    _runtime.tune_allocator.cache_clear()
    monkeypatch.delenv("CNNLAB_TUNE_MALLOC")
    first = _runtime.tune_allocator()
    assert first is _runtime.tune_allocator()  # cached: the second call does nothing
    assert first is (platform.libc_ver()[0] == "glibc")  # applied wherever glibc's mallopt exists


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="the setting is glibc's mallopt")
def test_allocator_setting_keeps_large_buffers_mapped_between_steps() -> None:
    # What the setting is for: a 64 MiB block (above glibc's 32 MiB mmap threshold cap, like a bf16
    # activation of mini_xception's first stage) freed and allocated again must not fault its pages
    # back in; with glibc's defaults each round is a fresh mmap and faults all 16,384 pages. Plain
    # malloc/free through ctypes, so the check is of glibc alone, whatever torch's allocator does.
    assert _runtime.tune_allocator()
    libc = ctypes.CDLL(ctypes.util.find_library("c"))
    libc.malloc.restype, libc.malloc.argtypes = ctypes.c_void_p, [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]
    size = 64 << 20

    def round_trip() -> None:
        block = libc.malloc(size)
        ctypes.memset(block, 1, size)
        libc.free(block)

    for _ in range(2):
        round_trip()
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(4):
        round_trip()
    faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    assert faults < 2000, faults


@pytest.mark.parametrize(("env", "applied", "value"), [
    ({}, True, _runtime.OPENMP_SPINCOUNT),
    ({"GOMP_SPINCOUNT": "777"}, False, "777"),  # the user's choice stays
    ({"OMP_WAIT_POLICY": "ACTIVE"}, False, None),
    ({"CNNLAB_KERNELS": "0"}, False, None),  # no kernels, nothing to make room for
])
def test_openmp_spin_is_shortened_only_when_the_kernels_run_and_the_user_chose_nothing(env, applied, value) -> None:
    import os
    import subprocess
    import sys

    base = {k: v for k, v in os.environ.items() if k not in ("GOMP_SPINCOUNT", "OMP_WAIT_POLICY", "CNNLAB_KERNELS")}
    code = ("import os; from cnnlab._runtime import tune_openmp_env; "
            "print(tune_openmp_env(), os.environ.get('GOMP_SPINCOUNT'))")
    out = subprocess.run([sys.executable, "-c", code], env={**base, **env}, capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == [str(applied), str(value)]


def test_openmp_spin_is_not_set_once_torch_is_imported(monkeypatch) -> None:
    monkeypatch.delenv("GOMP_SPINCOUNT", raising=False)
    monkeypatch.delenv("OMP_WAIT_POLICY", raising=False)
    monkeypatch.delenv("CNNLAB_KERNELS", raising=False)
    assert _runtime.tune_openmp_env() is False  # torch is loaded here: libgomp has read its settings
