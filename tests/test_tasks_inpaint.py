"""Inpainting: seeded holes in the size range, fixed per validation image; the mask reaches the model as
its extra channel; the loss weights the holes and the rest as documented; hole PSNR and the diffusion
fill checked on constructed cases; bad masks; and train -> eval -> predict with a mask file."""

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
from cnnlab.data.holes import HOLE_VALUE, diffusion_fill, make_holes, punch
from cnnlab.errors import CnnlabError
from cnnlab.tasks import get_task
from cnnlab.tasks.inpaint import hole_psnr, read_mask
from cnnlab.train.config import TrainConfig
from cnnlab.train.runner import fit

IP = TrainConfig(task="inpaint", data="builtin:shapes?n=64&size=32", model="unet_small",
                 model_kwargs={"widths": [8, 16]}, epochs=2, batch_size=8, precision="fp32", lr=5e-3, threads=1,
                 task_options={"hole": [4, 10], "patch": 32})


def _components(mask: np.ndarray) -> list[np.ndarray]:
    """The 8-connected components of a bool mask, each as a bool mask."""
    seen, found = np.zeros_like(mask), []
    for start in zip(*np.nonzero(mask), strict=True):
        if seen[start]:
            continue
        part, stack = np.zeros_like(mask), [start]
        seen[start] = True
        while stack:
            y, x = stack.pop()
            part[y, x] = True
            for ny, nx in ((y + dy, x + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)):
                if 0 <= ny < mask.shape[0] and 0 <= nx < mask.shape[1] and mask[ny, nx] and not seen[ny, nx]:
                    seen[ny, nx] = True
                    stack.append((ny, nx))
        found.append(part)
    return found


def test_holes_are_seeded_cover_their_fraction_and_keep_to_the_size_range() -> None:
    low, high = 6, 12
    a = make_holes((96, 96), (low, high), 0.2, torch.Generator().manual_seed(1))
    b = make_holes((96, 96), (low, high), 0.2, torch.Generator().manual_seed(1))
    c = make_holes((96, 96), (low, high), 0.2, torch.Generator().manual_seed(2))
    assert a.dtype == torch.bool and torch.equal(a, b) and not torch.equal(a, c)
    # at least the cover, and at most one more shape than needed (a box is at most 12 x 12)
    assert 0.2 <= float(a.float().mean()) <= 0.2 + 2 * high * high * 5 / 96**2
    boxes = strokes = 0
    for seed in range(40):  # a tiny cover draws exactly one shape
        mask = make_holes((128, 128), (low, high), 1e-6, torch.Generator().manual_seed(seed)).numpy()
        (part,) = _components(mask)
        ys, xs = np.nonzero(part)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        if part.sum() == h * w:  # a box: both sides in the range
            boxes += 1
            assert low <= h <= high and low <= w <= high, (seed, h, w)
        else:  # a stroke: at most 5 segments of at most `high`, brush high // 3 wide
            strokes += 1
            assert max(h, w) <= 5 * high + high // 3 + 2, (seed, h, w)
            assert part.sum() >= max(2, low // 3) * low  # at least one segment's worth of brush
    assert boxes >= 8 and strokes >= 8  # both kinds are drawn


def test_validation_holes_are_fixed_per_image_and_carry_the_diffusion_baseline() -> None:
    g = torch.Generator().manual_seed(0)
    items = Split({"image": [torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=g) for _ in range(3)]})
    task = get_task("inpaint", hole="4-10", cover=0.2)
    alone = task.eval_batch(items.take(slice(1, 2)))
    together = task.eval_batch(items.take(slice(0, 3)))
    assert torch.equal(alone["target"][0], together["target"][1]) and torch.equal(alone["input"][0], together["input"][1])
    assert not torch.equal(together["target"][0, -1], together["target"][1, -1])  # each image its own holes
    masks = together["target"][:, -1] > 0
    assert torch.equal(together["baseline"][1], diffusion_fill(items["image"][1], masks[1]))


def test_the_mask_reaches_the_model_as_its_last_channel() -> None:
    image = torch.randint(0, 256, (3, 8, 8), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 3:7] = True
    x = punch(image, mask)
    assert x.shape == (4, 8, 8) and x.dtype == torch.uint8
    assert torch.equal(x[3], mask.to(torch.uint8) * 255)
    assert bool((x[:3, mask] == HOLE_VALUE).all()) and torch.equal(x[:3, ~mask], image[:, ~mask])  # holes hidden

    task = get_task("inpaint")
    assert task.input_channels({"in_channels": 3}) == 4

    class Recorder(torch.nn.Module):  # stands in for the run's model: keeps what it was given
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            self.seen = t.clone()
            return torch.ones(t.shape[0], 3, *t.shape[-2:])

    class FakeRun:
        device = torch.device("cpu")
        model = Recorder()

        @staticmethod
        def preprocess(t: torch.Tensor) -> torch.Tensor:
            return t.float() / 255

    filled = task.fill(FakeRun(), image, mask)
    assert FakeRun.model.seen.shape == (1, 4, 8, 8)
    assert torch.equal(FakeRun.model.seen[0, 3] > 0.5, mask)
    # the model's output is used in the holes only; the known pixels are the image's own
    assert bool((filled[:, mask] == 1).all()) and torch.equal(filled[:, ~mask], image[:, ~mask].float() / 255)


