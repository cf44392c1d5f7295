"""Golden tests of the DCT input layout (issue 13), each convention checked independently of the
code's own tables: the zig-zag order from an anti-diagonal walk and the JPEG standard, the in-block
orientation and the whole decode chain against libjpeg (jpeglib reads the coefficients, Pillow decodes
the same file), the YCbCr matrix against Pillow and T.871, the chroma map and the flip in the pixel
domain, and the crops on the 16-px grid.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.dct import augment, layout
from cnnlab.errors import CnnlabError

jpeglib = pytest.importorskip("jpeglib")
scipy_fft = pytest.importorskip("scipy.fft")

H, W = 48, 64  # multiples of 16: whole 4:2:0 MCUs, no edge padding in the file


# ----------------------------------------------------------------------------------------------
# independent references
# ----------------------------------------------------------------------------------------------
def walked_zigzag() -> list[int]:
    """The zig-zag order built by walking the 15 anti-diagonals v+u=s, alternating direction:
    even s runs from bottom-left to top-right (v falling), odd s the other way."""
    order = []
    for s in range(15):
        cells = [(v, s - v) for v in range(8) if 0 <= s - v < 8]  # v rising
        order += [v * 8 + u for v, u in (reversed(cells) if s % 2 == 0 else cells)]
    return order


ZZ = np.array(walked_zigzag())


def to_plane(blocks: np.ndarray) -> np.ndarray:
    """jpeglib's (bh, bw, 8 vertical, 8 horizontal) natural-order blocks as a (64, bh, bw) zig-zag plane."""
    bh, bw = blocks.shape[:2]
    return blocks.reshape(bh, bw, 64)[:, :, ZZ].transpose(2, 0, 1)


def scipy_dct_plane(pixels: np.ndarray) -> np.ndarray:
    """The zig-zag plane of ``pixels`` by scipy's orthonormal DCT-II, block by block."""
    bh, bw = pixels.shape[0] // 8, pixels.shape[1] // 8
    blocks = pixels.reshape(bh, 8, bw, 8).transpose(0, 2, 1, 3)
    coeffs = scipy_fft.dctn(blocks, type=2, norm="ortho", axes=(2, 3))
    return to_plane(coeffs)


def scipy_idct_plane(plane: np.ndarray) -> np.ndarray:
    _, bh, bw = plane.shape
    natural = np.empty((bh, bw, 64))
    natural[:, :, ZZ] = plane.transpose(1, 2, 0)
    blocks = scipy_fft.idctn(natural.reshape(bh, bw, 8, 8), type=2, norm="ortho", axes=(2, 3))
    return blocks.transpose(0, 2, 1, 3).reshape(bh * 8, bw * 8)


def sample_image(seed: int = 0) -> np.ndarray:
    """A smooth colour image (H, W, 3) uint8: gradients plus blurred noise, so JPEG error is small."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float64)
    noise = rng.normal(0, 1, (H // 8 + 1, W // 8 + 1, 3))
    smooth = np.kron(noise, np.ones((8, 8, 1)))[:H, :W]
    base = np.stack([60 + 2 * xx, 40 + 3 * yy, 200 - xx - yy], axis=-1)
    return np.clip(base + 12 * smooth, 0, 255).astype(np.uint8)


def write_jpeg(tmp_path, subsampling: int | None, pixels: np.ndarray | None = None) -> str:
    """A quality-90 JPEG made by Pillow; ``subsampling`` 0/1/2 = 4:4:4/4:2:2/4:2:0, None = grayscale."""
    pixels = sample_image() if pixels is None else pixels
    path = str(tmp_path / f"img_{subsampling}.jpg")
    if subsampling is None:
        gray = pixels if pixels.ndim == 2 else pixels[..., 1]
        Image.fromarray(gray, mode="L").save(path, quality=90)
    else:
        Image.fromarray(pixels, mode="RGB").save(path, quality=90, subsampling=subsampling)
    return path


def read_planes(path: str) -> tuple[list[np.ndarray], np.ndarray]:
    """Dequantised zig-zag planes per component and jpeglib's sampling factors (rows: (v, h))."""
    jpeg = jpeglib.read_dct(path)
    comps = [jpeg.Y] if jpeg.Cb is None else [jpeg.Y, jpeg.Cb, jpeg.Cr]
    planes = []
    for i, blocks in enumerate(comps):
        qt = jpeg.qt[jpeg.quant_tbl_no[i]].reshape(64)[ZZ].astype(np.float64)  # natural -> zig-zag
        planes.append(to_plane(blocks).astype(np.float64) * qt[:, None, None])
    return planes, np.asarray(jpeg.samp_factor)


