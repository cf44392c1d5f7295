"""Bounding-box localisation (the lecture's "bounding box prediction"): one box per image, with its
class when the data has classes.

Head: any registered classifier backbone built with ``num_classes = 4 + K``; the task splits its
outputs. The first four are the box as sigmoid(cx, cy, w, h), fractions of the image's width and
height (so the box is always the right way round, x2 >= x1), read as corners x1 = cx - w / 2, ...;
the other K are class logits (none when the data has no classes).

Loss: ``box_weight`` x (``l1`` x L1 of the four normalised corners + ``giou`` x (1 - GIoU)), plus
the class cross-entropy. L1 alone scores a 2-pixel miss on a tiny box like one on a big box; GIoU
(Rezatofighi et al. 2019) is scale-free and, unlike 1 - IoU, still has a gradient when the boxes do
not overlap. The weights 5 and 2 are DETR's. ``box_weight=0`` trains the classes alone: a plain
classifier, whose CAM boxes are then truly weakly supervised.

Metrics (``iou`` first): mean IoU of the predicted boxes with the true ones, ``acc50`` the share with
IoU >= 0.5 (the PASCAL criterion), ``top1`` on the classes, and ``baseline_iou`` / ``baseline_acc50``
of the whole image taken as the box (what a model that knows nothing can claim).

CAM boxes (``cam_iou``, ``cam_acc50``, at evaluation): the Grad-CAM of the model's own predicted class
logit at the backbone's last spatial layer, thresholded at ``cam_threshold`` of its peak, its largest
connected region's box (``cnnlab.explain.cam_boxes``). The same network on the same images, so the two
figures differ only in how the box is read: regressed by the head, or read off the class evidence.
Why the run's own logits rather than a separate classify run: the run directory stays the one thing
``cnnlab eval`` needs, and no second model's preprocessing has to match. The backbone's features were
also trained by the box loss, so for a purely weakly supervised figure train with
``--task-arg box_weight=0`` (classes only) and read that run's ``cam_*``. To score both on the same
images, ``forward`` returns the model's outputs followed by the CAM box (4 more columns, normalised);
``loss`` and ``predict`` read only the model's own columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch, ScoreSumsMeter, Task

BOX = 4  # output columns of the box


# ------------------------------------------------------------------------------------ box geometry
def decode_boxes(raw: torch.Tensor) -> torch.Tensor:
    """(N, 4) raw head outputs -> (N, 4) corners x1, y1, x2, y2 as fractions of the image (may reach
    slightly past [0, 1]; ``predict`` clips them)."""
    c = torch.sigmoid(raw.float())
    half = c[:, 2:] / 2
    return torch.cat([c[:, :2] - half, c[:, :2] + half], dim=1)


def box_area(b: torch.Tensor) -> torch.Tensor:
    return (b[:, 2] - b[:, 0]).clamp(min=0) * (b[:, 3] - b[:, 1]).clamp(min=0)


def _intersection_union(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Areas (N,) of the intersection and the union of matching rows of two (N, 4) box sets."""
    wh = (torch.minimum(a[:, 2:], b[:, 2:]) - torch.maximum(a[:, :2], b[:, :2])).clamp(min=0)
    inter = wh[:, 0] * wh[:, 1]
    return inter, box_area(a) + box_area(b) - inter


def box_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """IoU (N,) of matching rows of two (N, 4) x1, y1, x2, y2 box sets; 0 where both boxes are empty."""
    inter, union = _intersection_union(a, b)
    return torch.where(union > 0, inter / union.clamp(min=1e-12), torch.zeros_like(union))


def generalized_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """GIoU (N,) = IoU - (|C| - |A u B|) / |C|, C the smallest box enclosing both: in [-1, 1], and
    below 0 by how far apart non-overlapping boxes lie."""
    inter, union = _intersection_union(a, b)
    iou = inter / union.clamp(min=1e-12)
    cwh = (torch.maximum(a[:, 2:], b[:, 2:]) - torch.minimum(a[:, :2], b[:, :2])).clamp(min=0)
    hull = cwh[:, 0] * cwh[:, 1]
    return iou - (hull - union) / hull.clamp(min=1e-12)