def test_prefill_diffusion_shows_the_baseline_and_a_zero_output_scores_exactly_the_baseline() -> None:
    from cnnlab.tasks.inpaint import unpack

    g = torch.Generator().manual_seed(3)
    items = Split({"image": [torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=g) for _ in range(2)]})
    task = get_task("inpaint", hole="4-10", cover=0.2, patch=32, prefill="diffusion")
    batch = task.eval_batch(items)
    clean, masks, start = unpack(batch["target"], True)
    assert torch.equal(clean, torch.stack(items["image"])) and torch.equal(start, batch["baseline"])
    for i in range(2):  # validation: the holes hold the diffusion fill (the baseline), known pixels the image
        assert torch.equal(batch["input"][i, :3], batch["baseline"][i]), i
        assert torch.equal(batch["input"][i, 3] > 0, masks[i])
    train = task.train_batch(Split({"image": torch.stack(items["image"])}), torch.Generator().manual_seed(0), None)
    clean, holes, start = unpack(train["target"], True)
    assert torch.equal(train["input"][0, :3], diffusion_fill(clean[0], holes[0])) and torch.equal(
        start[0], diffusion_fill(clean[0], holes[0]))
    # the outputs are the change to the fill: zero changes score exactly the baseline, in the meter and the loss
    zeros = torch.zeros(2, 3, 40, 40)
    meter = task.meter({})
    meter.update(zeros, batch["target"], task.loss(zeros, batch["target"]), batch)
    scores = meter.compute()
    assert scores["psnr"] == pytest.approx(scores["baseline_psnr"], abs=1e-9)
    err = (batch["baseline"].float() - batch["target"][:, :3].float()).abs() / 255
    holes3 = masks.unsqueeze(1).expand_as(err)
    expected = err[holes3].mean() + 0.1 * err[~holes3].mean()
    assert float(task.loss(zeros, batch["target"])) == pytest.approx(float(expected), rel=1e-5)
    squared = get_task("inpaint", hole="4-10", cover=0.2, patch=32, prefill="diffusion", loss="mse")
    expected = err[holes3].square().mean() + 0.1 * err[~holes3].square().mean()
    assert float(squared.loss(zeros, batch["target"])) == pytest.approx(float(expected), rel=1e-5)
    with pytest.raises(CnnlabError, match="loss=huber is not an inpainting loss"):
        get_task("inpaint", loss="huber")

    class Zero(torch.nn.Module):
        def forward(self, t: torch.Tensor) -> torch.Tensor:
            return torch.zeros(t.shape[0], 3, *t.shape[-2:])

    class FakeRun:  # predict: the same input, and the fill plus the (zero) change
        device = torch.device("cpu")
        model = Zero()

        @staticmethod
        def preprocess(t: torch.Tensor) -> torch.Tensor:
            return t.float() / 255

    image, mask = items["image"][0], masks[0]
    expected = diffusion_fill(image, mask).float() / 255
    assert torch.allclose(task.fill(FakeRun(), image, mask), torch.where(mask, expected, image.float() / 255))
    with pytest.raises(CnnlabError, match="prefill=zeros is not a first fill"):
        get_task("inpaint", prefill="zeros")


def test_the_loss_is_l1_on_the_holes_plus_a_smaller_weight_on_the_rest() -> None:
    task = get_task("inpaint", valid_weight=0.1)
    clean = torch.full((1, 3, 4, 4), 51, dtype=torch.uint8)  # 0.2 on the [0, 1] scale
    mask = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    mask[..., :1, :] = 255  # 4 of 16 pixels are holes
    target = torch.cat([clean, mask], dim=1)
    right = torch.full((1, 3, 4, 4), 0.2)
    wrong_in_holes = right.clone()
    wrong_in_holes[..., :1, :] += 0.5
    wrong_outside = right.clone()
    wrong_outside[..., 1:, :] += 0.5
    assert float(task.loss(right, target)) == pytest.approx(0.0, abs=1e-6)
    # mean |error| over the hole pixels, plus 0.1 x the mean over the others
    assert float(task.loss(wrong_in_holes, target)) == pytest.approx(0.5, rel=1e-5)
    assert float(task.loss(wrong_outside, target)) == pytest.approx(0.1 * 0.5, rel=1e-5)
    assert float(get_task("inpaint", valid_weight=0.0).loss(wrong_outside, target)) == pytest.approx(0.0, abs=1e-6)


