"""Learned lossy image compression: an auto-encoder whose quantised latent is priced by a learned
entropy model (``cnnlab.models.compress``), trained on rate + lambda x distortion.

Training cuts a random ``patch`` from a photo (mirrored); the model sees [0, 1] pixels (no mean/std
normalisation) and outputs the reconstruction and its rate map (bits per pixel, see the model's doc).
Loss: bpp + ``lmbda`` x 255^2 x MSE on [0, 1] pixels, i.e. lambda times the MSE on the 0-255 scale
(CompressAI's convention: lambda 0.0018 gives ~0.15 bpp, 0.0130 ~0.5 bpp, 0.0483 ~1 bpp on Kodak for
the paper-sized model). One lambda is one point of the rate-distortion curve; train several.

Metrics (validation: whole images, latent rounded as the file stores it):
- ``bpp``: bits per pixel counted from the entropy model's likelihoods, -log2 p summed over the latent,
  over the image's pixels (a real file from ``cnnlab compress`` adds a 26-byte header and at most 64
  bits of coder state: tests/test_tasks_compress.py pins it).
- ``psnr``: RGB (all channels), 0-255, no shave, of the reconstruction rounded to 8 bits.
- ``jpeg_bpp`` / ``jpeg_psnr``: the baseline on the same images: Pillow's JPEG with 4:2:0 chroma
  subsampling and optimised Huffman tables, at the highest quality whose file (headers included) is no
  larger than the model's counted bits, so JPEG never gets more bits than the model.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks import restore
from cnnlab.tasks.base import Augment, Batch, ScoreSumsMeter

#: the model's latent is 1/16 of the image: patches on that grid waste no padding
PATCH_MULTIPLE = 16
#: Pillow's JPEG quality range searched for the baseline (above 95 Pillow warns that it only grows files)
JPEG_QUALITIES = (1, 95)


def split_outputs(outputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Model outputs (N, C + 1, H, W) -> (reconstruction (N, C, H, W), per-image bpp (N,))."""
    return outputs[:, :-1], outputs[:, -1].mean(dim=(-2, -1))


def jpeg_bytes(image: torch.Tensor, quality: int) -> bytes:
    """A uint8 (C, H, W) image as a JPEG file: 4:2:0 chroma, optimised Huffman tables, no metadata."""
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    pil = Image.fromarray(array[..., 0], "L") if image.shape[0] == 1 else Image.fromarray(array, "RGB")
    buf = io.BytesIO()
    pil.save(buf, format="JPEG", quality=quality, subsampling=2, optimize=True)
    return buf.getvalue()


def jpeg_decode(data: bytes, channels: int) -> torch.Tensor:
    """JPEG bytes -> uint8 (C, H, W)."""
    import numpy as np
    from PIL import Image

    array = np.asarray(Image.open(io.BytesIO(data)).convert("L" if channels == 1 else "RGB"))
    array = array[..., None] if array.ndim == 2 else array
    return torch.from_numpy(array.copy()).permute(2, 0, 1)


def jpeg_at_bpp(image: torch.Tensor, bpp: float) -> tuple[int, float, torch.Tensor]:
    """JPEG of uint8 (C, H, W) ``image`` at the highest quality whose file has at most ``bpp`` bits per
    pixel (quality 1 when even that is larger): (quality, its bpp, the decoded image). Bisection: the
    file size grows with the quality."""
    pixels = image.shape[-2] * image.shape[-1]
    low, high = JPEG_QUALITIES
    best = low
    while low <= high:
        mid = (low + high) // 2
        if len(jpeg_bytes(image, mid)) * 8 / pixels <= bpp:
            best, low = mid, mid + 1
        else:
            high = mid - 1
    data = jpeg_bytes(image, best)
    return best, len(data) * 8 / pixels, jpeg_decode(data, image.shape[0])


class CompressMeter(ScoreSumsMeter):
    """Loss, bpp and PSNR per image, and (when ``baseline``) JPEG's bpp and PSNR at the same bits."""

    KEYS = ("bpp", "psnr", "jpeg_bpp", "jpeg_psnr")

    def __init__(self, baseline: bool) -> None:
        super().__init__()
        self.baseline = baseline

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        recon, bpp = split_outputs(outputs.detach().float().cpu())
        clean = targets.cpu()
        self.sums["bpp"] += float(bpp.sum())
        self.sums["psnr"] += float(restore.psnr_8bit(recon, clean).sum())
        if self.baseline:
            for image, rate in zip(clean, bpp.tolist(), strict=True):
                _, found, decoded = jpeg_at_bpp(image, rate)
                self.sums["jpeg_bpp"] += found
                self.sums["jpeg_psnr"] += float(restore.psnr_8bit(decoded[None], image[None])[0])
            self.baseline_count += len(clean)
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"loss": self.loss_sum / n, "bpp": self.sums["bpp"] / n, "psnr": self.sums["psnr"] / n}
        if self.baseline_count:
            out.update({k: self.sums[k] / self.baseline_count for k in ("jpeg_bpp", "jpeg_psnr")})
        return out


