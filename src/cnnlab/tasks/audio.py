"""Sound classification: one class per recording, from a fixed-length window of its waveform.

The head, loss and metrics are classification's (softmax cross-entropy with optional label
smoothing; top-1, top-5, per-class precision/recall and the confusion matrix); what differs lives
here:

- items are ``wave`` fields, float32 (C, T) at the data's sample rate, of any length. Training cuts
  a random ``window``-second window from each clip, or places a shorter clip at a random offset in
  silence (a random time shift either way); evaluation takes the centred window; prediction slides
  windows over long recordings and averages their probabilities.
- augmentation is the task's own (``cnnlab.data.audio.transforms.WaveAugment``): speed, pitch,
  gain, noise, spectral tilt, mixing and cutting the clip's ends (``crop``), each drawn from the
  step's seeded generator. Image augmentations (--augment flip, crop) do not apply.
- the model sees the waveform itself (no dataset normalisation: the models normalise each clip).
- explain and the report draw the waveform under its Grad-CAM over time (and the log-mel frames
  for models with a mel front end), and the report plays every sample.
"""

from __future__ import annotations

import html
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch, check_options
from cnnlab.tasks.classify import ClassifyTask


def window_samples(window: float, sample_rate: int) -> int:
    return max(1, round(window * sample_rate))


