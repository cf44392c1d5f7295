"""Semantic segmentation: one class per pixel.

Head and loss (the lecture's question, "what activation and loss make sense?"): K logits per pixel
with a per-pixel softmax and cross-entropy, because every pixel belongs to exactly one class; void
pixels (mask value 255) are left out of the loss and of every metric. ``dice`` adds that weight times
the soft Dice loss, which counts each class by its overlap rather than its pixel count and so helps
small classes (poles, sign symbols) that cross-entropy lets the road and sky drown out.

Metrics: mean IoU over classes (the benchmark number), pixel accuracy, mean Dice, and per-class IoU
from a dataset-level confusion matrix (summed over batches, then scored once).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.data.bundle import IGNORE, Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks import scores
from cnnlab.tasks.base import Augment, Batch, Meter, Task
from cnnlab.tasks.patches import check_patch, random_patches


class SegmentMeter(Meter):
    """Loss and the pixel confusion matrix (rows = true class, columns = predicted), void left out."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.loss_sum = 0.0
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        pred = outputs.detach().argmax(dim=1).cpu()
        self.confusion += scores.confusion_matrix(pred, targets.detach().cpu(), self.num_classes, IGNORE)
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        dice = scores.dice_per_class(self.confusion)
        return {"loss": self.loss_sum / max(self.count, 1), "miou": scores.mean_iou(self.confusion),
                "pixel_acc": scores.pixel_accuracy(self.confusion), "dice": float(torch.nanmean(dice))}

    def per_class(self) -> dict[str, list[float]]:
        """IoU and Dice of every class (NaN where a class is absent from targets and predictions)."""
        return {"iou": scores.iou_per_class(self.confusion).tolist(),
                "dice": scores.dice_per_class(self.confusion).tolist(),
                "pixels": self.confusion.sum(1).tolist()}

    def state(self) -> torch.Tensor:
        head = torch.tensor([self.loss_sum, self.count], dtype=torch.float64)
        return torch.cat([head, self.confusion.flatten().double()])

    def load_state(self, sums: torch.Tensor) -> None:
        self.loss_sum, self.count = float(sums[0]), int(sums[1])
        self.confusion = sums[2:].round().long().view(self.num_classes, self.num_classes)


def soft_dice_loss(logits: torch.Tensor, targets: torch.Tensor, ignore: int = IGNORE) -> torch.Tensor:
    """1 - mean over classes present in the batch of 2|P.T| / (|P| + |T|), with P the softmax
    probabilities and T the one-hot targets, void pixels excluded."""
    probs = logits.float().softmax(dim=1)  # (N, K, H, W)
    valid = (targets != ignore).unsqueeze(1)  # (N, 1, H, W)
    onehot = F.one_hot(targets.clamp(max=logits.shape[1] - 1), logits.shape[1]).permute(0, 3, 1, 2)
    probs, onehot = probs * valid, onehot * valid  # (N, K, H, W)
    inter = (probs * onehot).sum(dim=(0, 2, 3))
    total = probs.sum(dim=(0, 2, 3)) + onehot.sum(dim=(0, 2, 3))
    present = onehot.sum(dim=(0, 2, 3)) > 0
    dice = (2 * inter + 1.0) / (total + 1.0)
    return 1 - dice[present].mean() if present.any() else logits.sum() * 0


