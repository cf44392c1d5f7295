"""The report and the demo show the run's own validation images, and decode only the ones they show.

Every image here is one solid colour that encodes its file's index, so a shown image says exactly
which file it is. The runs train with a seed, a validation fraction and a limit other than the
defaults: a report that re-split the data any other way would show images the run trained on.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from PIL import Image, ImageFile

from cnnlab.cli import cli

SEED, VAL_SPLIT, LIMIT = 5, 0.25, 32


def colour(index: int) -> tuple[int, int, int]:
    return index % 256, 40 + index // 256, 200


def index_of(image: torch.Tensor) -> int:
    """The file index an image (C, H, W) encodes (it must be one solid colour)."""
    r, g, b = (int(v) for v in image[:, 0, 0])
    assert (image == image[:, :1, :1]).all() and b == 200, "not one of this test's images"
    return r + 256 * (g - 40)


def make_classes(root: Path, per_class: int = 20) -> dict[Path, int]:
    """root/<class>/<i>.png, two classes; returns {file: index}."""
    index = {}
    for c, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for k in range(per_class):
            i = c * per_class + k
            Image.new("RGB", (16, 16), colour(i)).save(root / name / f"{k:02d}.png")
            index[root / name / f"{k:02d}.png"] = i
    return index


def make_pairs(root: Path, n: int = 20) -> None:
    """root/images/<i>.png + root/masks/<i>.png (top half class 1)."""
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    mask = np.zeros((16, 16), np.uint8)
    mask[:8] = 1
    for i in range(n):
        Image.new("RGB", (16, 16), colour(i)).save(root / "images" / f"{i:02d}.png")
        Image.fromarray(mask, "L").save(root / "masks" / f"{i:02d}.png")


def train(task: str, data: str, out: Path, *extra: str) -> Path:
    args = ["train", task, "--data", data, "--out", str(out), "--epochs", "1", "--batch-size", "8",
            "--precision", "fp32", "--quiet", "--seed", str(SEED), "--val-split", str(VAL_SPLIT), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    return out


def indices(split) -> set[int]:  # type: ignore[no-untyped-def]
    return {index_of(split["image"][i]) for i in range(len(split))}


@pytest.fixture
def decoded(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The files whose pixels Pillow decodes (headers alone do not count)."""
    seen: list[str] = []
    load = ImageFile.ImageFile.load

    def counting(self):  # type: ignore[no-untyped-def]
        seen.append(str(getattr(self, "filename", "")))
        return load(self)

    monkeypatch.setattr(ImageFile.ImageFile, "load", counting)
    return seen


@pytest.mark.slow
def test_the_report_shows_only_validation_images_and_decodes_only_them(tmp_path: Path, decoded: list[str]) -> None:
    from cnnlab.app.report import validation, write_report
    from cnnlab.data import load_data
    from cnnlab.data.preview import pick
    from cnnlab.rundir import load_run

    files = make_classes(tmp_path / "data")
    run = load_run(train("classify", str(tmp_path / "data"), tmp_path / "run", "--limit", str(LIMIT),
                         "--model", "mini_xception", "--model-arg", "widths=[8,16]"))
    # What training saw: the trainer's own load_data call with the run's settings.
    seen = load_data(tmp_path / "data", val_split=VAL_SPLIT, seed=SEED, limit=LIMIT)
    train_ids, val_ids = indices(seen.train), indices(seen.val)
    # The data tells the seed and the limit apart: a report split with the default seed, or without the
    # limit, would pick some of the run's training images among the first validation images of a class.
    for other in (load_data(tmp_path / "data", val_split=VAL_SPLIT, seed=0, limit=LIMIT),
                  load_data(tmp_path / "data", val_split=VAL_SPLIT, seed=SEED)):
        first = other.val.take(pick(other.val.y, len(other.val), 6))
        assert indices(first) & train_ids

    shown, source = validation(run, 6)
    assert source.startswith("validation images of")
    assert len(shown) == 6 and indices(shown) <= val_ids and not indices(shown) & train_ids
    assert sorted(shown.y.tolist()) == [0, 0, 0, 1, 1, 1]  # class-balanced

    decoded.clear()
    out = write_report(run.run_dir, tmp_path / "report.html", samples=4, filter_channels=2, filter_steps=2)
    assert "validation images of" in out.read_text(encoding="utf-8")
    shown_files = {Path(f) for f in decoded}
    assert len(shown_files) == 4, decoded  # 4 of the 8 validation images, nothing else
    assert {files[f] for f in shown_files} <= val_ids