def decoded_ycbcr(path: str) -> np.ndarray:
    """libjpeg's decoded samples (H, W, C) float, without colour conversion (Pillow's draft mode)."""
    img = Image.open(path)
    if img.mode != "L":
        img.draft("YCbCr", img.size)
        assert img.mode == "YCbCr"
    return np.asarray(img, dtype=np.float64).reshape(img.size[1], img.size[0], -1)


# ----------------------------------------------------------------------------------------------
# zig-zag
# ----------------------------------------------------------------------------------------------
def test_zigzag_matches_the_anti_diagonal_walk() -> None:
    assert sorted(walked_zigzag()) == list(range(64))
    np.testing.assert_array_equal(layout.ZIGZAG, walked_zigzag())


def test_zigzag_hand_entries_from_t81_figure_a6() -> None:
    assert list(layout.ZIGZAG[:10]) == [0, 1, 8, 16, 9, 2, 3, 10, 17, 24]
    assert layout.ZIGZAG[63] == 63
    # Figure A.6 row v=7 reads 35 36 48 49 ...: k=35 is (v=7, u=0) = n 56, and n 49 = (6, 1) is k=34
    assert layout.ZIGZAG[35] == 56
    assert layout.ZIGZAG[34] == 49
    assert layout.ZIGZAG[20] == 40  # row v=5 of Figure A.6 starts with 20


def test_inverse_maps_natural_back_to_zigzag() -> None:
    for k, n in enumerate(walked_zigzag()):
        assert layout.INVERSE[n] == k


# ----------------------------------------------------------------------------------------------
# the DCT and in-block orientation
# ----------------------------------------------------------------------------------------------
def test_dct_matrix_is_the_orthonormal_dct_ii() -> None:
    c = layout.dct_matrix()
    np.testing.assert_allclose(c @ c.T, np.eye(8), atol=1e-12)
    # T.81 A.3.3 written as a sum: F(v,u) = 1/4 C(u) C(v) sum f(y,x) cos((2x+1)u pi/16) cos((2y+1)v pi/16)
    rng = np.random.default_rng(1)
    block = rng.uniform(-128, 127, (8, 8))
    cu = lambda f: 1 / np.sqrt(2) if f == 0 else 1.0  # noqa: E731
    f_vu = np.array([[0.25 * cu(u) * cu(v) * sum(
        block[y, x] * np.cos((2 * x + 1) * u * np.pi / 16) * np.cos((2 * y + 1) * v * np.pi / 16)
        for y in range(8) for x in range(8)) for u in range(8)] for v in range(8)])
    np.testing.assert_allclose(layout.fdct_blocks(block)[:, 0, 0], f_vu.reshape(64)[ZZ], atol=1e-9)


def test_fdct_and_idct_agree_with_scipy() -> None:
    rng = np.random.default_rng(2)
    pixels = rng.uniform(-128, 127, (16, 24))
    plane = layout.fdct_blocks(pixels)
    assert plane.shape == (64, 2, 3)
    np.testing.assert_allclose(plane, scipy_dct_plane(pixels), atol=1e-9)
    np.testing.assert_allclose(layout.idct_blocks(plane), pixels, atol=1e-9)
    np.testing.assert_allclose(layout.idct_blocks(plane), scipy_idct_plane(plane), atol=1e-9)


def test_horizontal_gradient_lands_in_u_not_v(tmp_path) -> None:
    # brightness rises left to right; the u=1 basis cos((2x+1)pi/16) falls, so its coefficient is < 0
    ramp = np.tile(np.arange(W) * 3 + 20, (H, 1)).astype(np.uint8)
    jpeg = jpeglib.read_dct(write_jpeg(tmp_path, None, ramp))
    assert (jpeg.Y[:, :, 0, 1] < -5).all()  # jpeglib axes: [.., vertical v, horizontal u]
    assert (abs(jpeg.Y[:, :, 1, 0]) <= 1).all()
    plane, _ = read_planes(write_jpeg(tmp_path, None, ramp))
    assert (plane[0][1] < -20).all() and (abs(plane[0][2]) <= 3).all()  # k=1 is n=1, k=2 is n=8
    ours = layout.fdct_blocks(ramp.astype(np.float64) - 128)
    assert (ours[1] < -20).all()
    np.testing.assert_allclose(ours[2], 0, atol=1e-9)