class CompressTask(restore.PhotoTask):
    """Compress photos: rate (bits from the learned entropy model) + lambda x distortion (MSE)."""

    name = "compress"
    primary_metric = "loss"  # the rate-distortion objective: PSNR alone can rise by spending more bits
    directions = {"loss": "min", "bpp": "min", "psnr": "max", "jpeg_bpp": "min", "jpeg_psnr": "max"}
    default_model = "compress_small"
    output_name = "reconstruction_and_rate"

    def __init__(self, lmbda: float = 0.01, patch: int = 128) -> None:
        if isinstance(lmbda, bool) or not isinstance(lmbda, (int, float)) or not lmbda > 0:
            raise CnnlabError(f"--task-arg lmbda={lmbda!r} must be a number > 0 (the weight of the MSE on the "
                              "0-255 scale against bpp; e.g. lmbda=0.01 for ~0.5 bpp)")
        if isinstance(patch, bool) or not isinstance(patch, int) or patch < PATCH_MULTIPLE or patch % PATCH_MULTIPLE:
            raise CnnlabError(f"--patch {patch} must be a multiple of {PATCH_MULTIPLE} (the latent's stride), "
                              "at least 16; e.g. --patch 128")
        self.lmbda, self.patch = float(lmbda), patch

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        if "num_classes" in requested:
            raise CnnlabError(f"--model-arg num_classes={requested['num_classes']}: a compressor outputs the image's "
                              f"{info['in_channels']} channel(s) and its rate map; drop it")
        return {}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        c, h, w = input_size
        wanted = (c + 1, h, w)
        return "" if tuple(output_size) == wanted else f"{wanted}: the reconstruction and the rate map"

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        images = self.train_patches(items, generator, augment)  # (N, C, P, P) uint8
        return {"input": images, "target": images}

    def eval_batch(self, items: Split) -> Batch:
        images = torch.stack(restore.images_of(items))
        return {"input": images, "target": images}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        recon, bpp = split_outputs(outputs.float())
        mse = F.mse_loss(recon, targets.float() / 255.0)
        return bpp.mean() + self.lmbda * 255.0**2 * mse

    def meter(self, info: dict[str, Any], training: bool = False) -> CompressMeter:
        return CompressMeter(baseline=not training)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """The reconstruction (N, C, H, W) in [0, 1]."""
        return outputs[:, :-1].float().clamp(0, 1)

    def options(self) -> dict[str, Any]:
        return {"lmbda": self.lmbda, "patch": self.patch}

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per image: OUT/<stem>.png, the image as it comes back from a real compressed file (made in
        memory, as `cnnlab compress` writes it), with the file's bpp."""
        from cnnlab.app import compress as codec
        from cnnlab.data.plain import read_native
        from cnnlab.render.overlays import save_rgb_png
        from cnnlab.tasks.base import check_options

        check_options(self, options, {})
        if out is None:
            raise CnnlabError("compress predictions are images: pass --out DIR (or use `cnnlab compress`)")
        rows = []
        for path, image in read_native(paths, run.in_channels):
            data = codec.encode(run, image)
            decoded = codec.decode(run, data, source=str(path))
            written = save_rgb_png(decoded.float() / 255, Path(out) / f"{path.stem}.png")
            rows.append({"path": str(path), "output": str(written), "bpp": codec.file_bpp(data, image)})
        return rows

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample, the same centre crop of: the original, the model's reconstruction, JPEG at no
        more bits, and the rate map (white = the most bits of that image), with bpp and PSNR of both."""
        from cnnlab.render.report import img

        if split is None:
            return restore.no_split_note("compress")
        parts = []
        with torch.no_grad():
            for i in range(min(samples, len(split), self.report_items)):
                image = self.eval_batch(split.take(slice(i, i + 1)))["input"]
                outputs = run.model(run.preprocess(image.to(run.device))).float().cpu()
                recon, bpp = split_outputs(outputs)
                quality, jpeg_bpp, jpeg = jpeg_at_bpp(image[0], float(bpp[0]))
                psnr, jpeg_psnr = (float(restore.psnr_8bit(x, image)[0]) for x in (recon, jpeg[None].float() / 255))
                rate = outputs[0, -1:]
                shown = [image[0].float() / 255, recon[0], jpeg.float() / 255, rate / rate.max().clamp_min(1e-9)]
                path = restore.panels(shown, tmp / f"compress_{i}.png")
                parts.append(img(path, f"sample {i}") + f"<p>val {i}: model {float(bpp[0]):.3f} bpp, {psnr:.2f} dB; "
                             f"JPEG q{quality} {jpeg_bpp:.3f} bpp, {jpeg_psnr:.2f} dB (PSNR on RGB)</p>")
        return restore.section(source, "original | model (latent rounded, as stored) | JPEG 4:2:0 at no more "
                               "bits | rate map (white = most bits).", parts)

    def summary(self, metrics: dict[str, float]) -> str:
        line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("bpp", "psnr", "loss") if k in metrics)
        if "jpeg_psnr" in metrics:
            line += f"  (JPEG: bpp {metrics['jpeg_bpp']:.4f} psnr {metrics['jpeg_psnr']:.4f})"
        return line
