"""Task localize: box geometry against hand-computed cases, box transforms against transformed masks,
bad boxes refused, the loss falling on tiny builtin:shapes, and CAM boxes against chance."""

from __future__ import annotations

import pytest
import torch

from cnnlab.data.boxes import boxes_from_masks, check_boxes, load_box_csv
from cnnlab.data.transforms import Compose, HorizontalFlip, RandomCrop, RandomResizedCrop
from cnnlab.errors import CnnlabError
from cnnlab.explain.cam_boxes import boxes_from_cams, connected_components, largest_component
from cnnlab.tasks import get_task
from cnnlab.tasks.localize import box_iou, generalized_iou


def test_iou_and_giou_match_hand_computed_cases() -> None:
    a = torch.tensor([[0.0, 0.0, 2.0, 2.0], [0.0, 0.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]])
    b = torch.tensor([[1.0, 1.0, 3.0, 3.0], [0.0, 0.0, 1.0, 1.0], [2.0, 0.0, 3.0, 1.0]])
    # overlap 1 of union 4 + 4 - 1 = 7; hull 3x3 = 9 -> GIoU 1/7 - (9 - 7)/9
    assert box_iou(a, b).tolist() == pytest.approx([1 / 7, 1.0, 0.0])
    assert generalized_iou(a, b).tolist() == pytest.approx([1 / 7 - 2 / 9, 1.0, 0.0 - (3 - 2) / 3])


def test_boxes_from_masks_use_pixel_edges_and_the_majority_class() -> None:
    masks = torch.zeros(2, 6, 8, dtype=torch.uint8)
    masks[0, 1:4, 2:5] = 3  # rows 1..3, columns 2..4
    masks[0, 3, 5] = 1
    boxes, labels, found = boxes_from_masks(masks)
    assert boxes[0].tolist() == [2.0, 1.0, 6.0, 4.0] and labels[0] == 2 and found.tolist() == [True, False]