def test_hole_psnr_counts_the_hole_pixels_only_by_hand() -> None:
    clean = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, 0, :2] = True  # two hole pixels: six values
    filled = clean.clone()
    filled[0, 0, 0, 0] = 130  # off by 30 in a hole
    filled[0, :, 3, 3] = 0  # off by 100 outside the holes: not counted
    assert float(hole_psnr(filled, clean, mask)[0]) == pytest.approx(10 * math.log10(255**2 / (30**2 / 6)), abs=1e-9)
    assert math.isnan(float(hole_psnr(filled, clean, torch.zeros_like(mask))[0]))


def test_the_diffusion_fill_keeps_known_pixels_and_reproduces_a_ramp() -> None:
    # a linear ramp is harmonic: Laplace's equation with the ramp as its boundary gives the ramp back
    ramp = torch.linspace(20, 230, 48).round().to(torch.uint8).expand(3, 48, 48).clone()
    mask = torch.zeros(48, 48, dtype=torch.bool)
    mask[10:30, 12:36] = True
    filled = diffusion_fill(ramp, mask)
    assert torch.equal(filled[:, ~mask], ramp[:, ~mask])
    assert int((filled.int() - ramp.int()).abs().max()) <= 2
    with pytest.raises(CnnlabError, match="takes a"):
        diffusion_fill(ramp, mask[:10])


def test_bad_masks_and_options_name_the_fix(tmp_path) -> None:
    Image.new("L", (10, 8)).save(tmp_path / "small.png")
    Image.new("RGB", (12, 9)).save(tmp_path / "colour.png")
    with pytest.raises(CnnlabError, match=r"small.png is 10x8 but image \S*photo.png is 12x9"):
        read_mask(tmp_path / "small.png", (9, 12), tmp_path / "photo.png")
    with pytest.raises(CnnlabError, match="colour.png is a mode RGB image"):
        read_mask(tmp_path / "colour.png", (9, 12), tmp_path / "photo.png")
    mask = Image.new("L", (12, 9))
    mask.putpixel((3, 2), 255)
    mask.putpixel((4, 2), 100)  # below half: kept
    mask.save(tmp_path / "ok.png")
    read = read_mask(tmp_path / "ok.png", (9, 12), tmp_path / "photo.png")
    assert read.shape == (9, 12) and int(read.sum()) == 1 and bool(read[2, 3])
    for options, message in (({"hole": "9-3"}, "range goes down"), ({"hole": 0}, "must be >= 1"),
                             ({"hole": "4.5-8"}, "whole pixels"), ({"cover": 1.5}, "between 0 and 1"),
                             ({"valid_weight": -1}, "must be >= 0")):
        with pytest.raises(CnnlabError, match=message):
            get_task("inpaint", **options)


@pytest.mark.slow
def test_train_eval_predict_with_a_mask_file(tmp_path) -> None:
    run = tmp_path / "run"
    losses: list[float] = []
    fit(dataclasses.replace(IP, out=str(run)), progress=False, on_step=lambda p, loss: losses.append(loss))
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    row = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert "val_psnr" in row and "val_baseline_psnr" in row

    result = CliRunner().invoke(cli, ["eval", str(run), "--data", IP.data, "--json"])
    assert result.exit_code == 0, result.output
    scored = json.loads(result.output)
    assert scored["psnr"] == pytest.approx(row["val_psnr"], abs=1e-3)
    assert scored["baseline_psnr"] == pytest.approx(row["val_baseline_psnr"], abs=1e-6)

    photo = np.random.default_rng(0).integers(0, 256, (30, 36, 3), dtype=np.uint8)
    Image.fromarray(photo).save(tmp_path / "photo.png")
    holes = np.zeros((30, 36), dtype=np.uint8)
    holes[5:15, 8:20] = 255
    Image.fromarray(holes).save(tmp_path / "holes.png")
    result = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "photo.png"), "--mask",
                                      str(tmp_path / "holes.png"), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    out = np.asarray(Image.open(tmp_path / "out" / "photo.png").convert("RGB"))
    assert out.shape == photo.shape
    keep = holes == 0
    assert np.array_equal(out[keep], photo[keep])  # only the white pixels are filled
    assert not np.array_equal(out[~keep], photo[~keep])

    result = CliRunner().invoke(cli, ["predict", str(run), str(tmp_path / "photo.png"), "--out", str(tmp_path / "o2")])
    assert isinstance(result.exception, CnnlabError) and "--mask" in str(result.exception)