@pytest.mark.parametrize("subsampling", [0, 1, 2, None])
def test_luma_chain_matches_libjpeg(tmp_path, subsampling) -> None:
    path = write_jpeg(tmp_path, subsampling)
    planes, _ = read_planes(path)
    ours = layout.idct_blocks(planes[0]) + 128
    theirs = decoded_ycbcr(path)[..., 0]
    diff = np.abs(np.clip(ours, 0, 255) - theirs)
    # libjpeg's integer (islow) IDCT rounds to whole levels; measured: mean 0.25, max 0.51
    assert diff.mean() < 0.5 and diff.max() <= 1.0, (diff.mean(), diff.max())


def test_full_resolution_chroma_chain_matches_libjpeg(tmp_path) -> None:
    path = write_jpeg(tmp_path, 0)  # 4:4:4: libjpeg does no upsampling, so its Cb/Cr are comparable
    planes, _ = read_planes(path)
    decoded = decoded_ycbcr(path)
    for c in (1, 2):
        diff = np.abs(np.clip(layout.idct_blocks(planes[c]) + 128, 0, 255) - decoded[..., c])
        assert diff.mean() < 0.5 and diff.max() <= 1.0, (c, diff.mean(), diff.max())  # measured 0.25, 0.5


def chroma_factors(samp: np.ndarray) -> tuple[int, int]:
    """(fy, fx) of chroma from jpeglib's sampling factors (rows per component: (v, h))."""
    (yv, yh), (cv, ch) = samp[0], samp[1]
    return 2 * cv // yv, 2 * ch // yh