def _blob_masks(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    masks = torch.zeros(n, size, size, dtype=torch.uint8)
    for i in range(n):
        x1, y1 = torch.randint(0, size - 6, (2,), generator=gen).tolist()
        w, h = torch.randint(3, 7, (2,), generator=gen).tolist()
        masks[i, y1:y1 + h, x1:x1 + w] = 1
    return masks


@pytest.mark.parametrize("transform", [HorizontalFlip(1.0), HorizontalFlip(0.5),
                                       RandomCrop(padding=5, mode="constant"),
                                       RandomCrop(padding=2, size=20, mode="constant"),
                                       Compose([RandomCrop(padding=4, mode="constant"), HorizontalFlip()])])
def test_box_transforms_match_the_transformed_masks(transform) -> None:  # noqa: ANN001
    gen = torch.Generator().manual_seed(0)
    masks = _blob_masks(32, 24, gen)
    boxes, _, _ = boxes_from_masks(masks)
    params = transform.sample(len(masks), gen)
    moved = transform.apply(params, masks)
    moved[moved == 255] = 0  # padding is void, not object
    expected, _, found = boxes_from_masks(moved)
    got, size = transform.apply_boxes(params, boxes, (24, 24))
    assert size == tuple(moved.shape[-2:])
    assert torch.equal(got[found], expected[found])


def test_resized_crop_boxes_match_the_masks_within_a_pixel() -> None:
    gen = torch.Generator().manual_seed(1)
    masks = _blob_masks(32, 32, gen)
    boxes, _, _ = boxes_from_masks(masks)
    crop = RandomResizedCrop(size=48, scale=(0.6, 1.0))
    params = crop.sample(len(masks), gen)
    expected, _, found = boxes_from_masks(crop.apply(params, masks))
    got, _ = crop.apply_boxes(params, boxes, (32, 32))
    assert found.sum() > 20
    assert (got[found] - expected[found]).abs().max() <= 1.5  # nearest-neighbour resampling of the mask


def test_flip_refuses_a_box_tensor_instead_of_reversing_its_rows() -> None:
    flip = HorizontalFlip(1.0)
    boxes = torch.tensor([[1.0, 2.0, 5.0, 6.0]])
    with pytest.raises(ValueError):
        flip.apply(flip.sample(1), boxes)
    assert flip.apply_boxes(flip.sample(1), boxes, (10, 20))[0].tolist() == [[15.0, 2.0, 19.0, 6.0]]


@pytest.mark.parametrize("box, words", [([0, 0, 40, 5], "outside"), ([8, 2, 3, 6], "x2 < x1"),
                                        ([-1, 0, 3, 3], "outside")])
def test_bad_boxes_are_refused_naming_the_row(box, words) -> None:  # noqa: ANN001
    with pytest.raises(CnnlabError, match=words) as info:
        check_boxes(torch.tensor([[0.0, 0, 2, 2], box], dtype=torch.float32), [(10, 20)] * 2, ["a.png", "row 3"])
    assert "row 3" in str(info.value)


def test_box_csv_folder_loads_scales_and_refuses_bad_rows(tmp_path) -> None:  # noqa: ANN001
    from PIL import Image

    for name in ("a", "b", "c"):
        Image.new("RGB", (40, 20), (10, 20, 30)).save(tmp_path / f"{name}.png")
    (tmp_path / "boxes.csv").write_text("file,x1,y1,x2,y2,label\na.png,0,0,20,10,cat\nb.png,4,2,8,6,dog\n"
                                        "c.png,1,1,3,3,cat\n")
    bundle = load_box_csv(tmp_path, spec=str(tmp_path), val_split=0.0, seed=0, image_size=(10, 20), limit=None)
    assert bundle.class_names == ["cat", "dog"]
    assert bundle.train["boxes"][0].tolist() == [0.0, 0.0, 10.0, 5.0]  # half the size, half the box
    (tmp_path / "boxes.csv").write_text("file,x1,y1,x2,y2\na.png,0,0,41,10\n")
    with pytest.raises(CnnlabError, match=r"row 2 \(a.png\).*outside"):
        load_box_csv(tmp_path, spec=str(tmp_path), val_split=0.0, seed=0, image_size=None, limit=None)


def test_connected_components_match_scipy() -> None:
    ndimage = pytest.importorskip("scipy.ndimage")
    masks = torch.rand(4, 20, 20, generator=torch.Generator().manual_seed(2)) > 0.6
    labels = connected_components(masks)
    for m, lab in zip(masks, labels, strict=True):
        ref, count = ndimage.label(m.numpy(), structure=[[1, 1, 1]] * 3)
        pairs = {(int(a), int(b)) for a, b in zip(lab.flatten(), torch.from_numpy(ref).flatten(), strict=True)}
        assert len(pairs) == count + 1 and len({a for a, _ in pairs}) == count + 1  # the same partition
    biggest = largest_component(masks)
    sizes = [torch.bincount(torch.from_numpy(ndimage.label(m.numpy(), structure=[[1] * 3] * 3)[0]).flatten())[1:].max()
             for m in masks]
    assert biggest.flatten(1).sum(1).tolist() == [int(s) for s in sizes]


def test_cam_boxes_take_the_largest_region_above_the_threshold() -> None:
    maps = torch.zeros(2, 10, 10)
    maps[0, 1:3, 1:3] = 1.0
    maps[0, 5:9, 4:9] = 0.5  # larger, above 0.2 of the peak
    assert boxes_from_cams(maps, 0.2).tolist() == [[4.0, 5.0, 9.0, 9.0], [0.0, 0.0, 10.0, 10.0]]


def _train(tmp_path, name: str, epochs: int, task_args: dict | None = None):  # noqa: ANN001, ANN202
    from cnnlab.train import TrainConfig
    from cnnlab.train.runner import fit

    cfg = TrainConfig(task="localize", data="builtin:shapes?n=480&size=32&classes=3", model="mini_xception",
                      out=str(tmp_path / name), epochs=epochs, batch_size=32, lr=3e-3, task_options=task_args or {},
                      device="cpu", threads=2)
    return fit(cfg, progress=False)


@pytest.mark.slow
def test_loss_falls_and_cam_boxes_beat_chance_and_random_weights(tmp_path) -> None:  # noqa: ANN001
    from cnnlab.data import load_data
    from cnnlab.rundir import load_run

    result = _train(tmp_path, "run", epochs=6)
    losses = [row["train_loss"] for row in result.history]
    assert losses[-1] < 0.8 * losses[0]
    assert result.final["iou"] > result.final["baseline_iou"] + 0.1

    run = load_run(result.run_dir)
    val = load_data("builtin:shapes?n=480&size=32&classes=3", "localize", val_split=0.1, seed=0).val
    x = run.preprocess(val["image"])
    truth = val["boxes"]

    def inside_rate(model: torch.nn.Module) -> float:
        boxes = run.task.cam_boxes(model, x)
        cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
        hit = (cx >= truth[:, 0]) & (cx <= truth[:, 2]) & (cy >= truth[:, 1]) & (cy <= truth[:, 3])
        return float(hit.float().mean())

    chance = float(((truth[:, 2] - truth[:, 0]) * (truth[:, 3] - truth[:, 1])).mean() / 32**2)
    trained = inside_rate(run.model)
    from cnnlab.models import create_model

    torch.manual_seed(123)
    random_model = create_model("mini_xception", **run.config["model"]["kwargs"]).eval()
    control = inside_rate(random_model)
    assert trained > chance + 0.25 and trained > control + 0.15, (trained, chance, control)

    # the report's panels: true | box head | CAM box, with the box head's IoU on the first image
    import re

    from cnnlab.app.report import write_report

    page = write_report(result.run_dir, samples=2, filter_channels=2, filter_steps=1).read_text()
    found = [float(v) for v in re.findall(r"box head IoU ([0-9.]+)", page)]
    with torch.no_grad():
        head = run.task.predict(run.model(x[:1]))[:, :4]
    expected = float(box_iou(head, truth[:1] / 32))
    assert len(found) == 2 and found[0] == pytest.approx(expected, abs=0.006), (found, expected)
    assert "box read off Grad-CAM (blue)" in page and len(re.findall(r"CAM box IoU", page)) == 2


def test_task_options_are_checked() -> None:
    with pytest.raises(CnnlabError, match="cam_threshold"):
        get_task("localize", cam_threshold=0)
    with pytest.raises(CnnlabError, match="box_weight"):
        get_task("localize", box_weight=-1)
