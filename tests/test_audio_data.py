"""Audio data: soundfile round trip, resampling, windows, label patterns, the group split, bad input."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
import soundfile as sf
import torch

from cnnlab.data.audio import load_audio, read_audio, resample, write_audio
from cnnlab.data.audio.folder import parse_pattern
from cnnlab.data.audio.transforms import fit_length, sliding_windows, windows
from cnnlab.data.images import DataWarning
from cnnlab.data.split import group_split
from cnnlab.errors import CnnlabError


def sine(freq: float, rate: int, seconds: float, channels: int = 1) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    return np.repeat((0.5 * np.sin(2 * math.pi * freq * t))[None], channels, axis=0).astype(np.float32)


def peak_hz(wave: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(wave[0] * np.hanning(wave.shape[-1])))
    return float(np.fft.rfftfreq(wave.shape[-1], 1 / rate)[spectrum.argmax()])


def load(folder, **options):
    return load_audio("folder", str(folder), str(folder), val_split=0.25, seed=0, strict=False, limit=None,
                      options=options)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_soundfile_round_trip(tmp_path, suffix):
    wave = sine(440, 8000, 0.25, channels=2)
    path = write_audio(tmp_path / f"a{suffix}", wave, 8000)
    back, rate = read_audio(path)
    assert rate == 8000 and back.shape == wave.shape
    assert np.abs(back - wave).max() < 2e-4  # 16-bit PCM quantisation


@pytest.mark.parametrize(("rate", "target"), [(44100, 16000), (8000, 22050)])
def test_resampling_keeps_a_sines_frequency(rate, target):
    out = resample(sine(1000, rate, 1.0), rate, target)
    assert out.shape == (1, target)
    assert abs(peak_hz(out, target) - 1000) <= 2


def test_crop_and_pad_lengths():
    clip = torch.arange(10.0)[None]
    assert fit_length(clip, 4, 0.5).tolist() == [[3.0, 4.0, 5.0, 6.0]]  # centre crop
    assert fit_length(clip, 4, 0.0).tolist() == [[0.0, 1.0, 2.0, 3.0]]
    padded = fit_length(clip, 14, 0.5)
    assert padded.shape == (1, 14) and padded[0, :2].abs().sum() == 0 and padded[0, 2:12].tolist() == clip[0].tolist()
    batch = windows([torch.ones(2, 3), torch.ones(2, 30)], 8, torch.tensor([0.0, 1.0]))
    assert batch.shape == (2, 2, 8) and batch[0].sum() == 6  # the short clip at the start, padded
    frames, starts = sliding_windows(torch.ones(1, 25), 10, 5)
    assert frames.shape == (4, 1, 10) and starts == [0, 5, 10, 15]  # the last window ends at the clip's end


def test_group_split_never_splits_a_speaker():
    groups = [f"s{i % 7}" for i in range(140)]
    for seed in range(5):
        tr, va, train_groups, val_groups = group_split(groups, 0.25, seed, None, "speaker")
        assert {groups[i] for i in tr.tolist()}.isdisjoint({groups[i] for i in va.tolist()})
        assert len(tr) + len(va) == 140 and val_groups and set(train_groups) | set(val_groups) == set(groups)


def write_digits(folder, speakers=("ann", "bob", "cat"), rate=8000):
    folder.mkdir(parents=True, exist_ok=True)
    for s, speaker in enumerate(speakers):
        for digit in range(2):
            for i in range(2):
                write_audio(folder / f"{digit}_{speaker}_{i}.wav", sine(300 + 200 * digit + s, rate, 0.2), rate)


def test_label_pattern_and_speaker_split(tmp_path):
    write_digits(tmp_path)
    bundle = load(tmp_path, label_pattern="{label}_{speaker}_{index}", split_by="speaker", val_groups=["bob"])
    assert bundle.meta["groups"] == {"train": ["ann", "cat"], "val": ["bob"]}
    assert len(bundle.train) == 8 and len(bundle.val) == 4 and bundle.class_names == ["0", "1"]


def test_pattern_matching_no_file_is_one_error(tmp_path):
    write_digits(tmp_path)
    with pytest.raises(CnnlabError, match="matches none of the 12 audio file names"):
        load(tmp_path, label_pattern="{label}-{speaker}")


def test_split_by_a_missing_field_is_one_error(tmp_path):
    write_digits(tmp_path)
    with pytest.raises(CnnlabError, match="--split-by mic is not a field"):
        load(tmp_path, label_pattern="{label}_{speaker}_{index}", split_by="mic")


def test_bad_patterns_are_named():
    with pytest.raises(CnnlabError, match="two fields touch"):
        parse_pattern("{label}{speaker}")
    with pytest.raises(CnnlabError, match="no {field}"):
        parse_pattern("digits")


def test_broken_empty_and_non_audio_files_are_skipped_with_warnings(tmp_path):
    write_digits(tmp_path)
    (tmp_path / "0_ann_9.wav").write_bytes(b"")  # empty
    (tmp_path / "1_ann_9.wav").write_bytes(b"not audio at all" * 10)  # unreadable
    sf.write(tmp_path / "1_cat_9.wav", np.zeros((0, 1), np.float32), 8000)  # zero-length
    (tmp_path / "notes.txt").write_text("hello")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load(tmp_path, label_pattern="{label}_{speaker}_{index}")
    text = " | ".join(str(w.message) for w in caught if issubclass(w.category, DataWarning))
    assert "notes.txt" in text and "0_ann_9.wav" in text and "1_ann_9.wav" in text and "1_cat_9.wav" in text
    assert len(bundle.train) + len(bundle.val) == 12
    with pytest.raises(CnnlabError, match="0_ann_9.wav: ValueError: the file is empty"):
        load_audio("folder", str(tmp_path), str(tmp_path), val_split=0.25, seed=0, strict=True, limit=None,
                   options={"label_pattern": "{label}_{speaker}_{index}"})


def test_mixed_rates_and_channels_are_converted_with_one_note(tmp_path):
    for label, rate, channels in (("a", 8000, 1), ("b", 16000, 2)):
        (tmp_path / label).mkdir()
        for i in range(3):
            write_audio(tmp_path / label / f"{i}.wav", sine(500, rate, 0.2, channels), rate)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load(tmp_path, sample_rate=8000)
    notes = [str(w.message) for w in caught if "resampled" in str(w.message)]
    assert len(notes) == 1 and "16000 Hz" in notes[0] and "stereo -> mono" in notes[0]
    assert bundle.info["sample_rate"] == 8000
    assert all(w.shape == (1, 1600) for w in list(bundle.train["wave"]) + list(bundle.val["wave"]))
