"""`cnnlab predict RUN INPUT... [--out DIR]`: what the run's task predicts for image or audio files or
folders (top-k classes, per window for long recordings; masks with overlays; upscaled images)."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click

from cnnlab.cli._options import INFERENCE_PRECISIONS, echo_rows


def format_rows(rows: list[dict[str, Any]], fmt: str) -> str:
    """CSV (path, rank, class, probability) or JSON text."""
    if fmt == "json":
        return json.dumps(rows, indent=2) + "\n"
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["path", "rank", "class", "probability"])
    for row in rows:
        for rank, item in enumerate(row["top"], 1):
            writer.writerow([row["path"], rank, item["class"], item["probability"]])
    return buf.getvalue()


def print_table(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    table.add_column("image")
    k = max((len(r["top"]) for r in rows), default=0)
    for rank in range(1, k + 1):
        table.add_column(f"#{rank}")
    for row in rows:
        table.add_row(row["path"], *(f"{t['class']} {t['probability']:.3f}" for t in row["top"]))
        for w in row.get("windows", []):  # long recordings: the best class of every window under the file
            table.add_row(f"  {w['start']:.2f}-{w['end']:.2f} s", f"{w['class']} {w['probability']:.3f}")
    Console().print(table)


def output_path(out: Path, fmt: str) -> tuple[Path, str]:
    """--out FILE.csv / FILE.json is that file; any other --out is a folder holding predictions.<fmt>."""
    if out.suffix in (".csv", ".json"):
        return out, out.suffix[1:]
    if out.suffix and not out.is_dir():  # "preds.txt" meant a file: do not create a folder of that name
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"--out {out}: predictions are written as .csv or .json; name a .csv/.json file "
                          "or a folder")
    fmt = "csv" if fmt == "table" else fmt
    return out / f"predictions.{fmt}", fmt


@click.command("predict")
@click.argument("run", type=click.Path(path_type=Path))
@click.argument("inputs", nargs=-1, required=True)
@click.option("--top-k", type=int, help="classify: how many classes to list per image.  [default: 3]")
@click.option("--tile", type=int, help="superres/denoise/inpaint: tile size in input pixels (bounded memory).  "
              "[default: 256 superres, 512 denoise/inpaint]")
@click.option("--overlap", type=int, help="superres/denoise/inpaint: context pixels around each tile.  "
              "[default: 16 superres, 48 denoise/inpaint]")
@click.option("--mask", help="inpaint: the holes, white = hole: a mask file for every input, or a folder with a "
              "mask per input (same file stem).")
@click.option("--hop", type=float, help="audio: seconds between the windows slid over long recordings.  "
              "[default: half the window]")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path),
              help="classify: a .csv/.json file, or a folder for predictions.<format>; image tasks: the "
                   "folder for the output images (required).")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(INFERENCE_PRECISIONS), default="run",
              show_default=True, help="run: the precision the run trained in, as it resolves here; fp32 for exact "
                                      "outputs (image-to-image tasks always use fp32).")
def predict(run: Path, inputs: tuple[str, ...], top_k: int | None, tile: int | None, overlap: int | None,
            mask: str | None, hop: float | None, fmt: str, out: Path | None, device: str, precision: str) -> None:
    """Predict INPUT image or audio files or folders with the run directory RUN.

    \b
    cnnlab predict runs/shapes photo.png                  (classify: top-3 classes)
    cnnlab predict runs/camvid frames/ --out masks        (segment: <stem>.png mask + overlay)
    cnnlab predict runs/sr3 small.png --out big           (superres: <stem>.png, 3x larger)
    cnnlab predict runs/dn25 noisy.png --out clean        (denoise: <stem>.png, denoised)
    cnnlab predict runs/fill photo.png --mask holes.png --out filled  (inpaint: white = hole)
    cnnlab predict runs/digits speech.wav                 (audio: top-3, and per window if long)
    """
    from cnnlab.app.inference import load_fast

    options = {k: v for k, v in (("top_k", top_k), ("tile", tile), ("overlap", overlap), ("hop", hop),
                                 ("mask", mask)) if v is not None}
    loaded = load_fast(run, device, precision)
    if not loaded.task.writes_images:
        target = output_path(out, fmt) if out is not None else None  # a bad --out fails before the work
        rows = loaded.task.predict_files(loaded, list(inputs), None, options)
        _write_classes(rows, target, fmt)
        return
    rows = loaded.task.predict_files(loaded, list(inputs), out, options)
    echo_rows(rows, fmt, lambda row: f"{row['path']} -> "
              f"{', '.join(str(v) for k, v in row.items() if k in ('mask', 'overlay', 'output'))}",
              f"wrote predictions for {len(rows)} image(s) into {out}")


def _write_classes(rows: list[dict[str, Any]], target: tuple[Path, str] | None, fmt: str) -> None:
    if target is not None:
        from cnnlab.files import atomic_write

        path, file_fmt = target
        # surrogateescape: a file name that is not UTF-8 goes into the CSV as the bytes it has on disk
        data = format_rows(rows, file_fmt).encode("utf-8", "surrogateescape")
        atomic_write(path, lambda p: p.write_bytes(data))
        click.echo(f"wrote {len(rows)} predictions to {path}", err=True)
        return
    if fmt == "table":
        print_table(rows)
    else:
        click.echo(format_rows(rows, fmt), nl=False)