class SegmentTask(Task):
    """Per-pixel classification into the data's classes (masks: uint8, 255 = void)."""

    name = "segment"
    primary_metric = "miou"
    directions = {"loss": "min", "miou": "max", "pixel_acc": "max", "dice": "max"}
    data_layout = "masks"
    default_model = "unet"
    tta_modes = ("none", "flip")
    default_augment = "flip"
    writes_images = True
    report_items = 4  # full-size overlays: more would make a long page

    def __init__(self, patch: int | None = None, dice: float = 0.0) -> None:
        if patch is not None and patch < 8:
            raise CnnlabError(f"--patch {patch} is too small to learn from; use at least 8 pixels (e.g. 256)")
        if dice < 0:
            raise CnnlabError(f"--dice {dice} must be >= 0 (the weight of the Dice loss; 0 = cross-entropy only)")
        self.patch, self.dice = patch, dice

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        classes = len(info["class_names"])
        if requested.get("num_classes", classes) != classes:
            raise CnnlabError(f"--model-arg num_classes={requested['num_classes']} does not fit the data's "
                              f"{classes} classes; drop it")
        return {"num_classes": classes}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        want = (kwargs.get("num_classes", 0), *input_size[1:])
        return "" if output_size == want else f"{want} per-pixel class logits"

    def input_size(self, info: dict[str, Any]) -> tuple[int, int]:
        if self.patch is not None:
            return self.patch, self.patch
        h, w = info["image_size"]
        return h, w

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if "mask" not in train:
            raise CnnlabError("task segment needs masks; pass image + mask data")
        if len(info["class_names"]) < 2:
            raise CnnlabError(f"the masks hold {len(info['class_names'])} class; segmentation needs at least 2")
        if self.patch is not None:
            check_patch(train.sizes(), self.patch)
        elif not train.stacked():
            raise CnnlabError("the training images have different sizes; pass --patch N to train on N x N crops")

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        if self.patch is not None:
            fields = random_patches(items, ("image", "mask"), self.patch, generator)
        else:
            fields = {"image": items["image"], "mask": items["mask"]}
        if augment is not None:
            fields = augment(fields, {"image": "image", "mask": "mask"}, generator)
        return {"input": fields["image"], "target": fields["mask"].long()}

    def eval_batch(self, items: Split) -> Batch:
        images, masks = items["image"], items["mask"]
        if not isinstance(images, torch.Tensor):
            images, masks = torch.stack(images), torch.stack(masks)  # one item (eval_batches)
        return {"input": images, "target": masks.long()}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()
        loss = F.cross_entropy(outputs, targets, ignore_index=IGNORE)
        if self.dice:
            loss = loss + self.dice * soft_dice_loss(outputs, targets)
        return loss

    def meter(self, info: dict[str, Any], training: bool = False) -> SegmentMeter:
        return SegmentMeter(len(info["class_names"]))

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Per-pixel class probabilities (N, K, H, W)."""
        return outputs.float().softmax(dim=1)

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per input: OUT/<stem>.png, the class-index mask (one byte per pixel), and
        OUT/<stem>_overlay.png, the classes in colour over the image."""
        from cnnlab.data.plain import read_native
        from cnnlab.render.overlays import mask_overlay, save_mask_png, save_rgb_png
        from cnnlab.tasks.base import check_options

        check_options(self, options, {})
        if out is None:
            raise CnnlabError("segment predictions are images: pass --out DIR")
        rows = []
        with torch.no_grad():
            for path, image in read_native(paths, run.in_channels):
                probs = self.predict(run.model(run.preprocess(image[None].to(run.device))))[0].cpu()  # (K, H, W)
                mask = probs.argmax(dim=0)
                written = save_mask_png(mask, Path(out) / f"{path.stem}.png")
                overlay = save_rgb_png(mask_overlay(image.float() / 255, mask, probs.shape[0]),
                                       Path(out) / f"{path.stem}_overlay.png")
                area = torch.bincount(mask.flatten(), minlength=probs.shape[0]).float() / mask.numel()
                rows.append({"path": str(path), "mask": str(written), "overlay": str(overlay),
                             "classes": {run.class_names[k]: round(float(a), 4) for k, a in enumerate(area) if a > 0}})
        return rows

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample: the image, the true mask and the predicted mask in class colours, then a
        Grad-CAM of the largest predicted class over its region."""
        import html

        from cnnlab.app.report import cam_table
        from cnnlab.render.grids import make_grid, save_image
        from cnnlab.render.overlays import mask_overlay, save_legend
        from cnnlab.render.report import img

        if split is None:
            return super().report_samples(run, split, inputs, source, samples, tmp)
        rows, k = [], len(run.class_names)
        with torch.no_grad():
            for i in range(min(samples, len(split), self.report_items)):
                image, mask = split["image"][i], split["mask"][i]
                pred = run.model(run.preprocess(image[None].to(run.device))).argmax(dim=1)[0].cpu()
                shown = image.float() / 255
                trio = torch.stack([shown.expand(3, -1, -1) if shown.shape[0] == 1 else shown,
                                    mask_overlay(shown, mask.long(), k), mask_overlay(shown, pred, k)])
                rows.append(save_image(make_grid(trio, nrow=3, pad=2, pad_value=1.0), tmp / f"seg_{i}.png", min_side=600))
        from cnnlab.app import explain as runs

        legend = save_legend(run.class_names, tmp / "legend.png")
        return (f"<h2>Sample predictions</h2><p>{html.escape(source)}: image | true mask | predicted mask "
                "(void pixels uncoloured).</p>" + img(legend, "class colours") + "".join(img(p, "sample") for p in rows)
                + cam_table(run, runs.inputs_from_split(run, split, 2), source, tmp)
                .replace("<h2>Sample predictions</h2>", "<h3>Grad-CAM of a class over its predicted region</h3>"))

    def cam_target(self, outputs: torch.Tensor, cls: int | None) -> tuple[Any, list[dict[str, Any]]]:
        """A class over the pixels predicted as it (``cls``, else each batch's largest predicted class
        after the first, which is usually the background)."""
        from cnnlab.explain.cam import PixelTarget

        probs = outputs.float().softmax(dim=1).cpu()  # (N, K, H, W)
        pred = probs.argmax(dim=1)  # (N, H, W)
        if cls is None:
            area = torch.bincount(pred.flatten(), minlength=probs.shape[1])
            order = area.argsort(descending=True).tolist()
            cls = order[1] if len(order) > 1 and area[order[1]] > 0 else order[0]
        picks = []
        for p, labels in zip(probs, pred, strict=True):
            region = labels == cls
            score = float(p[cls][region].mean()) if region.any() else 0.0
            picks.append({"predicted": cls, "probability": score, "target": cls})
        return PixelTarget(cls), picks

    def options(self) -> dict[str, Any]:
        return {"patch": self.patch, "dice": self.dice}

    def plots(self, run_dir: Path, meter: Meter | None, info: dict[str, Any]) -> list[Path]:
        if not isinstance(meter, SegmentMeter):
            return []
        from cnnlab.render.bars import plot_bars
        from cnnlab.render.confusion import plot_confusion

        names = info["class_names"]
        iou = meter.per_class()["iou"]
        return [plot_confusion(meter.confusion, names, run_dir / "confusion.png"),
                plot_bars(iou, names, run_dir / "iou.png", title="IoU per class (validation)", xlabel="IoU")]

    def summary(self, metrics: dict[str, float]) -> str:
        keys = [k for k in ("miou", "pixel_acc", "dice", "loss") if k in metrics]
        return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)
