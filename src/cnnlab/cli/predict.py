"""`cnnlab predict RUN INPUT...`: the top-k classes, with probabilities, of image files or folders."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import click


def predict_files(run_dir: str | Path, inputs: list[str], top_k: int = 3, device: str = "cpu",
                  batch_size: int = 64) -> list[dict[str, Any]]:
    """One dict per readable image: its path and the top-k (class, probability) pairs, best first."""
    import torch

    from cnnlab.data import load_images
    from cnnlab.train.run import load_run

    run = load_run(run_dir, device)
    x, paths = load_images(inputs, image_size=run.image_size, in_channels=run.in_channels)
    rows = []
    with torch.no_grad():
        for i in range(0, len(x), batch_size):
            probs = run.task.predict(run.model(run.preprocess(x[i:i + batch_size].to(run.device)))).cpu()
            values, indices = probs.topk(min(top_k, probs.shape[1]), dim=1)
            for j in range(len(probs)):
                top = [{"class": run.class_names[int(c)], "probability": round(float(p), 6)}
                       for p, c in zip(values[j], indices[j], strict=True)]
                rows.append({"path": str(paths[i + j]), "top": top})
    return rows


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
@click.option("--top-k", type=int, default=3, show_default=True, help="How many classes to list per image.")
@click.option("--format", "fmt", type=click.Choice(["table", "csv", "json"]), default="table", show_default=True)
@click.option("--out", type=click.Path(path_type=Path),
              help="Write the predictions to this .csv/.json file, or into this folder as predictions.<format>.")
@click.option("--device", default="cpu", show_default=True)
def predict(run: Path, inputs: tuple[str, ...], top_k: int, fmt: str, out: Path | None, device: str) -> None:
    """Predict the classes of INPUT image files or folders with the run directory RUN."""
    from cnnlab.errors import CnnlabError

    if top_k < 1:
        raise CnnlabError("--top-k must be at least 1")
    target = output_path(out, fmt) if out is not None else None  # a bad --out fails before the work
    rows = predict_files(run, list(inputs), top_k, device)
    if target is not None:
        from cnnlab.train.checkpoint import atomic_write

        path, file_fmt = target
        text = format_rows(rows, file_fmt)
        atomic_write(path, lambda p: p.write_text(text))
        click.echo(f"wrote {len(rows)} predictions to {path}", err=True)
        return
    if fmt == "table":
        print_table(rows)
    else:
        click.echo(format_rows(rows, fmt), nl=False)
