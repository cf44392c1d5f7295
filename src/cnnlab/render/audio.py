"""Audio on the page: a waveform with its class activation map over time (and the log-mel frames
the model saw, with the map drawn over them), and an HTML5 <audio> element with the clip embedded.

Like the rest of ``cnnlab.render`` this only draws what it is handed: tensors and a sample rate.
"""

from __future__ import annotations

import base64
import html
import io
import wave as wavefile
from pathlib import Path

import numpy as np
import torch

from cnnlab.render.grids import _figure_to, _pyplot


def save_wave_cam(wave: torch.Tensor, cam: torch.Tensor, sample_rate: int, path: str | Path,
                  spectrogram: torch.Tensor | None = None, title: str = "", cmap: str = "jet") -> Path:
    """A (C, T) waveform over its (T,) map in [0, 1] as a coloured band, time in seconds; with a
    (n_mels, frames) ``spectrogram``, a second panel with the map traced over the mel frames."""
    plt = _pyplot()
    wave, cam = wave.detach().float().cpu(), cam.detach().float().cpu()
    seconds = wave.shape[-1] / sample_rate
    rows = 2 if spectrogram is not None else 1
    fig, axes = plt.subplots(rows, 1, figsize=(8, 2.4 * rows), squeeze=False, sharex=True)
    ax = axes[0, 0]
    peak = max(float(wave.abs().max()), 1e-3)
    ax.imshow(cam[None].numpy(), aspect="auto", cmap=cmap, vmin=0, vmax=1, alpha=0.55,
              extent=(0, seconds, -peak, peak))
    t = np.arange(wave.shape[-1]) / sample_rate
    for channel in wave:
        ax.plot(t, channel.numpy(), color="black", lw=0.5)
    ax.set_ylim(-peak, peak)
    ax.set_ylabel("amplitude")
    ax.set_title(title)
    if spectrogram is not None:
        spec = spectrogram.detach().float().cpu()
        bands = spec.shape[0]
        ax = axes[1, 0]
        ax.imshow(spec.numpy(), aspect="auto", origin="lower", cmap="magma", extent=(0, seconds, 0, bands))
        ax.plot(t, cam.numpy() * (bands - 1), color="white", lw=1.2, label="Grad-CAM")
        ax.set_ylabel("mel band")
        ax.legend(loc="upper right", fontsize=7)
    axes[-1, 0].set_xlabel("time (s)")
    axes[-1, 0].set_xlim(0, seconds)
    return _figure_to(fig, path)


def wav_bytes(wave: torch.Tensor, sample_rate: int) -> bytes:
    """A (C, T) waveform in [-1, 1] as the bytes of a 16-bit PCM WAV file (the stdlib writer: every
    browser plays it)."""
    samples = wave.detach().float().cpu().clamp(-1, 1).numpy().T  # (T, C)
    pcm = np.round(samples * 32767).astype("<i2")
    buf = io.BytesIO()
    with wavefile.open(buf, "wb") as out:
        out.setnchannels(samples.shape[1])
        out.setsampwidth(2)
        out.setframerate(int(sample_rate))
        out.writeframes(pcm.tobytes())
    return buf.getvalue()


def audio_element(wave: torch.Tensor, sample_rate: int, label: str = "clip") -> str:
    """An HTML5 <audio controls> element playing the clip, embedded as a data URI (no file beside the page)."""
    uri = "data:audio/wav;base64," + base64.b64encode(wav_bytes(wave, sample_rate)).decode("ascii")
    return f'<audio controls preload="none" title="{html.escape(label)}" src="{uri}"></audio>'
