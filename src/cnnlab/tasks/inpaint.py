"""Inpainting: fill holes (random boxes and free-form strokes, ``cnnlab.data.holes``) in photos.

Training cuts a random ``patch``, mirrors it, and punches holes drawn from the step's seeded generator
until they cover ``cover`` of it, each shape's size drawn from the ``hole`` range in pixels. Validation
images keep their size and get holes seeded from their own pixels (the same holes every epoch and run).

The model gets C + 1 channels: the image with its holes set to mid-grey (``prefill="grey"``) or to the
diffusion fill (``prefill="diffusion"``; what was there is never shown), and the hole mask (1 = hole).
It outputs the C-channel image, or with ``prefill="diffusion"`` the change to make to the diffusion fill
(the DnCNN residual idea again: a model that outputs 0 returns the baseline, so it starts from the
baseline's score and learns only what the smooth fill gets wrong); the filled image keeps the known
pixels and takes the model's only in the holes. Loss: L1 (``loss="l1"``; or MSE, ``loss="mse"``) over
the hole pixels plus ``valid_weight`` times the same over the rest (the known pixels are given, but
learning to reproduce them keeps the output continuous across a hole's border). The target carries the mask after the image's channels (and with
``prefill="diffusion"`` the fill after that), because the loss sees only outputs and targets.

Metric: PSNR over the hole pixels only (all channels, 0-255, the output rounded to 8 bits), per image
then averaged; ``baseline_psnr`` is the diffusion fill's (harmonic inpainting) on the same holes.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

import torch

from cnnlab.data.bundle import Split
from cnnlab.data.holes import diffusion_fill, make_holes, punch
from cnnlab.data.noise import image_generator, parse_range
from cnnlab.errors import CnnlabError
from cnnlab.tasks import restore, scores
from cnnlab.tasks.base import Augment, Batch, ScoreSumsMeter

SALT = 2  # see cnnlab.tasks.denoise.SALT
#: validation images whose diffusion fill is kept between epochs (~460 kB each for a BSDS photo)
BASELINE_CACHE = 512


def hole_psnr(filled: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """PSNR (N,) in dB over the hole pixels of each image: ``filled`` and ``clean`` (N, C, H, W) as
    uint8 or float in [0, 1] (rounded to 8-bit levels), ``mask`` bool (N, H, W), True = hole.
    An image without holes gets NaN (nothing was scored)."""
    err = (scores.to_levels(filled) - scores.to_levels(clean)).square().sum(dim=-3)  # (N, H, W)
    holes = mask.to(torch.float64)
    mse = (err * holes).sum(dim=(-2, -1)) / (holes.sum(dim=(-2, -1)) * filled.shape[-3])
    return 10.0 * torch.log10(255.0**2 / mse)


def unpack(targets: torch.Tensor, residual: bool) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """A target (N, C + 1, H, W), or (N, 2C + 1, H, W) with ``residual`` -> the clean uint8 images, the
    holes (bool (N, H, W)), and the first fill the model's outputs are added to (None without)."""
    c = (targets.shape[1] - 1) // 2 if residual else targets.shape[1] - 1
    return targets[:, :c], targets[:, c] > 0, targets[:, c + 1:] if residual else None


def image_of(outputs: torch.Tensor, start: torch.Tensor | None) -> torch.Tensor:
    """The model's image in [0, 1] (not clamped): its outputs, plus the uint8 first fill they correct."""
    return outputs.float() if start is None else outputs.float() + start.to(outputs.device).float() / 255


