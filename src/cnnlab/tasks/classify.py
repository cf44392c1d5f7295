"""Image classification: N-way softmax cross-entropy, or one logit with a sigmoid for two classes.

A model built with N outputs is trained with softmax cross-entropy; a model built with a single output
column (``num_classes=1``) is a binary classifier trained with binary cross-entropy, and its
predictions are still returned as two probabilities (class 0, class 1) so callers never branch.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from cnnlab.data.bundle import Split
from cnnlab.errors import CnnlabError
from cnnlab.tasks.base import Augment, Batch, Meter, Task


def _probabilities(outputs: torch.Tensor) -> torch.Tensor:
    """(N, C) logits -> (N, C) probabilities; one logit column -> (N, 2) probabilities."""
    outputs = outputs.float()
    if outputs.shape[1] == 1:
        p = torch.sigmoid(outputs)
        return torch.cat([1 - p, p], dim=1)
    return outputs.softmax(dim=1)


class ClassifyMeter(Meter):
    """Loss, top-1, top-5 and the confusion matrix (rows = true class, columns = predicted)."""

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
        self.loss_sum = 0.0
        self.top5_correct = 0
        self.count = 0

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor,
               batch: Batch | None = None) -> None:
        probs = _probabilities(outputs.detach()).cpu()
        targets = targets.detach().cpu()
        pred = probs.argmax(dim=1)
        flat = targets * self.num_classes + pred
        self.confusion += torch.bincount(flat, minlength=self.num_classes**2).view_as(self.confusion)
        k = min(5, probs.shape[1])
        topk = probs.topk(k, dim=1).indices
        self.top5_correct += int((topk == targets[:, None]).any(dim=1).sum())
        self.loss_sum += float(loss) * len(targets)
        self.count += len(targets)

    def compute(self) -> dict[str, float]:
        n = max(self.count, 1)
        return {
            "loss": self.loss_sum / n,
            "top1": float(self.confusion.diagonal().sum()) / n,
            "top5": self.top5_correct / n,
        }

    def per_class(self) -> dict[str, list[float]]:
        """Precision and recall of every class (0 where a class was never predicted / present)."""
        cm = self.confusion.double()
        tp = cm.diagonal()
        precision = torch.where(cm.sum(0) > 0, tp / cm.sum(0).clamp(min=1), torch.zeros_like(tp))
        recall = torch.where(cm.sum(1) > 0, tp / cm.sum(1).clamp(min=1), torch.zeros_like(tp))
        return {"precision": precision.tolist(), "recall": recall.tolist(), "support": cm.sum(1).tolist()}

    def state(self) -> torch.Tensor:
        head = torch.tensor([self.loss_sum, self.top5_correct, self.count], dtype=torch.float64)
        return torch.cat([head, self.confusion.flatten().double()])

    def load_state(self, sums: torch.Tensor) -> None:
        self.loss_sum = float(sums[0])
        self.top5_correct = int(sums[1])
        self.count = int(sums[2])
        self.confusion = sums[3:].round().long().view(self.num_classes, self.num_classes)


def num_classes(info: dict[str, Any] | int) -> int:
    """The class count of data ``info`` (an int is taken as the count itself)."""
    return info if isinstance(info, int) else len(info["class_names"])


class ClassifyTask(Task):
    """Classification of whole images into the data's classes."""

    name = "classify"
    primary_metric = "top1"
    directions = {"loss": "min", "top1": "max", "top5": "max"}
    data_layout = "labels"
    default_model = "mini_xception"
    tta_modes = ("none", "flip", "flip-translate")
    default_augment = "flip-crop"

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise CnnlabError(f"--label-smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing
        self.info: dict[str, Any] = {}
        self.dct = False  # inputs are JPEG DCT coefficients (cnnlab.tasks.dct_input), set by bind_data

    def bind_data(self, info: dict[str, Any]) -> None:
        self.info = info
        self.dct = info.get("input") == "dct"
        if self.dct:
            from cnnlab.tasks import dct_input

            self.tta_modes = dct_input.TTA_MODES

    def data_options_like(self, info: dict[str, Any]) -> dict[str, Any]:
        # other folders are read as the run's were: coefficients, or RGB cropped without resizing
        return {k: info[k] for k in ("input", "fit") if k in info}

    def input_normalizer(self, x: Any) -> Any:
        if not self.dct:
            return super().input_normalizer(x)
        from cnnlab.dct.data import frequency_stats
        from cnnlab.rundir import Normalize

        mean, std = frequency_stats(x)
        return Normalize(mean, std, scale=1.0)

    def make_augment(self, name: str) -> Augment | None:
        if not self.dct:
            return super().make_augment(name)
        from cnnlab.tasks import dct_input

        return dct_input.make_augment(name, self.info)

    def head_kwargs(self, info: dict[str, Any], requested: dict[str, Any]) -> dict[str, Any]:
        classes = num_classes(info)
        # --model-arg num_classes=1 on two classes asks for one logit (sigmoid / BCE); nothing else may
        # change the head size the data needs.
        wanted = requested.get("num_classes", classes)
        if wanted != classes and not (wanted == 1 and classes == 2):
            raise CnnlabError(f"--model-arg num_classes={wanted} does not fit the data's {classes} classes; "
                              f"drop it (or use num_classes=1 for a single-logit binary classifier)")
        return {"num_classes": wanted}

    def check_output(self, input_size: tuple[int, ...], output_size: tuple[int, ...], kwargs: dict[str, Any]) -> str:
        k = kwargs.get("num_classes", 0)
        return "" if output_size == (k,) else f"({k},) class logits"

    def input_size(self, info: dict[str, Any]) -> tuple[int, int]:
        if info.get("input") == "dct":  # the model's grid of 16-px cells
            from cnnlab.tasks import dct_input

            return dct_input.grid(info)
        h, w = info["image_size"]
        return h, w

    def check_data(self, info: dict[str, Any], train: Split, val: Split) -> None:
        if not train.stacked():
            raise CnnlabError("classification needs images of one size; pass --image-size")

    def train_batch(self, items: Split, generator: torch.Generator, augment: Augment | None) -> Batch:
        field = items.primary  # 'image', or 'dct' for coefficient inputs
        x = items[field]
        if augment is not None:
            x = augment({field: x}, {field: items.kinds[field]}, generator)[field]
        return {"input": x, "target": items["label"]}

    def eval_batch(self, items: Split) -> Batch:
        return {"input": items.x, "target": items["label"]}

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()  # the loss in fp32 even under autocast: log-softmax needs the range
        if outputs.shape[1] == 1:
            # Binary single logit: smoothing pulls the 0/1 target towards 0.5 by the same amount.
            target = targets.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            return F.binary_cross_entropy_with_logits(outputs[:, 0], target)
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def meter(self, info: dict[str, Any] | int, training: bool = False) -> ClassifyMeter:
        return ClassifyMeter(max(num_classes(info), 2))

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C); a single-logit binary model gives (N, 2)."""
        return _probabilities(outputs)

    def forward(self, model: nn.Module, inputs: torch.Tensor, tta: str = "none") -> torch.Tensor:
        if self.dct:
            from cnnlab.tasks import dct_input

            return dct_input.tta_flip(model, inputs, tta)
        return tta_outputs(model, inputs, tta)

    def predict_files(self, run: Any, paths: list[str], out: Path | None, options: dict[str, Any]
                      ) -> list[dict[str, Any]]:
        """Rows of the top-k (class, probability) pairs, best first (``options``: top_k, default 3)."""
        from cnnlab.tasks.base import check_options

        top_k = check_options(self, options, {"top_k": 3})["top_k"]
        if top_k < 1:
            raise CnnlabError("--top-k must be at least 1")
        x, files = self._read_files(run, paths)
        rows = []
        with torch.no_grad():
            for i in range(0, len(x), 64):
                probs = self.predict(run.model(run.preprocess(x[i:i + 64].to(run.device)))).cpu()
                values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
                for j in range(len(probs)):
                    top = [{"class": run.class_names[int(c)], "probability": round(float(p), 6)}
                           for p, c in zip(values[j], indices[j], strict=True)]
                    rows.append({"path": str(files[i + j]), "top": top})
        return rows

    def _read_files(self, run: Any, paths: list[str]) -> tuple[torch.Tensor, list[Any]]:
        """Files as the run's model takes them (before preprocessing): images, or DCT coefficients."""
        if self.dct:
            from cnnlab.tasks import dct_input

            return dct_input.load_files(run, paths)
        from cnnlab.data import load_images

        return load_images(paths, image_size=run.image_size, in_channels=run.in_channels,
                           fit_mode=self.info.get("fit", "resize"))

    def load_inputs(self, run: Any, paths: list[str]) -> Any:
        if not self.dct and "fit" not in self.info:
            return super().load_inputs(run, paths)
        from cnnlab.app.explain import Inputs

        x, files = self._read_files(run, paths)
        return Inputs(self._display(x), run.preprocess(x.to(run.device)), [Path(f).stem for f in files])

    def inputs_from_split(self, run: Any, split: Split, count: int, index: list[int] | None = None) -> Any:
        if not self.dct:
            return super().inputs_from_split(run, split, count, index)
        from cnnlab.app.explain import Inputs

        index = list(range(min(count, len(split)))) if index is None else index[:count]
        x = split.x[torch.tensor(index, dtype=torch.int64)]
        labels = [int(split["label"][i]) for i in index]
        return Inputs(self._display(x), run.preprocess(x.to(run.device)), [f"val {i}" for i in index], labels)

    def _display(self, x: torch.Tensor) -> torch.Tensor:
        """What explain and the report draw: the images themselves (decoded from DCT inputs)."""
        if not self.dct:
            return x
        from cnnlab.tasks import dct_input

        return dct_input.to_rgb(x)

    def save_cam(self, run: Any, inputs: Any, i: int, cam: torch.Tensor, path: Path) -> Path:
        if not self.dct:
            return super().save_cam(run, inputs, i, cam, path)
        from cnnlab.render.overlays import save_overlay
        from cnnlab.tasks import dct_input

        image = inputs.raw[i].float() / 255
        return save_overlay(image, dct_input.cam_to_image(cam, image), path)

    def filter_input(self, run: Any) -> tuple[nn.Module | None, int, tuple[int, ...]]:
        if not self.dct:
            return super().filter_input(run)
        from cnnlab.tasks import dct_input

        h, w = run.input_size  # the ascent works on RGB pixels, encoded to coefficients on the way in
        return dct_input.PixelsToDct(), 3, (16 * h, 16 * w)

    def describe_input(self, run: Any) -> str:
        if not self.dct:
            return super().describe_input(run)
        h, w = run.image_size
        return f"JPEG DCT coefficients (384 channels: Y, Cb, Cr in zig-zag order), {h}x{w} px centre crop"

    def report_samples(self, run: Any, split: Split | None, inputs: Any, source: str, samples: int,
                       tmp: Path) -> str:
        """Class-balanced validation images with Grad-CAM, the mistakes among them last (the most
        confident first)."""
        from cnnlab.app import explain as runs
        from cnnlab.app.report import cam_table

        if inputs is not None or split is None:
            return super().report_samples(run, split, inputs, source, samples, tmp)
        # ``split`` holds only the items shown (chosen class-balanced, the only ones decoded), so the
        # mistakes come from among them rather than from a search of the whole validation split.
        with torch.no_grad():
            probs = self.predict(self.forward(run.model, run.preprocess(split.x[:samples].to(run.device)))).cpu()
        labels = split.y[:len(probs)]
        confidence, pred = probs.max(dim=1)
        wrong = (pred != labels).nonzero().flatten()
        mistakes = wrong[confidence[wrong].argsort(descending=True)].tolist()
        right = (pred == labels).nonzero().flatten().tolist()
        data = runs.inputs_from_split(run, split, samples, right + mistakes)
        note = f" (class-balanced; the last {len(mistakes)} are mistakes, the most confident first)" if mistakes \
            else " (class-balanced; no mistakes among them)"
        return cam_table(run, data, source, tmp, note)

    def cam_target(self, outputs: torch.Tensor, cls: int | None) -> tuple[Any, list[dict[str, Any]]]:
        probs = _probabilities(outputs).cpu()
        picks = []
        for row in probs:
            pred = int(row.argmax())
            picks.append({"predicted": pred, "probability": float(row[pred]), "target": pred if cls is None else cls})
        return cls, picks  # None: compute_cam explains each image's predicted class

    def options(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}

    def plots(self, run_dir: Path, meter: Meter | None, info: dict[str, Any]) -> list[Path]:
        if not isinstance(meter, ClassifyMeter):
            return []
        from cnnlab.render.confusion import plot_confusion

        return [plot_confusion(meter.confusion, info["class_names"], run_dir / "confusion.png")]

    def summary(self, metrics: dict[str, float]) -> str:
        # top-5 is always 1.0 with 5 classes or fewer: not worth a column there
        keys = [k for k in ("top1", "top5", "loss") if k in metrics]
        return "  ".join(f"{k} {metrics[k]:.4f}" for k in keys)


def tta_outputs(model: nn.Module, inputs: torch.Tensor, tta: str) -> torch.Tensor:
    """The model's float outputs for ``inputs``, averaged over test-time augmentations (airbench's
    levels): 'none' plain, 'flip' the mean with the mirror image, 'flip-translate' half that mean and
    half the mean of the four mirrored / unmirrored copies shifted one pixel up-left and down-right
    (reflect padding). Per-image logits keep their meaning under a mirror or a one-pixel shift."""
    outputs = model(inputs).float()
    if tta == "none":
        return outputs
    outputs = 0.5 * (outputs + model(inputs.flip(-1)).float())
    if tta == "flip":
        return outputs
    padded = F.pad(inputs, (1, 1, 1, 1), mode="reflect")
    shifted = (padded[:, :, :-2, :-2], padded[:, :, 2:, 2:])
    extra = sum(model(s).float() + model(s.flip(-1)).float() for s in shifted) / 4
    return 0.5 * outputs + 0.5 * extra
