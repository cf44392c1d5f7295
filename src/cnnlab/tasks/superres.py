"""Single-image super-resolution by an integer ``scale`` (2, 3 or 4).

Inputs and targets (made on the fly): a random HR patch of ``patch`` pixels is cut from a photo,
mirrored by the augmentation, and bicubically downscaled by Pillow (antialiased, as MATLAB's imresize
that the SR papers used) into the LR input. The model sees [0, 1] pixels (no dataset normalisation)
and outputs the HR image in [0, 1].

Loss: L1 (mean absolute error). SR models trained with L1 reach higher PSNR than with L2 (EDSR,
Lim et al. 2017): L2 over-weights a few large errors at edges and blurs textures towards the mean.

Metrics, as the SR papers score: PSNR and SSIM on the Y channel (BT.601, 16-235) of the output
quantised to 8 bits, with the HR image cropped to a multiple of the scale and ``scale`` pixels shaved
from every border; bicubic upscaling's PSNR/SSIM on the same images sit beside them as baseline_*.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.bundle import Split
from cnnlab.data.degrade import bicubic_resize, downscale, upscale
from cnnlab.errors import CnnlabError
from cnnlab.tasks import scores
from cnnlab.tasks.base import Augment, Batch, ScoreSumsMeter, Task
from cnnlab.tasks.patches import check_patch, random_patches

SCALES = (2, 3, 4)
#: SSIM's 11x11 window must fit inside the shaved HR image
MIN_SCORED = 11


class SuperResMeter(ScoreSumsMeter):
    """Loss and per-image mean PSNR / SSIM on Y (the papers average per-image scores), with the bicubic
    baseline's on the same images when the batch carries one."""

    KEYS = ("psnr", "ssim", "baseline_psnr", "baseline_ssim")

    def __init__(self, scale: int, with_ssim: bool = True) -> None:
        self.scale, self.with_ssim = scale, with_ssim
        super().__init__()

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        found = self._scores(outputs, targets)
        self.sums["psnr"] += float(found["psnr"].sum())
        self.sums["ssim"] += float(found["ssim"].sum()) if self.with_ssim else 0.0
        if batch is not None and "baseline" in batch:
            base = self._scores(batch["baseline"], targets)
            self.sums["baseline_psnr"] += float(base["psnr"].sum())
            self.sums["baseline_ssim"] += float(base["ssim"].sum())
            self.baseline_count += len(targets)
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def _scores(self, sr: torch.Tensor, hr: torch.Tensor) -> dict[str, torch.Tensor]:
        return scores.sr_scores(sr.detach().cpu(), hr.detach().cpu(), self.scale, self.with_ssim)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"loss": self.loss_sum / n, "psnr": self.sums["psnr"] / n}
        if self.with_ssim:
            out["ssim"] = self.sums["ssim"] / n
        if self.baseline_count:
            out["baseline_psnr"] = self.sums["baseline_psnr"] / self.baseline_count
            out["baseline_ssim"] = self.sums["baseline_ssim"] / self.baseline_count
        return out


