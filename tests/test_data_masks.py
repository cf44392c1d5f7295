"""Image + mask data for task segment: folders and .npz, value mapping, void, resizing and every bad input."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_data
from cnnlab.data.bundle import IGNORE
from cnnlab.data.images import DataWarning, fit
from cnnlab.data.segmentation import find_pair_folders, fit_pair, load_mask_folder, load_mask_npz
from cnnlab.errors import CnnlabError

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def _segment_registered() -> bool:
    from cnnlab.data.specs import data_layout

    try:
        return data_layout("segment") == "masks"
    except (CnnlabError, AttributeError):  # the segment task is not registered in this version yet
        return False


def load(spec, *, val_split=0.0, seed=0, image_size=None, strict=False, limit=None, **options):
    """Through load_data(..., "segment") when the task exists, else the loaders themselves."""
    options = {k: v for k, v in options.items() if v is not None}
    if _segment_registered():
        return load_data(spec, "segment", val_split=val_split, seed=seed, image_size=image_size, strict=strict,
                         limit=limit, options=options)
    size = (image_size, image_size) if isinstance(image_size, int) else image_size
    path = Path(spec)
    if path.suffix == ".npz":
        return load_mask_npz(path, spec=str(spec), val_split=val_split, seed=seed, image_size=size, limit=limit,
                             **options)
    return load_mask_folder(path, spec=str(spec), val_split=val_split, seed=seed, image_size=size, strict=strict,
                            limit=limit, **options)


def _save(path: Path, img: Image.Image) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path)
    return path


def _image(value, size=(12, 10), mode="RGB") -> Image.Image:
    return Image.new(mode, size, value)


def _mask(values: np.ndarray, mode: str = "L") -> Image.Image:
    if mode == "P":  # palette indices are the values; the colours must not matter
        img = Image.new("P", (values.shape[1], values.shape[0]))
        img.putdata(values.ravel().tolist())
        img.putpalette([200, 0, 0, 0, 90, 0, 10, 10, 240] + [0] * 759)
        return img
    return Image.fromarray(values)


def _stripes(size=(12, 10), classes=(0, 1, 2), dtype=np.uint8) -> np.ndarray:
    """(H, W) mask with vertical stripes of the given values."""
    w, h = size
    cols = np.array([classes[i * len(classes) // w] for i in range(w)], dtype=dtype)
    return np.tile(cols, (h, 1))


def _pairs(root: Path, n=4, classes=(0, 1, 2), mode="L", image_mode="RGB", sizes=None, ext=".jpg",
           images="images", masks="masks") -> Path:
    """n pairs root/images/pNN.ext + root/masks/pNN.png; image i is filled with 20 * i + 10."""
    for i in range(n):
        size = sizes[i] if sizes else (12, 10)
        colour = 20 * i + 10 if image_mode == "L" else (20 * i + 10,) * 3
        _save(root / images / f"p{i:02d}{ext}", _image(colour, size, image_mode))
        _save(root / masks / f"p{i:02d}.png", _mask(_stripes(size, classes), mode))
    return root


def _ids(split) -> list[int]:
    """Which pairs a split holds, from the image fill value 20 * i + 10."""
    return [round((float(t.float().mean()) - 10) / 20) for t in split["image"]]


# --- layouts and values --------------------------------------------------------------------------------


def test_palette_masks_give_the_index_not_the_colour(tmp_path) -> None:
    root = _pairs(tmp_path / "d", mode="P")
    data = load(root)
    assert data.class_names == ["0", "1", "2"] and data.num_classes == 3
    assert data.in_channels == 3 and data.image_size == (10, 12)
    mask = data.train["mask"]
    assert isinstance(mask, torch.Tensor) and mask.dtype == torch.uint8 and mask.shape == (4, 10, 12)
    assert mask[0, 0].tolist() == _stripes()[0].tolist()
    assert data.train["image"].shape == (4, 3, 10, 12)
    assert find_pair_folders(root) == (root / "images", root / "masks")
    assert data.meta["source"] == "mask folder" and data.meta["mask_values"] is None


def test_l_masks_with_classes_txt_and_other_folder_names(tmp_path) -> None:
    root = _pairs(tmp_path / "d", classes=(0, 2), images="image", masks="labels")
    (root / "classes.txt").write_text("sky\n\nroad\ncar\n\n")
    data = load(root)
    assert data.class_names == ["sky", "road", "car"]
    assert sorted(torch.unique(data.train["mask"]).tolist()) == [0, 2]
    assert find_pair_folders(root) == (root / "image", root / "labels")
    assert find_pair_folders(tmp_path / "nothing") is None


def test_zero_255_masks_need_mask_values_and_grayscale_images_give_one_channel(tmp_path) -> None:
    root = _pairs(tmp_path / "d", classes=(0, 255), image_mode="L", ext=".png", masks="label")
    data = load(root, mask_values=[0, 255])
    assert data.in_channels == 1 and data.train["image"].shape[1] == 1
    assert data.class_names == ["0", "1"]
    assert sorted(torch.unique(data.train["mask"]).tolist()) == [0, 1]
    assert data.meta["mask_values"] == [0, 255]
    assert load(root, mask_values="0,255").class_names == ["0", "1"]  # as typed on the command line
    # without the mapping 255 is void, leaving one class: the error says what to pass
    with pytest.raises(CnnlabError, match=r"only class 0.*--mask-values 0,255"):
        load(root)


def test_void_value_becomes_ignore_and_255_stays_void(tmp_path) -> None:
    root = _pairs(tmp_path / "d", classes=(0, 1, 2, 11, 255))
    data = load(root, void_value=11)
    assert data.class_names == ["0", "1", "2"]  # K = largest class after mapping + 1: 11 is void
    assert sorted(torch.unique(data.train["mask"]).tolist()) == [0, 1, 2, IGNORE]
    assert data.meta["void_value"] == 11
    # without void_value, 11 is class 11: K = 12
    assert load(root).num_classes == 12


def test_mask_values_map_the_kth_value_to_class_k_with_16_bit_masks(tmp_path) -> None:
    root = tmp_path / "d"
    for i in range(3):
        _save(root / "images" / f"{i}.png", _image((50, 60, 70)))
        _save(root / "masks" / f"{i}.png", Image.fromarray(_stripes(classes=(7, 300, 1000), dtype=np.uint16)))
    assert Image.open(root / "masks" / "0.png").mode.startswith("I")
    data = load(root, mask_values=[1000, 7, 300])
    assert data.train["mask"][0, 0].tolist() == _stripes(classes=(1, 2, 0)).tolist()[0]
    with pytest.raises(CnnlabError, match=r"masks/0\.png holds value 1000.*--mask-values 7,300.*--void-value"):
        load(root, mask_values=[7, 300])
    with pytest.raises(CnnlabError, match=r"masks/0\.png holds value 300.*0\.\.254.*--mask-values"):
        load(root)


def test_different_sizes_stay_lists_and_image_size_stacks_them(tmp_path) -> None:
    sizes = [(12, 10), (8, 6), (20, 7)]
    root = _pairs(tmp_path / "d", n=3, sizes=sizes)
    data = load(root)
    assert isinstance(data.train["image"], list) and isinstance(data.train["mask"], list)
    assert data.image_size is None
    assert data.train.sizes() == [(h, w) for w, h in sizes]
    assert [tuple(m.shape) for m in data.train["mask"]] == [(h, w) for w, h in sizes]
    resized = load(root, image_size=(6, 5))
    assert resized.image_size == (6, 5)
    assert resized.train["image"].shape == (3, 3, 6, 5) and resized.train["mask"].shape == (3, 6, 5)


def test_image_size_keeps_image_and_mask_aligned(tmp_path) -> None:
    root = tmp_path / "d"
    img = Image.new("RGB", (60, 40), (0, 0, 0))
    img.paste((255, 255, 255), (38, 8, 52, 22))  # an off-centre square in a wide image (the crop matters)
    mask = np.zeros((40, 60), dtype=np.uint8)
    mask[8:22, 38:52] = 1
    for i in range(2):
        _save(root / "images" / f"{i}.png", img)
        _save(root / "masks" / f"{i}.png", _mask(mask))
    data = load(root, image_size=(20, 24))
    x, m = data.train["image"][0], data.train["mask"][0]
    bright, labelled = x[0] > 127, m == 1
    iou = (bright & labelled).sum() / (bright | labelled).sum()
    assert iou > 0.8, iou
    centre = [torch.nonzero(r).float().mean(0) for r in (bright, labelled)]
    assert torch.allclose(centre[0], centre[1], atol=0.75)
    assert set(torch.unique(m).tolist()) == {0, 1}  # nearest: no blended values
    # the image takes exactly the folder policy (images.fit)
    fitted, _ = fit_pair(img, Image.fromarray(mask), (20, 24))
    assert np.array_equal(np.asarray(fitted), np.asarray(fit(img, (20, 24))))
    assert np.array_equal(x.permute(1, 2, 0).numpy(), np.asarray(fitted))


def test_split_is_seeded_limit_takes_the_first_pairs(tmp_path) -> None:
    root = _pairs(tmp_path / "d", n=10, ext=".png")
    a, b = load(root, val_split=0.3, seed=1), load(root, val_split=0.3, seed=1)
    assert _ids(a.val) == _ids(b.val) and len(a.val) == 3 and len(a.train) == 7
    assert sorted(_ids(a.train) + _ids(a.val)) == list(range(10))
    assert len({tuple(_ids(load(root, val_split=0.3, seed=s).val)) for s in range(6)}) > 1
    assert a.meta["split"] == "random val_split=0.3 seed=1"
    limited = load(root, limit=4)
    assert _ids(limited.train) == [0, 1, 2, 3] and len(limited.val) == 0
    assert load(root, val_split=0.9, limit=2).train.__len__() == 1  # at least one training pair


def test_train_and_val_folders_are_the_splits(tmp_path) -> None:
    root = tmp_path / "d"
    _pairs(root / "train", n=3)
    _pairs(root / "val", n=2, images="image", masks="label")
    data = load(root, val_split=0.5)
    assert (len(data.train), len(data.val)) == (3, 2)
    assert data.meta["split"] == "train/ and val/ folders"
    assert (len(load(root, limit=1).train), len(load(root, limit=1).val)) == (1, 1)


def test_stems_match_in_subfolders_and_unreadable_pairs_are_skipped(tmp_path) -> None:
    root = _pairs(tmp_path / "d", n=3, ext=".png")
    _save(root / "images" / "sub" / "x.png", _image((1, 2, 3)))
    _save(root / "masks" / "sub" / "x.png", _mask(_stripes()))
    (root / "images" / "bad.png").write_bytes(b"not a png")
    _save(root / "masks" / "bad.png", _mask(_stripes()))
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable.*images/bad\.png"):
        data = load(root)
    assert len(data.train) == 4 and len(data.meta["skipped"]) == 1
    with pytest.raises(CnnlabError, match=r"cannot read image .*images/bad\.png"):
        load(root, strict=True)


# --- bad input: one line naming the file and the fix ---------------------------------------------------


def _one_line(exc: pytest.ExceptionInfo) -> str:
    text = str(exc.value)
    assert "\n" not in text
    return text


def test_a_mask_of_another_size_names_both_files_and_sizes(tmp_path) -> None:
    root = _pairs(tmp_path / "d", n=2)
    _save(root / "masks" / "p01.png", _mask(_stripes((9, 10))))
    with pytest.raises(CnnlabError, match=r"mask .*masks/p01\.png is 9x10 but its image .*images/p01\.jpg is 12x10") as exc:
        load(root)
    _one_line(exc)


def test_values_outside_the_classes_name_the_value_the_file_and_the_options(tmp_path) -> None:
    root = _pairs(tmp_path / "d", classes=(0, 1, 5))
    (root / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(CnnlabError, match=r"masks/p00\.png holds value 5, outside the 3 classes in "
                                          r"classes\.txt \(allowed: class indices 0\.\.2.*--mask-values.*--void-value"
                                          r".*classes\.txt") as exc:
        load(root)
    _one_line(exc)
    (root / "classes.txt").unlink()
    with pytest.raises(CnnlabError, match=r"masks/p00\.png holds value 5.*allowed: the values of --mask-values 0,1"):
        load(root, mask_values=[0, 1])
    assert load(root, void_value=5).num_classes == 2


def test_unmatched_images_and_masks_are_named_and_counted(tmp_path) -> None:
    root = _pairs(tmp_path / "d", n=2)
    for i in range(7):
        _save(root / "images" / f"lonely{i}.jpg", _image((9, 9, 9)))
    _save(root / "masks" / "orphan.png", _mask(_stripes()))
    with pytest.raises(CnnlabError) as exc:
        load(root)
    text = _one_line(exc)
    assert re.search(r"7 image\(s\) in .*images have no mask in .*masks \(lonely0, lonely1, lonely2, lonely3, "
                     r"lonely4 and 2 more\): add their masks", text), text
    assert re.search(r"1 mask\(s\) in .*masks have no image in .*images \(orphan\): add their images or remove", text)


def test_a_class_tree_says_it_looks_like_classification(tmp_path) -> None:
    for name in ("cats", "dogs"):
        _save(tmp_path / "tree" / name / "0.jpg", _image((1, 2, 3)))
    with pytest.raises(CnnlabError, match=r"tree looks like classification data \(image folders cats, dogs.*"
                                          r"`cnnlab train classify`.*images/ and .*masks/") as exc:
        load(tmp_path / "tree")
    _one_line(exc)


def test_folders_without_images_or_masks(tmp_path) -> None:
    (tmp_path / "empty" / "sub").mkdir(parents=True)
    (tmp_path / "empty" / "notes.txt").write_text("x")
    with pytest.raises(CnnlabError, match=r"folder .*empty holds no images"):
        load(tmp_path / "empty")
    (tmp_path / "pair" / "images").mkdir(parents=True)
    (tmp_path / "pair" / "masks").mkdir()
    with pytest.raises(CnnlabError, match=r"image folder .*pair/images holds no images"):
        load(tmp_path / "pair")
    _save(tmp_path / "nomask" / "images" / "a.png", _image((1, 2, 3)))
    with pytest.raises(CnnlabError, match=r"nomask has images/ but no mask folder; put the masks"):
        load(tmp_path / "nomask")
    _save(tmp_path / "loose" / "a.png", _image((1, 2, 3)))
    with pytest.raises(CnnlabError, match=r"loose holds 1 image\(s\) but no mask folder"):
        load(tmp_path / "loose")


def test_bad_mapping_arguments_and_rgb_masks(tmp_path) -> None:
    root = _pairs(tmp_path / "d", classes=(0, 255))
    with pytest.raises(CnnlabError, match=r"--mask-values 0,255,0 lists 0 more than once"):
        load(root, mask_values=[0, 255, 0])
    with pytest.raises(CnnlabError, match=r"--void-value 255 is also listed in --mask-values 0,255"):
        load(root, mask_values=[0, 255], void_value=255)
    with pytest.raises(CnnlabError, match=r"--mask-values must be integer mask values"):
        load(root, mask_values="0,x")
    (root / "classes.txt").write_text("a\nb\nc\n")
    with pytest.raises(CnnlabError, match=r"classes\.txt names 3 classes but --mask-values lists 2"):
        load(root, mask_values=[0, 255])
    (root / "classes.txt").unlink()
    _save(root / "masks" / "p02.png", Image.new("RGB", (12, 10), (0, 0, 128)))
    with pytest.raises(CnnlabError, match=r"mask .*masks/p02\.png is a colour \(RGB\) image; save masks as "
                                          r"single-channel index PNGs") as exc:
        load(root, mask_values=[0, 255])
    _one_line(exc)


def test_classification_loader_refuses_mask_folders(tmp_path) -> None:
    root = _pairs(tmp_path / "d")
    with pytest.raises(CnnlabError, match=r"holds images with masks.*cnnlab train segment"):
        load_data(root, "classify")


# --- .npz ----------------------------------------------------------------------------------------------


def test_npz_masks_map_split_and_resize(tmp_path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 255, (6, 10, 12, 3), dtype=np.uint8)
    mask = np.stack([_stripes(classes=(0, 255, 9))] * 6).astype(np.int32)
    path = tmp_path / "seg.npz"
    np.savez(path, x=x, mask=mask)
    data = load(path, val_split=0.5, seed=3, mask_values=[0, 255], void_value=9)
    assert (len(data.train), len(data.val)) == (3, 3) and data.class_names == ["0", "1"]
    assert data.train["mask"].dtype == torch.uint8 and data.train["mask"][0, 0].tolist() == \
        _stripes(classes=(0, 1, IGNORE))[0].tolist()
    assert data.in_channels == 3 and data.image_size == (10, 12) and data.meta["split"].startswith("random")
    with pytest.raises(CnnlabError, match=r"seg\.npz: mask holds value 255.*--mask-values"):
        load(path, void_value=9, mask_values=[0, 1])
    small = load(path, image_size=(5, 6), limit=2, mask_values=[0, 255], void_value=9)
    assert small.train["image"].shape == (2, 3, 5, 6) and small.train["mask"].shape == (2, 5, 6)
    assert small.train["mask"][0, 0].tolist() == [0, 0, 1, 1, IGNORE, IGNORE]  # nearest, aligned with the stripes


def test_npz_class_names_and_given_val(tmp_path) -> None:
    x = np.zeros((3, 4, 4), dtype=np.uint8)
    mask = np.zeros((3, 4, 4), dtype=np.uint8)
    mask[:, :, 2:] = 2
    path = tmp_path / "seg.npz"
    np.savez(path, x=x, mask=mask, class_names=np.array(["bg", "a", "b"]), x_val=x[:1], mask_val=mask[:1])
    data = load(path)
    assert data.class_names == ["bg", "a", "b"] and data.in_channels == 1
    assert (len(data.train), len(data.val)) == (3, 1) and data.meta["split"] == "given validation arrays"
    np.savez(path, x=x, mask=mask + 1, class_names=np.array(["bg", "a", "b"]))
    with pytest.raises(CnnlabError, match=r"seg\.npz: mask holds value 3, outside the 3 classes in "
                                          r".*seg\.npz: class_names"):
        load(path)
    np.savez(path, x=x, mask=mask[:, :3])
    with pytest.raises(CnnlabError, match=r"seg\.npz: mask has shape \(3, 3, 4\) but its images are"):
        load(path)
    np.savez(path, x=x)
    with pytest.raises(CnnlabError, match=r"seg\.npz lacks the array\(s\) \['mask'\]"):
        load(path)


# --- the real data folder ------------------------------------------------------------------------------


@pytest.mark.data
def test_camvid_loads_with_void_11() -> None:
    root = SHARED / "camvid"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        data = load(root, limit=20, val_split=0.1, void_value=11)
    assert len(list((root / "images").iterdir())) == 367
    assert (len(data.train), len(data.val)) == (18, 2)
    if not (root / "classes.txt").exists():
        assert data.num_classes == 11 and data.class_names == [str(k) for k in range(11)]
    assert data.in_channels == 3 and data.image_size == (360, 480)
    assert data.train["image"].shape == (18, 3, 360, 480) and data.train["mask"].shape == (18, 360, 480)
    values = set(torch.unique(data.train["mask"]).tolist())
    assert IGNORE in values and 11 not in values and max(values - {IGNORE}) <= 10


@pytest.mark.data
def test_membrane_loads_with_mask_values_0_255() -> None:
    root = SHARED / "membrane"
    if not root.is_dir():
        pytest.skip(f"{root} not found")
    data = load(root, val_split=0.25, mask_values=[0, 255], image_size=128)
    assert data.in_channels == 1 and data.class_names == ["0", "1"]
    assert len(data.train) + len(data.val) == 24 and len(data.val) == 6
    assert data.train["image"].shape[1:] == (1, 128, 128)
    assert set(torch.unique(data.train["mask"]).tolist()) == {0, 1}
