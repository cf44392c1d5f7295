"""The bad-input corpus: every command and every task, fed the files and options users get wrong.

Each case builds its own inputs (nothing binary is checked in: ``tests/bad_input`` makes good files
and breaks them), runs one `cnnlab` command in this process through ``cnnlab.cli.main``'s error
boundary, and must end either

- in an error: exit code 2, the last line of stderr ``error: ...`` naming what the case broke
  (``mentions``), no traceback; and every file that was there before (a run directory, an earlier
  output) is unchanged, with no temporary file left behind; or
- in a warning-and-skip: exit code 0, a ``warning: ...`` line naming the skipped file, and no file lost.

Cases for a task whose code is not there (audio before ``cnnlab.data.audio`` exists) are skipped;
JPEG-for-DCT inputs do not exist yet, so they have no cases.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from bad_input import Workspace, invoke, snapshot

pytestmark = pytest.mark.slow  # the cases share a few one-epoch runs, trained once

try:
    import cnnlab.data.audio  # noqa: F401
    HAVE_AUDIO = True
except ImportError:
    HAVE_AUDIO = False

QUICK = ["--epochs", "1", "--batch-size", "8", "--precision", "fp32", "--quiet"]
TINY_XCEPTION = ["--model", "mini_xception", "--model-arg", "widths=[8,16]"]
SHAPES = "builtin:shapes?n=24&size=16"
RUNS = {  # task -> `cnnlab train TASK` arguments of the run the cases copy
    "classify": ["--data", SHAPES, *TINY_XCEPTION],
    "segment": ["--data", "builtin:shapes?n=12&size=16", "--model", "unet_small", "--patch", "16"],
    "superres": ["--data", "builtin:shapes?n=12&size=32", "--model", "espcn", "--patch", "16"],
    "audio": ["--data", "builtin:tones?n=16&duration=0.25&sample_rate=4000", "--window", "0.25"],
    "denoise": ["--data", "builtin:shapes?n=12&size=32", "--model", "unet_small", "--patch", "16"],
    "inpaint": ["--data", "builtin:shapes?n=12&size=32", "--model", "unet_small", "--patch", "16", "--hole", "2-6"],
    "compress": ["--data", "builtin:shapes?n=12&size=32", "--model", "compress_small", "--patch", "16",
                 "--model-arg", "width=8", "--model-arg", "latent=4"],
}


@dataclass
class Case:
    name: str
    setup: Callable[[Workspace], list[str]]  # builds the inputs, returns the command line
    expect: str  # "error" or "warn"
    mentions: tuple[str, ...]  # what the error / warning line must name
    audio: bool  # needs cnnlab.data.audio


CASES: list[Case] = []


def case(expect: str, *mentions: str, audio: bool = False) -> Callable:
    def register(setup: Callable[[Workspace], list[str]]) -> Callable:
        CASES.append(Case(setup.__name__, setup, expect, mentions, audio))
        return setup
    return register


def error(*mentions: str, audio: bool = False) -> Callable:
    return case("error", *mentions, audio=audio)


def warn(*mentions: str, audio: bool = False) -> Callable:
    return case("warn", *mentions, audio=audio)


def train(task: str, data: Path | str, ws: Workspace, *extra: str) -> list[str]:
    model = {"classify": TINY_XCEPTION, "segment": ["--model", "unet_small", "--patch", "16"],
             "superres": ["--model", "espcn", "--patch", "16"], "audio": ["--window", "0.25"],
             "denoise": ["--model", "unet_small", "--patch", "16"],
             "inpaint": ["--model", "unet_small", "--patch", "16", "--hole", "2-6"]}[task]
    return ["train", task, "--data", str(data), "--out", str(ws.root / "out"), *model, *QUICK, *extra]


# --- train: JPEG folders as DCT coefficients (classify --input dct) ----------------------------------
DCT = ["--input", "dct", "--image-size", "32"]


def train_dct(ws: Workspace, data: Path | str, *extra: str) -> list[str]:
    return ["train", "classify", "--data", str(data), "--out", str(ws.root / "out"), "--model", "resnet_dct_small",
            "--model-arg", "widths=[8,16]", *QUICK, *DCT, *extra]


@error("odd.png", "not a JPEG", "--allow-reencode")
def train_dct_png_in_jpeg_folder(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    ws.image("data/a/odd.png")
    return train_dct(ws, data)


@warn("re-encoded 1 non-JPEG")
def train_dct_png_reencoded(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    ws.image("data/a/odd.png")
    return train_dct(ws, data, "--allow-reencode")


@warn("cut.jpg", "truncated")
def train_dct_truncated_skipped(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    ws.truncated(ws.image("data/b/cut.jpg", size=64, seed=7, fmt="JPEG"), 0.4)
    return train_dct(ws, data)


@error("cut.jpg", "truncated")
def train_dct_truncated_strict(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    ws.truncated(ws.image("data/b/cut.jpg", size=64, seed=7, fmt="JPEG"), 0.4)
    return train_dct(ws, data, "--strict")


@error("cmyk.jpg", "CMYK")
def train_dct_cmyk_strict(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    ws.image("data/a/cmyk.jpg", fmt="JPEG", mode="RGB")
    from PIL import Image

    Image.open(data / "a" / "cmyk.jpg").convert("CMYK").save(data / "a" / "cmyk.jpg")
    return train_dct(ws, data, "--strict")


@error("arith.jpg", "arithmetic-coded")
def train_dct_arithmetic_strict(ws: Workspace) -> list[str]:
    data = ws.jpeg_classes("data")
    path = ws.image("data/a/arith.jpg", fmt="JPEG")
    raw = bytearray(path.read_bytes())
    raw[raw.index(b"\xff\xc0") + 1] = 0xC9  # SOF9: arithmetic coding
    path.write_bytes(bytes(raw))
    return train_dct(ws, data, "--strict")


@error("--image-size 40x40", "16-px", "32x32")
def train_dct_image_size_off_grid(ws: Workspace) -> list[str]:
    return [*train_dct(ws, ws.jpeg_classes("data")), "--image-size", "40"]


@error("--input dct", "folder of JPEG files")
def train_dct_on_builtin_data(ws: Workspace) -> list[str]:
    return train_dct(ws, SHAPES)


@error("cannot resize", "--fit resize")
def train_dct_fit_resize(ws: Workspace) -> list[str]:
    return train_dct(ws, ws.jpeg_classes("data"), "--fit", "resize")


@error("mini_xception_dct", "384 channels")
def train_rgb_data_on_a_dct_model(ws: Workspace) -> list[str]:
    return ["train", "classify", "--data", str(ws.classes("data")), "--out", str(ws.root / "out"),
            "--model", "mini_xception_dct", *QUICK]


# --- train: class folders (classify) ------------------------------------------------------------------
@error("'b'", "no readable training images")
def train_class_all_truncated(ws: Workspace) -> list[str]:
    data = ws.classes("data")
    for f in (data / "b").iterdir():
        ws.truncated(f)
    return train("classify", data, ws)


@error("empty.png", "fix or delete")
def train_class_zero_byte_strict(ws: Workspace) -> list[str]:
    ws.empty("data/a/empty.png")
    return train("classify", ws.classes("data"), ws, "--strict")


@warn("cut.png")
def train_class_truncated_skipped(ws: Workspace) -> list[str]:
    ws.truncated(ws.image("data/a/cut.png", seed=99))
    return train("classify", ws.classes("data"), ws)


@error("notes.jpg")
def train_class_text_named_jpg_strict(ws: Workspace) -> list[str]:
    ws.text("data/b/notes.jpg")
    return train("classify", ws.classes("data"), ws, "--strict")


@error("fake.png")
def train_class_jpeg_named_png_cut_strict(ws: Workspace) -> list[str]:
    ws.truncated(ws.image("data/a/fake.png", fmt="JPEG"), 0.3)
    return train("classify", ws.classes("data"), ws, "--strict")


@error("bomb.png", "decompression")
def train_class_bomb_strict(ws: Workspace) -> list[str]:
    ws.bomb("data/a/bomb.png")
    return train("classify", ws.classes("data"), ws, "--strict")


@error("bomb.png", "decompression")
def train_class_small_bomb_strict(ws: Workspace) -> list[str]:
    ws.bomb("data/a/bomb.png", 10_000, 10_000)  # between Pillow's warning and its error: 1-2x its limit
    return train("classify", ws.classes("data"), ws, "--strict")


@error("loop_a.png")
def train_class_symlink_loop_strict(ws: Workspace) -> list[str]:
    ws.symlink_loop("data/a")
    return train("classify", ws.classes("data"), ws, "--strict")


@error("UTF-8")
def train_class_folder_name_not_utf8(ws: Workspace) -> list[str]:
    data = ws.classes("data")
    good = data / "b"
    os.rename(good, os.path.join(os.fsencode(data), b"b\xff"))
    return train("classify", data, ws)


@error("3.png", "Permission denied")
def train_class_denied_strict(ws: Workspace) -> list[str]:
    data = ws.classes("data")
    ws.denied(data / "a" / "3.png")
    return train("classify", data, ws, "--strict")


@error("3.png", "Permission denied")
def train_class_mode_000_strict(ws: Workspace) -> list[str]:
    data = ws.classes("data")
    ws.unreadable(data / "a" / "3.png")
    return train("classify", data, ws, "--strict")


@error("no class subfolders")
def train_class_loose_images(ws: Workspace) -> list[str]:
    return train("classify", ws.photos("data"), ws)


# --- train: .npz arrays -------------------------------------------------------------------------------
@error("data.npz")
def train_npz_truncated(ws: Workspace) -> list[str]:
    return train("classify", ws.truncated(ws.images_npz("data.npz")), ws)


@error("data.npz")
def train_npz_zero_byte(ws: Workspace) -> list[str]:
    return train("classify", ws.empty("data.npz"), ws)


@error("data.npz")
def train_npz_png_renamed(ws: Workspace) -> list[str]:
    png = ws.image("x.png")
    return train("classify", png.rename(ws.root / "data.npz"), ws)


@error("data.npz", "'x'")
def train_npz_without_x(ws: Workspace) -> list[str]:
    return train("classify", ws.npz("data.npz", images=np.zeros((4, 8, 8, 3), np.uint8)), ws)


@error("data.npz", "pickle")
def train_npz_object_array(ws: Workspace) -> list[str]:
    x = np.empty(4, dtype=object)
    x[:] = [np.zeros((8, 8, 3), np.uint8)] * 4
    return train("classify", ws.npz("data.npz", x=x, y=np.arange(4) % 2), ws)


@error("data.npz", "y")
def train_npz_labels_do_not_match(ws: Workspace) -> list[str]:
    x = np.zeros((8, 16, 16, 3), np.uint8)
    return train("classify", ws.npz("data.npz", x=x, y=np.arange(5) % 2), ws)


@error("data.npz", "uint8")
def train_npz_float_images(ws: Workspace) -> list[str]:
    return train("classify", ws.images_npz("data.npz", dtype=np.float64), ws)


@error("data.npz", "Permission denied")
def train_npz_denied(ws: Workspace) -> list[str]:
    return train("classify", ws.denied(ws.images_npz("data.npz")), ws)


# --- train: image + mask folders (segment) ------------------------------------------------------------
@error("masks", "2.png", "fix or delete")
def train_masks_truncated_strict(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.truncated(data / "masks" / "2.png")
    return train("segment", data, ws, "--strict")


@warn("masks", "4.png")
def train_masks_zero_byte_skipped(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.empty("data/masks/4.png")
    return train("segment", data, ws)


@error("masks", "1.png")
def train_masks_text_named_png_strict(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.text("data/masks/1.png")
    return train("segment", data, ws, "--strict")


@error("3.png", "size")
def train_masks_wrong_size_strict(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.mask("data/masks/3.png", size=8)
    return train("segment", data, ws, "--strict")


@error("0.png", "decompression")
def train_masks_bomb_strict(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.bomb("data/masks/0.png")
    return train("segment", data, ws, "--strict")


@error("images", "5.png")
def train_masks_image_cut_strict(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    ws.truncated(data / "images" / "5.png")
    return train("segment", data, ws, "--strict")


@error("mask", "255", "--mask-values")
def train_masks_unexpected_values(ws: Workspace) -> list[str]:
    data = ws.pairs("data")
    for i in range(6):
        ws.mask(f"data/masks/{i}.png", values=(0, 200))
    ws.mask("data/masks/0.png", values=(0, 255))
    return train("segment", data, ws, "--mask-values", "0,200")


@error("--mask-values")
def train_masks_values_not_numbers(ws: Workspace) -> list[str]:
    return train("segment", ws.pairs("data"), ws, "--mask-values", "0,abc")


@error("--void-value", "70000")
def train_masks_void_out_of_range(ws: Workspace) -> list[str]:
    return train("segment", ws.pairs("data"), ws, "--void-value", "70000")


@error("data.npz")
def train_masks_npz_truncated(ws: Workspace) -> list[str]:
    x = np.zeros((6, 16, 16, 3), np.uint8)
    return train("segment", ws.truncated(ws.npz("data.npz", x=x, mask=np.zeros((6, 16, 16), np.uint8))), ws)


@error("mask")
def train_classify_with_mask_option(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--mask-values", "0,255")


# --- train: plain image folders (superres) ------------------------------------------------------------
@error("could be read", "0.png")
def train_plain_all_zero_byte(ws: Workspace) -> list[str]:
    for i in range(4):
        ws.empty(f"data/{i}.png")
    return train("superres", ws.root / "data", ws)


@error("2.png", "truncated")
def train_plain_truncated_strict(ws: Workspace) -> list[str]:
    data = ws.photos("data")
    ws.truncated(data / "2.png")
    return train("superres", data, ws, "--strict")


@error("--scale", "5")
def train_superres_scale_out_of_range(ws: Workspace) -> list[str]:
    return train("superres", ws.photos("data"), ws, "--scale", "5")


@error("--patch")
def train_superres_patch_zero(ws: Workspace) -> list[str]:
    return train("superres", ws.photos("data"), ws, "--patch", "0")


@error("smaller")
def train_superres_images_too_small(ws: Workspace) -> list[str]:
    return train("superres", ws.photos("data", size=8), ws)


# --- train: recordings (audio) ------------------------------------------------------------------------
@error("2.wav", audio=True)
def train_audio_header_cut_strict(ws: Workspace) -> list[str]:
    data = ws.recordings("data")
    ws.truncated(data / "hi" / "2.wav", 0.02)  # (cut in the samples, libsndfile reads a shorter clip)
    return train("audio", data, ws, "--strict")


@error("empty.wav", audio=True)
def train_audio_zero_byte_strict(ws: Workspace) -> list[str]:
    ws.empty("data/lo/empty.wav")
    return train("audio", ws.recordings("data"), ws, "--strict")


@error("picture.wav", audio=True)
def train_audio_png_named_wav_strict(ws: Workspace) -> list[str]:
    ws.image("data/hi/picture.png").rename(ws.root / "data" / "hi" / "picture.wav")
    return train("audio", ws.recordings("data"), ws, "--strict")


@error("lo", audio=True)
def train_audio_class_all_unreadable(ws: Workspace) -> list[str]:
    data = ws.recordings("data")
    for f in (data / "lo").iterdir():
        ws.text(str(f.relative_to(ws.root)), b"RIFF....WAVEnot really")
    return train("audio", data, ws)


@warn("cut.wav", audio=True)
def train_audio_truncated_skipped(ws: Workspace) -> list[str]:
    data = ws.recordings("data")
    ws.truncated(ws.wav("data/hi/cut.wav"), 0.02)
    return train("audio", data, ws)


@error("--window", audio=True)
def train_audio_window_zero(ws: Workspace) -> list[str]:
    return train("audio", ws.recordings("data"), ws, "--window", "0")


@error("--split-by", "--label-pattern", audio=True)
def train_audio_split_by_without_pattern(ws: Workspace) -> list[str]:
    return train("audio", ws.recordings("data"), ws, "--split-by", "speaker")


@error("--label-pattern", audio=True)
def train_audio_bad_label_pattern(ws: Workspace) -> list[str]:
    return train("audio", ws.recordings("data"), ws, "--label-pattern", "{label")


@error("builtin:tones", audio=True)
def train_classify_on_tones(ws: Workspace) -> list[str]:
    return train("classify", "builtin:tones?n=8", ws)


@error("sample_rate", audio=True)
def train_classify_with_sample_rate(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--sample-rate", "8000")


# --- train: options -----------------------------------------------------------------------------------
def option_case(option: str, value: str, task: str = "classify", mention: str | None = None) -> None:
    def setup(ws: Workspace) -> list[str]:
        return train(task, SHAPES, ws, option, value)

    setup.__name__ = f"train_{task}_{option.strip('-').replace('-', '_')}_{value}"
    error(mention or option)(setup)


for option, value in [("--epochs", "0"), ("--batch-size", "0"), ("--val-split", "1.5"), ("--lr", "-1"),
                      ("--image-size", "abc"), ("--image-size", "0"), ("--limit", "0"), ("--threads", "-1"),
                      ("--repeat", "0"), ("--warmup", "2"), ("--label-smoothing", "1.5"), ("--lr-end", "2"),
                      ("--norm-lr-scale", "0"), ("--weight-decay", "-1"), ("--device", "cuda:7")]:
    option_case(option, value)
option_case("--recipe", "nope", mention="recipe 'nope'")
option_case("--dice", "-1", "segment")


@error("nope")
def train_unknown_model(ws: Workspace) -> list[str]:
    return ["train", "classify", "--data", SHAPES, "--model", "nope", "--out", str(ws.root / "out"), *QUICK]


@error("bogus")
def train_unknown_model_keyword(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--model-arg", "bogus=1")


@error("speed")
def train_classify_with_audio_task_arg(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--task-arg", "speed=0.2")


@error("missing_folder")
def train_data_missing(ws: Workspace) -> list[str]:
    return train("classify", ws.root / "missing_folder", ws)


@error("'nope'", "builtin:shapes")
def train_unknown_builtin(ws: Workspace) -> list[str]:
    return train("classify", "builtin:nope", ws)


@error("n", "abc")
def train_builtin_option_not_a_number(ws: Workspace) -> list[str]:
    return train("classify", "builtin:shapes?n=abc", ws)


@error("--resume")
def train_resume_without_run(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--resume")


@error("--resume")
def train_into_a_run_without_resume(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    return ["train", "classify", "--data", SHAPES, "--out", str(run), *TINY_XCEPTION, *QUICK]


@error("segment")
def train_resume_as_another_task(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    return ["train", "segment", "--data", SHAPES, "--out", str(run), "--resume", *QUICK]


@error("Read-only file system")
def train_out_read_only(ws: Workspace) -> list[str]:
    ws.read_only()
    return train("classify", SHAPES, ws)


@error("No space left on device")
def train_out_full_disk(ws: Workspace) -> list[str]:
    ws.full_disk()
    return train("classify", SHAPES, ws)


@error("No space left on device")
def train_resume_on_a_full_disk_keeps_the_run(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    ws.full_disk()
    return ["train", "classify", "--data", SHAPES, "--out", str(run), "--resume", *QUICK, "--epochs", "2"]


@error("File exists")
def train_out_is_a_file(ws: Workspace) -> list[str]:
    ws.text("out", b"a file where the run directory should go")
    return train("classify", SHAPES, ws)


# --- run directories: damaged weights, checkpoints, config, history -----------------------------------
def cut_model(ws: Workspace, task: str = "classify", keep: float = 0.5) -> Path:
    run = ws.run(task)
    ws.truncated(run / "model.safetensors", keep)
    return run


@error("model.safetensors")
def eval_model_truncated(ws: Workspace) -> list[str]:
    return ["eval", str(cut_model(ws)), "--data", SHAPES]


@error("model.safetensors")
def predict_model_truncated(ws: Workspace) -> list[str]:
    return ["predict", str(cut_model(ws, "segment")), str(ws.image("in.png")), "--out", str(ws.root / "pred")]


@error("model.safetensors")
def export_model_truncated(ws: Workspace) -> list[str]:
    return ["export", str(cut_model(ws, "superres"))]


@error("model.safetensors")
def explain_model_zero_byte(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    (run / "model.safetensors").write_bytes(b"")
    return ["explain", str(run), str(ws.image("in.png"))]


@error("model.safetensors")
def report_model_header_only(ws: Workspace) -> list[str]:
    return ["report", str(cut_model(ws, keep=0.02))]


@error("model.safetensors")
def eval_model_of_another_network(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    shutil.copyfile(ws.run("segment") / "model.safetensors", run / "model.safetensors")
    return ["eval", str(run), "--data", SHAPES]


@error("inconsistent")
def resume_checkpoint_steps_differ(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    state = json.loads((run / "state.json").read_text())
    state["step"] += 1  # as if a newer state.json was written beside the older tensors
    (run / "state.json").write_text(json.dumps(state))
    return ["train", "classify", "--data", SHAPES, "--out", str(run), "--resume", *QUICK, "--epochs", "2"]


@error("state.safetensors")
def resume_state_truncated(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    ws.truncated(run / "state.safetensors")
    return ["train", "classify", "--data", SHAPES, "--out", str(run), "--resume", *QUICK, "--epochs", "2"]


@error("model.safetensors")
def resume_model_truncated(ws: Workspace) -> list[str]:
    run = cut_model(ws)
    return ["train", "classify", "--data", SHAPES, "--out", str(run), "--resume", *QUICK, "--epochs", "2"]


@error("config.json")
def eval_config_truncated(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    ws.truncated(run / "config.json")
    return ["eval", str(run), "--data", SHAPES]


@error("config.json")
def predict_config_not_an_object(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    (run / "config.json").write_text("[]\n")
    return ["predict", str(run), str(ws.image("in.png"))]


@error("metrics.jsonl")
def report_metrics_cut_mid_line(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    ws.truncated(run / "metrics.jsonl", 0.6)
    return ["report", str(run)]


@error("config.json")
def eval_not_a_run(ws: Workspace) -> list[str]:
    (ws.root / "empty").mkdir()
    return ["eval", str(ws.root / "empty"), "--data", SHAPES]


# --- eval ---------------------------------------------------------------------------------------------
@error("segment")
def eval_classify_run_on_mask_folder(ws: Workspace) -> list[str]:
    return ["eval", str(ws.run("classify")), "--data", str(ws.pairs("data"))]


@error("class")
def eval_on_other_classes(ws: Workspace) -> list[str]:
    return ["eval", str(ws.run("classify")), "--data", str(ws.classes("data", names=("cat", "dog")))]


@error("--batch-size")
def eval_batch_size_zero(ws: Workspace) -> list[str]:
    return ["eval", str(ws.run("classify")), "--data", SHAPES, "--batch-size", "0"]


@error("limit=0")
def eval_limit_zero(ws: Workspace) -> list[str]:
    return ["eval", str(ws.run("segment")), "--data", SHAPES, "--limit", "0"]


@error("Read-only file system")
def eval_plot_read_only_keeps_the_old_plot(ws: Workspace) -> list[str]:
    run = ws.run("classify")
    (run / "eval_confusion.png").write_bytes(b"the plot of an earlier eval")
    ws.read_only()
    return ["eval", str(run), "--data", SHAPES]


@error("no readable")
def eval_superres_on_broken_images(ws: Workspace) -> list[str]:
    for i in range(3):
        ws.truncated(ws.image(f"data/{i}.png", size=32, seed=i), 0.2)
    return ["eval", str(ws.run("superres")), "--data", str(ws.root / "data")]


@error("data.npz", audio=True)
def eval_audio_run_on_image_npz(ws: Workspace) -> list[str]:
    return ["eval", str(ws.run("audio")), "--data", str(ws.images_npz("data.npz"))]


# --- predict ------------------------------------------------------------------------------------------
@warn("cut.png")
def predict_truncated_input_skipped(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.image("in/good.png")),
            str(ws.truncated(ws.image("in/cut.png", seed=3)))]


@error("empty.png")
def predict_zero_byte_only(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.empty("empty.png"))]


@warn("bomb.png", "decompression")
def predict_bomb_skipped(ws: Workspace) -> list[str]:
    ws.image("in/good.png")
    ws.bomb("in/bomb.png")
    return ["predict", str(ws.run("classify")), str(ws.root / "in")]


@warn("loop_a.png")
def predict_symlink_loop_skipped(ws: Workspace) -> list[str]:
    ws.image("in/good.png")
    ws.symlink_loop("in")
    return ["predict", str(ws.run("classify")), str(ws.root / "in")]


@warn("notes.png")
def predict_text_named_png_skipped(ws: Workspace) -> list[str]:
    ws.text("in/notes.png")
    ws.image("in/good.png")
    return ["predict", str(ws.run("segment")), str(ws.root / "in"), "--out", str(ws.root / "pred")]


@warn("1 unreadable image", ".png")
def predict_non_utf8_names(ws: Workspace) -> list[str]:
    good = ws.image("good.png")
    ws.non_utf8("in", b"caf\xe9.png", source=good)  # Latin-1 bytes: a readable image
    ws.non_utf8("in", b"\xff\xfe.png", content=b"not an image")  # and an unreadable one
    return ["predict", str(ws.run("classify")), str(ws.root / "in")]


@warn("2.png", "Permission denied")
def predict_denied_input_skipped(ws: Workspace) -> list[str]:
    ws.image("in/1.png")
    ws.denied(ws.image("in/2.png", seed=2))
    return ["predict", str(ws.run("classify")), str(ws.root / "in")]


@error("missing.png")
def predict_input_missing(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.root / "missing.png")]


@error("--top-k")
def predict_top_k_zero(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.image("in.png")), "--top-k", "0"]


@error("--out", "preds.txt")
def predict_out_unknown_suffix(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.image("in.png")), "--out", str(ws.root / "preds.txt")]


@error("--out")
def predict_segment_without_out(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("segment")), str(ws.image("in.png"))]


@error("tile=0")
def predict_superres_tile_zero(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("superres")), str(ws.image("in.png")), "--out", str(ws.root / "sr"),
            "--tile", "0"]


@error("overlap=-1")
def predict_superres_overlap_negative(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("superres")), str(ws.image("in.png")), "--out", str(ws.root / "sr"),
            "--overlap", "-1"]


@error("No space left on device")
def predict_full_disk_keeps_earlier_outputs(ws: Workspace) -> list[str]:
    ws.text("sr/in.png", b"an earlier prediction")
    args = ["predict", str(ws.run("superres")), str(ws.image("in.png")), "--out", str(ws.root / "sr")]
    ws.full_disk()
    return args


@error("No space left on device")
def predict_csv_full_disk_keeps_the_old_csv(ws: Workspace) -> list[str]:
    ws.text("preds.csv", b"file,top1\nold.png,a\n")
    args = ["predict", str(ws.run("classify")), str(ws.image("in.png")), "--out", str(ws.root / "preds.csv")]
    ws.full_disk()
    return args


@error("clip.wav")
def predict_image_run_on_a_recording(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("classify")), str(ws.wav("clip.wav"))]


@error("in.png", audio=True)
def predict_audio_run_on_an_image(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("audio")), str(ws.image("in.png"))]


@warn("cut.wav", audio=True)
def predict_audio_truncated_skipped(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("audio")), str(ws.wav("in/good.wav")),
            str(ws.truncated(ws.wav("in/cut.wav"), 0.02))]


@error("empty.wav", audio=True)
def predict_audio_zero_byte_only(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("audio")), str(ws.empty("empty.wav"))]


@error("--hop", audio=True)
def predict_audio_hop_zero(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("audio")), str(ws.wav("in.wav")), "--hop", "0"]


# --- explain ------------------------------------------------------------------------------------------
@error("nope")
def explain_unknown_layer(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("classify")), str(ws.image("in.png")), "--layer", "nope"]


@error("--channels")
def explain_filters_zero_channels(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("classify")), "--method", "filters", "--channels", "0"]


@error("--steps")
def explain_filters_zero_steps(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("classify")), "--method", "filters", "--steps", "0"]


@error("target", "zebra")
def explain_unknown_target(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("classify")), str(ws.image("in.png")), "--target", "zebra"]


@error("cut.png")
def explain_truncated_input_only(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("classify")), str(ws.truncated(ws.image("cut.png"), 0.3))]


@error("Read-only file system")
def explain_out_read_only(ws: Workspace) -> list[str]:
    args = ["explain", str(ws.run("classify")), str(ws.image("in.png")), "--out", str(ws.root / "expl")]
    ws.read_only()
    return args


@error("cut.wav", audio=True)
def explain_audio_truncated_only(ws: Workspace) -> list[str]:
    return ["explain", str(ws.run("audio")), str(ws.truncated(ws.wav("cut.wav"), 0.02))]


# --- export -------------------------------------------------------------------------------------------
@error("--opset")
def export_opset_too_old(ws: Workspace) -> list[str]:
    return ["export", str(ws.run("classify")), "--opset", "3"]


@error("--out")
def export_out_is_a_folder(ws: Workspace) -> list[str]:
    (ws.root / "exported").mkdir()
    return ["export", str(ws.run("classify")), "--out", str(ws.root / "exported")]


# --- report -------------------------------------------------------------------------------------------
@error("--samples")
def report_zero_samples(ws: Workspace) -> list[str]:
    return ["report", str(ws.run("classify")), "--samples", "0"]


@error("cut.png")
def report_inputs_all_broken(ws: Workspace) -> list[str]:
    return ["report", str(ws.run("classify")), "--inputs", str(ws.truncated(ws.image("cut.png"), 0.3))]


@error("No space left on device")
def report_full_disk_keeps_the_old_report(ws: Workspace) -> list[str]:
    run = ws.run("segment")
    (run / "report.html").write_text("<p>an earlier report</p>")
    ws.full_disk()
    return ["report", str(run), "--samples", "1"]


@error("vanishing_gradients.json")
def report_experiment_record_truncated(ws: Workspace) -> list[str]:
    ws.text("exp/vanishing_gradients.json", b'{"experiment": "vanishing-gradients", "tit')
    return ["report", str(ws.root / "exp")]


# --- demo ---------------------------------------------------------------------------------------------
@error("--epochs")
def demo_zero_epochs(ws: Workspace) -> list[str]:
    return ["demo", "--epochs", "0", "--out", str(ws.root / "demo")]


@error("--widths")
def demo_widths_not_numbers(ws: Workspace) -> list[str]:
    return ["demo", "--widths", "32,abc", "--out", str(ws.root / "demo")]


@error("--out", "file")
def demo_out_is_a_file(ws: Workspace) -> list[str]:
    return ["demo", "--out", str(ws.text("demo.txt", b"notes"))]


@error("size=0")
def demo_size_zero(ws: Workspace) -> list[str]:
    return ["demo", "--size", "0", "--out", str(ws.root / "demo")]


@error("another run")
def demo_over_another_run(ws: Workspace) -> list[str]:
    return ["demo", "--out", str(ws.run("segment")), "--epochs", "1", "--images", "24"]


# --- ops ----------------------------------------------------------------------------------------------
def conv(*args: str) -> list[str]:
    return ["ops", "conv2d", *args]


@error("row")
def ops_ragged_matrix(ws: Workspace) -> list[str]:
    return conv("-i", "1 2; 3", "-k", "1")


@error("x.npy")
def ops_npy_truncated(ws: Workspace) -> list[str]:
    path = ws.path("x.npy")
    np.save(path, np.arange(64.0).reshape(8, 8))
    return conv("-i", str(ws.truncated(path)), "-k", "1 0; 0 1")


@error("x.npy")
def ops_npy_zero_byte(ws: Workspace) -> list[str]:
    return conv("-i", str(ws.empty("x.npy")), "-k", "1 0; 0 1")


@error("x.npy")
def ops_npy_is_a_png(ws: Workspace) -> list[str]:
    return conv("-i", str(ws.image("x.png").rename(ws.root / "x.npy")), "-k", "1 0; 0 1")


@error("x.npy", "pickle")
def ops_npy_object_array(ws: Workspace) -> list[str]:
    path = ws.path("x.npy")
    np.save(path, np.array([[1, "a"]], dtype=object), allow_pickle=True)
    return conv("-i", str(path), "-k", "1")


@error("x.csv")
def ops_csv_with_words(ws: Workspace) -> list[str]:
    return conv("-i", str(ws.text("x.csv", b"1,2,3\n4,five,6\n")), "-k", "1")


@error("stride", "got 0")
def ops_stride_zero(ws: Workspace) -> list[str]:
    return conv("-i", "1 2; 3 4", "-k", "1", "--stride", "0")


@error("same")
def ops_same_padding_with_stride(ws: Workspace) -> list[str]:
    return conv("-i", "1 2 3; 4 5 6; 7 8 9", "-k", "1 0; 0 1", "--padding", "same", "--stride", "2")


@error("kernel")
def ops_kernel_larger_than_input(ws: Workspace) -> list[str]:
    return conv("-i", "1 2; 3 4", "-k", "1 2 3; 4 5 6; 7 8 9")


@error("(5, 5)", "outside")
def ops_explain_outside_the_output(ws: Workspace) -> list[str]:
    return conv("-i", "1 2; 3 4", "-k", "1", "--explain", "5,5")


@error("input is only 0")
def ops_shape_zero_input(ws: Workspace) -> list[str]:
    return ["ops", "shape", "conv", "--in", "0", "--kernel", "3"]


@error("Read-only file system")
def ops_animate_read_only(ws: Workspace) -> list[str]:
    ws.read_only()
    return ["ops", "animate", "conv", "-i", "1 2; 3 4", "-k", "1", "-o", str(ws.root / "conv.gif")]


@error("No space left on device")
def ops_animate_full_disk_keeps_the_old_gif(ws: Workspace) -> list[str]:
    ws.text("conv.gif", b"GIF89a an earlier animation")
    ws.full_disk()
    return ["ops", "animate", "conv", "-i", "1 2; 3 4", "-k", "1", "-o", str(ws.root / "conv.gif")]


# --- models -------------------------------------------------------------------------------------------
@error("nope")
def models_summary_unknown(ws: Workspace) -> list[str]:
    return ["models", "summary", "nope", "--input-size", "3,32,32"]


@error("--input-size")
def models_summary_size_not_numbers(ws: Workspace) -> list[str]:
    return ["models", "summary", "resnet20", "--input-size", "3,x,32"]


@error("2")
def models_summary_input_too_small(ws: Workspace) -> list[str]:
    return ["models", "summary", "xception", "--input-size", "3,2,2"]


@error("bogus")
def models_summary_unknown_keyword(ws: Workspace) -> list[str]:
    return ["models", "summary", "resnet20", "--input-size", "3,32,32", "--set", "bogus=1"]


@error("zzz")
def models_list_matches_nothing(ws: Workspace) -> list[str]:
    return ["models", "list", "zzz*"]


# --- experiment ---------------------------------------------------------------------------------------
@error("--depth")
def experiment_vanishing_depth_zero(ws: Workspace) -> list[str]:
    return ["experiment", "vanishing-gradients", "--depth", "0", "--out", str(ws.root / "exp")]


@error("exp")
def experiment_vanishing_out_is_a_file(ws: Workspace) -> list[str]:
    return ["experiment", "vanishing-gradients", "--depth", "2", "--out", str(ws.text("exp", b"notes"))]


@error("missing.npz")
def experiment_degradation_data_missing(ws: Workspace) -> list[str]:
    return ["experiment", "degradation", "--data", str(ws.root / "missing.npz"), "--out", str(ws.root / "exp")]


@error("--epochs")
def experiment_ivx_zero_epochs(ws: Workspace) -> list[str]:
    return ["experiment", "inception-vs-xception", "--data", SHAPES, "--epochs", "0", "--out", str(ws.root / "exp")]


@error("segment")
def experiment_degradation_on_mask_folder(ws: Workspace) -> list[str]:
    return ["experiment", "degradation", "--data", str(ws.pairs("data")), "--epochs", "1", "--limit", "12",
            "--out", str(ws.root / "exp")]


# --- denoise and inpaint: noise and hole options, masks -----------------------------------------------
@error("--sigma -5", ">= 0")
def train_denoise_sigma_negative(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--sigma", "-5")


@error("--sigma 50-10", "LOW-HIGH")
def train_denoise_sigma_range_goes_down(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--sigma", "50-10")


@error("--sigma loud", "number")
def train_denoise_sigma_not_a_number(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--sigma", "loud")


@error("peak", "-1")
def train_denoise_poisson_peak_negative(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--noise", "poisson", "--task-arg", "peak=-1")


@error("--sigma", "classify")
def train_classify_with_sigma(ws: Workspace) -> list[str]:
    return train("classify", SHAPES, ws, "--sigma", "25")


@error("--hole", "denoise")
def train_denoise_with_hole(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--hole", "8-16")


@error("--patch 64", "32x32")
def train_denoise_images_smaller_than_patch(ws: Workspace) -> list[str]:
    return train("denoise", ws.photos("data"), ws, "--patch", "64")


@error("could be read", "0.png")
def train_denoise_all_zero_byte(ws: Workspace) -> list[str]:
    for i in range(4):
        ws.empty(f"data/{i}.png")
    return train("denoise", ws.root / "data", ws)


@error("cannot resume", "sigma")
def train_denoise_resume_with_another_sigma(ws: Workspace) -> list[str]:
    run = ws.run("denoise")
    return ["train", "denoise", "--data", RUNS["denoise"][1], "--out", str(run), "--resume", "--sigma", "50",
            *QUICK, "--epochs", "2"]


@error("--hole 24-8", "LOW-HIGH")
def train_inpaint_hole_range_goes_down(ws: Workspace) -> list[str]:
    return train("inpaint", ws.photos("data"), ws, "--hole", "24-8")


@error("--hole 0", ">= 1")
def train_inpaint_hole_zero(ws: Workspace) -> list[str]:
    return train("inpaint", ws.photos("data"), ws, "--hole", "0")


@error("--hole 40-60", "--patch 16")
def train_inpaint_holes_as_large_as_the_patch(ws: Workspace) -> list[str]:
    return train("inpaint", ws.photos("data"), ws, "--hole", "40-60")  # every crop would be one hole


@error("cover=2")
def train_inpaint_cover_out_of_range(ws: Workspace) -> list[str]:
    return train("inpaint", ws.photos("data"), ws, "--task-arg", "cover=2")


def inpaint(ws: Workspace, *mask: str) -> list[str]:
    return ["predict", str(ws.run("inpaint")), str(ws.image("in.png", size=32)), *mask, "--out", str(ws.root / "filled")]


@error("--mask")
def predict_inpaint_without_mask(ws: Workspace) -> list[str]:
    return inpaint(ws)


@error("nope.png", "does not exist")
def predict_inpaint_mask_missing(ws: Workspace) -> list[str]:
    return inpaint(ws, "--mask", str(ws.root / "nope.png"))


@error("hole.png", "cannot be read")
def predict_inpaint_mask_zero_byte(ws: Workspace) -> list[str]:
    return inpaint(ws, "--mask", str(ws.empty("hole.png")))


@error("hole.png", "cannot be read")
def predict_inpaint_mask_truncated(ws: Workspace) -> list[str]:
    return inpaint(ws, "--mask", str(ws.truncated(ws.mask("hole.png", size=32, values=(0, 255)), 0.3)))


@error("hole.png", "16x16", "32x32")
def predict_inpaint_mask_of_another_size(ws: Workspace) -> list[str]:
    return inpaint(ws, "--mask", str(ws.mask("hole.png", size=16, values=(0, 255))))


@error("hole.png", "mode RGB")
def predict_inpaint_mask_is_a_colour_photo(ws: Workspace) -> list[str]:
    return inpaint(ws, "--mask", str(ws.image("hole.png", size=32)))


@error("masks", "in.png")
def predict_inpaint_mask_folder_lacks_one(ws: Workspace) -> list[str]:
    ws.mask("masks/other.png", size=32, values=(0, 255))
    return inpaint(ws, "--mask", str(ws.root / "masks"))


@error("No space left on device")
def predict_inpaint_full_disk_keeps_earlier_outputs(ws: Workspace) -> list[str]:
    ws.text("filled/in.png", b"an earlier fill")
    args = inpaint(ws, "--mask", str(ws.mask("hole.png", size=32, values=(0, 255))))
    ws.full_disk()
    return args


@error("--mask", "denoise")
def predict_denoise_with_mask(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("denoise")), str(ws.image("in.png", size=32)), "--mask",
            str(ws.mask("hole.png", size=32, values=(0, 255))), "--out", str(ws.root / "clean")]


@error("--out")
def predict_denoise_without_out(ws: Workspace) -> list[str]:
    return ["predict", str(ws.run("denoise")), str(ws.image("in.png", size=32))]


@error("could be read", "0.png")
def eval_inpaint_on_zero_byte_images(ws: Workspace) -> list[str]:
    for i in range(3):
        ws.empty(f"data/{i}.png")
    return ["eval", str(ws.run("inpaint")), "--data", str(ws.root / "data")]


@error("model.safetensors")
def export_denoise_model_truncated(ws: Workspace) -> list[str]:
    return ["export", str(cut_model(ws, "denoise")), "--format", "onnx"]


# --- compress and decompress: options, runs of other tasks, refused files ---------------------------
def train_compress(ws: Workspace, *extra: str) -> list[str]:
    return ["train", "compress", "--data", str(ws.photos("data")), "--out", str(ws.root / "out"),
            "--model-arg", "width=8", "--model-arg", "latent=4", *QUICK, *extra]


def packed(ws: Workspace, run: Path | None = None) -> Path:
    """photo.png compressed with the compress run (or ``run``) into packed/photo.cnlc."""
    code, _, err = invoke(["compress", str(run or ws.run("compress")), str(ws.image("photo.png", size=32)),
                           "--out", str(ws.root / "packed")])
    assert code == 0, err
    return ws.root / "packed" / "photo.cnlc"


@error("lmbda=-1", "> 0")
def train_compress_lmbda_negative(ws: Workspace) -> list[str]:
    return train_compress(ws, "--patch", "16", "--task-arg", "lmbda=-1")


@error("--patch 20", "multiple of 16")
def train_compress_patch_off_the_latent_grid(ws: Workspace) -> list[str]:
    return train_compress(ws, "--patch", "20")


@error("'classify' run", "cnnlab train compress")
def compress_with_a_classify_run(ws: Workspace) -> list[str]:
    return ["compress", str(ws.run("classify")), str(ws.image("photo.png", size=32)), "--out", str(ws.root / "p")]


@error("photo.cnlc", "truncated")
def decompress_truncated_file(ws: Workspace) -> list[str]:
    file = ws.truncated(packed(ws), 0.7)
    return ["decompress", str(ws.run("compress")), str(file), "--out", str(ws.root / "unpacked")]


@error("photo.cnlc", "another model")
def decompress_file_of_another_run(ws: Workspace) -> list[str]:
    from safetensors.torch import load_file, save_file

    other = ws.root / "other_run"
    shutil.copytree(ws.run("compress"), other)
    weights = load_file(other / "model.safetensors")
    weights["decoder.0.bias"] = weights["decoder.0.bias"] + 0.01  # another run's weights
    save_file(weights, str(other / "model.safetensors"))
    return ["decompress", str(other), str(packed(ws)), "--out", str(ws.root / "unpacked")]


@error("photo.png", "not a cnnlab compressed file")
def decompress_a_png(ws: Workspace) -> list[str]:
    return ["decompress", str(ws.run("compress")), str(ws.image("photo.png", size=32)), "--out", str(ws.root / "u")]


# --- the runner ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    """task -> a one-epoch run directory, trained on first use and shared (read-only) by the cases."""
    trained: dict[str, Path] = {}

    def get(task: str) -> Path:
        if task not in trained:
            out = tmp_path_factory.mktemp("bad_input_runs") / task
            code, _, err = invoke(["train", task, *RUNS[task], "--out", str(out), *QUICK])
            assert code == 0, err
            trained[task] = out
        return trained[task]
    return get


def temporary_files(files: dict[str, bytes | str]) -> set[str]:
    """atomic_write's temporary files (``.NAME.RANDOM.tmp``)."""
    return {p for p in files if os.path.basename(p).startswith(".") and p.endswith(".tmp")}


