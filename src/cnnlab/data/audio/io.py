"""Audio files <-> float32 waveforms: reading with soundfile, resampling with soxr, atomic writing.

Policy (the README's Audio section says the same):
- Decoding: soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, AIFF, MP3, ...), always as float32 in
  [-1, 1] whatever the file's sample format, laid out (C, T) like PyTorch's audio tensors.
- Channels: mixed down to mono by averaging (``channels=1``), or kept as stereo (``channels=2``); a
  mono file in a stereo run is duplicated into both channels and a file with more than two channels
  keeps its first two. Every such change is counted and reported once, never per file.
- Rate: every file is resampled to the target rate with soxr (a windowed-sinc resampler with a
  steep anti-aliasing filter, the one SoX uses); again reported once, with the rates found.
- Unreadable, empty (0 bytes) and zero-length (no samples) files are skipped with one warning naming
  each of them, or raise a CnnlabError naming the file with ``strict=True``.
"""

from __future__ import annotations

import os
import warnings
from collections import Counter
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from cnnlab.data.images import DataWarning, _progress, _reason, warn_skipped
from cnnlab.errors import CnnlabError

AUDIO_EXTENSIONS = frozenset({".wav", ".flac", ".ogg", ".oga", ".aiff", ".aif", ".mp3"})
#: what soundfile / libsndfile raise for a file they cannot decode
READ_ERRORS = (RuntimeError, OSError, ValueError, TypeError, EOFError)


def is_audio(path: Path) -> bool:
    return path.suffix.lower() in AUDIO_EXTENSIONS and not path.name.startswith(".")


def read_info(path: Path) -> tuple[int, int, int]:
    """(sample rate, channels, frames) from the file header only; raises READ_ERRORS on broken files."""
    import soundfile as sf

    if path.stat().st_size == 0:  # libsndfile would only say "Format not recognised"
        raise ValueError("the file is empty (0 bytes)")
    info = sf.info(str(path))
    return int(info.samplerate), int(info.channels), int(info.frames)


def read_audio(path: Path) -> tuple[np.ndarray, int]:
    """One file -> (float32 (C, T) in [-1, 1], sample rate). Raises READ_ERRORS on broken files and
    ValueError on a file without samples."""
    import soundfile as sf

    if path.stat().st_size == 0:  # libsndfile would only say "Format not recognised"
        raise ValueError("the file is empty (0 bytes)")
    data, rate = sf.read(str(path), dtype="float32", always_2d=True)  # (T, C)
    if data.shape[0] == 0:
        raise ValueError("the file holds no samples (zero-length)")
    return np.ascontiguousarray(data.T), int(rate)


def resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    """(C, T) float32 at ``rate`` -> (C, round(T * target / rate)) at ``target`` (soxr, high quality)."""
    if rate == target:
        return wave
    import soxr

    out = soxr.resample(wave.T, rate, target, quality="HQ")  # soxr takes (T, C)
    return np.ascontiguousarray(np.asarray(out, dtype=np.float32).reshape(-1, wave.shape[0]).T)


def to_channels(wave: np.ndarray, channels: int) -> np.ndarray:
    """(C, T) -> (channels, T): mono mixdown (the mean), mono duplicated to stereo, or the first two."""
    c = wave.shape[0]
    if c == channels:
        return wave
    if channels == 1:
        return wave.mean(axis=0, keepdims=True)
    if c == 1:
        return np.repeat(wave, channels, axis=0)
    return wave[:channels]


def write_audio(path: str | os.PathLike, wave: torch.Tensor | np.ndarray, sample_rate: int,
                subtype: str | None = None) -> Path:
    """Write a (C, T) (or (T,)) float waveform in [-1, 1] atomically; the format follows the extension
    (.wav 16-bit PCM by default, .flac, .ogg, ...)."""
    import soundfile as sf

    from cnnlab.files import atomic_write

    path = Path(path)
    if not is_audio(path):
        raise CnnlabError(f"{path}: audio is written as {', '.join(sorted(AUDIO_EXTENSIONS))}; pick one of those "
                          "extensions")
    array = wave.detach().cpu().numpy() if isinstance(wave, torch.Tensor) else np.asarray(wave)
    array = np.clip(array.reshape(-1, array.shape[-1]).T.astype(np.float32), -1.0, 1.0)  # (T, C)
    fmt = {".aif": "AIFF", ".oga": "OGG", ".mp3": "MP3"}.get(path.suffix.lower(), path.suffix[1:].upper())
    return atomic_write(path, lambda p: sf.write(str(p), array, int(sample_rate), format=fmt, subtype=subtype),
                        suffix=path.suffix)


@dataclass
class Decoded:
    """Decoded files: waveforms (float32 (C, T) at the target rate), the indices into the paths they
    came from, the files skipped and why, and the conversions made (counted, for one note)."""

    waves: list[torch.Tensor] = field(default_factory=list)
    kept: list[int] = field(default_factory=list)
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    rates: Counter = field(default_factory=Counter)  # source rate -> files resampled from it
    channel_changes: Counter = field(default_factory=Counter)  # "stereo -> mono" -> files

    def note(self, target: int) -> str:
        """One line on every conversion made, '' when none was needed."""
        parts = []
        if self.rates:
            found = ", ".join(f"{n} at {r} Hz" for r, n in sorted(self.rates.items()))
            parts.append(f"resampled {sum(self.rates.values())} file(s) to {target} Hz ({found})")
        for change, n in sorted(self.channel_changes.items()):
            parts.append(f"{change}: {n} file(s)")
        return "; ".join(parts)


