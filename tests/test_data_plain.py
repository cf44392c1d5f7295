"""Plain images for restoration tasks (superres): folders at full resolution, arrays, and random_split."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_data
from cnnlab.data.images import DataWarning
from cnnlab.data.plain import from_tensor, load_image_folder, load_image_npz
from cnnlab.data.split import random_split
from cnnlab.errors import CnnlabError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _superres_registered() -> bool:
    from cnnlab.data.specs import data_layout

    try:
        return data_layout("superres") == "images"
    except (CnnlabError, AttributeError):  # the superres task is not registered in this version yet
        return False


def load(spec, *, val_split=0.0, seed=0, image_size=None, strict=False, limit=None):
    """Through load_data(..., "superres") when the task exists, else the loaders themselves."""
    if _superres_registered():
        return load_data(spec, "superres", val_split=val_split, seed=seed, image_size=image_size, strict=strict,
                         limit=limit)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    path = Path(spec)
    if path.suffix == ".npz":
        return load_image_npz(path, spec=str(spec), val_split=val_split, seed=seed, image_size=size, limit=limit)
    return load_image_folder(path, spec=str(spec), val_split=val_split, seed=seed, image_size=size, strict=strict,
                             limit=limit)


def _save(path: Path, img: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _folder(root: Path, n=6, mode="RGB", sizes=None) -> Path:
    """n images root/<a|b>/iNN.png (class subfolders: not labels here); image i is filled with 20 * i + 10."""
    for i in range(n):
        value = 20 * i + 10 if mode == "L" else (20 * i + 10, 0, 0)
        _save(root / "ab"[i % 2] / f"i{i:02d}.png", Image.new(mode, sizes[i] if sizes else (12, 10), value))
    return root


def _ids(split) -> list[int]:
    return [round((float(t[0].float().mean()) - 10) / 20) for t in split["image"]]


# --- random_split --------------------------------------------------------------------------------------


def test_random_split_is_seeded_sorted_and_keeps_both_sides() -> None:
    tr, va = random_split(10, 0.3, seed=4)
    assert len(va) == 3 and len(tr) == 7
    assert sorted(tr.tolist() + va.tolist()) == list(range(10))
    assert tr.tolist() == sorted(tr.tolist()) and va.tolist() == sorted(va.tolist())
    assert torch.equal(random_split(10, 0.3, seed=4)[1], va)
    assert len({tuple(random_split(10, 0.3, seed=s)[1].tolist()) for s in range(8)}) > 1
    assert [len(t) for t in random_split(2, 0.01, 0)] == [1, 1]  # at least one val item
    assert [len(t) for t in random_split(3, 0.99, 0)] == [1, 2]  # at least one train item
    assert [len(t) for t in random_split(1, 0.5, 0)] == [1, 0]
    assert [len(t) for t in random_split(5, 0.0, 0)] == [5, 0]
    assert [len(t) for t in random_split(0, 0.2, 0)] == [0, 0]
    with pytest.raises(CnnlabError, match="val_split must be in"):
        random_split(5, 1.0, 0)


# --- folders -------------------------------------------------------------------------------------------


def test_folder_keeps_each_image_at_its_own_size(tmp_path) -> None:
    sizes = [(12, 10), (30, 20), (7, 9), (12, 10)]
    root = _folder(tmp_path / "photos", n=4, sizes=sizes)
    data = load(root)
    assert set(data.train.fields) == {"image"} and data.class_names == [] and data.num_classes == 0
    assert isinstance(data.train["image"], list) and data.image_size is None
    assert sorted(data.train.sizes()) == sorted((h, w) for w, h in sizes)
    assert data.in_channels == 3 and all(t.dtype == torch.uint8 and t.shape[0] == 3 for t in data.train["image"])
    assert data.meta["source"] == "folder" and data.meta["skipped"] == []


def test_same_sizes_stack_grayscale_gives_one_channel_and_image_size_resizes(tmp_path) -> None:
    root = _folder(tmp_path / "gray", mode="L")
    data = load(root, val_split=0.5, seed=1)
    assert data.in_channels == 1 and data.image_size == (10, 12)
    assert isinstance(data.train["image"], torch.Tensor) and data.train["image"].shape == (3, 1, 10, 12)
    assert data.val["image"].shape == (3, 1, 10, 12)
    resized = load(_folder(tmp_path / "mixed", n=3, sizes=[(12, 10), (40, 8), (9, 9)]), image_size=(4, 5))
    assert resized.image_size == (4, 5) and resized.train["image"].shape == (3, 3, 4, 5)


def test_large_jpegs_load_at_full_resolution_with_exif_applied(tmp_path) -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees on display: 640x480 stored -> 480x640 shown
    _save(tmp_path / "big" / "photo.jpg", Image.new("RGB", (640, 480), (90, 120, 150)), exif=exif.tobytes())
    _save(tmp_path / "big" / "other.jpg", Image.new("RGB", (1200, 900), (10, 20, 30)))
    data = load(tmp_path / "big")
    assert sorted(data.train.sizes()) == [(640, 480), (900, 1200)]


def test_split_is_seeded_and_limit_takes_the_first_files(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=10)
    a, b = load(root, val_split=0.3, seed=2), load(root, val_split=0.3, seed=2)
    assert _ids(a.val) == _ids(b.val) and (len(a.train), len(a.val)) == (7, 3)
    assert sorted(_ids(a.train) + _ids(a.val)) == list(range(10))
    assert len({tuple(_ids(load(root, val_split=0.3, seed=s).val)) for s in range(6)}) > 1
    assert a.meta["split"] == "random val_split=0.3 seed=2"
    # sorted file order is a/i00, a/i02, ..., b/i01, ...: the first 3 are images 0, 2 and 4
    assert sorted(_ids(load(root, limit=3).train)) == [0, 2, 4]


def test_unreadable_files_are_skipped_with_one_warning_or_raise_when_strict(tmp_path) -> None:
    root = _folder(tmp_path / "d", n=3)
    (root / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable image file\(s\): .*broken\.png"):
        data = load(root)
    assert len(data.train) == 3
    with pytest.raises(CnnlabError, match=r"cannot read image .*broken\.png"):
        load(root, strict=True)


def test_mask_folders_and_empty_folders_are_refused(tmp_path) -> None:
    _save(tmp_path / "seg" / "images" / "a.png", Image.new("RGB", (4, 4)))
    _save(tmp_path / "seg" / "masks" / "a.png", Image.new("L", (4, 4)))
    with pytest.raises(CnnlabError, match=r"seg has an image folder \(images/\) and a mask folder \(masks/\): a mask "
                                          r"folder given to superres.*pass the images folder itself \(.*seg/images\)"):
        load(tmp_path / "seg")
    assert len(load(tmp_path / "seg" / "images").train) == 1
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    with pytest.raises(CnnlabError, match=r"folder .*empty holds no images"):
        load(tmp_path / "empty")


# --- arrays --------------------------------------------------------------------------------------------


def test_npz_uses_x_only_and_optional_x_val(tmp_path) -> None:
    x = np.arange(5 * 4 * 6 * 3, dtype=np.int64).reshape(5, 4, 6, 3).astype(np.uint8)
    path = tmp_path / "imgs.npz"
    np.savez(path, x=x, y=np.arange(5))
    data = load(path, val_split=0.4, seed=0)
    assert (len(data.train), len(data.val)) == (3, 2) and set(data.train.fields) == {"image"}
    assert data.in_channels == 3 and data.image_size == (4, 6) and data.class_names == []
    assert load(path, limit=2).train["image"].shape == (2, 3, 4, 6)
    assert load(path, image_size=(8, 8)).train["image"].shape == (5, 3, 8, 8)
    np.savez(path, x=x[..., 0], x_val=x[:2, :2, :2, 0])
    data = load(path)
    assert data.in_channels == 1 and len(data.val) == 2 and data.image_size is None
    assert data.meta["split"] == "given validation arrays"
    np.savez(path, y=np.arange(5))
    with pytest.raises(CnnlabError, match=r"imgs\.npz lacks the array 'x'"):
        load(path)


def test_from_tensor_splits_limits_and_resizes() -> None:
    x = torch.arange(8, dtype=torch.uint8).view(8, 1, 1, 1).expand(8, 3, 4, 4).contiguous()
    data = from_tensor(x, "mem", 0.25, 0, None, None, {"source": "memory"})
    assert (len(data.train), len(data.val)) == (6, 2) and data.meta["source"] == "memory"
    assert sorted(data.train["image"][:, 0, 0, 0].tolist() + data.val["image"][:, 0, 0, 0].tolist()) == list(range(8))
    given = from_tensor(x, "mem", 0.25, 0, (2, 2), 3, {}, val=x[5:])
    assert given.train["image"].shape == (3, 3, 2, 2) and given.val["image"].shape == (3, 3, 2, 2)
    assert given.image_size == (2, 2) and given.meta["split"] == "given validation arrays"
    with pytest.raises(CnnlabError, match=r"mem: x must be uint8 images"):
        from_tensor(x.float(), "mem", 0.1, 0, None, None, {})


@pytest.mark.data
def test_sr_train_loads_full_resolution_photos() -> None:
    root = SHARED / "sr_train"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = load(root, limit=10, val_split=0.2)
    assert (len(data.train), len(data.val)) == (8, 2) and data.in_channels == 3
    assert all(min(h, w) == 321 and max(h, w) == 481 for h, w in data.train.sizes())