def normalised(boxes: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Pixel boxes (N, 4) of an (H, W) image -> fractions of its width and height."""
    h, w = size
    return boxes / torch.tensor([w, h, w, h], dtype=boxes.dtype, device=boxes.device)


# ------------------------------------------------------------------------------------------ meter
class LocalizeMeter(ScoreSumsMeter):
    """Sums of IoU, IoU >= 0.5 hits, class hits, and the same for the whole-image and CAM boxes.
    ScoreSumsMeter's ``baseline_count`` counts the images that came with CAM boxes (evaluation only)."""

    KEYS = ("iou", "acc50", "top1", "baseline_iou", "baseline_acc50", "cam_iou", "cam_acc50")

    def __init__(self, classes: int) -> None:
        super().__init__()
        self.classes = classes

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        outputs, targets = outputs.detach().float().cpu(), targets.detach().float().cpu()
        true = targets[:, :BOX]
        self._add("", decode_boxes(outputs[:, :BOX]).clamp(0, 1), true)
        self._add("baseline_", torch.tensor([[0.0, 0.0, 1.0, 1.0]]).expand_as(true), true)
        width = BOX + self.classes
        if self.classes:
            self.sums["top1"] += float((outputs[:, BOX:width].argmax(dim=1) == targets[:, BOX].long()).sum())
        if outputs.shape[1] == width + BOX:  # the CAM boxes ``forward`` appended (evaluation only)
            self._add("cam_", outputs[:, width:], true)
            self.baseline_count += len(targets)
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def _add(self, prefix: str, pred: torch.Tensor, true: torch.Tensor) -> None:
        iou = box_iou(pred, true)
        self.sums[prefix + "iou"] += float(iou.sum())
        self.sums[prefix + "acc50"] += float((iou >= 0.5).sum())

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        found = {"loss": self.loss_sum / n, **{k: self.sums[k] / n for k in ("iou", "acc50")}}
        if self.classes:
            found["top1"] = self.sums["top1"] / n
        found.update({k: self.sums[k] / n for k in ("baseline_iou", "baseline_acc50")})
        if self.baseline_count:
            found.update({k: self.sums[k] / self.baseline_count for k in ("cam_iou", "cam_acc50")})
        return found


class ClassLogit:
    """A CAM target: the logit of ``cls`` (None: each image's predicted class) among the class columns."""

    def __init__(self, classes: int, cls: int | None = None) -> None:
        self.classes, self.cls = classes, cls

    def __call__(self, output: torch.Tensor) -> torch.Tensor:
        logits = output[:, BOX:BOX + self.classes]
        pick = logits.argmax(dim=1) if self.cls is None else torch.full((len(output),), self.cls, device=output.device)
        return logits.gather(1, pick[:, None])[:, 0]


# ------------------------------------------------------------------------------------------- task
class LocalizeTask(Task):
    """One box per image (and its class where the data has classes) on a classifier backbone."""

    name = "localize"
    primary_metric = "iou"
    directions = {"loss": "min", "iou": "max", "acc50": "max", "top1": "max", "baseline_iou": "max",
                  "baseline_acc50": "max", "cam_iou": "max", "cam_acc50": "max"}
    data_layout = "boxes"
    default_model = "mini_xception"
    default_augment = "flip-crop"
    writes_images = True
    output_name = "box_and_logits"

    def __init__(self, l1: float = 5.0, giou: float = 2.0, box_weight: float = 1.0, cam: bool = True,
                 cam_threshold: float = 0.2, cam_layer: str = "auto") -> None:
        for name, value in (("l1", l1), ("giou", giou), ("box_weight", box_weight)):
            if value < 0:
                raise CnnlabError(f"--task-arg {name}={value} must be >= 0 (a loss weight)")
        if not 0.0 < cam_threshold <= 1.0:
            raise CnnlabError(f"--task-arg cam_threshold={cam_threshold} must be in (0, 1] (a fraction of the "
                              "map's peak, e.g. 0.2)")
        self.l1, self.giou, self.box_weight = l1, giou, box_weight
        self.cam, self.cam_threshold, self.cam_layer = cam, cam_threshold, cam_layer
        self.classes = 0  # set by bind_data
        self._layers: dict[int, str] = {}  # id(model) -> the CAM layer found for it

    def bind_data(self, info: dict[str, Any]) -> None:
        self.classes = len(info["class_names"])

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        width = BOX + len(info["class_names"])
        if requested.get("num_classes", width) != width:
            raise CnnlabError(f"--model-arg num_classes={requested['num_classes']}: a box head outputs 4 box "
                              f"values + {width - BOX} class logits = {width}; drop it")
        return {"num_classes": width}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        k = kwargs.get("num_classes", 0)
        return "" if tuple(output_size) == (k,) else f"({k},) outputs (4 box values + class logits)"

    def input_size(self, info: dict[str, Any]) -> tuple[int, int]:
        h, w = info["image_size"]
        return h, w

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if "boxes" not in train:
            raise CnnlabError("task localize needs boxes: masks (builtin:shapes, images/ + masks/) or a folder "
                              "with boxes.csv")
        if not train.stacked():
            raise CnnlabError("localize needs images of one size; pass --image-size")

    # --- batches ---------------------------------------------------------------------------------
    def _batch(self, images: torch.Tensor, boxes: torch.Tensor, labels: torch.Tensor | None) -> Batch:
        # target: (N, 5) normalised x1, y1, x2, y2 and the class (-1: the data has none)
        label = labels.float() if labels is not None else torch.full((len(boxes),), -1.0)
        return {"input": images, "target": torch.cat([normalised(boxes, tuple(images.shape[-2:])), label[:, None]], 1)}

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        fields = {"image": items["image"], "boxes": items["boxes"]}
        if augment is not None:
            fields = augment(fields, {"image": "image", "boxes": "boxes"}, generator)
        return self._batch(fields["image"], fields["boxes"], items.fields.get("label"))

    def eval_batch(self, items: Split) -> Batch:
        return self._batch(items["image"], items["boxes"], items.fields.get("label"))

    # --- loss, metrics, outputs ------------------------------------------------------------------
    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs, targets = outputs.float(), targets.float()
        pred, true = decode_boxes(outputs[:, :BOX]), targets[:, :BOX]
        box = self.l1 * (pred - true).abs().mean() + self.giou * (1 - generalized_iou(pred, true)).mean()
        loss = self.box_weight * box
        if self.classes:
            loss = loss + F.cross_entropy(outputs[:, BOX:BOX + self.classes], targets[:, BOX].long())
        return loss

    def meter(self, info: dict[str, Any], training: bool = False) -> LocalizeMeter:
        return LocalizeMeter(len(info["class_names"]))

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """(N, 4 + K): the box as fractions of the image (clipped to it), then class probabilities."""
        outputs = outputs.float()
        boxes = decode_boxes(outputs[:, :BOX]).clamp(0, 1)
        return torch.cat([boxes, outputs[:, BOX:BOX + self.classes].softmax(dim=1)], dim=1)

    def forward(self, model: nn.Module, inputs: torch.Tensor, tta: str = "none") -> torch.Tensor:
        """The model's outputs, then (with classes and ``cam``) the CAM box as fractions (module doc)."""
        outputs = model(inputs).float()
        if not (self.cam and self.classes):
            return outputs
        boxes = self.cam_boxes(model, inputs)
        return torch.cat([outputs, normalised(boxes, tuple(inputs.shape[-2:])).to(outputs.device)], dim=1)

    def cam_boxes(self, model: nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """Pixel boxes (N, 4) read off the Grad-CAM of each image's predicted class (CPU)."""
        from cnnlab.explain.cam_boxes import cam_boxes
        from cnnlab.explain.layers import last_spatial_layer

        layer = self.cam_layer
        if layer == "auto":  # found once per model: it costs a forward pass with hooks
            if id(model) not in self._layers:
                self._layers[id(model)] = last_spatial_layer(model, inputs[:1])
            layer = self._layers[id(model)]
        return cam_boxes(model, inputs, layer, ClassLogit(self.classes), self.cam_threshold)

    def cam_target(self, outputs: torch.Tensor, cls: int | None) -> tuple[Any, list[dict[str, Any]]]:
        if not self.classes:
            return super().cam_target(outputs, cls)
        probs = outputs[:, BOX:BOX + self.classes].float().softmax(dim=1).cpu()
        picks = [{"predicted": int(p.argmax()), "probability": float(p.max()),
                  "target": int(p.argmax()) if cls is None else cls} for p in probs]
        return ClassLogit(self.classes, cls), picks

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Per image: OUT/<stem>_box.png, the image with its box (and class) drawn at its own size, and
        one row of OUT/boxes.csv: path, x1, y1, x2, y2 in the file's pixels, class, probability."""
        from cnnlab.data.plain import read_native
        from cnnlab.tasks.base import check_options

        check_options(self, options, {})
        if out is None:
            raise CnnlabError("localize predictions are images with boxes and a CSV: pass --out DIR")
        rows = []
        with torch.no_grad():
            for path, image in read_native(paths, run.in_channels):
                h, w = image.shape[-2:]
                x = F.interpolate(image[None].float(), size=run.image_size, mode="bilinear", antialias=True,
                                  align_corners=False).round().clamp(0, 255).to(torch.uint8)
                pred = self.predict(run.model(run.preprocess(x.to(run.device))))[0].cpu()
                box = [round(float(v), 1) for v in pred[:BOX] * torch.tensor([w, h, w, h])]
                row: dict[str, Any] = {"path": str(path), "box": box}
                if self.classes:
                    k = int(pred[BOX:].argmax())
                    row.update({"class": run.class_names[k], "probability": round(float(pred[BOX + k]), 4)})
                row["output"] = str(draw_box(image, box, row.get("class", ""), Path(out) / f"{path.stem}_box.png"))
                rows.append(row)
        write_box_csv(rows, Path(out) / "boxes.csv")
        return rows

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Per sample, side by side: the true box (green), the box head's (red) and, with classes, the box
        read off the Grad-CAM of the predicted class (blue: the weakly supervised baseline), each with its
        IoU. Images passed with --inputs have no true box: they get the Grad-CAM table."""
        import numpy as np

        from cnnlab.render.report import img
        from cnnlab.tasks import restore

        if split is None:
            return super().report_samples(run, split, inputs, source, samples, tmp)
        batch = self.eval_batch(split.take(slice(0, min(samples, len(split)))))
        images, size = batch["input"], tuple(batch["input"].shape[-2:])
        outputs = self.forward(run.model, run.preprocess(images.to(run.device))).detach().float().cpu()
        k = BOX + self.classes
        scale = torch.tensor([size[1], size[0], size[1], size[0]], dtype=torch.float32)
        true, pred = batch["target"][:, :BOX], self.predict(outputs[:, :k])[:, :BOX]
        cam = outputs[:, k:k + BOX] if outputs.shape[1] > k else None
        parts = []
        for i, image in enumerate(images):
            shown = [(true, (0, 200, 0), "true"), (pred, (255, 0, 0), "box head")]
            shown += [(cam, (0, 90, 255), "CAM box")] if cam is not None else []
            tiles = [torch.from_numpy(np.array(outlined(image, [((b[i] * scale).tolist(), colour, "")])))
                     .permute(2, 0, 1).float() / 255 for b, colour, _ in shown]
            path = restore.panels(tiles, tmp / f"localize_{i}.png")
            ious = ", ".join(f"{name} IoU {float(box_iou(b[i:i + 1], true[i:i + 1])[0]):.2f}"
                             for b, _, name in shown[1:])
            label = f" ({run.class_names[int(outputs[i, BOX:k].argmax())]})" if self.classes else ""
            parts.append(img(path, f"sample {i}") + f"<p>val {i}{label}: {ious}</p>")
        return restore.section(source, "true box (green) | box head (red)" + (" | box read off Grad-CAM (blue)"
                                                                             if cam is not None else "") + ".", parts)

    def options(self) -> dict[str, Any]:
        return {"l1": self.l1, "giou": self.giou, "box_weight": self.box_weight, "cam": self.cam,
                "cam_threshold": self.cam_threshold, "cam_layer": self.cam_layer}

    def summary(self, metrics: dict[str, float]) -> str:
        line = "  ".join(f"{k} {metrics[k]:.4f}" for k in ("iou", "acc50", "top1", "loss") if k in metrics)
        if "cam_iou" in metrics:
            line += f"  (CAM boxes: iou {metrics['cam_iou']:.4f} acc50 {metrics['cam_acc50']:.4f})"
        if "baseline_iou" in metrics:
            line += f"  (whole image: iou {metrics['baseline_iou']:.4f})"
        return line


# ------------------------------------------------------------------------------------------ files
def outlined(image: torch.Tensor, boxes: list[tuple[list[float], tuple[int, int, int], str]]) -> Any:
    """uint8 (C, H, W) ``image`` as an RGB PIL image with each (box in pixels, colour, label) outlined."""
    import numpy as np
    from PIL import Image, ImageDraw

    array = image.expand(3, -1, -1).permute(1, 2, 0).contiguous().numpy() if image.shape[0] == 1 \
        else image.permute(1, 2, 0).contiguous().numpy()
    pil = Image.fromarray(np.ascontiguousarray(array), "RGB")
    draw = ImageDraw.Draw(pil)
    line = max(1, round(min(pil.size) / 100))
    for box, colour, label in boxes:
        # pixel-edge x2 is one past the last pixel; PIL's rectangle includes its end point
        draw.rectangle([box[0], box[1], max(box[0], box[2] - 1), max(box[1], box[3] - 1)], outline=colour,
                       width=line)
        if label:
            draw.text((box[0] + 2, max(0, box[1] - 11)), label, fill=colour)
    return pil


def draw_box(image: torch.Tensor, box: list[float], label: str, path: Path) -> Path:
    """uint8 (C, H, W) ``image`` with ``box`` (pixels) outlined in red and ``label`` above it, as a PNG."""
    from cnnlab.files import atomic_write

    pil = outlined(image, [(box, (255, 0, 0), label)])
    return atomic_write(path, lambda p: pil.save(p, format="PNG"))


def write_box_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    """path,x1,y1,x2,y2[,class,probability] per row (the boxes.csv layout training reads, plus the score)."""
    import csv
    import io

    from cnnlab.files import atomic_write

    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    has_class = any("class" in r for r in rows)
    writer.writerow(["file", "x1", "y1", "x2", "y2", *(["label", "probability"] if has_class else [])])
    for r in rows:
        writer.writerow([r["path"], *r["box"], *([r["class"], r["probability"]] if has_class else [])])
    data = buf.getvalue().encode("utf-8", "surrogateescape")
    return atomic_write(path, lambda p: p.write_bytes(data))
