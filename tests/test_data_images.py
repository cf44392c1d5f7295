"""Image folders and load_images: colour conversion, resizing, EXIF, layouts and every kind of bad input."""

from __future__ import annotations

import io
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data import load_data, load_images
from cnnlab.data.images import DataWarning
from cnnlab.errors import CnnlabError


def _save(path: Path, img: Image.Image, **kwargs) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, **kwargs)
    return path


def _solid(colour, size=(12, 10), mode="RGB") -> Image.Image:
    return Image.new(mode, size, colour)


def _tree(root: Path, classes=("a", "b"), per_class=4, colours=None) -> Path:
    for c, name in enumerate(classes):
        for i in range(per_class):
            value = colours[c] if colours else (40 * c + i, 10, 200)
            _save(root / name / f"{i}.png", _solid(value))
    return root


def _decode_one(path: Path, size=4, channels=3) -> np.ndarray:
    x, paths = load_images([path], image_size=size, in_channels=channels)
    assert paths == [path]
    return x[0].numpy()


def test_colour_modes_become_rgb_by_the_documented_policy(tmp_path) -> None:
    # RGBA: transparent pixels are composited on white, opaque ones keep their colour
    rgba = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    rgba.paste((0, 0, 255, 255), (0, 0, 4, 2))
    x = _decode_one(_save(tmp_path / "rgba.png", rgba))
    assert x[:, 0, 0].tolist() == [0, 0, 255] and x[:, 3, 3].tolist() == [255, 255, 255]
    # CMYK (0, 0, 0, 0) is white, (0, 255, 255, 0) red
    assert _decode_one(_save(tmp_path / "w.tif", _solid((0, 0, 0, 0), mode="CMYK")))[:, 0, 0].tolist() == [255] * 3
    assert _decode_one(_save(tmp_path / "r.tif", _solid((0, 255, 255, 0), mode="CMYK")))[:, 0, 0].tolist() == [255, 0, 0]
    red = _decode_one(_save(tmp_path / "r.jpg", _solid((0, 255, 255, 0), mode="CMYK"), quality=95))  # Adobe CMYK JPEG
    assert red[0].min() > 240 and red[1:].max() < 15
    # palette, with and without a transparent index
    pal = Image.new("P", (4, 4), 1)
    pal.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert _decode_one(_save(tmp_path / "p.png", pal))[:, 0, 0].tolist() == [10, 200, 30]
    assert _decode_one(_save(tmp_path / "pt.png", pal, transparency=1))[:, 0, 0].tolist() == [255] * 3
    # grayscale is replicated to three channels, or kept as one
    assert _decode_one(_save(tmp_path / "l.png", _solid(77, mode="L")))[:, 0, 0].tolist() == [77] * 3
    assert _decode_one(tmp_path / "l.png", channels=1).shape == (1, 4, 4)


def test_16_bit_images_are_scaled_not_clipped(tmp_path) -> None:
    a = np.array([[0, 257 * 100, 32768, 65535]], dtype=np.uint16).repeat(4, axis=0)
    path = _save(tmp_path / "deep.png", Image.fromarray(a))
    assert Image.open(path).mode.startswith("I")
    x, _ = load_images([path], image_size=(4, 4), in_channels=1)
    assert x[0, 0, 0].tolist() == [0, 100, 128, 255]


def test_exif_orientation_is_applied(tmp_path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 0, 255), (20, 0, 40, 20))  # left red, right blue as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(tmp_path / "o.jpg", img, exif=exif, quality=95)
    x = _decode_one(path, size=(8, 4))  # displayed: 20 wide, 40 tall, red on top
    assert x.shape == (3, 8, 4)
    assert x[0, 0].min() > 200 and x[2, 0].max() < 60  # top row red
    assert x[2, -1].min() > 200 and x[0, -1].max() < 60  # bottom row blue


def test_resize_covers_then_crops_the_centre(tmp_path) -> None:
    img = Image.new("RGB", (40, 20), (255, 0, 0))
    img.paste((0, 255, 0), (10, 0, 30, 20))  # the centre 20x20 is green
    x = _decode_one(_save(tmp_path / "wide.png", img), size=20)
    assert (x[1] == 255).all() and (x[0] == 0).all()
    x = _decode_one(tmp_path / "wide.png", size=10)  # halved: the green centre (the antialiasing
    assert (x[1, :, 1:-1] == 255).all() and (x[0, :, 1:-1] == 0).all()  # filter blends the edge columns a little)
    assert (x[1] > 200).all() and (x[0] < 50).all()


def test_folder_with_train_and_val(tmp_path) -> None:
    _tree(tmp_path / "train", per_class=3)
    _tree(tmp_path / "val", per_class=2)
    bundle = load_data(tmp_path, image_size=8)
    assert bundle.class_names == ["a", "b"] and bundle.in_channels == 3 and bundle.image_size == (8, 8)
    assert bundle.train.y.tolist() == [0, 0, 0, 1, 1, 1] and bundle.val.y.tolist() == [0, 0, 1, 1]
    assert bundle.train.x[3, 0, 0, 0] == 40  # class b, first file


