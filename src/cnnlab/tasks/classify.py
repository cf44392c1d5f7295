"""Image classification: N-way softmax cross-entropy, or one logit with a sigmoid for two classes.

A model built with N outputs is trained with softmax cross-entropy; a model built with a single output
column (``num_classes=1``) is a binary classifier trained with binary cross-entropy, and its
predictions are still returned as two probabilities (class 0, class 1) so callers never branch.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from cnnlab.tasks.base import Meter, Task


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

    def update(self, outputs: torch.Tensor, targets: torch.Tensor, loss: torch.Tensor) -> None:
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


class ClassifyTask(Task):
    """Classification of whole images into ``num_classes`` classes."""

    name = "classify"
    primary_metric = "top1"
    spatial_targets = False

    def __init__(self, label_smoothing: float = 0.0) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        self.label_smoothing = label_smoothing

    def num_outputs(self, num_classes: int) -> int:
        return num_classes

    def loss(self, outputs: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        outputs = outputs.float()  # the loss in fp32 even under autocast: log-softmax needs the range
        if outputs.shape[1] == 1:
            # Binary single logit: smoothing pulls the 0/1 target towards 0.5 by the same amount.
            target = targets.float() * (1 - self.label_smoothing) + 0.5 * self.label_smoothing
            return F.binary_cross_entropy_with_logits(outputs[:, 0], target)
        return F.cross_entropy(outputs, targets, label_smoothing=self.label_smoothing)

    def meter(self, num_classes: int) -> ClassifyMeter:
        return ClassifyMeter(max(num_classes, 2))

    def predict(self, outputs: torch.Tensor) -> torch.Tensor:
        """Class probabilities (N, C); a single-logit binary model gives (N, 2)."""
        return _probabilities(outputs)

    def options(self) -> dict[str, Any]:
        return {"label_smoothing": self.label_smoothing}
