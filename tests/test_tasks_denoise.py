"""Denoising: seeded noise that is fixed per validation image, PSNR as specified (RGB, 0-255, no shave,
8-bit rounding) checked by hand, the residual target, bad options, and train -> eval -> predict."""

from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli
from cnnlab.data.bundle import Split
from cnnlab.data.noise import add_noise, parse_range
from cnnlab.errors import CnnlabError
from cnnlab.tasks import get_task
from cnnlab.train.config import TrainConfig
from cnnlab.train.runner import fit

# builtin:shapes are flat shapes on flat backgrounds: heavy noise on them is easy to remove
DN = TrainConfig(task="denoise", data="builtin:shapes?n=128&size=32", model="unet_small",
                 model_kwargs={"widths": [16, 32]}, epochs=5, batch_size=8, precision="fp32", lr=5e-3, threads=1,
                 task_options={"sigma": 50, "patch": 32}, augment="none")


def _photos(n: int = 3) -> Split:
    g = torch.Generator().manual_seed(0)
    return Split({"image": [torch.randint(0, 256, (3, 20, 24), dtype=torch.uint8, generator=g) for _ in range(n)]})


def test_gaussian_noise_has_its_sigma_and_is_reproducible_by_seed() -> None:
    clean = torch.full((3, 64, 64), 128, dtype=torch.uint8)
    a = add_noise(clean, "gaussian", 25.0, 30.0, torch.Generator().manual_seed(1))
    b = add_noise(clean, "gaussian", 25.0, 30.0, torch.Generator().manual_seed(1))
    c = add_noise(clean, "gaussian", 25.0, 30.0, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    noise = a - clean.float()
    assert float(noise.std()) == pytest.approx(25.0, rel=0.03) and abs(float(noise.mean())) < 1.0
    # unclipped, unrounded (the papers' protocol): values off the 8-bit grid and outside 0-255 survive
    far = add_noise(torch.zeros(3, 16, 16, dtype=torch.uint8), "gaussian", 25.0, 30.0, torch.Generator().manual_seed(0))
    assert float(far.min()) < 0 and not torch.equal(far, far.round())


def test_poisson_noise_grows_with_brightness_and_shrinks_with_the_peak() -> None:
    g = torch.Generator().manual_seed(0)
    dark, bright = (torch.full((1, 64, 64), v, dtype=torch.uint8) for v in (30, 220))
    std = [float((add_noise(x, "poisson", 0.0, peak, g) - x.float()).std())
           for x, peak in ((dark, 30.0), (bright, 30.0), (bright, 300.0))]
    # Poisson(x / 255 * peak) / peak * 255 has std 255 * sqrt(x / 255 / peak)
    expected = [255 * math.sqrt(v / 255 / p) for v, p in ((30, 30), (220, 30), (220, 300))]
    assert std == pytest.approx(expected, rel=0.06)


def test_validation_noise_is_fixed_per_image_whatever_the_batch() -> None:
    task, items = get_task("denoise", sigma=25), _photos()
    first = task.eval_batch(items.take(slice(0, 1)))
    again = task.eval_batch(items.take(slice(0, 1)))
    assert torch.equal(first["input"], again["input"])
    # image 1 gets the same noise alone as in a batch with image 2, and another noise than image 2
    alone = task.eval_batch(items.take(slice(1, 2)))["input"][0]
    together = task.eval_batch(items.take(slice(1, 3)))
    assert torch.equal(alone, together["input"][0])
    assert not torch.equal(alone - items["image"][1].float(), together["input"][1] - items["image"][2].float())


def test_training_noise_follows_the_step_generator_and_blind_sigma_stays_in_its_range() -> None:
    task, items = get_task("denoise", sigma="5-50", patch=16), Split({"image": [torch.full((3, 64, 64), 128, dtype=torch.uint8)] * 8})
    a = task.train_batch(items, torch.Generator().manual_seed(3), None)
    b = task.train_batch(items, torch.Generator().manual_seed(3), None)
    assert torch.equal(a["input"], b["input"])
    # the target is the residual: the noise itself, on the 0-255 scale
    assert torch.allclose(a["target"], a["input"] - a["clean"].float())
    sigmas = a["target"].flatten(1).std(dim=1)
    assert float(sigmas.min()) > 5 * 0.8 and float(sigmas.max()) < 50 * 1.2 and float(sigmas.max() - sigmas.min()) > 5


def test_psnr_is_rgb_0_255_unshaved_after_8_bit_rounding_by_hand() -> None:
    task = get_task("denoise", sigma=25)
    clean = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    noisy = clean.float().clone()
    noisy[0, 0, 0, 0] = 100 + 40.3  # one pixel off by 40 after rounding, on channel R, in the corner
    noisy[0, 2, 3, 3] = -30.0  # clipped to 0 when saved: off by 100, on channel B, in the far corner
    batch = {"input": noisy, "target": noisy - clean.float(), "clean": clean}
    meter = task.meter({})
    # a model that predicts half of the R error and none of the B error
    estimate = torch.zeros(1, 3, 4, 4)
    estimate[0, 0, 0, 0] = 20.0 / 255
    meter.update(estimate, batch["target"], task.loss(estimate, batch["target"]), batch)
    m = meter.compute()
    # 48 values; noisy input: errors 40 and 100 -> MSE (1600 + 10000) / 48
    assert m["baseline_psnr"] == pytest.approx(10 * math.log10(255**2 / ((40**2 + 100**2) / 48)), abs=1e-9)
    # output: R pixel 120.3 -> 120 (off by 20), B pixel still clipped to 0 (off by 100)
    assert m["psnr"] == pytest.approx(10 * math.log10(255**2 / ((20**2 + 100**2) / 48)), abs=1e-9)
    # the loss is the MSE of the residual on the [0, 1] scale
    expected_loss = float(((estimate - batch["target"] / 255) ** 2).mean())
    assert m["loss"] == pytest.approx(expected_loss, rel=1e-6)


def test_a_network_that_outputs_zero_returns_its_input() -> None:
    # the point of predicting the residual: zero output scores exactly the noisy input's PSNR
    task, items = get_task("denoise", sigma=25), _photos(2)
    batch = task.eval_batch(items.take(slice(0, 1)))
    meter = task.meter({})
    zero = torch.zeros(batch["input"].shape)
    meter.update(zero, batch["target"], task.loss(zero, batch["target"]), batch)
    m = meter.compute()
    assert m["psnr"] == m["baseline_psnr"] and 19.0 < m["baseline_psnr"] < 22.0  # sigma 25: 20.17 dB unclipped


@pytest.mark.parametrize(("options", "message"), [
    ({"sigma": -5}, "--sigma -5 must be >= 0"),
    ({"sigma": "50-5"}, "the range goes down"),
    ({"sigma": "loud"}, "must be a number or a range"),
    ({"noise": "salt"}, "--noise salt is not a noise model"),
    ({"patch": 4}, "--patch 4 is too small"),
])
def test_bad_denoise_options_name_the_fix(options: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=message):
        get_task("denoise", **options)


def test_ranges_parse_as_fixed_values_or_low_high() -> None:
    assert parse_range(25, "--sigma", "") == (25.0, 25.0)
    assert parse_range("5-50", "--sigma", "") == (5.0, 50.0) == parse_range([5, 50], "--sigma", "")


@pytest.mark.slow
def test_train_eval_predict_end_to_end_beats_the_noisy_input(tmp_path) -> None:
    run = tmp_path / "run"
    fit(dataclasses.replace(DN, out=str(run)), progress=False)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    # noise of sigma 50 on flat shapes: 5 epochs of a small U-Net beat the noisy input's PSNR (by ~3.8 dB)
    assert rows[-1]["val_psnr"] > rows[-1]["val_baseline_psnr"] + 2.0, rows[-1]
    assert rows[0]["val_baseline_psnr"] == rows[-1]["val_baseline_psnr"]  # the same validation noise every epoch

    result = CliRunner().invoke(cli, ["eval", str(run), "--data", DN.data, "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output)
    found = scored.get("metrics", scored)
    # eval scores the same validation images with the same noise as training's last epoch
    assert found["psnr"] == pytest.approx(rows[-1]["val_psnr"], abs=1e-3)
    assert found["baseline_psnr"] == pytest.approx(rows[-1]["val_baseline_psnr"], abs=1e-6)

    clean = np.zeros((32, 40, 3), dtype=np.uint8)
    clean[8:24, 10:30] = (200, 60, 60)
    noisy = np.clip(clean + np.random.default_rng(0).normal(0, 50, clean.shape), 0, 255).round().astype(np.uint8)
    Image.fromarray(noisy).save(tmp_path / "noisy.png")
    result = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "noisy.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out" / "noisy.png").convert("RGB")).astype(float)
    assert out.shape == clean.shape
    assert np.square(out - clean).mean() < np.square(noisy.astype(float) - clean).mean()  # it denoised