class SuperResTask(Task):
    """Upscale images ``scale`` times; trained on HR photos, the LR inputs made on the fly."""

    name = "superres"
    primary_metric = "psnr"
    directions = {"loss": "min", "psnr": "max", "ssim": "max", "baseline_psnr": "max", "baseline_ssim": "max"}
    data_layout = "images"
    default_model = "edsr_cpu"
    normalize = False
    tta_modes = ("none", "flip")
    default_augment = "flip"
    writes_images = True
    output_name = "image"
    eval_fp32 = True
    report_items = 4  # full-size overlays: more would make a long page

    def __init__(self, scale: int = 2, patch: int = 96) -> None:
        if scale not in SCALES:
            raise CnnlabError(f"--scale {scale} is not supported; use one of {', '.join(map(str, SCALES))}")
        if patch < 4 * scale or patch % scale:
            raise CnnlabError(f"--patch {patch} must be a multiple of --scale {scale} and at least {4 * scale} "
                              f"(the HR patch; its LR input is patch / scale), e.g. --patch {32 * scale}")
        self.scale, self.patch = scale, patch

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        if requested.get("scale", self.scale) != self.scale:
            raise CnnlabError(f"--model-arg scale={requested['scale']} contradicts --scale {self.scale}; "
                              "give the scale once, with --scale")
        return {"scale": self.scale}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        c, h, w = input_size
        want = (c, h * self.scale, w * self.scale)
        return "" if output_size == want else f"a {want} image ({self.scale} times the input)"

    def input_size(self, info: dict[str, Any]) -> tuple[int, int]:
        return self.patch // self.scale, self.patch // self.scale

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if "mask" in train:
            raise CnnlabError("superres trains on plain images, not masks; pass a folder of photos")
        check_patch(train.sizes(), self.patch)
        smallest = (MIN_SCORED + 2) * self.scale
        small = [s for s in val.sizes() if min(s) < smallest]
        if small:
            raise CnnlabError(f"{len(small)} validation image(s) are smaller than {smallest} pixels (the smallest "
                              f"is {min(small)}): too small to score at --scale {self.scale}; remove them")

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        hr = random_patches(items, ("image",), self.patch, generator)["image"]  # (N, C, P, P) uint8
        if augment is not None:
            hr = augment({"image": hr}, {"image": "image"}, generator)["image"]
        lr = bicubic_resize(hr, self.patch // self.scale)  # the degradation is deterministic given the patch
        return {"input": lr, "target": hr}

    def eval_batch(self, items: Split) -> Batch:
        images = items["image"]
        hr = images if isinstance(images, torch.Tensor) else torch.stack(images)
        hr, lr = downscale(hr, self.scale)
        return {"input": lr, "target": hr, "baseline": upscale(lr, self.scale)}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        return F.l1_loss(outputs.float(), targets.float() / 255.0)

    def meter(self, info: dict[str, Any], training: bool = False) -> SuperResMeter:
        return SuperResMeter(self.scale, with_ssim=not training)

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """The SR image, float in [0, 1] (N, C, scale H, scale W)."""
        return outputs.float().clamp(0.0, 1.0)

    def options(self) -> dict[str, Any]:
        return {"scale": self.scale, "patch": self.patch}

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample, the same centre crop of: the LR input (enlarged by pixel repetition), bicubic
        upscaling, the model's output and the HR original, with each image's PSNR on Y."""
        import html

        from cnnlab.render.grids import make_grid, save_image
        from cnnlab.render.report import img

        if split is None:
            return "<h2>Sample predictions</h2><p class=\"note\">super-resolution samples come from the run's data</p>"
        parts = []
        with torch.no_grad():
            for i in range(min(samples, len(split), self.report_items)):
                batch = self.eval_batch(split.take(slice(i, i + 1)))
                sr = self.predict(run.model(run.preprocess(batch["input"].to(run.device)))).cpu()
                found = scores.sr_scores(sr, batch["target"], self.scale)["psnr"][0]
                base = scores.sr_scores(batch["baseline"], batch["target"], self.scale)["psnr"][0]
                crops = [batch["input"].float().div(255).repeat_interleave(self.scale, -1).repeat_interleave(self.scale, -2),
                         batch["baseline"].float() / 255, sr, batch["target"].float() / 255]
                h, w = batch["target"].shape[-2:]
                size = min(h, w, 128)
                top, left = (h - size) // 2, (w - size) // 2
                tiles = torch.cat([c[..., top:top + size, left:left + size] for c in crops])
                path = save_image(make_grid(tiles, nrow=4, pad=2, pad_value=1.0), tmp / f"sr_{i}.png", min_side=800)
                parts.append(img(path, f"sample {i}") + f"<p>val {i}: bicubic {base:.2f} dB, model {found:.2f} dB "
                             f"(PSNR on Y, whole image)</p>")
        return (f"<h2>Sample predictions</h2><p>{html.escape(source)}: the same crop of LR input (x{self.scale} "
                "pixel repetition) | bicubic | model | HR original.</p>" + "".join(parts))

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per LR input: OUT/<stem>.png, ``scale`` times larger. Large images are processed in tiles of
        ``tile`` LR pixels with ``overlap`` pixels of context (memory stays bounded)."""
        from cnnlab.data.plain import read_native
        from cnnlab.render.overlays import save_rgb_png
        from cnnlab.tasks.base import check_options
        from cnnlab.tasks.tiles import tiled

        opts = check_options(self, options, {"tile": 256, "overlap": 16})
        if out is None:
            raise CnnlabError("superres predictions are images: pass --out DIR")
        rows = []
        with torch.no_grad():
            for path, image in read_native(paths, run.in_channels):
                x = run.preprocess(image[None].to(run.device))
                sr = self.predict(tiled(run.model, x, opts["tile"], opts["overlap"], self.scale))[0]
                written = save_rgb_png(sr, Path(out) / f"{path.stem}.png")
                rows.append({"path": str(path), "output": str(written), "size": [int(sr.shape[-2]), int(sr.shape[-1])]})
        return rows

    def summary(self, metrics: dict[str, float]) -> str:
        line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("psnr", "ssim", "loss") if k in metrics)
        if "baseline_psnr" in metrics:
            line += f"  (bicubic: psnr {metrics['baseline_psnr']:.4f}  ssim {metrics['baseline_ssim']:.4f})"
        return line
