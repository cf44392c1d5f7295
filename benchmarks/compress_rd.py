"""The rate-distortion plot of one or more `compress` runs against JPEG (issue 11), from real files.

For every run: each held-out photo (the runs' own validation split, loaded as ``cnnlab eval`` loads it)
is written as a real compressed file in memory (``cnnlab.app.compress.encode``, the code behind
``cnnlab compress``, header included) and decoded back from those bytes alone (``decode``); bpp is the
file's bits over the image's pixels, PSNR is on RGB, 0-255, no shave. JPEG on the same images is the
code ``cnnlab eval`` reports ``jpeg_bpp``/``jpeg_psnr`` with (``cnnlab.tasks.compress``: Pillow, 4:2:0
chroma, optimised Huffman tables, no metadata), twice: its curve over a list of qualities (mean bpp,
mean PSNR), and per image at the highest quality whose file has no more bits than the model's file.

    python benchmarks/compress_rd.py RUN [RUN...] [--data DIR] [--out rd.png] [--limit N]

Prints one row per run (files' bpp and PSNR, JPEG at no more bits, JPEG's curve interpolated at the
run's bpp) and the JPEG curve, and writes the plot (bpp vs PSNR) to ``--out``. Every run must have been
trained on the same data with the same split, so that all points are on the same images.
"""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

from cnnlab._runtime import tune_openmp_env

tune_openmp_env()  # as the CLI does, before torch loads

import torch  # noqa: E402

QUALITIES = (1, 2, 3, 5, 8, 10, 15, 20, 30, 50, 75)


def interpolate(curve: list[tuple[float, float]], bpp: float) -> float:
    """JPEG's PSNR at ``bpp`` on its (bpp, PSNR) curve, linear between points; NaN outside its range."""
    points = sorted(curve)
    for (b0, p0), (b1, p1) in zip(points, points[1:], strict=False):
        if b0 <= bpp <= b1:
            return p0 if b1 == b0 else p0 + (p1 - p0) * (bpp - b0) / (b1 - b0)
    return math.nan


def run_points(run, images: list[torch.Tensor]) -> dict[str, float]:
    """Mean file bpp and PSNR of ``run`` over ``images`` (real files), and JPEG's at no more bits."""
    from cnnlab.app import compress as codec
    from cnnlab.tasks import restore
    from cnnlab.tasks.compress import jpeg_at_bpp

    sums = dict.fromkeys(("bpp", "psnr", "jpeg_bpp", "jpeg_psnr", "wins"), 0.0)
    start = time.perf_counter()
    for image in images:
        data = codec.encode(run, image)
        decoded = codec.decode(run, data)
        bpp = codec.file_bpp(data, image)
        psnr = float(restore.psnr_8bit(decoded[None].float() / 255, image[None])[0])
        _, jpeg_bpp, jpeg = jpeg_at_bpp(image, bpp)
        jpeg_psnr = float(restore.psnr_8bit(jpeg[None].float() / 255, image[None])[0])
        sums["bpp"] += bpp
        sums["psnr"] += psnr
        sums["jpeg_bpp"] += jpeg_bpp
        sums["jpeg_psnr"] += jpeg_psnr
        sums["wins"] += float(psnr > jpeg_psnr)
    out = {k: v / len(images) for k, v in sums.items() if k != "wins"}
    out["wins"] = int(sums["wins"])
    out["seconds_per_image"] = (time.perf_counter() - start) / len(images)
    return out


