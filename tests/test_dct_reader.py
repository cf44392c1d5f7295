"""The JPEG coefficient reader (cnnlab.dct.reader) against libjpeg's own coefficients (jpeglib).

jpeglib reads the coefficients through libjpeg's jpeg_read_coefficients: an independent decoder.
Its blocks are (rows, cols, v, u) in natural order; the test converts them to the reader's layout
with the standard's zig-zag order written out here (T.81 Figure A.6), not the code's table.
"""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image, ImageFilter

from cnnlab.dct.reader import JpegError, read_coefficients
from cnnlab.errors import CnnlabError

jpeglib = pytest.importorskip("jpeglib")

# T.81 Figure A.6, row by row: the zig-zag index of each natural position v*8+u
FIGURE_A6 = [
    0, 1, 5, 6, 14, 15, 27, 28,
    2, 4, 7, 13, 16, 26, 29, 42,
    3, 8, 12, 17, 25, 30, 41, 43,
    9, 11, 18, 24, 31, 40, 44, 53,
    10, 19, 23, 32, 39, 45, 52, 54,
    20, 22, 33, 38, 46, 51, 55, 60,
    21, 34, 37, 47, 50, 56, 59, 61,
    35, 36, 48, 49, 57, 58, 62, 63,
]
NATURAL_OF = np.argsort(FIGURE_A6)  # zig-zag k -> natural index


def photo(h: int = 123, w: int = 77, seed: int = 0) -> Image.Image:
    """A smooth random colour picture (blurred noise: real images' spectrum, not a flat one)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)).filter(ImageFilter.GaussianBlur(2))


def jpeg_bytes(img: Image.Image, **save) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", **save)
    return out.getvalue()


def oracle(path) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """libjpeg's quantised coefficients and tables, in the reader's (64, rows, cols) zig-zag layout."""
    d = jpeglib.read_dct(str(path))
    blocks = [d.Y] + ([d.Cb, d.Cr] if d.Cb is not None else [])
    planes = [np.moveaxis(b.reshape(*b.shape[:2], 64)[:, :, NATURAL_OF], 2, 0) for b in blocks]
    tables = [d.qt[i].reshape(64)[NATURAL_OF] for i in d.quant_tbl_no[:len(blocks)]]
    return planes, tables


def check_against_libjpeg(tmp_path, data: bytes):
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    got = read_coefficients(path)
    planes, tables = oracle(path)
    assert len(got.planes) == len(planes)
    for mine, theirs in zip(got.planes, planes, strict=True):
        assert mine.shape == theirs.shape
        np.testing.assert_array_equal(mine, theirs)
    for mine, theirs in zip(got.qtables, tables, strict=True):
        np.testing.assert_array_equal(mine, theirs)
    return got


@pytest.mark.parametrize("subsampling,name", [(0, "4:4:4"), (1, "4:2:2"), (2, "4:2:0")])
@pytest.mark.parametrize("progressive", [False, True])
@pytest.mark.parametrize("quality", [30, 95])
def test_colour_files_match_libjpeg(tmp_path, subsampling, name, progressive, quality):
    got = check_against_libjpeg(tmp_path, jpeg_bytes(photo(), quality=quality, subsampling=subsampling,
                                                      progressive=progressive))
    assert got.subsampling == name and got.progressive == progressive and got.size == (123, 77)


@pytest.mark.parametrize("progressive", [False, True])
def test_grayscale_matches_libjpeg(tmp_path, progressive):
    got = check_against_libjpeg(tmp_path, jpeg_bytes(photo().convert("L"), quality=80, progressive=progressive))
    assert got.subsampling == "gray" and len(got.planes) == 1


@pytest.mark.parametrize("save", [{"restart_marker_blocks": 3}, {"restart_marker_rows": 1},
                                  {"restart_marker_blocks": 1, "progressive": True},
                                  {"restart_marker_rows": 2, "progressive": True, "subsampling": 1}])
def test_restart_intervals(tmp_path, save):
    data = jpeg_bytes(photo(300, 211, seed=1), quality=85, **save)
    assert b"\xff\xdd" in data and b"\xff\xd0" in data  # the file really has a DRI and RST markers
    check_against_libjpeg(tmp_path, data)


def test_optimized_huffman_tables_and_odd_sizes(tmp_path):
    for h, w in [(1, 1), (7, 9), (16, 16), (17, 33)]:
        check_against_libjpeg(tmp_path, jpeg_bytes(photo(h, w), quality=90, optimize=True))


def test_dequantized_is_coefficient_times_table(tmp_path):
    got = read_coefficients(jpeg_bytes(photo(), quality=50))
    for plane, table, deq in zip(got.planes, got.qtables, got.dequantized(), strict=True):
        np.testing.assert_array_equal(deq, plane.astype(np.float32) * table[:, None, None])


@pytest.mark.data
def test_real_photos_match_libjpeg(shared_data, tmp_path):
    files = sorted((shared_data / "cats_vs_dogs").rglob("*.jpg"))[:40]
    if not files:
        pytest.skip("no cats_vs_dogs photos")
    for f in files:
        check_against_libjpeg(tmp_path, f.read_bytes())


def test_errors_name_the_file_and_reason(tmp_path):
    png = tmp_path / "a.png"
    photo().save(png)
    with pytest.raises(JpegError, match=r"a\.png is not a JPEG"):
        read_coefficients(png)
    data = jpeg_bytes(photo(200, 200), quality=90)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(JpegError, match=r"cut\.jpg is truncated"):
        read_coefficients(cut)
    with pytest.raises(CnnlabError, match="cannot read"):
        read_coefficients(tmp_path / "missing.jpg")


def test_cmyk_and_arithmetic_are_refused(tmp_path):
    cmyk = io.BytesIO()
    photo().convert("CMYK").save(cmyk, "JPEG")
    with pytest.raises(JpegError, match="CMYK"):
        read_coefficients(cmyk.getvalue(), name="cmyk.jpg")
    # An arithmetic-coded frame header (SOF9) in an otherwise valid file
    data = bytearray(jpeg_bytes(photo(), quality=90))
    sof = data.index(b"\xff\xc0")
    data[sof + 1] = 0xC9
    with pytest.raises(JpegError, match="arithmetic"):
        read_coefficients(bytes(data), name="arith.jpg")
    data[sof + 1] = 0xC3
    with pytest.raises(JpegError, match="lossless"):
        read_coefficients(bytes(data), name="lossless.jpg")


def test_corrupt_entropy_data_fails_cleanly():
    data = bytearray(jpeg_bytes(photo(64, 64), quality=90))
    start = data.index(b"\xff\xda") + 14  # inside the scan
    rng = np.random.default_rng(0)
    outcomes = set()
    for _ in range(30):  # random garbage gives an error or well-formed planes, never a crash
        broken = bytearray(data)
        broken[start:start + 40] = bytes(rng.integers(0, 255, 40, dtype=np.uint8).tolist())
        try:
            got = read_coefficients(bytes(broken), name="broken.jpg")
        except JpegError as exc:
            assert "broken.jpg" in str(exc)
            outcomes.add("error")
        else:
            assert [p.shape for p in got.planes] == [(64, 8, 8), (64, 4, 4), (64, 4, 4)]
            outcomes.add("read")
    assert "error" in outcomes  # 40 random bytes in the Huffman data are noticed at least sometimes