class AudioTask(ClassifyTask):
    """Classification of recordings into the data's classes (see the module doc)."""

    name = "audio"
    data_layout = "audio"
    default_model = "m5"
    normalize = False
    tta_modes = ("none",)
    default_augment = "wave"  # the task's own (see make_augment)
    input_name = "waveform"

    def __init__(self, window: float = 1.0, label_smoothing: float = 0.0, speed: float = 0.15, pitch: float = 0.0,
                 gain: float = 6.0, noise: float = 0.0, tilt: float = 0.0, mix: float = 0.0, crop: float = 0.0) -> None:
        super().__init__(label_smoothing)
        checks = [(0.01 <= window <= 600, f"--window {window} must be 0.01..600 seconds (e.g. 1.0)"),
                  (0 <= speed < 0.5, f"speed={speed}: the largest speed change, a fraction in [0, 0.5)"),
                  (0 <= pitch <= 12, f"pitch={pitch}: the largest pitch shift in semitones, 0..12"),
                  (0 <= gain <= 40, f"gain={gain}: the largest level change in dB, 0..40"),
                  (0 <= noise <= 60, f"noise={noise}: the lowest signal-to-noise ratio in dB (0 = no noise), 0..60"),
                  (0 <= tilt < 1, f"tilt={tilt}: the largest spectral tilt coefficient, in [0, 1)"),
                  (0 <= mix <= 1, f"mix={mix}: the probability of mixing in another clip, 0..1"),
                  (0 <= crop < 0.5, f"crop={crop}: the largest fraction cut from each end of a clip, in [0, 0.5)")]
        for ok, message in checks:
            if not ok:
                raise CnnlabError(message)
        self.window, self.speed, self.pitch, self.gain = window, speed, pitch, gain
        self.noise, self.tilt, self.mix, self.crop = noise, tilt, mix, crop
        self.length: int | None = None  # the window in samples, once bind_data knows the sample rate

    # --- model and data --------------------------------------------------------------------------
    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        rate = info["sample_rate"]
        if requested.get("sample_rate", rate) != rate:
            raise CnnlabError(f"--model-arg sample_rate={requested['sample_rate']} does not match the data's {rate} Hz; "
                              "drop it (resample the data with --sample-rate instead)")
        return {**super().head_kwargs(info, requested), "sample_rate": rate}

    def bind_data(self, info: dict[str, Any]) -> None:
        self.length = window_samples(self.window, info["sample_rate"])

    def input_size(self, info: dict[str, Any]) -> tuple[int]:
        return (window_samples(self.window, info["sample_rate"]),)

    def data_options_like(self, info: dict[str, Any]) -> dict[str, Any]:
        return {"sample_rate": info["sample_rate"], "channels": info["in_channels"]}

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if "wave" not in train:
            raise CnnlabError("task audio needs recordings; pass a folder of audio files or builtin:tones")
        length = window_samples(self.window, info["sample_rate"])
        sizes = [(s[0], i, name) for name, part in (("training", train), ("validation", val))
                 for i, s in enumerate(part.sizes())]
        short = [s for s in sizes if s[0] < length]
        if short:
            shortest = min(short)
            warnings.warn(f"{len(short)} of {len(sizes)} clip(s) are shorter than the {self.window:g} s window "
                          f"(the shortest, {shortest[2]} clip {shortest[1]}, is {shortest[0] / info['sample_rate']:.3f} s); "
                          "they are padded with silence", _data_warning(), stacklevel=2)

    # --- batches ---------------------------------------------------------------------------------
    def make_augment(self, name: str) -> Augment | None:
        """'auto' (or 'wave'): the task's WaveAugment with its strengths; 'none': only the random window."""
        from cnnlab.data.audio.transforms import WaveAugment

        if name == "none":
            return None
        if name not in ("auto", "wave"):
            raise CnnlabError(f"--augment {name} is an image augmentation; audio takes --augment auto (its own: "
                              "--task-arg speed=, pitch=, gain=, noise=, tilt=, mix=, crop=) or --augment none")
        return _Augment(WaveAugment(self.speed, self.pitch, self.gain, self.noise, self.tilt, self.mix, self.crop))

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        from cnnlab.data.audio.transforms import windows

        clips = list(items["wave"])
        length = self._length(items)
        if isinstance(augment, _Augment):  # speed and pitch change a clip's length: before the window
            clips = augment.wave.clips(clips, generator)
        x = windows(clips, length, torch.rand(len(clips), generator=generator))
        if augment is not None:
            x = augment({"wave": x}, {"wave": "wave"}, generator)["wave"]
        return {"input": x, "target": items["label"]}

    def eval_batch(self, items: Split) -> Batch:
        from cnnlab.data.audio.transforms import windows

        return {"input": windows(items["wave"], self._length(items)), "target": items["label"]}

    def eval_batches(self, split: Split, batch_size: int):  # type: ignore[no-untyped-def]
        # Centred windows have one length, so clips of any length batch together.
        for i in range(0, len(split), batch_size):
            yield self.eval_batch(split.take(slice(i, i + batch_size)))

    def _length(self, items: Split) -> int:
        if self.length is None:
            raise CnnlabError("the audio task does not know the data's sample rate yet; call "
                              "task.bind_data(bundle.info) first (fit and load_run do)")
        return self.length

    def forward(self, model: nn.Module, inputs: torch.Tensor, tta: str = "none") -> torch.Tensor:
        return model(inputs).float()

    # --- predictions -----------------------------------------------------------------------------
    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per recording: the top-k classes of its windows' mean probabilities; recordings longer than
        the window also list every window's best class (``options``: top_k 3, hop = half the window, s)."""
        from cnnlab.data.audio import load_files
        from cnnlab.data.audio.transforms import sliding_windows

        opts = check_options(self, options, {"top_k": 3, "hop": None})
        rate, length = run.info["sample_rate"], run.input_size[0]
        if opts["top_k"] < 1:
            raise CnnlabError("--top-k must be at least 1")
        hop = window_samples(opts["hop"], rate) if opts["hop"] is not None else max(1, length // 2)
        if opts["hop"] is not None and opts["hop"] <= 0:
            raise CnnlabError(f"--hop {opts['hop']} must be a positive number of seconds")
        waves, files = load_files(paths, rate, run.in_channels)
        rows = []
        with torch.no_grad():
            for path, wave in zip(files, waves, strict=True):
                frames, starts = sliding_windows(wave, length, hop)
                probs = torch.cat([self.predict(run.model(run.preprocess(frames[i:i + 64].to(run.device)))).cpu()
                                   for i in range(0, len(frames), 64)])
                mean = probs.mean(dim=0)
                values, indices = mean.topk(min(opts["top_k"], len(mean)))
                row: dict[str, Any] = {"path": str(path), "seconds": round(wave.shape[-1] / rate, 3),
                                       "top": [{"class": run.class_names[int(c)], "probability": round(float(p), 6)}
                                               for p, c in zip(values, indices, strict=True)]}
                if len(starts) > 1:
                    best, cls = probs.max(dim=1)
                    row["windows"] = [{"start": round(s / rate, 3), "end": round((s + length) / rate, 3),
                                       "class": run.class_names[int(c)], "probability": round(float(p), 6)}
                                      for s, p, c in zip(starts, best, cls, strict=True)]
                rows.append(row)
        return rows

    # --- explain and the report ------------------------------------------------------------------
    def load_inputs(self, run: Any, paths: list[str]) -> Any:
        """Recordings at the run's rate and channels, each as its centred window."""
        from cnnlab.app.explain import inputs_from_tensor
        from cnnlab.data.audio import load_files
        from cnnlab.data.audio.transforms import windows

        waves, files = load_files(paths, run.info["sample_rate"], run.in_channels)
        return inputs_from_tensor(run, windows(waves, run.input_size[0]), [Path(f).stem for f in files])

    def inputs_from_split(self, run: Any, split: Split, count: int, index: list[int] | None = None) -> Any:
        from cnnlab.app.explain import inputs_from_tensor
        from cnnlab.data.audio.transforms import windows

        index = list(range(min(count, len(split)))) if index is None else index[:count]
        raw = windows([split["wave"][i] for i in index], run.input_size[0])
        return inputs_from_tensor(run, raw, [f"val {i}" for i in index], [int(split["label"][i]) for i in index])

    def save_cam(self, run: Any, inputs: Any, i: int, cam: torch.Tensor, path: Path) -> Path:
        """The waveform over its map, and the log-mel frames under it when the model has a mel front end."""
        from cnnlab.render.audio import save_wave_cam

        spectrogram = getattr(run.model, "spectrogram", None)
        with torch.no_grad():
            spec = spectrogram(inputs.x[i:i + 1]) if spectrogram is not None else None
        return save_wave_cam(inputs.raw[i], cam, run.info["sample_rate"], path,
                             None if spec is None else spec[0], title=inputs.names[i])

    def save_example(self, split: Split, i: int, stem: Path, info: dict[str, Any]) -> Path:
        from cnnlab.data.audio import write_audio

        return write_audio(stem.with_suffix(".wav"), split["wave"][i], info["sample_rate"])

    def describe_input(self, run: Any) -> str:
        rate, length = run.info["sample_rate"], run.input_size[0]
        return f"{run.in_channels} channel(s) at {rate} Hz, {length / rate:g} s windows ({length} samples)"

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """A class-balanced mix of validation clips plus the most confident mistakes: each one's
        waveform under its Grad-CAM over time, and a player for the clip."""
        from cnnlab.app import explain as runs
        from cnnlab.data.split import balanced_subset
        from cnnlab.render.audio import audio_element
        from cnnlab.render.report import img

        note = ""
        if inputs is not None or split is None:
            data = inputs
        else:
            with torch.no_grad():
                count = min(len(split), 2048)
                probs = torch.cat([self.predict(run.model(run.preprocess(b["input"].to(run.device)))).cpu()
                                   for b in self.eval_batches(split.take(slice(0, count)), 256)])
            labels = split["label"][:count]
            confidence, pred = probs.max(dim=1)
            wrong = (pred != labels).nonzero().flatten()
            mistakes = wrong[confidence[wrong].argsort(descending=True)][: max(1, samples // 4)].tolist()
            mix = [i for i in balanced_subset(labels, samples).tolist() if i not in mistakes][: samples - len(mistakes)]
            data = self.inputs_from_split(run, split, samples, mix + mistakes)
            note = (f" ({len(mix)} class-balanced, then the {len(mistakes)} most confident mistake(s))" if mistakes
                    else " (class-balanced; no mistakes among them)")
        layer = runs.default_layer(run, data)
        rows = runs.explain_cams(run, data, layer, "gradcam", None, tmp / "cams")
        rate = run.info["sample_rate"]
        cells = "".join(
            f"<tr><td>{img(r['png'], r['input'])}</td><td>{html.escape(r['input'])}<br>"
            f"{audio_element(data.raw[i], rate, r['input'])}</td>"
            f"<td>{html.escape(r['predicted'])} ({r['probability']:.2f})</td>"
            f"<td>{html.escape(r['label'] or '-')}</td></tr>" for i, r in enumerate(rows))
        return (f"<h2>Sample predictions</h2><p>{html.escape(source)}{html.escape(note)}; Grad-CAM of "
                f"<code>{html.escape(layer)}</code> over time for the predicted class (the waveform over the map; "
                "the log-mel frames under it for mel models). Press play to hear each clip.</p>"
                '<table class="audio"><tr><th>waveform | Grad-CAM</th><th>clip</th><th>predicted (p)</th>'
                f"<th>label</th></tr>{cells}</table>")

    def options(self) -> dict[str, Any]:
        return {"window": self.window, "label_smoothing": self.label_smoothing, "speed": self.speed,
                "pitch": self.pitch, "gain": self.gain, "noise": self.noise, "tilt": self.tilt, "mix": self.mix,
                "crop": self.crop}


class _Augment:
    """The task's augmentation as the engine's Augment callable (level and colour of (N, C, T)
    windows), carrying the per-clip part (speed, pitch) that ``train_batch`` applies before windowing."""

    def __init__(self, wave: Any) -> None:
        self.wave = wave

    def __call__(self, fields: Batch, kinds: dict[str, str], generator: torch.Generator) -> Batch:
        return {k: self.wave.batch(v, generator) if kinds.get(k) == "wave" else v for k, v in fields.items()}


def _data_warning() -> type[Warning]:
    from cnnlab.data.images import DataWarning

    return DataWarning
