"""Segmentation and super-resolution through the one engine: training lowers the loss, resume is
bit-exact, degradations are deterministic by seed, paired crops keep image and mask aligned,
predictions round-trip, and bad input gets one line naming the fix."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image

from cnnlab.cli import cli
from cnnlab.data.bundle import IGNORE, Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks import get_task
from cnnlab.train.config import TrainConfig
from cnnlab.train.runner import fit

SEG = TrainConfig(task="segment", data="builtin:shapes?n=96&size=32", model="unet_small",
                  model_kwargs={"widths": [8, 16]}, epochs=2, batch_size=16, precision="fp32", lr=5e-3, threads=1)
SR = TrainConfig(task="superres", data="builtin:shapes?n=48&size=48", model="espcn", epochs=2, batch_size=8,
                 precision="fp32", lr=2e-3, threads=1, task_options={"scale": 2, "patch": 24})


def _losses(cfg: TrainConfig, out) -> list[float]:
    losses: list[float] = []
    fit(dataclasses.replace(cfg, out=str(out)), progress=False, on_step=lambda p, loss: losses.append(loss))
    return losses


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [SEG, SR], ids=["segment", "superres"])
def test_training_lowers_the_loss_and_writes_the_task_metrics(cfg: TrainConfig, tmp_path) -> None:
    losses = _losses(cfg, tmp_path / "run")
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    wanted = ("val_miou", "val_pixel_acc", "val_dice") if cfg.task == "segment" else \
        ("val_psnr", "val_ssim", "val_baseline_psnr", "val_baseline_ssim")
    assert all(k in row for k in wanted), row


@pytest.mark.slow
@pytest.mark.parametrize("cfg", [SEG, SR], ids=["segment", "superres"])
def test_a_killed_run_resumes_to_the_same_weights(cfg: TrainConfig, tmp_path) -> None:
    from safetensors.torch import load_file

    fit(dataclasses.replace(cfg, out=str(tmp_path / "straight")), progress=False)

    def stop(pos, loss) -> None:  # Ctrl-C in the middle of the second epoch
        if pos.epoch == 1 and pos.batch == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        fit(dataclasses.replace(cfg, out=str(tmp_path / "killed")), progress=False, on_step=stop)
    fit(dataclasses.replace(cfg, out=str(tmp_path / "killed")), resume=True, progress=False)
    a, b = (load_file(str(tmp_path / name / "model.safetensors")) for name in ("straight", "killed"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _split(n: int = 4, size: int = 40) -> Split:
    g = torch.Generator().manual_seed(0)
    images = [torch.randint(0, 256, (3, size + i, size + 2 * i), dtype=torch.uint8, generator=g) for i in range(n)]
    # each mask is a function of its image, so a misaligned crop shows
    masks = [(img[0] > 127).to(torch.uint8) for img in images]
    return Split({"image": images, "mask": masks})


def test_patches_and_flips_keep_image_and_mask_aligned() -> None:
    from cnnlab.train.augment import make_augment

    task = get_task("segment", patch=24)
    batch = task.train_batch(_split(), torch.Generator().manual_seed(3), make_augment("flip-crop"))
    assert batch["input"].shape == (4, 3, 24, 24) and batch["target"].shape == (4, 24, 24)
    assert torch.equal(batch["target"], (batch["input"][:, 0] > 127).long())



def test_shift_names_are_the_crop_names_on_images() -> None:
    from cnnlab.train.augment import make_augment

    x = torch.randint(0, 256, (6, 3, 32, 32), dtype=torch.uint8)
    kinds = {"image": "image"}
    for shift, crop in (("shift", "crop"), ("flip-shift", "flip-crop")):
        a = make_augment(shift)({"image": x}, kinds, torch.Generator().manual_seed(2))["image"]
        b = make_augment(crop)({"image": x}, kinds, torch.Generator().manual_seed(2))["image"]
        assert torch.equal(a, b) and not torch.equal(a, x)

def test_superres_degradation_is_deterministic_by_seed_and_matches_pillow() -> None:
    from cnnlab.data.degrade import bicubic_resize

    task, items = get_task("superres", scale=3, patch=24), Split({"image": _split()["image"]})
    a = task.train_batch(items, torch.Generator().manual_seed(5), None)
    b = task.train_batch(items, torch.Generator().manual_seed(5), None)
    c = task.train_batch(items, torch.Generator().manual_seed(6), None)
    assert torch.equal(a["target"], b["target"]) and not torch.equal(a["target"], c["target"])
    assert a["input"].shape == (4, 3, 8, 8) and torch.equal(a["input"], bicubic_resize(a["target"], 8))
    whole = task.eval_batch(items.take(slice(0, 1)))
    assert whole["target"].shape[-2:] == (39, 39) and whole["baseline"].shape == whole["target"].shape


def test_segment_meter_ignores_void_pixels() -> None:
    task = get_task("segment")
    logits = torch.zeros(1, 2, 2, 2)
    logits[0, 1] = 1.0  # predicts class 1 everywhere
    target = torch.tensor([[[1, 1], [0, IGNORE]]])
    meter = task.meter({"class_names": ["a", "b"]})
    meter.update(logits, target, task.loss(logits, target))
    # 3 counted pixels: two 1s right, one 0 wrong -> IoU(b) = 2/3, IoU(a) = 0, pixel accuracy 2/3
    m = meter.compute()
    assert m["pixel_acc"] == pytest.approx(2 / 3) and m["miou"] == pytest.approx(1 / 3)


@pytest.mark.slow
def test_predict_writes_masks_and_upscaled_images_that_round_trip(tmp_path) -> None:
    fit(dataclasses.replace(SEG, epochs=1, out=str(tmp_path / "seg")), progress=False)
    fit(dataclasses.replace(SR, epochs=1, out=str(tmp_path / "sr")), progress=False)
    Image.new("RGB", (37, 29), (200, 30, 30)).save(tmp_path / "red.png")
    for run, extra in (("seg", []), ("sr", ["--tile", "16"])):
        result = CliRunner().invoke(cli, ["predict", str(tmp_path / run), str(tmp_path / "red.png"),
                                          "--out", str(tmp_path / f"p{run}"), *extra])
        assert result.exit_code == 0, result.output
    mask = Image.open(tmp_path / "pseg" / "red.png")
    assert mask.mode == "L" and mask.size == (37, 29) and int(np.array(mask).max()) < 7
    assert (tmp_path / "pseg" / "red_overlay.png").is_file()
    sr = Image.open(tmp_path / "psr" / "red.png")
    assert sr.size == (74, 58)
    # the written PNG holds exactly the model's quantised output
    from cnnlab.data.plain import read_native
    from cnnlab.rundir import load_run

    loaded = load_run(tmp_path / "sr")
    (_, lr), = read_native([tmp_path / "red.png"])
    with torch.no_grad():
        expected = (loaded.task.predict(loaded.model(lr[None].float() / 255))[0] * 255).round().to(torch.uint8)
    got = torch.from_numpy(np.array(sr)).permute(2, 0, 1)
    assert (got.int() - expected.int()).abs().max() <= 1  # tiles of 16 with 16 px of context: same pixels


@pytest.mark.parametrize(("args", "message"), [
    (["train", "superres", "--data", "builtin:shapes?n=20&size=16", "--patch", "32", "--out", "x"],
     "smaller than --patch 32"),
    (["train", "superres", "--data", "builtin:shapes?n=20&size=32", "--scale", "5", "--out", "x"],
     "--scale 5 is not supported"),
    (["train", "segment", "--data", "builtin:shapes?n=20&size=16", "--patch", "32", "--out", "x"],
     "smaller than --patch 32"),
    (["train", "segment", "--data", "cifar10", "--out", "x"], "holds class labels, not masks"),
    (["train", "classify", "--data", "builtin:shapes?n=20&size=16", "--mask-values", "0,255", "--out", "x"],
     "makes its masks as class indices already: drop the option"),
])
def test_bad_input_is_one_line_that_names_the_fix(args: list[str], message: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, args)
    assert isinstance(result.exception, CnnlabError), (result.output, result.exception)
    assert message in str(result.exception)
    assert not (tmp_path / "x").exists()  # nothing was written


def test_a_mask_folder_given_to_classify_or_superres_says_which_task(tmp_path) -> None:
    from cnnlab.data import load_data

    for sub in ("images", "masks"):
        (tmp_path / sub).mkdir()
        Image.new("L", (8, 8)).save(tmp_path / sub / "a.png")
    with pytest.raises(CnnlabError, match="cnnlab train segment"):
        load_data(tmp_path, "classify")
    with pytest.raises(CnnlabError, match="mask"):
        load_data(tmp_path, "superres")


def test_repeat_visits_every_item_that_many_times_and_keeps_the_old_order_at_one() -> None:
    from cnnlab.train.distributed import Dist
    from cnnlab.train.loop import epoch_batches, seeded_generator

    once = torch.cat(epoch_batches(10, 5, seed=1, epoch=0, dist=Dist()))
    assert torch.equal(once, torch.randperm(10, generator=seeded_generator(1, 0)))
    thrice = torch.cat(epoch_batches(10, 5, seed=1, epoch=0, dist=Dist(), repeat=3))
    assert torch.bincount(thrice, minlength=10).tolist() == [3] * 10


def test_cli_sizes_and_recipes_name_their_task(tmp_path) -> None:
    from cnnlab.cli.train import build_config, parse_size

    assert parse_size("96") == 96 and parse_size("180x240") == [180, 240]
    with pytest.raises(CnnlabError, match="must be N or HxW"):
        parse_size("180by240")
    with pytest.raises(CnnlabError, match="recipe 'superres-x3' trains task 'superres', not 'classify'"):
        build_config("classify", {"recipe": "superres-x3", "out": str(tmp_path)}, resume=False)
    cfg = build_config("superres", {"recipe": "superres-x3", "out": str(tmp_path), "task_options": {"patch": 48}},
                       resume=False)
    assert cfg.task_options == {"scale": 3, "patch": 48}  # a command-line option joins the recipe's


@pytest.mark.parametrize("name", ["segment", "superres"])
def test_flip_tta_mirrors_the_output_back(name: str) -> None:
    task = get_task(name)
    torch.manual_seed(0)
    pointwise = torch.nn.Conv2d(3, 3, 1)  # commutes with a mirror: TTA changes nothing
    x = torch.rand(2, 3, 8, 8)
    with torch.no_grad():
        assert torch.allclose(task.forward(pointwise, x, "flip"), pointwise(x), atol=1e-6)
        shifted = torch.nn.Conv2d(3, 3, (1, 3), padding=(0, 1))  # does not commute: the mean of both ways
        both = 0.5 * (shifted(x) + shifted(x.flip(-1)).flip(-1))
        assert torch.allclose(task.forward(shifted, x, "flip"), both, atol=1e-6)


def test_a_split_refuses_masks_of_another_size_stacked_or_not() -> None:
    images = torch.zeros(2, 3, 4, 4, dtype=torch.uint8)
    with pytest.raises(ValueError, match="masks must be"):
        Split({"image": images, "mask": torch.zeros(2, 4, 5, dtype=torch.uint8)})
    with pytest.raises(ValueError, match="masks must be"):
        Split({"image": list(images), "mask": [torch.zeros(4, 4, dtype=torch.uint8), torch.zeros(4, 5, dtype=torch.uint8)]})
