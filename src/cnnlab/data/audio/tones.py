"""``builtin:tones``: procedural sound classes that need no download.

Each clip holds one event of its class at a random onset, length, pitch and level over background
noise at a random signal-to-noise ratio, so a model must find *when* the sound happens and what it
is, not just measure the clip's loudness:

  tone        a pure sine
  chord       three notes of a major or minor triad
  chirp_up    a linear sweep from f0 up to 2-4 x f0
  chirp_down  the same sweep downwards
  noise       a white-noise burst
  clicks      a train of short decaying clicks, 8-40 per second
  am          a sine whose loudness wobbles at 3-12 Hz
  fm          a sine whose pitch wobbles at 3-10 Hz (vibrato)

Every event fades in and out over 10-30 ms (no clicks at the edges except for the click class).
With ``channels=2`` the event is panned at random and the two channels get independent noise.
Everything is drawn from one seeded generator up front and rendered per class in one vectorised
expression; the clip's sample indices of the event are kept, for tests of where a model looks.
"""

from __future__ import annotations

import math

import torch

from cnnlab.errors import CnnlabError

TONES = ("tone", "chord", "chirp_up", "chirp_down", "noise", "clicks", "am", "fm")
_CHUNK = 512  # clips rendered at once: bounds peak memory at ~100 MB for 1 s at 16 kHz


def _sample(n: int, classes: int, gen: torch.Generator) -> dict[str, torch.Tensor]:
    """Every random number of the dataset except the noise, in one fixed order (the seed contract)."""

    def u(*shape: int, low: float = 0.0, high: float = 1.0) -> torch.Tensor:
        return low + (high - low) * torch.rand(*shape, generator=gen)

    return {
        "label": (torch.arange(n) % classes)[torch.randperm(n, generator=gen)],  # exactly balanced
        "length": u(n, low=0.3, high=0.6),  # event length, fraction of the clip
        "onset": u(n),  # fraction of the room left before the event
        "fade": u(n, low=0.01, high=0.03),  # seconds
        "f0": u(n),  # where in the band the fundamental lies, log-uniform (see tones())
        "ratio": u(n, low=2.0, high=4.0),  # chirp span
        "minor": torch.rand(n, generator=gen) < 0.5,
        "rate": u(n, low=8.0, high=40.0),  # clicks per second
        "mod": u(n, low=3.0, high=12.0),  # AM / FM rate, Hz
        "depth": u(n, low=0.05, high=0.15),  # FM deviation as a fraction of f0
        "phase": u(n, high=2 * math.pi),
        "level": u(n, low=0.2, high=0.8),  # event peak amplitude
        "snr": u(n, low=10.0, high=30.0),  # dB of the event over the background
        "pan": u(n),
    }


def _events(p: dict[str, torch.Tensor], t: torch.Tensor, start: torch.Tensor, length: torch.Tensor,
            noise: torch.Tensor) -> torch.Tensor:
    """(n, T) unit-peak events (before fading) for the clips in ``p``; ``t`` the clip's time axis in s."""
    tau = (t[None] - start[:, None]).clamp(min=0)  # time since the event began, (n, T)
    f0 = p["f0"][:, None]
    phi = p["phase"][:, None]
    out = torch.zeros_like(tau)
    for kind, name in enumerate(TONES):
        sel = p["label"] == kind
        if not bool(sel.any()):
            continue
        ts, f, ph = tau[sel], f0[sel], phi[sel]
        if name == "tone":
            wave = torch.sin(2 * math.pi * f * ts + ph)
        elif name == "chord":
            third = torch.where(p["minor"][sel, None], 2 ** (3 / 12), 2 ** (4 / 12))
            wave = sum(torch.sin(2 * math.pi * f * k * ts + ph * k) for k in (1.0, third, 2 ** (7 / 12))) / 3
        elif name in ("chirp_up", "chirp_down"):
            span = length[sel, None]
            f1 = f * p["ratio"][sel, None]
            lo, hi = (f, f1) if name == "chirp_up" else (f1, f)
            wave = torch.sin(2 * math.pi * (lo * ts + (hi - lo) * ts * ts / (2 * span)) + ph)  # f(t) linear in t
        elif name == "noise":
            wave = noise[sel].clamp(-3, 3) / 3
        elif name == "clicks":
            period = 1.0 / p["rate"][sel, None]
            since = torch.remainder(ts, period)  # time since the last click
            wave = torch.exp(-since / 0.0015) * torch.sin(2 * math.pi * 2 * f * since)
        elif name == "am":
            wave = torch.sin(2 * math.pi * f * ts + ph) * (0.5 + 0.5 * torch.sin(2 * math.pi * p["mod"][sel, None] * ts))
        else:  # fm: instantaneous frequency f0 (1 + depth sin(2 pi mod t))
            mod = p["mod"][sel, None]
            beta = p["depth"][sel, None] * f / mod
            wave = torch.sin(2 * math.pi * f * ts + beta * (1 - torch.cos(2 * math.pi * mod * ts)) + ph)
        out[sel] = wave
    return out