def composite(output: torch.Tensor, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The filled image in [0, 1]: the model's ``output`` in the holes, the uint8 ``image`` elsewhere."""
    return torch.where(mask.unsqueeze(-3), output.float().clamp(0, 1), image.float() / 255)


class InpaintMeter(ScoreSumsMeter):
    """Loss and per-image mean hole PSNR of the filled images, with the diffusion fill's beside it."""

    KEYS = ("psnr", "baseline_psnr")

    def __init__(self, residual: bool = False) -> None:
        super().__init__()
        self.residual = residual

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        clean, mask, start = unpack(targets.cpu(), self.residual)
        filled = composite(image_of(outputs.detach().cpu(), start), clean, mask)
        self.sums["psnr"] += float(hole_psnr(filled, clean, mask).sum())
        if batch is not None and "baseline" in batch:
            self.sums["baseline_psnr"] += float(hole_psnr(batch["baseline"], clean, mask).sum())
            self.baseline_count += len(targets)
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        out = {"loss": self.loss_sum / n, "psnr": self.sums["psnr"] / n}
        if self.baseline_count:
            out["baseline_psnr"] = self.sums["baseline_psnr"] / self.baseline_count
        return out


def read_mask(path: Path, size: tuple[int, int], image: Path) -> torch.Tensor:
    """A mask file as bool (H, W), True where it is white (>= 128); a mask of another size than its
    image, or not a one-channel image, is a CnnlabError naming both files."""
    import numpy as np
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as pil:
            mode, (w, h) = pil.mode, pil.size
            if mode not in ("L", "1"):
                raise CnnlabError(f"mask {path} is a mode {mode} image; save it as one-channel grey (mode L or 1), "
                                  "white = hole, black = keep")
            if (h, w) != tuple(size):
                raise CnnlabError(f"mask {path} is {w}x{h} but image {image} is {size[1]}x{size[0]}; give each "
                                  "image a mask of its own size")
            values = torch.from_numpy(np.array(pil.convert("L")))
    except (OSError, UnidentifiedImageError) as exc:
        raise CnnlabError(f"mask {path} cannot be read ({exc}); pass a PNG, white = hole") from None
    return values >= 128


def mask_for(image: Path, mask: str | None) -> Path:
    """The mask file of ``image``: --mask FILE (the same for every image), or --mask DIR holding a file
    with the image's stem."""
    if mask is None:
        raise CnnlabError("inpaint predict needs the holes: pass --mask FILE (white = hole) or --mask DIR "
                          "(a mask per image, matched by file stem)")
    root = Path(mask)
    if root.is_dir():
        found = sorted(p for p in root.iterdir() if p.stem == image.stem and p.is_file())
        if not found:
            raise CnnlabError(f"--mask {root} has no mask for {image} (a file named {image.stem}.png)")
        return found[0]
    if not root.is_file():
        raise CnnlabError(f"--mask {root} does not exist; pass a mask file or a folder of masks")
    return root


#: what the model sees in the holes: mid-grey, or the diffusion fill (``cnnlab.data.holes``)
PREFILLS = ("grey", "diffusion")
#: the per-pixel error the loss averages: L1 (medians: sharper fills) or MSE (means: what PSNR scores)
LOSSES = ("l1", "mse")


class InpaintTask(restore.PhotoTask):
    """Fill holes punched on the fly into clean photos; the model sees the image and its hole mask."""

    name = "inpaint"
    primary_metric = "psnr"
    directions = {"loss": "min", "psnr": "max", "baseline_psnr": "max"}
    default_model = "unet_small"
    tta_modes = ("none", "flip")
    input_name = "images_and_mask"
    output_name = "image"

    def __init__(self, hole: int | str | tuple[int, int] | list[int] = (8, 32), cover: float = 0.2, patch: int = 96,
                 valid_weight: float = 0.1, prefill: str = "grey", loss: str = "l1") -> None:
        if prefill not in PREFILLS:
            raise CnnlabError(f"--task-arg prefill={prefill} is not a first fill of the holes; use one of "
                              f"{', '.join(PREFILLS)}")
        if loss not in LOSSES:
            raise CnnlabError(f"--task-arg loss={loss} is not an inpainting loss; use one of {', '.join(LOSSES)}")
        self.prefill, self.pixel_loss = prefill, loss
        low, high = parse_range(hole, "--hole", "--hole 8-32 (pixels)", minimum=1)
        if low != int(low) or high != int(high):
            raise CnnlabError(f"--hole {hole} must be whole pixels, for example --hole 8-32")
        if not 0 < cover < 1:
            raise CnnlabError(f"--task-arg cover={cover} must be between 0 and 1 (the fraction of pixels in holes)")
        if valid_weight < 0:
            raise CnnlabError(f"--task-arg valid_weight={valid_weight} must be >= 0 (the loss weight outside the holes)")
        if patch < 8:
            raise CnnlabError(f"--patch {patch} is too small to learn from; use at least 8 pixels (e.g. 96)")
        if high >= patch:  # make_holes clamps a shape to the crop: the whole patch would be one hole
            raise CnnlabError(f"--hole {hole if isinstance(hole, str) else f'{low:g}-{high:g}'} reaches the "
                              f"--patch {patch} training crops, so a hole can cover a whole crop and leave "
                              f"nothing to fill from; use holes smaller than the patch (e.g. --hole "
                              f"{max(1, patch // 12)}-{max(1, patch // 3)}) or a larger --patch")
        self.hole, self.cover, self.patch, self.valid_weight = (int(low), int(high)), cover, patch, valid_weight

    def input_channels(self, info: dict[str, Any]) -> int:
        return int(info["in_channels"]) + 1  # the hole mask

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        channels = info["in_channels"]
        if requested.get("num_classes", channels) != channels:
            raise CnnlabError(f"--model-arg num_classes={requested['num_classes']}: an inpainter outputs the "
                              f"image's {channels} channel(s); drop it")
        return {"num_classes": channels}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        want = (input_size[0] - 1, *input_size[1:])
        return "" if tuple(output_size) == want else f"a {want} image (the input's channels, without the mask)"

    def _batch(self, images: list[torch.Tensor], generators: list[torch.Generator],
               fill: Any = diffusion_fill) -> Batch:
        masks = torch.stack([make_holes(tuple(im.shape[-2:]), self.hole, self.cover, g)
                             for im, g in zip(images, generators, strict=True)])  # (N, H, W) bool
        clean = torch.stack(images)  # (N, C, H, W) uint8
        parts = [clean, masks.unsqueeze(1).to(torch.uint8) * 255]
        start = self._start(clean, masks, fill)
        if start is not None:
            parts.append(start)
        # target (N, C + 1 [+ C], H, W): the image, the holes, and the first fill the outputs correct
        return {"input": punch(clean, masks, start), "target": torch.cat(parts, dim=1)}

    def _start(self, clean: torch.Tensor, masks: torch.Tensor, fill: Any = diffusion_fill) -> torch.Tensor | None:
        """The first fill of uint8 (N, C, H, W) images' (N, H, W) holes: None (grey holes, the model outputs
        the image), or ``fill(image, mask)`` (the diffusion fill) for ``prefill="diffusion"``."""
        if self.prefill == "grey":
            return None
        return torch.stack([fill(im, m) for im, m in zip(clean, masks, strict=True)])

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        clean = self.train_patches(items, generator, augment)  # (N, C, P, P) uint8
        return self._batch(list(clean), [generator] * len(clean))

    def eval_batch(self, items: Split) -> Batch:
        images = restore.images_of(items)
        batch = self._batch(images, [image_generator(im, SALT) for im in images], self._baseline)
        masks = unpack(batch["target"], self.prefill != "grey")[1]
        batch["baseline"] = torch.stack([self._baseline(im, m) for im, m in zip(images, masks, strict=True)])
        return batch

    def _baseline(self, image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """The diffusion fill of a validation image. Its holes are fixed, so the fill is too: it is
        computed once per image and kept (a 481x321 photo takes ~0.6 s, every epoch otherwise)."""
        cache = self.__dict__.setdefault("_baselines", {})
        key = (zlib.crc32(image.contiguous().numpy().tobytes()), zlib.crc32(mask.numpy().tobytes()), tuple(image.shape))
        if key not in cache:
            if len(cache) >= BASELINE_CACHE:  # bounded memory on large validation sets
                cache.pop(next(iter(cache)))
            cache[key] = diffusion_fill(image, mask)
        return cache[key]

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        clean, mask, start = unpack(targets, self.prefill != "grey")
        image = image_of(outputs, start)
        holes = mask.unsqueeze(1).float().expand_as(image)  # (N, C, H, W)
        diff = image - clean.float() / 255.0
        err = diff.abs() if self.pixel_loss == "l1" else diff.square()
        in_holes = (err * holes).sum() / holes.sum().clamp_min(1)
        rest = (err * (1 - holes)).sum() / (1 - holes).sum().clamp_min(1)
        return in_holes + self.valid_weight * rest

    def meter(self, info: dict[str, Any], training: bool = False) -> InpaintMeter:
        return InpaintMeter(self.prefill != "grey")

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """The model's whole image (N, C, H, W) in [0, 1] (with ``prefill="diffusion"``: its change to
        the fill, see ``fill``); ``composite`` keeps the known pixels."""
        return outputs.float().clamp(0, 1) if self.prefill == "grey" else outputs.float()

    def options(self) -> dict[str, Any]:
        return {"hole": list(self.hole), "cover": self.cover, "patch": self.patch, "valid_weight": self.valid_weight,
                "prefill": self.prefill, "loss": self.pixel_loss}

    def fill(self, run: Any, image: torch.Tensor, mask: torch.Tensor, opts: dict[str, Any] | None = None
             ) -> torch.Tensor:
        """uint8 (C, H, W) and bool (H, W), True = hole -> the filled image in [0, 1] (CPU)."""
        start = self._start(image[None], mask[None])
        x = run.preprocess(punch(image[None], mask[None], start).to(run.device))
        out = restore.tiled_model(run, x, opts or restore.PREDICT_OPTIONS)[0].cpu()
        return composite(image_of(out, None if start is None else start[0]), image, mask)

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per input: OUT/<stem>.png, its holes (white in the --mask file, or in the --mask folder's file
        of the same stem) filled."""
        from cnnlab.data.plain import read_native
        from cnnlab.render.overlays import save_rgb_png
        from cnnlab.tasks.base import check_options

        opts = check_options(self, options, {**restore.PREDICT_OPTIONS, "mask": None})
        if out is None:
            raise CnnlabError("inpaint predictions are images: pass --out DIR")
        rows = []
        with torch.no_grad():
            for path, image in read_native(paths, run.in_channels):
                mask_path = mask_for(path, opts["mask"])
                mask = read_mask(mask_path, tuple(image.shape[-2:]), path)
                written = save_rgb_png(self.fill(run, image, mask, opts), Path(out) / f"{path.stem}.png")
                rows.append({"path": str(path), "mask": str(mask_path), "output": str(written),
                             "holes": round(float(mask.float().mean()), 4)})
        return rows

    def save_example(self, split: Split, i: int, stem: Path, info: dict[str, Any]) -> Path:
        """Item ``i`` as ``stem``.png and its validation holes as masks/<name>.png beside it (white = hole):
        `cnnlab predict RUN stem.png --mask masks/` fills them."""
        from PIL import Image

        from cnnlab.files import atomic_write
        from cnnlab.render.overlays import save_rgb_png

        batch = self.eval_batch(split.take(slice(i, i + 1)))
        clean, holes, _ = unpack(batch["target"], self.prefill != "grey")
        mask = Image.fromarray(holes[0].to(torch.uint8).numpy() * 255)
        target = stem.parent / "masks" / f"{stem.name}.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, lambda p: mask.save(p, format="PNG"))
        return save_rgb_png(clean[0].float() / 255, stem.with_suffix(".png"))

    def _explain_inputs(self, run: Any, raw: torch.Tensor, names: list[str]) -> Any:
        from cnnlab.app.explain import Inputs

        holes = torch.zeros(raw.shape[0], *raw.shape[-2:], dtype=torch.bool)  # explain the model without holes
        return Inputs(raw, run.preprocess(punch(raw, holes).to(run.device)), names)

    def load_inputs(self, run: Any, paths: list[str]) -> Any:
        from cnnlab.data import load_images

        raw, files = load_images(list(paths), image_size=run.image_size or run.input_size, in_channels=run.in_channels)
        if len(files) == 0:
            raise CnnlabError(f"no readable images in {', '.join(map(str, paths))}; pass image files or folders")
        return self._explain_inputs(run, raw, [Path(f).stem for f in files])

    def inputs_from_split(self, run: Any, split: Split, count: int, index: list[int] | None = None) -> Any:
        index = list(range(min(count, len(split)))) if index is None else index[:count]
        sizes = split.sizes()
        index = [i for i in index if sizes[i] == sizes[index[0]]]
        return self._explain_inputs(run, torch.stack([split["image"][i] for i in index]), [f"val {i}" for i in index])

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample, the same centre crop of: the input with its holes (magenta), the model's fill, the
        original, and the diffusion fill, with both fills' hole PSNRs."""
        from cnnlab.render.report import img

        if split is None:
            return restore.no_split_note("inpaint")
        parts = []
        with torch.no_grad():
            for i in range(min(samples, len(split), self.report_items)):
                batch = self.eval_batch(split.take(slice(i, i + 1)))
                clean, mask = (t[0] for t in unpack(batch["target"], self.prefill != "grey")[:2])
                filled = self.fill(run, clean, mask)
                found = float(hole_psnr(filled[None], clean[None], mask[None])[0])
                base = float(hole_psnr(batch["baseline"], clean[None], mask[None])[0])
                magenta = torch.tensor([1.0, 0.0, 1.0][: clean.shape[0]]).view(-1, 1, 1).expand_as(filled)
                holes = torch.where(mask, magenta, clean.float() / 255)
                shown = [holes, filled, clean.float() / 255, batch["baseline"][0].float() / 255]
                path = restore.panels(shown, tmp / f"inpaint_{i}.png")
                parts.append(img(path, f"sample {i}") + f"<p>val {i}: diffusion fill {base:.2f} dB, model {found:.2f} dB "
                             f"(PSNR over the {float(mask.float().mean()):.0%} hole pixels)</p>")
        return restore.section(source, "input with holes (magenta) | model | original | diffusion fill (baseline).",
                               parts)

    def summary(self, metrics: dict[str, float]) -> str:
        line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("psnr", "loss") if k in metrics)
        if "baseline_psnr" in metrics:
            line += f"  (diffusion fill: psnr {metrics['baseline_psnr']:.4f}; PSNR over hole pixels)"
        return line