def jpeg_curve(images: list[torch.Tensor], qualities: list[int]) -> list[tuple[int, float, float]]:
    """(quality, mean bpp, mean PSNR) of JPEG over ``images`` at each quality."""
    from cnnlab.app.compress import file_bpp
    from cnnlab.tasks import restore
    from cnnlab.tasks.compress import jpeg_bytes, jpeg_decode

    rows = []
    for q in qualities:
        bpp = psnr = 0.0
        for image in images:
            data = jpeg_bytes(image, q)
            bpp += file_bpp(data, image)  # all the file's bits, headers included, as for the model's files
            psnr += float(restore.psnr_8bit(jpeg_decode(data, image.shape[0])[None].float() / 255, image[None])[0])
        rows.append((q, bpp / len(images), psnr / len(images)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", help="compress run directories")
    parser.add_argument("--data", default=None, help="the data the runs were trained on (default: the first run's)")
    parser.add_argument("--out", default="rd.png", help="the plot's PNG path (default rd.png)")
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out images (a quick check)")
    parser.add_argument("--qualities", default=",".join(map(str, QUALITIES)), help="JPEG qualities of the curve")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from cnnlab.app.evaluate import load_like_run, loaded_as, same_spec
    from cnnlab.app.inference import load_fast
    from cnnlab.render.lines import Line, Panel, plot_panels
    from cnnlab.tasks import restore

    runs = [load_fast(r, "cpu", "run") for r in args.runs]
    for path, run in zip(args.runs, runs, strict=True):
        if run.task.name != "compress":
            raise SystemExit(f"{path} is a {run.task.name} run, not compress")
    data = args.data or runs[0].config["data"]["spec"]
    first = runs[0]
    for path, run in zip(args.runs, runs, strict=True):
        if not same_spec(data, run.config["data"]):
            raise SystemExit(f"{path} was not trained on {data}: its held-out split would not be these images")
        if loaded_as(run) != loaded_as(first) or run.config["train"].get("limit") != first.config["train"].get("limit"):
            raise SystemExit(f"{path} split its data differently from {args.runs[0]}: the points would not be on "
                             "the same images")
    split = load_like_run(first, data, first.config["train"].get("limit")).val
    images = restore.images_of(split)[: args.limit]
    qualities = [int(q) for q in args.qualities.split(",")]

    curve = jpeg_curve(images, qualities)
    rows = []
    with torch.no_grad():
        for path, run in zip(args.runs, runs, strict=True):
            found = run_points(run, images)
            found["jpeg_curve_psnr"] = interpolate([(b, p) for _, b, p in curve], found["bpp"])
            rows.append((path, run, found))

    print(f"{len(images)} held-out images of {data}; PSNR on RGB, 0-255, no shave, mean over images; model bpp from "
          "real files (header included); JPEG = Pillow, 4:2:0, optimize=True")
    print("| run | lambda | model bpp | model PSNR | JPEG at no more bits: bpp / PSNR | model better on | "
          "JPEG curve at model bpp | model - JPEG curve |")
    print("|---|---|---|---|---|---|---|---|")
    for path, run, f in rows:
        gap = f["psnr"] - f["jpeg_curve_psnr"]
        curve_txt = "below JPEG q1's rate" if math.isnan(f["jpeg_curve_psnr"]) else f"{f['jpeg_curve_psnr']:.2f}"
        gap_txt = "n/a" if math.isnan(gap) else f"{gap:+.2f} dB"
        print(f"| {path} | {run.task.lmbda:g} | {f['bpp']:.4f} | {f['psnr']:.2f} | {f['jpeg_bpp']:.4f} / "
              f"{f['jpeg_psnr']:.2f} | {f['wins']} of {len(images)} | {curve_txt} | {gap_txt} |")
    print("\nJPEG curve (quality: mean bpp / mean PSNR): " + ", ".join(f"q{q} {b:.3f}/{p:.2f}" for q, b, p in curve))

    lines = [Line("JPEG (Pillow 4:2:0, optimized)", [b for _, b, _ in curve], [p for _, _, p in curve],
                  style="-", color="black", marker="o")]
    for path, run, f in rows:
        lines.append(Line(f"{Path(path).name} (lambda {run.task.lmbda:g}), real files", [f["bpp"]], [f["psnr"]],
                          style="", marker="*", width=0))
    top = max(max(b for _, b, _ in curve), *(f["bpp"] for *_, f in rows))
    panel = Panel(f"{len(images)} held-out photos of {Path(data).name}", lines, xlabel="bits per pixel",
                  ylabel="PSNR (RGB, dB)")
    written = plot_panels([panel], args.out, title="Rate-distortion: learned compression vs JPEG")
    print(f"plot: {written} (bpp up to {top:.2f})")


if __name__ == "__main__":
    main()
