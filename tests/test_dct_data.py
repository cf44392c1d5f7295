"""JPEG folders as DCT inputs (``--input dct``): the packed inputs show the decoder's pixels, RGB
``--fit crop`` sees the same window, normalisation commutes with the DCT flip, and bad files get
clear errors."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from cnnlab.data import load_data
from cnnlab.data.images import crop_on_grid
from cnnlab.dct.augment import hflip
from cnnlab.dct.data import frequency_stats, grid_of, read_packed
from cnnlab.errors import CnnlabError
from cnnlab.rundir import Normalize
from cnnlab.tasks.dct_input import to_rgb


def photo(h: int, w: int, seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(3))


def save_jpeg(img: Image.Image, path, **save):
    img.save(path, "JPEG", quality=save.pop("quality", 92), **save)
    return path


def pillow_crop(path, size) -> np.ndarray:
    """Pillow's decoded pixels cropped the way --fit crop does (int16 (C, H, W))."""
    arr = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1)
    return crop_on_grid(arr, size).astype(np.int16)


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_packed_input_decodes_to_the_decoders_pixels(tmp_path, subsampling):
    """IDCT of the packed coefficients = Pillow's decode of the same file, for every subsampling (4:4:4
    and 4:2:2 chroma go through the DCT-domain map onto the 4:2:0 grid, so colour is looser)."""
    path = save_jpeg(photo(96, 128), tmp_path / "a.jpg", subsampling=subsampling)
    x, reencoded = read_packed(path, grid_of((96, 128)))
    assert x.dtype == torch.float16 and tuple(x.shape) == (384, 6, 8) and not reencoded
    mine = to_rgb(x[None])[0].numpy().astype(np.int16)
    theirs = pillow_crop(path, (96, 128))
    diff = np.abs(mine - theirs)
    assert diff.mean() < 2.0, diff.mean()
    assert np.percentile(diff, 99) <= 12


@pytest.mark.parametrize("subsampling", [0, 1, 2])
def test_window_is_the_centred_crop_of_the_whole_image(tmp_path, subsampling):
    """Cutting the window from the quantised planes first (the fast path) = cropping the packed image."""
    from cnnlab.dct.data import packed
    from cnnlab.dct.layout import center_grid
    from cnnlab.dct.reader import read_coefficients

    coefs = read_coefficients(save_jpeg(photo(75, 130), tmp_path / "a.jpg", subsampling=subsampling))
    whole = packed(coefs)
    assert tuple(whole.shape) == (384, 5, 9)
    for grid in [(3, 4), (5, 9), (7, 12), (2, 11)]:
        torch.testing.assert_close(packed(coefs, grid=grid), center_grid(whole, grid), rtol=0, atol=0)


def test_grayscale_file_has_zero_chroma_and_exact_luma(tmp_path):
    path = save_jpeg(photo(64, 80).convert("L"), tmp_path / "g.jpg")
    x, _ = read_packed(path, grid_of((64, 80)))
    assert not x[256:].any()
    mine = to_rgb(x[None])[0].numpy().astype(np.int16)
    theirs = np.asarray(Image.open(path)).astype(np.int16)
    assert np.abs(mine[0] - theirs).max() <= 2  # libjpeg's integer IDCT vs float, plus float16 storage


def test_rgb_crop_sees_the_same_window_as_dct(tmp_path):
    """--fit crop and --input dct cut the same pixels out of an image larger than the crop (offsets
    in 16-px cells, centred) and place a smaller one at the same spot on mid grey."""
    big = save_jpeg(photo(150, 230), tmp_path / "big.jpg", subsampling=2)
    x, _ = read_packed(big, (4, 6))
    diff = np.abs(to_rgb(x[None])[0].numpy().astype(np.int16) - pillow_crop(big, (64, 96)))
    assert diff.mean() < 2.0
    small = save_jpeg(photo(32, 48), tmp_path / "small.jpg", subsampling=2)
    x, _ = read_packed(small, (4, 6))  # 2x3 cells of image centred in 4x6
    mine, theirs = to_rgb(x[None])[0].numpy().astype(np.int16), pillow_crop(small, (64, 96))
    assert np.abs(mine[:, 16:48, 24:72] - theirs[:, 16:48, 24:72]).mean() < 2.0
    assert (theirs[:, :16] == 128).all() and np.abs(mine[:, :16] - 128).max() <= 1  # padding is grey in both


def test_normalisation_commutes_with_the_dct_flip(tmp_path):
    x = torch.stack([read_packed(save_jpeg(photo(64, 64, seed=s), tmp_path / f"{s}.jpg"), (4, 4))[0]
                     for s in range(6)]).float()
    mean, std = frequency_stats(x)
    assert len(mean) == 384 and min(std) > 0
    norm = Normalize(mean, std, scale=1.0)
    torch.testing.assert_close(norm(hflip(x)), hflip(norm(x)), rtol=1e-5, atol=1e-4)
    # the four folded positions of one Y frequency share their statistics
    assert mean[0] == mean[1] == mean[2] == mean[3] and std[4] == std[7]


def jpeg_folder(root, n=6, size=(64, 64)):
    for c, name in enumerate(["cats", "dogs"]):
        (root / name).mkdir(parents=True)
        for i in range(n):
            save_jpeg(photo(*size, seed=10 * c + i), root / name / f"{i}.jpg")
    return root


def test_dct_folder_loads_as_dct_fields(tmp_path):
    root = jpeg_folder(tmp_path / "data")
    bundle = load_data(root, "classify", image_size=48, val_split=0.5, options={"input": "dct"})
    assert bundle.train.primary == "dct" and tuple(bundle.train.x.shape[1:]) == (384, 3, 3)
    assert bundle.info["input"] == "dct" and bundle.in_channels == 384
    rgb = load_data(root, "classify", image_size=48, val_split=0.5, options={"fit": "crop"})
    assert rgb.info["fit"] == "crop" and tuple(rgb.train.x.shape[1:]) == (3, 48, 48)
    assert bundle.train.y.tolist() == rgb.train.y.tolist()  # the same split


