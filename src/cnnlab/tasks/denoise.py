"""Image denoising: additive Gaussian noise of ``sigma`` (0-255 scale, fixed or a range for blind
training), Poisson shot noise, or both, made on the fly (``cnnlab.data.noise``).

Training cuts a random ``patch`` from a photo, mirrors it, and adds noise drawn from the step's seeded
generator (resume stays exact). Validation images keep their whole size and get noise seeded from
their own pixels, so the same image has the same noise in every epoch and every run.

The network predicts the residual, the noise itself, and the denoised image is input - output (DnCNN,
Zhang et al. 2017). Why: the clean image is a complex function of the noisy one, while the noise is
nearly independent of the content and close to zero-mean everywhere, so the residual is the easier
mapping to learn; a network that outputs 0 already returns its input, where a network that had to
rebuild the image through its encoder and decoder would start far below the noisy PSNR and spend its
capacity copying detail. The model itself is any image-to-image network with C outputs (a U-Net by
default: on a CPU it sees far more context per multiply than DnCNN's 17 full-resolution layers).
Loss: the mean squared error of the residual, which is the Gaussian noise's maximum-likelihood loss
and the quantity PSNR measures.

Metric: PSNR on all channels (RGB), 0-255, no border shaved, of the denoised image rounded to 8 bits,
per image then averaged; ``baseline_psnr`` is the noisy input's own PSNR (clipped and rounded to
8 bits, as a saved noisy photo is).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.bundle import Split
from cnnlab.data.noise import NOISES, add_noise, image_generator, parse_range, uniform
from cnnlab.errors import CnnlabError
from cnnlab.tasks import restore
from cnnlab.tasks.base import Augment, Batch, Meter

#: added to the image-seeded generator, so denoise and inpaint draw differently from the same photo
SALT = 1


class DenoiseMeter(Meter):
    """Loss and per-image mean PSNR of the denoised images, with the noisy inputs' beside it."""

    KEYS = ("psnr", "baseline_psnr")

    def __init__(self) -> None:
        self.sums = dict.fromkeys(self.KEYS, 0.0)
        self.loss_sum, self.count = 0.0, 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        if batch is None:
            raise CnnlabError("the denoise meter needs the batch (its noisy input and clean image)")
        noisy = batch["input"].float() / 255
        self.sums["psnr"] += float(restore.psnr_8bit(noisy - outputs.detach().float().cpu(), batch["clean"]).sum())
        self.sums["baseline_psnr"] += float(restore.psnr_8bit(noisy, batch["clean"]).sum())
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {"loss": self.loss_sum / n, **{k: v / n for k, v in self.sums.items()}}

    def state(self) -> torch.Tensor:
        return torch.tensor([self.loss_sum, self.count, *(self.sums[k] for k in self.KEYS)], dtype=torch.float64)

    def load_state(self, sums: torch.Tensor) -> None:
        self.loss_sum, self.count = float(sums[0]), int(sums[1])
        self.sums = {k: float(v) for k, v in zip(self.KEYS, sums[2:].tolist(), strict=True)}


def _level(value: tuple[float, float]) -> float | list[float]:
    """A fixed value as a number, a range as [low, high] (how config.json records them)."""
    return value[0] if value[0] == value[1] else [value[0], value[1]]