def test_the_corpus_is_large_and_covers_every_command() -> None:
    from cnnlab.cli import COMMANDS

    assert len(CASES) >= 60
    assert len({c.name for c in CASES}) == len(CASES)
    assert set(COMMANDS) <= {c.name.split("_")[0] for c in CASES}  # cases are named after their command


@pytest.mark.parametrize("case", CASES, ids=lambda c: c.name)
def test_bad_input(case: Case, tmp_path: Path, runs: Callable[[str], Path], monkeypatch: pytest.MonkeyPatch) -> None:
    if case.audio and not HAVE_AUDIO:
        pytest.skip("cnnlab.data.audio is not there yet")
    ws = Workspace(tmp_path, runs, monkeypatch)
    argv = case.setup(ws)
    before = snapshot(tmp_path)
    code, out, err = invoke(argv)
    monkeypatch.undo()  # the simulated disk or permission problem ends with the command
    after = snapshot(tmp_path)
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in out + err, err
    if case.expect == "error":
        assert code == 2 and lines and lines[-1].startswith("error: "), (code, out, err)
        missing = [m for m in case.mentions if m not in lines[-1]]
        assert not missing, f"the error does not name {missing}: {lines[-1]}"
        changed = sorted(p for p in before if after.get(p) != before[p])
        assert not changed, f"a failed command changed or removed {changed}"
        new = sorted(set(after) - set(before))
        assert not new, f"NEWFILES {new}"
    else:
        warned = [line for line in lines if line.startswith("warning: ")]
        assert code == 0 and warned, (code, out, err)
        assert any(all(m in line for m in case.mentions) for line in warned), \
            f"no warning names {case.mentions}: {warned}"
        lost = sorted(set(before) - set(after))
        assert not lost, f"the command removed {lost}"
    assert not temporary_files(after) - temporary_files(before), "a temporary file was left behind"