def test_folder_pool_split_default_size_and_grayscale(tmp_path) -> None:
    for c, name in enumerate(["x", "y", "z"]):
        for i in range(5):
            _save(tmp_path / name / f"{i}.png", _solid(30 * c, size=(20 + i, 16), mode="L"))
    bundle = load_data(tmp_path, val_split=0.4, seed=5)
    assert bundle.in_channels == 1 and bundle.image_size == (16, 16)  # all grayscale; median shorter side
    assert torch.bincount(bundle.val.y).tolist() == [2, 2, 2]
    assert torch.equal(load_data(tmp_path, val_split=0.4, seed=5).val.x, bundle.val.x)
    _save(tmp_path / "x" / "colour.png", _solid((1, 2, 3)))
    assert load_data(tmp_path).in_channels == 3  # one colour image: everything becomes RGB


@pytest.mark.parametrize("strict", [False, True])
def test_truncated_and_garbage_files(tmp_path, strict: bool) -> None:
    _tree(tmp_path, per_class=3)
    buf = io.BytesIO()
    Image.effect_noise((64, 64), 50).convert("RGB").save(buf, "JPEG")
    (tmp_path / "a" / "cut.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (tmp_path / "b" / "junk.png").write_bytes(b"not an image")
    if strict:
        (tmp_path / "b" / "junk.png").unlink()  # the truncated JPEG passes the header probe: decoding finds it
        with pytest.raises(CnnlabError, match=r"cut\.jpg.*truncated"):
            load_data(tmp_path, strict=True, image_size=8)
        return
    with pytest.warns(DataWarning) as record:
        bundle = load_data(tmp_path, image_size=8, val_split=0)
    assert len(record) == 1
    message = str(record[0].message)
    assert "skipped 2" in message and "cut.jpg" in message and "junk.png" in message
    assert len(bundle.train) == 6 and len(bundle.meta["skipped"]) == 2


def test_decompression_bomb_limit_stays_on(tmp_path, monkeypatch) -> None:
    path = _save(tmp_path / "big.png", _solid((1, 2, 3), size=(30, 30)))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # 900 pixels > 2 x limit: Pillow refuses
    with pytest.raises(CnnlabError, match="DecompressionBomb"):
        load_images([path], image_size=4, strict=True)


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda root: root.mkdir(), "has no class subfolders"),
        (lambda root: _save(root / "loose.png", _solid(1)), "put them in one subfolder per class"),
        (lambda root: _tree(root, classes=("only",)), "only one class folder ('only')"),
        (lambda root: (_tree(root), (root / "c").mkdir()), "class folder"),
        (lambda root: (_tree(root / "train", classes=("a", "b", "c")), _tree(root / "val")), "class(es) c of"),
        (lambda root: (_tree(root / "train"), _tree(root / "val", classes=("a", "b", "d"))), "d that"),
        (lambda root: _tree(root / "val"), "has val/ but no train/"),
    ],
)
def test_bad_folders_name_the_problem(tmp_path, make, message: str) -> None:
    root = tmp_path / "data"
    make(root)
    with pytest.raises(CnnlabError) as info:
        load_data(root, image_size=4)
    assert message in str(info.value)
    assert "data" in str(info.value)  # the folder is named


def test_load_images_files_and_folders(tmp_path) -> None:
    _tree(tmp_path / "in", per_class=2)
    (tmp_path / "in" / "notes.txt").write_text("ignored")
    single = _save(tmp_path / "one.jpg", _solid((9, 9, 9)))
    x, paths = load_images([tmp_path / "in", single], image_size=(6, 5))
    assert x.shape == (5, 3, 6, 5) and x.dtype == torch.uint8
    assert paths[-1] == single and paths[0].name == "0.png" and paths[0].parent.name == "a"
    with pytest.raises(CnnlabError, match="does not exist"):
        load_images([tmp_path / "nope.png"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert load_images([single])[0].shape == (1, 3, 10, 10)  # default size: its shorter side


def test_load_images_matches_the_training_decode(tmp_path) -> None:
    """predict/explain inputs go through exactly the decode path that training folders use."""
    for name, colour in (("a", (200, 30, 10)), ("b", (5, 90, 250))):
        img = Image.effect_noise((37, 29), 60).convert("RGB")
        img.paste(colour, (0, 0, 10, 10))
        _save(tmp_path / name / "0.jpg", img)
        _save(tmp_path / name / "1.png", img.convert("RGBA"))
    bundle = load_data(tmp_path, image_size=(12, 16), val_split=0)
    x, paths = load_images([tmp_path], image_size=(12, 16))
    assert [p.name for p in paths] == ["0.jpg", "1.png", "0.jpg", "1.png"]
    assert torch.equal(x, bundle.train.x)


def test_a_class_whose_images_are_all_unreadable_is_an_error(tmp_path) -> None:
    _tree(tmp_path, classes=("a",), per_class=2)
    _save(tmp_path / "b" / "ok.txt", _solid(1), format="PNG")  # not an image extension: ignored
    (tmp_path / "b" / "bad.png").write_bytes(b"\x89PNG broken")
    # one error that names the unreadable file itself (no warning line before it saying the same)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        with pytest.raises(CnnlabError, match=r"class 'b' has no readable .*1 unreadable, first: .*bad\.png"):
            load_data(tmp_path, image_size=4, val_split=0)


def test_load_images_none_readable_is_one_error_with_the_fix(tmp_path) -> None:
    (tmp_path / "junk.png").write_bytes(b"not an image")
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)  # the error names the file: no repeated warning line
        with pytest.raises(CnnlabError, match=r"junk\.png.*pass image files Pillow can open \(.*\.png"):
            load_images([tmp_path / "junk.png"], image_size=4)
