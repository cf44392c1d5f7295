"""Reading JPEG photos: DCT coefficients against full RGB decoding, side by side in one run (issue 13a).

On the original cats-vs-dogs JPEGs of ../shared/data (never re-encoded), one thread, files already in
memory (bytes), interleaved round by round, best round of each:

  cnnlab coefficients   cnnlab.dct.reader.read_coefficients: entropy decoding only (jpegdct.c)
  cnnlab model input    + dequantise, chroma to 4:2:0, pack, centre crop (--input dct's whole read)
  jpeglib coefficients  libjpeg's jpeg_read_coefficients through jpeglib (the test oracle)
  simplejpeg RGB        libjpeg-turbo's full decode (the fastest RGB decoder that installs here)
  Pillow RGB            Image.open(...).convert("RGB"): what the RGB data path uses

Prints microseconds per image, images/s and every row's ratio to Pillow and to simplejpeg.

    python benchmarks/jpeg_read_bench.py [--files 300] [--rounds 3] [--crop 224]
"""

from __future__ import annotations

import argparse
import io
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_runs import cpu_name  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
PHOTOS = REPO.parent / "shared" / "data" / "cats_vs_dogs"


def readers(crop: int) -> dict:
    import torch
    from PIL import Image

    from cnnlab.dct.data import grid_of, packed
    from cnnlab.dct.reader import read_coefficients

    grid = grid_of((crop, crop))
    rows = {"cnnlab coefficients": read_coefficients,  # the steps of cnnlab.dct.data.read_packed, on bytes
            "cnnlab model input": lambda data: packed(read_coefficients(data), grid=grid).to(torch.float16)}
    try:
        import jpeglib

        def jpeglib_read(data: bytes):
            tmp = Path("/tmp/cnnlab_jpeg_bench.jpg")  # jpeglib reads files only
            tmp.write_bytes(data)
            return jpeglib.read_dct(str(tmp)).Y

        rows["jpeglib coefficients"] = jpeglib_read
    except ImportError:
        print("jpeglib not installed: its row is left out (pip install jpeglib)")
    try:
        import simplejpeg

        rows["simplejpeg RGB"] = simplejpeg.decode_jpeg
    except ImportError:
        print("simplejpeg not installed: its row is left out (pip install simplejpeg)")
    rows["Pillow RGB"] = lambda data: np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=str(PHOTOS))
    parser.add_argument("--files", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--crop", type=int, default=224)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    files = sorted(Path(args.data).rglob("*.jp*g"))[: args.files]
    if not files:
        raise SystemExit(f"no JPEG files under {args.data}")
    blobs = [f.read_bytes() for f in files]
    from PIL import Image

    pixels = [int(np.prod(Image.open(f).size)) for f in files]
    rows = readers(args.crop)
    for fn in rows.values():  # warm up: build the C reader, load libraries
        fn(blobs[0])
    best = {name: float("inf") for name in rows}
    for _ in range(args.rounds):
        for name, fn in rows.items():
            start = time.perf_counter()
            for b in blobs:
                fn(b)
            best[name] = min(best[name], (time.perf_counter() - start) / len(blobs))
    print(f"{len(files)} photos from {args.data}, median {int(np.median(pixels)):,} pixels, "
          f"{np.mean([len(b) for b in blobs]) / 1024:.1f} KiB; CPU: {cpu_name()}; 1 thread; best of {args.rounds}")
    print(f"{'reader':24s} {'us/image':>9s} {'images/s':>9s} {'vs Pillow':>10s} {'vs simplejpeg':>14s}")
    for name, t in best.items():
        vs_sj = f"{best['simplejpeg RGB'] / t:13.2f}x" if "simplejpeg RGB" in best else "-"
        print(f"{name:24s} {t * 1e6:9.0f} {1 / t:9.0f} {best['Pillow RGB'] / t:9.2f}x {vs_sj}")


if __name__ == "__main__":
    main()