def tones(n: int = 2000, sample_rate: int = 8000, duration: float = 1.0, classes: int = len(TONES),
          channels: int = 1, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """``n`` clips: (waves float32 (n, channels, T) in [-1, 1], labels int64 (n,), event (n, 2) int64
    first and last sample of each event, class names)."""
    if not 1 <= n <= 200_000:
        raise CnnlabError(f"builtin:tones n={n} is out of range; use 1..200000 clips")
    if not 2000 <= sample_rate <= 48_000:
        raise CnnlabError(f"builtin:tones sample_rate={sample_rate} is out of range; use 2000..48000 Hz")
    if not 0.1 <= duration <= 10.0:
        raise CnnlabError(f"builtin:tones duration={duration} is out of range; use 0.1..10 seconds")
    if not 2 <= classes <= len(TONES):
        raise CnnlabError(f"builtin:tones classes={classes} is out of range; use 2..{len(TONES)}")
    if channels not in (1, 2):
        raise CnnlabError(f"builtin:tones channels={channels}: use 1 (mono) or 2 (stereo)")
    gen = torch.Generator().manual_seed(seed)
    p = _sample(n, classes, gen)
    # f0 spans 150 Hz to a twelfth of the rate: chirps reach 4 x f0, which stays under Nyquist
    top = max(sample_rate / 12, 150.0)
    p["f0"] = 150.0 * (top / 150.0) ** p["f0"]
    frames = round(duration * sample_rate)
    t = torch.arange(frames, dtype=torch.float32) / sample_rate
    length = p["length"] * duration
    start = p["onset"] * (duration - length)
    waves, events = [], []
    for lo in range(0, n, _CHUNK):
        chunk = {k: v[lo:lo + _CHUNK] for k, v in p.items()}
        m = len(chunk["label"])
        noise = torch.randn(m, frames, generator=gen)  # the noise-burst class's source
        background = torch.randn(m, channels, frames, generator=gen)
        s, L = start[lo:lo + _CHUNK], length[lo:lo + _CHUNK]
        event = _events(chunk, t, s, L, noise)
        into = t[None] - s[:, None]
        fade = chunk["fade"][:, None]
        envelope = ((into / fade).clamp(0, 1) * ((L[:, None] - into) / fade).clamp(0, 1))  # trapezoid
        envelope = 0.5 - 0.5 * torch.cos(math.pi * envelope)  # raised-cosine edges
        event = event * envelope * chunk["level"][:, None]  # (m, T)
        if channels == 2:
            pan = chunk["pan"][:, None, None] * math.pi / 2
            event = event[:, None] * torch.cat([pan.cos(), pan.sin()], dim=1) * math.sqrt(2)
        else:
            event = event[:, None]
        rms = (chunk["level"] / math.sqrt(2))[:, None, None]  # a sine's RMS at that level
        clip = event + background * rms * 10 ** (-chunk["snr"][:, None, None] / 20)
        waves.append(clip.clamp(-1, 1))
        events.append(torch.stack([(s * sample_rate).long(), ((s + L) * sample_rate).long().clamp(max=frames - 1)], 1))
    return torch.cat(waves).float(), p["label"].clone(), torch.cat(events), list(TONES[:classes])