def decode_many(paths: Sequence[Path], sample_rate: int, channels: int, strict: bool = False,
                progress: bool = True) -> Decoded:
    """Decode, convert channels and resample files in a thread pool (libsndfile and soxr release the
    GIL). Unreadable files are skipped, or raise a CnnlabError naming the file with ``strict``."""
    def one(path: Path) -> tuple[np.ndarray, int, int] | str:
        try:
            wave, rate = read_audio(path)
        except READ_ERRORS as exc:
            if strict:
                raise CnnlabError(f"cannot read audio file {path}: {_reason(exc)}; fix or delete the file "
                                  "(without --strict, unreadable files are skipped with a warning)") from None
            return _reason(exc)
        source_channels = wave.shape[0]
        return resample(to_channels(wave, channels), rate, sample_rate), rate, source_channels

    out = Decoded()
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool, \
            _progress(len(paths), progress, "decoding audio") as advance:
        for i, result in enumerate(pool.map(one, paths)):
            advance()
            if isinstance(result, str):
                out.skipped.append((paths[i], result))
                continue
            wave, rate, source_channels = result
            out.waves.append(torch.from_numpy(wave))
            out.kept.append(i)
            if rate != sample_rate:
                out.rates[rate] += 1
            if source_channels != channels:
                out.channel_changes[f"{_channel_word(source_channels)} -> {_channel_word(channels)}"] += 1
    return out


def _channel_word(c: int) -> str:
    return {1: "mono", 2: "stereo"}.get(c, f"{c} channels")


def probe_rates(paths: Sequence[Path], strict: bool) -> tuple[Counter, list[tuple[Path, str]]]:
    """(sample rate -> files, [(path, reason)] unreadable) from the headers alone."""
    def one(path: Path) -> int | str:
        try:
            return read_info(path)[0]
        except READ_ERRORS as exc:
            if strict:
                raise CnnlabError(f"cannot read audio file {path}: {_reason(exc)}; fix or delete the file") from None
            return _reason(exc)

    rates: Counter = Counter()
    skipped = []
    with ThreadPoolExecutor(max_workers=min(4, os.cpu_count() or 1)) as pool:
        for path, result in zip(paths, pool.map(one, paths), strict=True):
            if isinstance(result, str):
                skipped.append((path, result))
            else:
                rates[result] += 1
    return rates, skipped


def common_rate(rates: Counter, requested: int | None) -> int:
    """The target rate: the requested one, else the most common rate of the files (the highest on a tie)."""
    if requested is not None:
        if not 1000 <= requested <= 384_000:
            raise CnnlabError(f"--sample-rate {requested} is out of range; use 1000..384000 Hz (e.g. 16000)")
        return int(requested)
    if not rates:
        raise CnnlabError("no readable audio files to take a sample rate from")
    return max(rates, key=lambda r: (rates[r], r))


def find_files(folder: Path) -> tuple[list[Path], list[Path]]:
    """(audio files, other files) under ``folder``, recursively, sorted; hidden files and folders are
    ignored."""
    audio, other = [], []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in filenames:
            path = Path(dirpath) / name
            if name.startswith("."):
                continue
            (audio if is_audio(path) else other).append(path)
    return sorted(audio), sorted(other)


def warn_not_audio(other: Sequence[Path], root: Path) -> None:
    """One warning naming the files in the tree that are not audio (skipped)."""
    if not other:
        return
    shown = ", ".join(str(p.relative_to(root)) for p in other[:10])
    more = f" and {len(other) - 10} more" if len(other) > 10 else ""
    warnings.warn(f"skipped {len(other)} non-audio file(s) in {root}: {shown}{more} (audio files end in "
                  f"{', '.join(sorted(AUDIO_EXTENSIONS))})", DataWarning, stacklevel=3)


def expand_inputs(paths: Iterable[str | os.PathLike]) -> list[Path]:
    """Files and folders (searched recursively for audio) -> audio files; non-audio files in folders
    are skipped with one warning, a missing path or a folder without audio is an error."""
    from cnnlab.files import expand_inputs as expand

    def find(folder: Path) -> list[Path]:
        found, other = find_files(folder)
        warn_not_audio(other, folder)
        return found

    return expand(paths, find, "audio files", ", ".join(sorted(AUDIO_EXTENSIONS)))


def load_files(paths: Iterable[str | os.PathLike], sample_rate: int, channels: int
               ) -> tuple[list[torch.Tensor], list[Path]]:
    """Audio files and folders -> (float32 (C, T) waveforms at ``sample_rate``, their paths), for
    predict and explain. Unreadable files are skipped with one warning; none readable is an error."""
    files = expand_inputs(paths)
    decoded = decode_many(files, sample_rate, channels)
    if not decoded.kept:
        path, reason = decoded.skipped[0]
        raise CnnlabError(f"none of the {len(files)} input file(s) could be read as audio (first: {path}: {reason}); "
                          f"pass files soundfile can open ({', '.join(sorted(AUDIO_EXTENSIONS))})")
    warn_skipped(decoded.skipped, "unreadable audio")
    note = decoded.note(sample_rate)
    if note:
        warnings.warn(f"{note} (the run's input format)", DataWarning, stacklevel=2)
    return decoded.waves, [files[i] for i in decoded.kept]
