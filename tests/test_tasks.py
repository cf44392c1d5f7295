"""Task specs: lookup with did-you-mean, the classification loss, predictions and metrics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import CnnlabError
from cnnlab.tasks import TASK_NAMES, get_task


def test_unknown_task_suggests_the_close_name() -> None:
    with pytest.raises(CnnlabError, match="did you mean: classify"):
        get_task("clasify")


def test_every_task_of_the_design_builds_at_its_defaults() -> None:
    assert set(TASK_NAMES) == {"classify", "segment", "superres", "denoise", "inpaint", "compress", "localize",
                               "audio"}
    for name in TASK_NAMES:
        task = get_task(name)
        assert task.name == name and task.primary_metric in task.directions, name


def test_classify_loss_is_cross_entropy_with_smoothing() -> None:
    logits, y = torch.randn(5, 4), torch.tensor([0, 3, 1, 1, 2])
    assert torch.allclose(get_task("classify").loss(logits, y), F.cross_entropy(logits, y))
    smoothed = get_task("classify", label_smoothing=0.2).loss(logits, y)
    assert torch.allclose(smoothed, F.cross_entropy(logits, y, label_smoothing=0.2))


def test_single_logit_is_binary_with_two_probabilities() -> None:
    task = get_task("classify")
    logits, y = torch.tensor([[2.0], [-1.0]]), torch.tensor([1, 0])
    probs = task.predict(logits)
    assert probs.shape == (2, 2)
    assert torch.allclose(probs[:, 1], torch.sigmoid(logits[:, 0]))
    assert torch.allclose(probs.sum(1), torch.ones(2))
    assert torch.allclose(task.loss(logits, y), F.binary_cross_entropy_with_logits(logits[:, 0], y.float()))
    meter = task.meter(1)
    meter.update(logits, y, task.loss(logits, y))
    assert meter.compute()["top1"] == 1.0


def test_meter_top1_top5_confusion_and_per_class() -> None:
    task = get_task("classify")
    # 7 classes; example 0 right, example 1 wrong but 2nd best, example 2 wrong and last.
    logits = torch.zeros(3, 7)
    logits[0, 2] = 5
    logits[1, 0], logits[1, 4] = 5, 4  # true 4
    logits[2, :] = torch.arange(7.0)  # true 0: lowest score, outside the top 5
    y = torch.tensor([2, 4, 0])
    meter = task.meter(7)
    meter.update(logits, y, torch.tensor(1.5))
    m = meter.compute()
    assert m["top1"] == pytest.approx(1 / 3)
    assert m["top5"] == pytest.approx(2 / 3)
    assert m["loss"] == pytest.approx(1.5)
    assert meter.confusion[2, 2] == 1 and meter.confusion[4, 0] == 1 and meter.confusion[0, 6] == 1
    stats = meter.per_class()
    assert stats["recall"][2] == 1.0 and stats["recall"][4] == 0.0
    assert stats["precision"][0] == 0.0  # predicted once (for the true 4), wrongly
    restored = task.meter(7)
    restored.load_state(meter.state())
    assert restored.compute() == m and torch.equal(restored.confusion, meter.confusion)


def test_each_task_says_which_way_its_metrics_improve() -> None:
    from cnnlab.tasks import better

    assert better(get_task("classify"), "top1", 0.9, 0.8) and better(get_task("classify"), "loss", 0.1, 0.2)
    assert better(get_task("superres"), "psnr", 30.0, 29.0) and not better(get_task("superres"), "loss", 0.3, 0.2)
    assert get_task("segment").directions["miou"] == "max"
