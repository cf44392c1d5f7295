"""Fixed-length windows and batched waveform augmentation, every random number from the step's generator.

Windows: training takes a random ``length``-sample window of each clip (a random time shift), or
places a shorter clip at a random offset in silence; evaluation takes the centre (or pads both sides
equally). ``sliding_windows`` cuts long recordings for prediction.

Augmentation (``WaveAugment``), per clip, for models that must generalise across voices and rooms:
- speed: resample by a factor in [1 - speed, 1 + speed], which changes tempo, pitch and formants
  together (vocal-tract length and speaking rate differ between speakers: Ko et al. 2015);
- pitch: shift pitch and formants by up to +-``pitch`` semitones at the same tempo (a phase vocoder
  time stretch, then resampling back to the length);
- gain: up to +-``gain`` dB;
- noise: white noise at a signal-to-noise ratio drawn in [``noise``, ``noise`` + 20] dB (0 = off);
- tilt: a random first-order spectral tilt (microphones and rooms colour the spectrum);
- mix: with probability ``mix``, another clip of the batch added 10-20 dB lower (overlapping
  sounds; the label stays the louder clip's);
- crop: cut up to ``crop`` of each clip's length from its start and, independently, from its end
  (recordings are trimmed differently: a word's onset or tail is sometimes clipped, so a model
  should not hang on one of them).
The draws happen in one fixed order per batch, so a step replays exactly on resume.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from cnnlab.data.bundle import Field


def fit_length(wave: torch.Tensor, length: int, position: float) -> torch.Tensor:
    """(C, T) -> (C, length): the window starting ``position`` of the way into a longer clip, or the
    clip placed ``position`` of the way into a silent window when it is shorter (0.5: the centre)."""
    t = wave.shape[-1]
    if t == length:
        return wave
    if t > length:
        start = round(position * (t - length))
        return wave[..., start:start + length]
    left = round(position * (length - t))
    return F.pad(wave, (left, length - t - left))


def windows(waves: Field, length: int, positions: torch.Tensor | None = None) -> torch.Tensor:
    """A batch (N, C, length) from clips of any lengths; ``positions`` (N,) in [0, 1], None = centred."""
    n = len(waves)
    if isinstance(waves, torch.Tensor) and waves.shape[-1] == length:
        return waves
    pos = torch.full((n,), 0.5) if positions is None else positions
    return torch.stack([fit_length(waves[i], length, float(pos[i])) for i in range(n)])


def sliding_windows(wave: torch.Tensor, length: int, hop: int) -> tuple[torch.Tensor, list[int]]:
    """(C, T) -> ((K, C, length) windows, their start samples): every ``hop`` samples, the last window
    ending at the clip's end so nothing is left out; a clip no longer than ``length`` gives one
    centred window."""
    t = wave.shape[-1]
    if t <= length:
        return fit_length(wave, length, 0.5)[None], [0]
    starts = list(range(0, t - length + 1, hop))
    if starts[-1] != t - length:
        starts.append(t - length)
    return torch.stack([wave[:, s:s + length] for s in starts]), starts


def resample_linear(wave: torch.Tensor, factor: float, size: int | None = None) -> torch.Tensor:
    """(C, T) played ``factor`` times faster: (C, round(T / factor)) (or exactly ``size`` samples) by
    linear interpolation. Crude next to soxr, but it runs on every training clip and the small aliasing
    is itself a mild augmentation."""
    size = max(1, round(wave.shape[-1] / factor)) if size is None else size
    return F.interpolate(wave[None], size=size, mode="linear", align_corners=False)[0]


def time_stretch(wave: torch.Tensor, rate: float, n_fft: int = 256, hop: int = 64) -> torch.Tensor:
    """(C, T) -> (C, round(T / rate)): the same pitch at ``rate`` times the tempo (a phase vocoder:
    magnitudes interpolated between STFT frames, phases advanced by each bin's measured frequency)."""
    window = torch.hann_window(n_fft)
    spec = torch.stft(wave, n_fft, hop, window=window, return_complex=True)  # (C, F, frames)
    length = max(1, round(wave.shape[-1] / rate))
    # istft (centred frames) gives hop * (K - 1) samples from K frames: ask for enough frames to cover
    # the output length. (Stepping through the input's frames alone left the last ones out, and istft
    # then padded the tail with zeros and warned.) Steps past the input's last frame hold it.
    frames = -(-length // hop) + 1
    steps = (torch.arange(frames) * rate).clamp(max=spec.shape[-1] - 1)
    lo = steps.long().clamp(max=max(spec.shape[-1] - 2, 0))
    frac = (steps - lo)[None, None]
    mag = (1 - frac) * spec[..., lo].abs() + frac * spec[..., lo + 1].abs()
    expected = 2 * math.pi * hop * torch.arange(spec.shape[1])[:, None] / n_fft  # (F, 1) advance per hop
    delta = spec[..., lo + 1].angle() - spec[..., lo].angle() - expected
    delta = delta - 2 * math.pi * torch.round(delta / (2 * math.pi))  # wrapped to [-pi, pi]
    phase = torch.cumsum(delta + expected, dim=-1) + spec[..., :1].angle()
    return torch.istft(torch.polar(mag, phase), n_fft, hop, window=window, length=length)


def pitch_shift(wave: torch.Tensor, semitones: float) -> torch.Tensor:
    """(C, T) with every frequency times 2 ** (semitones / 12), at the same tempo and length."""
    factor = 2 ** (semitones / 12)
    if abs(factor - 1) < 1e-3 or wave.shape[-1] < 256:  # too short for the vocoder's frames
        return wave
    stretched = time_stretch(wave, 1 / factor)  # the factor longer, same pitch
    return resample_linear(stretched, factor, size=wave.shape[-1])  # back to the length: every pitch up


@dataclass(frozen=True)
class WaveAugment:
    """The augmentation of the module doc; 0 turns a part off."""

    speed: float = 0.15
    pitch: float = 0.0
    gain: float = 6.0
    noise: float = 0.0
    tilt: float = 0.0
    mix: float = 0.0
    crop: float = 0.0

    def clips(self, waves: list[torch.Tensor], generator: torch.Generator) -> list[torch.Tensor]:
        """Per-clip changes of length and pitch, before the window is cut (so a slowed clip still fits)."""
        n = len(waves)
        speed = 1 + self.speed * (2 * torch.rand(n, generator=generator) - 1)
        pitch = self.pitch * (2 * torch.rand(n, generator=generator) - 1)
        # drawn only when used, so runs without crop replay the draws they always had
        cuts = self.crop * torch.rand(n, 2, generator=generator) if self.crop else None
        out = []
        for i, wave in enumerate(waves):
            if cuts is not None:
                t = wave.shape[-1]
                head, tail = (round(float(c) * t) for c in cuts[i])
                wave = wave[..., head:max(t - tail, head + 1)]
            if self.pitch:
                wave = pitch_shift(wave, float(pitch[i]))
            if self.speed:
                wave = resample_linear(wave, float(speed[i]))
            out.append(wave)
        return out

    def batch(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Changes of level and colour on the windows (N, C, T)."""
        n = x.shape[0]
        gain = 10 ** (self.gain * (2 * torch.rand(n, 1, 1, generator=generator) - 1) / 20)
        snr = self.noise + 20 * torch.rand(n, 1, 1, generator=generator)
        noise = torch.randn(x.shape, generator=generator)
        tilt = self.tilt * (2 * torch.rand(n, 1, 1, generator=generator) - 1)
        mixed = torch.rand(n, generator=generator) < self.mix
        level = 10 ** (-(10 + 10 * torch.rand(n, 1, 1, generator=generator)) / 20)
        partner = torch.randperm(n, generator=generator)
        if self.tilt:  # y[t] = x[t] - tilt * x[t-1]: tilt > 0 brightens, < 0 darkens
            x = x - tilt * F.pad(x, (1, 0))[..., :-1]
        if self.mix and n > 1:
            other = x[partner] * (_rms(x) / _rms(x[partner]).clamp(min=1e-4))  # the partner at this clip's level
            x = x + mixed[:, None, None] * level * other
        if self.noise:
            x = x + noise * _rms(x) * 10 ** (-snr / 20)
        return (x * gain).clamp(-1, 1)


def _rms(x: torch.Tensor) -> torch.Tensor:
    """Per-clip RMS (N, 1, 1) of (N, C, T)."""
    return x.pow(2).mean(dim=(1, 2), keepdim=True).sqrt()
