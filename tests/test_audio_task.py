"""The audio task end to end through the CLI: train -> eval -> predict -> explain -> export -> report on
a tiny flat folder of tones whose class is their pitch, with labels and speakers read from the file names.

Seconds, not minutes: 4 kHz, quarter-second windows, a 16-32 channel M5.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from click.testing import CliRunner

from cnnlab.cli import cli

RATE = 4000
PITCHES = {"low": 250.0, "mid": 600.0, "high": 1400.0}  # far apart: an easy task a working pipeline must get right


def tone(freq: float, seconds: float, rng: np.random.Generator, level: float = 0.4) -> np.ndarray:
    t = np.arange(round(RATE * seconds)) / RATE
    return (level * np.sin(2 * math.pi * freq * t + rng.uniform(0, 2 * math.pi))
            + 0.02 * rng.standard_normal(t.shape)).astype(np.float32)


def write_folder(folder: Path, speakers: list[str], per_class: int, seed: int) -> None:
    """``{label}_{speaker}_{index}.wav``: each "speaker" detunes by up to 5% and has its own level."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True)
    for s, speaker in enumerate(speakers):
        level = 0.2 + 0.15 * s
        for label, freq in PITCHES.items():
            for i in range(per_class):
                clip = tone(freq * rng.uniform(0.95, 1.05), rng.uniform(0.2, 0.35), rng, level)
                sf.write(folder / f"{label}_{speaker}_{i}.wav", clip, RATE)


def invoke(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, f"{args}: {result.output}"
    return result.output


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("audio")
    write_folder(root / "train", ["anna", "bert", "cleo"], per_class=12, seed=0)
    write_folder(root / "other", ["dora"], per_class=4, seed=1)  # a speaker the run never heard
    run = root / "run"
    invoke("train", "audio", "--data", str(root / "train"), "--label-pattern", "{label}_{speaker}_{index}",
           "--split-by", "speaker", "--val-groups", "cleo", "--window", "0.25", "--model", "m5",
           "--model-arg", "widths=[16,16,32,32]", "--epochs", "20", "--batch-size", "16", "--lr", "3e-3",
           "--precision", "fp32", "--threads", "1", "--out", str(run), "--quiet")
    return root, run


def test_train_keeps_the_label_rule_and_the_speaker_split(trained) -> None:
    root, run = trained
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["options"]["label_pattern"] == "{label}_{speaker}_{index}"
    assert config["data"]["meta"]["groups"] == {"train": ["anna", "bert"], "val": ["cleo"]}
    assert (run / "model.safetensors").is_file()
    last = json.loads((run / "metrics.jsonl").read_text().splitlines()[-1])
    assert last["val_top1"] >= 0.9, last  # cleo's 36 clips, never trained on


def test_eval_on_another_folder_reads_its_labels_by_the_run_s_pattern(trained) -> None:
    root, run = trained
    result = json.loads(invoke("eval", str(run), "--data", str(root / "other"), "--json"))
    assert result["top1"] >= 0.9, result
    assert set(result["per_class"]) == set(PITCHES)


def test_predict_names_each_pitch_and_each_window_of_a_long_recording(trained, tmp_path) -> None:
    _, run = trained
    rng = np.random.default_rng(5)
    for label, freq in PITCHES.items():
        sf.write(tmp_path / f"{label}.wav", tone(freq, 0.2, rng), RATE)  # shorter than the window
    # 1 s of low then 1 s of high: the windows must follow the change
    sf.write(tmp_path / "long.wav", np.concatenate([tone(PITCHES["low"], 1.0, rng), tone(PITCHES["high"], 1.0, rng)]),
             RATE)
    rows = json.loads(invoke("predict", str(run), *(str(tmp_path / f"{k}.wav") for k in PITCHES),
                             str(tmp_path / "long.wav"), "--format", "json", "--hop", "0.25"))
    by_name = {Path(r["path"]).stem: r for r in rows}
    for label in PITCHES:
        assert by_name[label]["top"][0]["class"] == label, by_name[label]
        assert "windows" not in by_name[label]
    windows = by_name["long"]["windows"]
    assert len(windows) == 8  # (2 s - 0.25 s) / 0.25 s + 1
    assert [w["class"] for w in windows if w["end"] <= 1.0] == ["low"] * 4
    assert [w["class"] for w in windows if w["start"] >= 1.0] == ["high"] * 4


def test_explain_export_and_report(trained, tmp_path) -> None:
    root, run = trained
    clip = next((root / "other").glob("high_*.wav"))
    out = tmp_path / "explain"
    text = invoke("explain", str(run), str(clip), "--method", "gradcam", "--out", str(out))
    assert "high" in text
    assert len(list(out.glob("*_gradcam_*.png"))) == 1
    invoke("explain", str(run), str(clip), "--method", "activations", "--layer", "stages.0", "--out", str(out))
    assert len(list(out.glob("*_maps_stages.0.png"))) == 1
    text = invoke("export", str(run), "--format", "onnx")
    assert (run / "model.onnx").is_file() and "max abs difference" in text
    invoke("report", str(run))
    page = (run / "report.html").read_text()
    assert page.count("<audio controls") >= 3 and "data:audio/wav;base64," in page


def test_stereo_runs_end_to_end(tmp_path) -> None:
    run = tmp_path / "stereo"
    invoke("train", "audio", "--data", "builtin:tones?n=48&sample_rate=4000&duration=0.25&classes=3&channels=2",
           "--window", "0.25", "--model", "m5", "--model-arg", "widths=[8,8,16]", "--epochs", "1",
           "--precision", "fp32", "--threads", "1", "--out", str(run), "--quiet")
    config = json.loads((run / "config.json").read_text())
    assert config["model"]["kwargs"]["in_channels"] == 2
    rng = np.random.default_rng(0)
    stereo = np.stack([tone(440, 0.25, rng), tone(440, 0.25, rng, 0.1)], axis=1)  # (T, 2): soundfile's layout
    sf.write(tmp_path / "s.wav", stereo, RATE)
    rows = json.loads(invoke("predict", str(run), str(tmp_path / "s.wav"), "--format", "json"))
    assert len(rows[0]["top"]) == 3 and math.isclose(sum(t["probability"] for t in rows[0]["top"]), 1, abs_tol=1e-3)


def test_the_fsdd_recipe_reads_labels_and_speakers_from_the_names(trained, tmp_path) -> None:
    root, _ = trained
    run = tmp_path / "recipe"
    # the recipe brings --label-pattern and --split-by; the command line adds the held-out speaker
    invoke("train", "audio", "--recipe", "audio-fsdd", "--data", str(root / "train"), "--val-groups", "cleo",
           "--window", "0.25", "--epochs", "1", "--precision", "fp32", "--threads", "1", "--out", str(run), "--quiet")
    config = json.loads((run / "config.json").read_text())
    assert config["data"]["meta"]["groups"] == {"train": ["anna", "bert"], "val": ["cleo"]}
    assert config["model"]["kwargs"]["mel_norm"] == "instance" and config["model"]["kwargs"]["top_db"] == 32.0
    assert config["train"]["task_options"]["window"] == 0.25 and config["train"]["task_options"]["speed"] == 0.25