def test_bad_inputs_get_clear_errors(tmp_path):
    root = jpeg_folder(tmp_path / "data")
    photo(64, 64).save(root / "cats" / "odd.png")
    with pytest.raises(CnnlabError, match=r"odd\.png is not a JPEG.*--allow-reencode"):
        load_data(root, "classify", image_size=48, options={"input": "dct"})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load_data(root, "classify", image_size=48, val_split=0.5,
                           options={"input": "dct", "allow_reencode": True})
    assert len(bundle.train) + len(bundle.val) == 13
    assert any("re-encoded 1 non-JPEG file" in str(w.message) for w in caught)
    with pytest.raises(CnnlabError, match="16-px block grid.*such as 48x48"):
        load_data(root, "classify", image_size=50, options={"input": "dct", "allow_reencode": True})
    with pytest.raises(CnnlabError, match="cannot resize"):
        load_data(root, "classify", image_size=48, options={"input": "dct", "fit": "resize"})
    with pytest.raises(CnnlabError, match="folder of JPEG files"):
        load_data("builtin:shapes", "classify", options={"input": "dct"})
    with pytest.raises(CnnlabError, match="choose from rgb, dct"):
        load_data(root, "classify", options={"input": "jpeg"})


def test_unreadable_jpeg_is_skipped_with_its_reason(tmp_path):
    root = jpeg_folder(tmp_path / "data")
    data = (root / "dogs" / "0.jpg").read_bytes()
    (root / "dogs" / "0.jpg").write_bytes(data[: len(data) // 3])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bundle = load_data(root, "classify", image_size=48, val_split=0.5, options={"input": "dct"})
    assert len(bundle.train) + len(bundle.val) == 11
    assert any("0.jpg (is truncated" in str(w.message) for w in caught)


def test_images_smaller_than_a_cell_are_padded_mid_grey(tmp_path):
    path = save_jpeg(photo(10, 7), tmp_path / "tiny.jpg")
    x, _ = read_packed(path, (2, 2))
    rgb = to_rgb(x[None])[0].numpy().astype(np.int16)
    theirs = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1).astype(np.int16)
    # one cell of image in a 2x2 grid: the odd cell of padding goes bottom and right (center_grid's rule)
    assert np.abs(rgb[:, :10, :7] - theirs).mean() < 3
    assert np.abs(rgb[:, 16:] - 128).max() <= 1 and np.abs(rgb[:, :, 16:] - 128).max() <= 1


def test_progressive_and_cmyk(tmp_path):
    prog = save_jpeg(photo(64, 64), tmp_path / "p.jpg", progressive=True)
    base = save_jpeg(photo(64, 64), tmp_path / "b.jpg")
    torch.testing.assert_close(read_packed(prog, (4, 4))[0], read_packed(base, (4, 4))[0])
    cmyk = io.BytesIO()
    photo(32, 32).convert("CMYK").save(cmyk, "JPEG")
    (tmp_path / "c.jpg").write_bytes(cmyk.getvalue())
    with pytest.raises(CnnlabError, match=r"c\.jpg has a colour model other than grayscale or YCbCr"):
        read_packed(tmp_path / "c.jpg", (2, 2))


def test_pixels_to_dct_encodes_like_the_file(tmp_path):
    """Encoding the decoded pixels again (the filter atlas's front end) gives back the file's own
    coefficients, up to the quantisation of a quality-100 file (step 1)."""
    from cnnlab.dct.data import packed
    from cnnlab.dct.reader import read_coefficients
    from cnnlab.tasks.dct_input import PixelsToDct

    path = save_jpeg(photo(64, 96), tmp_path / "q100.jpg", quality=100, subsampling=2)
    stored = packed(read_coefficients(path))
    pixels = np.asarray(Image.open(path).convert("RGB")).transpose(2, 0, 1) / 255.0
    encoded = PixelsToDct()(torch.tensor(pixels, dtype=torch.float32)[None])[0]
    assert (encoded - stored).abs().mean() < 0.5
    assert (encoded[:256] - stored[:256]).abs().max() < 2  # luma: rounding in the decoder and the file


def test_augment_names_pick_cell_crops_or_pixel_shifts_of_rgbs_range() -> None:
    from cnnlab.dct.augment import random_crop, random_shift
    from cnnlab.tasks.dct_input import make_augment, shift_cells, shift_pixels

    info = {"image_size": [224, 224], "input": "dct"}
    assert shift_pixels(info) == 28 == 224 // 8 and shift_cells(info) == 2  # RGB's crop pads 224 // 8
    torch.manual_seed(0)
    x = torch.randn(4, 384, 14, 14)
    kinds = {"dct": "dct", "label": "label"}

    def run(name: str) -> torch.Tensor:
        return make_augment(name, info)({"dct": x, "label": torch.zeros(4)}, kinds, torch.Generator().manual_seed(5))["dct"]

    torch.testing.assert_close(run("shift"), random_shift(x, 28, torch.Generator().manual_seed(5)))
    torch.testing.assert_close(run("crop"), random_crop(x, (14, 14), 2, torch.Generator().manual_seed(5)))
    flipped = run("flip-shift")
    assert flipped.shape == x.shape and not torch.allclose(flipped, run("shift"))
    assert make_augment("none", info) is None
    with pytest.raises(CnnlabError, match="unknown augmentation"):
        make_augment("rotate", info)