class DenoiseTask(restore.PhotoTask):
    """Remove noise made on the fly from clean photos; the model predicts the noise."""

    name = "denoise"
    primary_metric = "psnr"
    directions = {"loss": "min", "psnr": "max", "baseline_psnr": "max"}
    default_model = "unet_small"
    tta_modes = ("none", "flip")
    output_name = "noise"

    def __init__(self, sigma: float | str | list[float] = 25.0, noise: str = "gaussian", patch: int = 64,
                 peak: float | str | list[float] = 30.0) -> None:
        if noise not in NOISES:
            raise CnnlabError(f"--noise {noise} is not a noise model; use one of {', '.join(NOISES)}")
        self.sigma = parse_range(sigma, "--sigma", "--sigma 25 or --sigma 0-55 (0-255 scale)")
        self.peak = parse_range(peak, "--task-arg peak", "peak=30 (photons at white)", minimum=1e-3)
        if patch < 8:
            raise CnnlabError(f"--patch {patch} is too small to learn from; use at least 8 pixels (e.g. 64)")
        self.noise, self.patch = noise, patch

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        channels = info["in_channels"]
        if requested.get("num_classes", channels) != channels:
            raise CnnlabError(f"--model-arg num_classes={requested['num_classes']}: a denoiser outputs the "
                              f"image's {channels} channel(s); drop it")
        return {"num_classes": channels}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        return "" if tuple(output_size) == tuple(input_size) else f"a {tuple(input_size)} noise estimate (the input's shape)"

    def _noisy(self, clean: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        sigma, peak = uniform(*self.sigma, generator), uniform(*self.peak, generator)
        return add_noise(clean, self.noise, sigma, peak, generator)

    def _batch(self, clean: torch.Tensor, noisy: torch.Tensor) -> Batch:
        # the target is the noise (the residual the network predicts), on the 0-255 scale
        return {"input": noisy, "target": noisy - clean.float(), "clean": clean}

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        clean = self.train_patches(items, generator, augment)  # (N, C, P, P) uint8
        noisy = torch.stack([self._noisy(c, generator) for c in clean])  # (N, C, P, P) float, 0-255
        return self._batch(clean, noisy)

    def eval_batch(self, items: Split) -> Batch:
        clean = torch.stack(restore.images_of(items))
        noisy = torch.stack([self._noisy(c, image_generator(c, SALT)) for c in clean])
        return self._batch(clean, noisy)

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.mse_loss(outputs.float(), targets.float() / 255.0)

    def meter(self, info: dict[str, Any], training: bool = False) -> DenoiseMeter:
        return DenoiseMeter()

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """The estimated noise (N, C, H, W) on the [0, 1] scale: the denoised image is input - this."""
        return outputs.float()

    def options(self) -> dict[str, Any]:
        return {"sigma": _level(self.sigma), "noise": self.noise, "patch": self.patch, "peak": _level(self.peak)}

    def denoise(self, run: Any, noisy: torch.Tensor, opts: dict[str, Any] | None = None) -> torch.Tensor:
        """Noisy (1, C, H, W), uint8 or float on the 0-255 scale -> the denoised image in [0, 1] (CPU)."""
        x = run.preprocess(noisy.to(run.device))
        noise = restore.tiled_model(run, x, opts or restore.PREDICT_OPTIONS)
        return (x - noise).clamp(0, 1).cpu()

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per noisy input: OUT/<stem>.png, denoised (tiles of ``tile`` pixels with ``overlap`` of context)."""
        from cnnlab.data.plain import read_native
        from cnnlab.render.overlays import save_rgb_png
        from cnnlab.tasks.base import check_options

        opts = check_options(self, options, restore.PREDICT_OPTIONS)
        if out is None:
            raise CnnlabError("denoise predictions are images: pass --out DIR")
        rows = []
        with torch.no_grad():
            for path, image in read_native(paths, run.in_channels):
                written = save_rgb_png(self.denoise(run, image[None], opts)[0], Path(out) / f"{path.stem}.png")
                rows.append({"path": str(path), "output": str(written)})
        return rows

    def save_example(self, split: Split, i: int, stem: Path, info: dict[str, Any]) -> Path:
        """Item ``i`` with its validation noise, as an 8-bit PNG (what predict takes)."""
        from cnnlab.render.overlays import save_rgb_png

        noisy = self.eval_batch(split.take(slice(i, i + 1)))["input"][0]
        return save_rgb_png(noisy / 255, stem.with_suffix(".png"))

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample, the same centre crop of: the noisy input, the model's output, the clean target,
        and the noise the model removed (grey = 0, contrast x2), with the PSNRs of input and output."""
        from cnnlab.render.report import img

        if split is None:
            return restore.no_split_note("denoise")
        parts = []
        with torch.no_grad():
            for i in range(min(samples, len(split), self.report_items)):
                batch = self.eval_batch(split.take(slice(i, i + 1)))
                noisy = batch["input"].float() / 255
                out = self.denoise(run, batch["input"])
                found, base = (float(restore.psnr_8bit(x, batch["clean"])[0]) for x in (out, noisy))
                shown = [noisy[0], out[0], batch["clean"][0].float() / 255, 0.5 + 2 * (noisy[0] - out[0])]
                path = restore.panels(shown, tmp / f"denoise_{i}.png")
                parts.append(img(path, f"sample {i}") + f"<p>val {i}: noisy input (the baseline) {base:.2f} dB, "
                             f"model {found:.2f} dB (PSNR on RGB, whole image)</p>")
        return restore.section(source, f"noisy input ({self.noise}, sigma {_level(self.sigma)}) | model | clean "
                               "target | noise removed (input - output, grey = 0).", parts)

    def summary(self, metrics: dict[str, float]) -> str:
        line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("psnr", "loss") if k in metrics)
        if "baseline_psnr" in metrics:
            line += f"  (noisy input: psnr {metrics['baseline_psnr']:.4f})"
        return line