@pytest.mark.parametrize("subsampling, factors", [(0, (2, 2)), (1, (2, 1)), (2, (1, 1))])
def test_packed_image_decodes_to_pillows_rgb(tmp_path, subsampling, factors) -> None:
    path = write_jpeg(tmp_path, subsampling)
    planes, samp = read_planes(path)
    assert chroma_factors(samp) == factors
    x = layout.pack(planes[0], *(layout.chroma_to_420(p, factors) for p in planes[1:]))
    assert x.shape == (384, H // 16, W // 16) and x.dtype == torch.float32
    y, cb, cr = (t.double().numpy() for t in layout.unpack(x))
    up = lambda p: np.kron(layout.idct_blocks(p) + 128, np.ones((2, 2)))  # noqa: E731
    ycbcr = np.stack([layout.idct_blocks(y) + 128, up(cb), up(cr)], axis=-1)
    rgb = layout.ycbcr_to_rgb(ycbcr)
    diff = np.abs(rgb - np.asarray(Image.open(path).convert("RGB"), dtype=np.float64))
    # chroma at half resolution, nearest upsampling vs libjpeg's fancy one: measured mean 0.9 (4:4:4),
    # 1.6 (4:2:2), 1.9 (4:2:0) levels; swapped Cb/Cr or a transposed block would be tens of levels
    assert diff.mean() < 3.0, diff.mean()


# ----------------------------------------------------------------------------------------------
# colour
# ----------------------------------------------------------------------------------------------
def test_rgb_to_ycbcr_matches_pillow() -> None:
    rgb = np.random.default_rng(3).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    theirs = np.asarray(Image.fromarray(rgb).convert("YCbCr"), dtype=np.float64)
    diff = layout.rgb_to_ycbcr(rgb) - theirs
    # Pillow's fixed-point conversion truncates (so the mean gap is ~0.5), with a few 1e-3 of slack
    assert np.abs(diff).max() < 1.01 and np.abs(diff).mean() < 0.6, (np.abs(diff).max(), np.abs(diff).mean())


def test_ycbcr_known_values_from_t871() -> None:
    red = layout.rgb_to_ycbcr(np.array([255, 0, 0]), clip=False)
    np.testing.assert_allclose(red, [76.245, 84.9723, 255.5], atol=1e-3)
    np.testing.assert_allclose(layout.rgb_to_ycbcr(np.array([255, 0, 0])), [76.245, 84.9723, 255.0], atol=1e-3)
    np.testing.assert_allclose(layout.rgb_to_ycbcr(np.array([255, 255, 255])), [255, 128, 128], atol=1e-9)
    # T.871's printed inverse: R = Y + 1.402 (Cr-128), G = Y - 0.344136 (Cb-128) - 0.714136 (Cr-128),
    # B = Y + 1.772 (Cb-128)
    y, cb, cr = 100.0, 60.0, 190.0
    expect = [y + 1.402 * (cr - 128), y - 0.344136 * (cb - 128) - 0.714136 * (cr - 128), y + 1.772 * (cb - 128)]
    np.testing.assert_allclose(layout.ycbcr_to_rgb(np.array([y, cb, cr]), clip=False), expect, atol=1e-3)


def test_ycbcr_round_trip() -> None:
    rgb = np.random.default_rng(4).uniform(0, 255, (10, 3))
    np.testing.assert_allclose(layout.ycbcr_to_rgb(layout.rgb_to_ycbcr(rgb, clip=False)), rgb, atol=1e-9)


# ----------------------------------------------------------------------------------------------
# chroma onto the 4:2:0 grid
# ----------------------------------------------------------------------------------------------
def box_then_dct(plane: np.ndarray, fy: int, fx: int) -> np.ndarray:
    """The reference: decode (scipy IDCT), box-average fy x fx pixels, re-encode (scipy DCT)."""
    pixels = scipy_idct_plane(plane) + 128
    h, w = pixels.shape
    averaged = pixels.reshape(h // fy, fy, w // fx, fx).mean(axis=(1, 3))
    return scipy_dct_plane(averaged - 128)


@pytest.mark.parametrize("subsampling, factors", [(0, (2, 2)), (1, (2, 1))])
def test_chroma_to_420_is_dct_of_the_box_average(tmp_path, subsampling, factors) -> None:
    planes, _ = read_planes(write_jpeg(tmp_path, subsampling))
    for chroma in planes[1:]:
        out = layout.chroma_to_420(chroma, factors)
        assert out.shape == (64, H // 16, W // 16)
        np.testing.assert_allclose(out, box_then_dct(chroma, *factors), atol=1e-9)


def test_chroma_to_420_other_factor_and_identity() -> None:
    plane = np.random.default_rng(5).normal(0, 50, (64, 4, 6))
    np.testing.assert_allclose(layout.chroma_to_420(plane, (1, 2)), box_then_dct(plane, 1, 2), atol=1e-9)
    np.testing.assert_array_equal(layout.chroma_to_420(plane, (1, 1)), plane)


def test_chroma_to_420_pads_odd_block_counts_by_repeating_edge_blocks() -> None:
    plane = np.random.default_rng(6).normal(0, 50, (64, 3, 5))
    out = layout.chroma_to_420(plane, (2, 2))
    assert out.shape == (64, 2, 3)
    pixels = scipy_idct_plane(plane)  # (24, 40): repeat the last 8 pixel rows and columns
    pixels = np.concatenate([pixels, pixels[-8:]], axis=0)
    pixels = np.concatenate([pixels, pixels[:, -8:]], axis=1)
    np.testing.assert_allclose(out, scipy_dct_plane(pixels.reshape(16, 2, 24, 2).mean(axis=(1, 3))), atol=1e-9)


def test_chroma_to_420_rejects_bad_factors() -> None:
    with pytest.raises(CnnlabError, match="factors"):
        layout.chroma_to_420(np.zeros((64, 2, 2)), (3, 1))
    with pytest.raises(CnnlabError, match="plane"):
        layout.chroma_to_420(np.zeros((63, 2, 2)), (2, 2))


# ----------------------------------------------------------------------------------------------
# pack / unpack / center_grid
# ----------------------------------------------------------------------------------------------
def test_pack_channel_index_is_k4_dy2_dx() -> None:
    y = np.arange(64 * 4 * 6, dtype=np.float64).reshape(64, 4, 6)
    cb, cr = np.full((64, 2, 3), 1.0), np.full((64, 2, 3), 2.0)
    x = layout.pack(y, cb, cr)
    assert x.shape == (384, 2, 3) and x.dtype == torch.float32
    for k in (0, 1, 17, 63):
        for dy in (0, 1):
            for dx in (0, 1):
                for i in range(2):
                    for j in range(3):
                        assert x[k * 4 + dy * 2 + dx, i, j] == y[k, 2 * i + dy, 2 * j + dx]
    assert (x[256:320] == 1).all() and (x[320:] == 2).all()
    yb, cbb, crb = layout.unpack(x)
    np.testing.assert_array_equal(yb.numpy(), y)
    np.testing.assert_array_equal(cbb.numpy(), cb)
    np.testing.assert_array_equal(crb.numpy(), cr)


def test_pack_grayscale_has_zero_chroma_and_unpack_takes_batches() -> None:
    y = torch.randn(64, 4, 4)
    x = layout.pack(y)
    assert (x[256:] == 0).all()
    yb, cb, cr = layout.unpack(torch.stack([x, x]))
    assert yb.shape == (2, 64, 4, 4) and cb.shape == (2, 64, 2, 2) and cr.shape == (2, 64, 2, 2)
    torch.testing.assert_close(yb[1], y)


@pytest.mark.parametrize("y, cb, cr, match", [
    (np.zeros((64, 3, 4)), None, None, "even"),
    (np.zeros((64, 4, 4)), np.zeros((64, 2, 2)), None, "both"),
    (np.zeros((64, 4, 4)), np.zeros((64, 4, 4)), np.zeros((64, 4, 4)), "chroma_to_420"),
    (np.zeros((32, 4, 4)), None, None, "64"),
])
def test_pack_rejects_bad_shapes(y, cb, cr, match) -> None:
    with pytest.raises(CnnlabError, match=match):
        layout.pack(y, cb, cr)


def test_center_grid_crops_and_pads_centred() -> None:
    x = torch.arange(5 * 6, dtype=torch.float32).reshape(1, 5, 6)
    out = layout.center_grid(x, (3, 8))  # crop rows 1..3, pad one column each side
    assert out.shape == (1, 3, 8)
    assert (out[..., 0] == 0).all() and (out[..., 7] == 0).all()
    torch.testing.assert_close(out[..., 1:7], x[:, 1:4, :])
    arr = np.ones((384, 2, 2), dtype=np.float32)
    padded = layout.center_grid(arr, (4, 5))
    assert isinstance(padded, np.ndarray) and padded.sum() == 384 * 4
    assert padded[:, 1:3, 1:3].sum() == 384 * 4


# ----------------------------------------------------------------------------------------------
# augmentation
# ----------------------------------------------------------------------------------------------
def random_packed(n: int, h: int, w: int, seed: int) -> torch.Tensor:
    g = np.random.default_rng(seed)
    return torch.stack([layout.pack(g.normal(0, 30, (64, 2 * h, 2 * w)), g.normal(0, 30, (64, h, w)),
                                    g.normal(0, 30, (64, h, w))) for _ in range(n)]).double()


def test_hflip_equals_mirroring_the_decoded_image() -> None:
    x = random_packed(2, 2, 3, seed=7)
    flipped = augment.hflip(x)
    for plane, mirrored in zip(layout.unpack(x), layout.unpack(flipped), strict=True):  # y, cb, cr
        for n in range(2):
            np.testing.assert_allclose(scipy_idct_plane(mirrored[n].numpy()),
                                       scipy_idct_plane(plane[n].numpy())[:, ::-1], atol=1e-9)


def test_hflip_of_a_real_jpeg_matches_the_flipped_pixels(tmp_path) -> None:
    path = write_jpeg(tmp_path, 2)
    planes, _ = read_planes(path)
    x = layout.pack(*planes).double()[None]
    y = layout.unpack(augment.hflip(x))[0][0].numpy()
    np.testing.assert_allclose(layout.idct_blocks(y), layout.idct_blocks(planes[0])[:, ::-1], atol=1e-9)
    assert not np.allclose(y, planes[0])  # the image is not symmetric: the flip did something


def test_random_crop_is_on_the_cell_grid_and_seeded() -> None:
    x = random_packed(6, 3, 4, seed=8)
    crop = augment.random_crop(x, (2, 3), pad=1, generator=torch.Generator().manual_seed(0))
    again = augment.random_crop(x, (2, 3), pad=1, generator=torch.Generator().manual_seed(0))
    other = augment.random_crop(x, (2, 3), pad=1, generator=torch.Generator().manual_seed(1))
    assert crop.shape == (6, 384, 2, 3)
    torch.testing.assert_close(crop, again)
    assert not torch.equal(crop, other)
    padded = torch.nn.functional.pad(x, (1, 1, 1, 1))
    for n in range(6):  # every crop is one whole-cell window of the zero-padded image
        windows = [(oy, ox) for oy in range(4) for ox in range(4)
                   if torch.equal(crop[n], padded[n, :, oy:oy + 2, ox:ox + 3])]
        assert len(windows) == 1


def test_random_crop_of_y_is_a_16px_aligned_pixel_crop() -> None:
    x = random_packed(4, 3, 4, seed=9)
    crop = augment.random_crop(x, (2, 2), pad=0, generator=torch.Generator().manual_seed(3))
    for n in range(4):
        full = scipy_idct_plane(layout.unpack(x[n])[0].numpy())  # (48, 64) pixels
        part = scipy_idct_plane(layout.unpack(crop[n])[0].numpy())  # (32, 32)
        hits = [(py, px) for py in range(0, 48 - 32 + 1) for px in range(0, 64 - 32 + 1)
                if np.allclose(full[py:py + 32, px:px + 32], part, atol=1e-9)]
        assert len(hits) == 1 and hits[0][0] % 16 == 0 and hits[0][1] % 16 == 0


def test_random_crop_rejects_a_grid_too_large() -> None:
    with pytest.raises(CnnlabError, match="grid"):
        augment.random_crop(torch.zeros(1, 384, 2, 2), (5, 2), pad=1, generator=torch.Generator())
    with pytest.raises(CnnlabError, match="384"):
        augment.hflip(torch.zeros(1, 256, 2, 2))


def test_dct_flip_crop_flips_and_shifts_per_image() -> None:
    x = random_packed(1, 2, 3, seed=10).repeat(32, 1, 1, 1)
    out = augment.dct_flip_crop(x, torch.Generator().manual_seed(0), pad=0)
    assert out.shape == x.shape
    flipped = [torch.equal(o, augment.hflip(x[:1])[0]) for o in out]
    plain = [torch.equal(o, x[0]) for o in out]
    assert all(f != p for f, p in zip(flipped, plain, strict=True))  # each image: flipped or not
    assert 4 <= sum(flipped) <= 28
    shifted = augment.dct_flip_crop(x, torch.Generator().manual_seed(0), pad=1)
    torch.testing.assert_close(shifted, augment.dct_flip_crop(x, torch.Generator().manual_seed(0), pad=1))
    assert shifted.shape == x.shape
    assert sum(bool((o == 0).all(dim=0).any()) for o in shifted) >= 8  # zero-filled cells appear


def _moved(pixels: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """``pixels`` moved down by dy and right by dx (negative: up / left), zeros coming in."""
    out = np.zeros_like(pixels)
    h, w = pixels.shape
    out[max(dy, 0):h + min(dy, 0), max(dx, 0):w + min(dx, 0)] = pixels[max(-dy, 0):h - max(dy, 0),
                                                                       max(-dx, 0):w - max(dx, 0)]
    return out


def test_shift_equals_moving_the_decoded_pixels_by_any_even_amount() -> None:
    x = random_packed(3, 2, 3, seed=11)
    dy, dx = torch.tensor([4, -2, 10]), torch.tensor([-6, 2, 0])
    out = augment.shift(x, dy, dx)
    assert out.shape == x.shape and out.dtype == x.dtype
    for plane, moved in zip(layout.unpack(x), layout.unpack(out), strict=True):  # y, cb, cr
        scale = 1 if plane.shape[-1] == 6 else 2  # chroma is at half resolution: half the pixels
        for n in range(3):
            want = _moved(scipy_idct_plane(plane[n].numpy()), int(dy[n]) // scale, int(dx[n]) // scale)
            np.testing.assert_allclose(scipy_idct_plane(moved[n].numpy()), want, atol=1e-9)


def test_random_shift_is_seeded_within_range_and_checks_its_arguments() -> None:
    x = random_packed(1, 2, 2, seed=12).repeat(16, 1, 1, 1).float()
    first = augment.random_shift(x, 4, torch.Generator().manual_seed(0))
    torch.testing.assert_close(first, augment.random_shift(x, 4, torch.Generator().manual_seed(0)))
    assert not torch.equal(first, augment.random_shift(x, 4, torch.Generator().manual_seed(1)))
    candidates = {(dy, dx): augment.shift(x[:1], torch.tensor([dy]), torch.tensor([dx]))[0]
                  for dy in range(-4, 5, 2) for dx in range(-4, 5, 2)}
    seen = set()
    for image in first:  # each output is one of the 25 allowed shifts
        hits = [d for d, c in candidates.items() if torch.allclose(image, c, atol=1e-3)]
        assert len(hits) == 1
        seen.add(hits[0])
    assert len(seen) > 4
    torch.testing.assert_close(augment.random_shift(x, 0, torch.Generator()), x, atol=1e-3, rtol=0)
    with pytest.raises(CnnlabError, match="even"):
        augment.random_shift(x, 3, torch.Generator())
    with pytest.raises(CnnlabError, match="even"):
        augment.shift(x[:2], torch.tensor([1, 0]), torch.tensor([0, 0]))
