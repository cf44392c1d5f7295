"""load_data: spec parsing, builtin:shapes, .npz files, splits and limits, and the shared real data."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data import DataBundle, ImageData, load_data
from cnnlab.data.arrays import load_npz
from cnnlab.data.split import balanced_subset, stratified_split
from cnnlab.errors import CnnlabError

SHAPES = "builtin:shapes?n=240&size=32"


def test_builtin_shapes_is_deterministic_from_the_seed() -> None:
    a, b = load_data(SHAPES, seed=3), load_data(SHAPES, seed=3)
    assert torch.equal(a.train.x, b.train.x) and torch.equal(a.val.y, b.val.y)
    assert torch.equal(a.train.mask, b.train.mask)
    c = load_data(SHAPES, seed=4)
    assert not torch.equal(a.train.x, c.train.x)


def test_builtin_shapes_bundle_contract() -> None:
    bundle = load_data(SHAPES, val_split=0.25)
    assert isinstance(bundle, DataBundle)
    assert bundle.class_names == ["circle", "square", "triangle", "star", "cross", "ring"]
    assert bundle.in_channels == 3 and bundle.image_size == (32, 32)
    assert bundle.train.x.dtype == torch.uint8 and bundle.train.x.shape[1:] == (3, 32, 32)
    assert bundle.train.y.dtype == torch.int64
    assert len(bundle.train) + len(bundle.val) == 240
    first = bundle.train.take(slice(0, 5))
    assert len(first) == 5 and torch.equal(first.mask, bundle.train.mask[:5])
    # stratified: 40 per class, a quarter of each in val
    assert torch.bincount(bundle.val.y, minlength=6).tolist() == [10] * 6


def test_builtin_masks_match_the_pixels() -> None:
    data = load_data("builtin:shapes?n=60&size=48").train
    for x, y, mask in zip(data.x, data.y, data.mask, strict=True):
        inside = mask > 0
        assert inside.sum() > 20, "every image shows its shape"
        assert set(mask[inside].unique().tolist()) == {int(y) + 1}
        colours = x[:, inside]  # (3, pixels): the shape is one solid colour...
        assert (colours == colours[:, :1]).all()
        # ...which every background pixel differs from by a visible margin in some channel
        diff = (x[:, ~inside].int() - colours[:, :1].int()).abs().amax(dim=0)
        assert diff.min() >= 40


def test_builtin_options_and_segment_task() -> None:
    bundle = load_data("builtin:shapes?n=50&classes=3", "segment", image_size=24, val_split=0.2)
    assert bundle.class_names == ["background", "circle", "square", "triangle"]
    masks = bundle.train["mask"]  # the target field: uint8 (N, H, W), 0 = background, 255 = void
    assert masks.shape[1:] == (24, 24) and masks.dtype == torch.uint8 and "label" not in bundle.train
    assert int(masks.max()) <= 3 and bundle.image_size == (24, 24)


@pytest.mark.parametrize(
    ("spec", "kwargs", "message"),
    [
        ("builtin:shapez", {}, "did you mean: builtin:shapes"),
        ("builtin:shapes?nn=3", {}, "did you mean: n"),
        ("builtin:shapes?n=ten", {}, "must be int"),
        ("builtin:shapes?n", {}, "key=value"),
        ("builtin:shapes?size=32", {"image_size": 48}, "give one of them"),
        ("cifar1O", {}, "did you mean: cifar10"),
        ("cats", {}, "'cats': no folder, file or dataset has that name"),
        ("no/such/folder", {}, "does not exist"),
        ("missing.npz", {}, "does not exist"),
        (SHAPES, {"val_split": 1.0}, "val_split must be in [0, 1)"),
        (SHAPES, {"limit": 0}, "limit=0 must be at least 1 image"),
        (SHAPES, {"task": "segmentt"}, "did you mean: segment"),
    ],
)
def test_bad_specs_say_what_to_do(spec: str, kwargs: dict, message: str) -> None:
    with pytest.raises(CnnlabError, match=None) as info:
        load_data(spec, **kwargs)
    assert message in str(info.value)


def _write_npz(path, n=60, classes=3, size=8, **extra) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8)
    y = np.arange(n) % classes
    names = np.array([f"c{i}" for i in range(classes)])
    np.savez_compressed(path, x=x, y=y, class_names=names, **extra)
    return x, y


def test_npz_split_is_stratified_deterministic_and_lossless(tmp_path) -> None:
    x, y = _write_npz(tmp_path / "d.npz")
    bundle = load_data(tmp_path / "d.npz", val_split=0.2, seed=1)
    assert bundle.class_names == ["c0", "c1", "c2"] and bundle.in_channels == 3
    assert torch.bincount(bundle.val.y).tolist() == [4, 4, 4]
    assert torch.equal(load_data(tmp_path / "d.npz", val_split=0.2, seed=1).val.x, bundle.val.x)
    assert not torch.equal(load_data(tmp_path / "d.npz", val_split=0.2, seed=2).val.x, bundle.val.x)
    # every row lands in exactly one split, pixels and labels unchanged (HWC -> CHW)
    rows = {(bytes(xi.permute(1, 2, 0).contiguous().numpy()), int(yi)) for d in (bundle.train, bundle.val)
            for xi, yi in zip(d.x, d.y, strict=True)}
    assert rows == {(bytes(xi), int(yi)) for xi, yi in zip(x, y, strict=True)}


def test_npz_explicit_validation_arrays_and_resize(tmp_path) -> None:
    rng = np.random.default_rng(1)
    xv = rng.integers(0, 256, (7, 8, 8, 3), dtype=np.uint8)
    _write_npz(tmp_path / "d.npz", x_val=xv, y_val=np.array([0, 1, 2, 0, 1, 2, 0]))
    bundle = load_data(tmp_path / "d.npz", val_split=0.5)
    assert len(bundle.train) == 60 and len(bundle.val) == 7
    assert torch.equal(bundle.val.x, torch.from_numpy(xv).permute(0, 3, 1, 2))
    small = load_data(tmp_path / "d.npz", image_size=4)
    assert small.image_size == (4, 4) and small.val.x.shape == (7, 3, 4, 4)


def test_npz_grayscale_and_bad_arrays(tmp_path) -> None:
    np.savez(tmp_path / "g.npz", x=np.zeros((10, 5, 5), np.uint8), y=np.arange(10) % 2)
    bundle = load_data(tmp_path / "g.npz")
    assert bundle.in_channels == 1 and bundle.class_names == ["0", "1"]
    np.savez(tmp_path / "f.npz", x=np.zeros((4, 5, 5, 3), np.float32), y=np.arange(4) % 2)
    with pytest.raises(CnnlabError, match="must be uint8"):
        load_data(tmp_path / "f.npz")
    np.savez(tmp_path / "o.npz", x=np.zeros((4, 5, 5, 3), np.uint8), y=np.arange(4) % 2,
             class_names=np.array(["a", "b"], dtype=object))
    with pytest.raises(CnnlabError, match="str array"):  # object arrays would need pickle: refused
        load_data(tmp_path / "o.npz")
    np.savez(tmp_path / "r.npz", x=np.zeros((4, 5, 5, 3), np.uint8), y=np.array([0, 1, 2, 5]),
             class_names=np.array(["a", "b"]))
    with pytest.raises(CnnlabError, match="2 class names"):
        load_data(tmp_path / "r.npz")
    # one class trained a classifier that cannot be wrong; -1 labels were "-1..-1 but there are 0 class names"
    np.savez(tmp_path / "one.npz", x=np.zeros((6, 5, 5, 3), np.uint8), y=np.zeros(6, int))
    with pytest.raises(CnnlabError, match="holds only one class"):
        load_data(tmp_path / "one.npz")
    np.savez(tmp_path / "neg.npz", x=np.zeros((6, 5, 5, 3), np.uint8), y=-np.ones(6, int))
    with pytest.raises(CnnlabError, match="negative class indices"):
        load_data(tmp_path / "neg.npz")


@pytest.mark.parametrize("limit", [None, 10])
def test_npz_that_is_not_a_zip_archive_is_named_not_called_pickled(tmp_path, limit) -> None:
    np.savez(tmp_path / "d.npz", x=np.zeros((40, 5, 5, 3), np.uint8), y=np.arange(40) % 2)
    (tmp_path / "cut.npz").write_bytes((tmp_path / "d.npz").read_bytes()[:500])  # an interrupted copy
    (tmp_path / "text.npz").write_text("not numpy")
    for name in ("cut.npz", "text.npz"):
        with pytest.raises(CnnlabError, match="not a readable .npz file .not a zip archive"):
            load_data(tmp_path / name, limit=limit)


def test_limit_reads_only_leading_rows_but_picks_the_same_subset(tmp_path) -> None:
    x, y = _write_npz(tmp_path / "d.npz", n=90)
    capped_x, capped_y, _, _ = load_npz(tmp_path / "d.npz", limit=12)
    assert len(capped_x) < 90  # only a prefix was decompressed
    keep = balanced_subset(torch.from_numpy(y), 12)
    full = load_data(tmp_path / "d.npz", val_split=0.25, limit=12)
    assert len(full.train) + len(full.val) == 12
    assert sorted(torch.cat([full.train.y, full.val.y]).tolist()) == sorted(y[keep.numpy()].tolist())
    assert torch.equal(capped_x[balanced_subset(capped_y, 12)], torch.from_numpy(x[keep.numpy()]).permute(0, 3, 1, 2))


def test_split_helpers_edge_cases() -> None:
    y = torch.tensor([0, 0, 0, 1, 1, 2])  # class 2 has one example: it stays in train
    train, val = stratified_split(y, 0.5, seed=0)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(6))
    assert 5 in train.tolist() and set(y[val].tolist()) == {0, 1}
    assert stratified_split(y, 0.0, seed=0)[1].numel() == 0
    assert y[balanced_subset(y, 4)].tolist() == [0, 0, 1, 2] and balanced_subset(y, 4).tolist() == [0, 1, 3, 5]


def test_imagedata_rejects_malformed_splits() -> None:
    with pytest.raises(ValueError, match="uint8"):
        ImageData(torch.zeros(2, 3, 4, 4), torch.zeros(2, dtype=torch.int64))
    with pytest.raises(ValueError, match="int64"):
        ImageData(torch.zeros(2, 3, 4, 4, dtype=torch.uint8), torch.zeros(3, dtype=torch.int64))


@pytest.mark.data
def test_shared_cats_vs_dogs_folder_and_cifar10_npz(shared_data) -> None:
    cats = load_data(shared_data / "cats_vs_dogs", limit=40, image_size=64)
    assert cats.class_names == ["cats", "dogs"] and cats.in_channels == 3
    assert cats.train.x.shape[1:] == (3, 64, 64) and cats.meta["skipped"] == []
    assert torch.bincount(cats.train.y).tolist() == [18, 18]
    cifar = load_data(shared_data / "cifar10" / "cifar10_train.npz", limit=500, val_split=0.2)
    assert cifar.class_names[:3] == ["airplane", "automobile", "bird"] and cifar.image_size == (32, 32)
    assert torch.bincount(cifar.val.y).tolist() == [10] * 10
    mean = torch.cat([cifar.train.x, cifar.val.x]).float().mean(dim=(0, 2, 3)) / 255
    assert torch.allclose(mean, torch.tensor([0.4914, 0.4822, 0.4465]), atol=0.04)  # published CIFAR means


@settings(max_examples=60, deadline=None)
@given(labels=st.lists(st.integers(0, 4), min_size=1, max_size=60), val_split=st.floats(0.0, 0.9),
       seed=st.integers(0, 3), limit=st.one_of(st.none(), st.integers(1, 70)))
def test_split_and_limit_properties(labels: list[int], val_split: float, seed: int, limit: int | None) -> None:
    y = torch.tensor(labels)
    train, val = stratified_split(y, val_split, seed)
    assert sorted(torch.cat([train, val]).tolist()) == list(range(len(y)))  # a partition
    for cls in set(labels):
        count, in_val = labels.count(cls), int((y[val] == cls).sum())
        assert count - in_val >= 1  # every class keeps training examples
        if val_split > 0 and count >= 2:
            assert in_val >= 1  # and is validated when it can be
        assert abs(in_val - val_split * count) <= 1
    keep = balanced_subset(y, limit)
    assert len(keep) == min(len(y), limit or len(y)) and torch.equal(keep, keep.sort().values)
    counts = torch.bincount(y[keep], minlength=5)
    full = torch.bincount(y, minlength=5)
    # balanced: a class has fewer picks than another only when it ran out
    assert all(counts[a] >= counts[b] - 1 or counts[a] == full[a] for a in range(5) for b in range(5))