@pytest.mark.slow
@pytest.mark.parametrize("task", ["segment", "superres", "denoise", "inpaint"])
def test_dense_reports_decode_only_the_pairs_or_images_they_show(task: str, tmp_path: Path,
                                                                 decoded: list[str]) -> None:
    from cnnlab.app.report import validation, write_report
    from cnnlab.data import load_data
    from cnnlab.rundir import load_run

    if task == "segment":
        make_pairs(tmp_path / "data")
        extra = ["--model", "unet_small", "--patch", "16"]
    else:
        (tmp_path / "data").mkdir()
        for i in range(20):
            Image.new("RGB", (32, 32), colour(i)).save(tmp_path / "data" / f"{i:02d}.png")
        extra = {"superres": ["--model", "espcn", "--patch", "16"], "denoise": ["--model", "unet_small", "--patch", "16"],
                 "inpaint": ["--model", "unet_small", "--patch", "16", "--hole", "2-6"]}[task]
    run = load_run(train(task, str(tmp_path / "data"), tmp_path / "run", "--limit", "16", *extra))
    seen = load_data(tmp_path / "data", task, val_split=VAL_SPLIT, seed=SEED, limit=16)
    shown, _ = validation(run, 3)
    assert len(shown) == 3 and indices(shown) <= indices(seen.val)
    assert not indices(shown) & indices(seen.train)

    decoded.clear()
    write_report(run.run_dir, tmp_path / "report.html", samples=8, filter_channels=2, filter_steps=2)
    per_item = 2 if task == "segment" else 1  # an image and its mask
    assert len(set(decoded)) == run.task.report_items * per_item, decoded  # 4 of 16 items are shown


@pytest.mark.slow
def test_demo_samples_are_validation_images_of_the_runs_own_split(tmp_path: Path) -> None:
    from cnnlab.cli.demo import write_samples
    from cnnlab.data import load_data

    spec = "builtin:shapes?n=48&size=16"
    out = train("classify", spec, tmp_path / "run", "--limit", "36", "--model", "mini_xception",
                "--model-arg", "widths=[8,16]")
    seen = load_data(spec, val_split=VAL_SPLIT, seed=SEED, limit=36)
    samples = sorted(write_samples(out).glob("*.png"))
    names = seen.class_names
    assert len(samples) == 2 * len(names)
    for path in samples:
        image = torch.from_numpy(np.array(Image.open(path))).permute(2, 0, 1)
        in_val = (seen.val.x == image).flatten(1).all(1)
        assert in_val.any(), f"{path.name} is not a validation image"
        assert names[int(seen.val.y[in_val.nonzero()[0]])] == path.stem.rsplit("_", 1)[0]
        assert not (seen.train.x == image).flatten(1).all(1).any(), f"{path.name} is a training image"


@pytest.mark.slow
def test_audio_reports_show_held_out_speakers_and_decode_only_those_clips(tmp_path: Path,
                                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """A flat folder split by speaker: the report's clips are the held-out speaker's, read alone."""
    import soundfile as sf

    from cnnlab.app.report import validation, write_report
    from cnnlab.data import load_data
    from cnnlab.rundir import load_run

    root = tmp_path / "rec"
    root.mkdir()
    t = np.arange(8000) / 8000  # 1 s: the task's window
    for digit in range(3):
        for s, speaker in enumerate(("ann", "bob", "cat")):
            for k in range(3):
                level = 0.1 + 0.01 * (digit * 9 + s * 3 + k)  # each file's peak says which file it is
                sf.write(root / f"{digit}_{speaker}_{k}.wav", (level * np.sin(2 * np.pi * (300 + 200 * digit) * t))
                         .astype(np.float32), 8000)
    options = ["--label-pattern", "{label}_{speaker}_{index}", "--split-by", "speaker", "--val-groups", "cat"]
    out = tmp_path / "run"
    result = CliRunner().invoke(cli, ["train", "audio", "--data", str(root), "--out", str(out), "--epochs", "1",
                                      "--batch-size", "8", "--precision", "fp32", "--threads", "1", "--quiet",
                                      *options])
    assert result.exit_code == 0, result.output
    run = load_run(out)
    seen = load_data(root, "audio", val_split=0.1, seed=0, options={"label_pattern": "{label}_{speaker}_{index}",
                                                                    "split_by": "speaker", "val_groups": ["cat"]})
    peaks = {round(float(w.abs().max()), 3) for w in seen.val["wave"]}
    shown, source = validation(run, 3)
    assert source.startswith("validation") and len(shown) == 3
    assert {round(float(w.abs().max()), 3) for w in shown["wave"]} <= peaks  # all of them speaker cat's
    assert sorted(shown["label"].tolist()) == [0, 1, 2]  # class-balanced

    read: list[str] = []
    real = sf.read
    monkeypatch.setattr(sf, "read", lambda path, *a, **k: (read.append(str(path)), real(path, *a, **k))[1])
    write_report(out, tmp_path / "report.html", samples=2, filter_channels=2, filter_steps=2)
    assert len(set(read)) == 2 and all("_cat_" in Path(p).name for p in read), read
