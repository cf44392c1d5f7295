"""`cnnlab eval RUN --data SPEC [--json]`: a run's metrics on a data spec (its task's: top-1 and
per-class precision/recall, mIoU and per-class IoU, PSNR/SSIM beside bicubic's), with its plots."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from cnnlab.cli._options import INFERENCE_PRECISIONS


def _cell(value: float) -> str:
    if value != value:  # NaN: the class is absent from the data and the predictions
        return "-"
    return f"{value:.3f}" if isinstance(value, float) and not value.is_integer() else f"{int(value)}"


def print_tables(result: dict[str, Any], class_names: list[str]) -> None:
    """Metrics, per-class precision/recall and the confusion matrix as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{result['run']} on {result['data']}: {result['split']} split, {result['examples']} examples")
    summary = Table()
    # top-5 is always 1.0 with 5 classes or fewer: not worth a column there
    few = 0 < len(class_names) <= 5
    keys = [k for k, v in result.items() if isinstance(v, float) and not (few and k == "top5")]
    for key in keys:
        summary.add_column(key, justify="right")
    summary.add_row(*(f"{result[k]:.4f}" for k in keys))
    console.print(summary)
    if "per_class" not in result:
        return
    per = Table(title="per class")
    columns = list(next(iter(result["per_class"].values()), {}))
    for col in ("class", *columns):
        per.add_column(col, justify="left" if col == "class" else "right")
    for name, row in result["per_class"].items():
        per.add_row(name, *(_cell(row[c]) for c in columns))
    console.print(per)
    if "confusion" not in result:
        return
    cm = Table(title="confusion matrix (rows: true, columns: predicted)")
    cm.add_column("")
    for name in class_names:
        cm.add_column(name[:8], justify="right")
    for name, row in zip(class_names, result["confusion"], strict=True):
        cm.add_row(name, *(str(v) for v in row))
    console.print(cm)


@click.command("eval")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--data", "spec", required=True, help="Data spec to evaluate on.")
@click.option("--split", type=click.Choice(["auto", "val", "train", "all"]), default="auto", show_default=True,
              help="auto: the held-out split of the run's own data, every example of other data.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object on stdout (nothing else).")
@click.option("--plot", type=click.Path(path_type=Path),
              help="Where to write the confusion matrix image.  [default: RUN/eval_confusion.png]")
@click.option("--batch-size", type=int, help="Images per forward pass.  [default: about 262,144 pixels' worth, "
              "at most 256: small batches stay in cache]")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
@click.option("--precision", type=click.Choice(INFERENCE_PRECISIONS), default="run", show_default=True,
              help="run: the precision the run trained in (as it resolves on this device); fp32 for exact "
                   "figures. Tasks scored on 8-bit levels (PSNR) always use fp32.")
@click.option("--tta", default="none", show_default=True,
              help="Test-time augmentation: none, flip, or flip-translate (classify; segment and superres: flip).")
@click.option("--limit", type=int, help="Evaluate at most this many images.")
def evaluate(run: Path, spec: str, split: str, as_json: bool, plot: Path | None, batch_size: int | None, device: str,
             precision: str, tta: str, limit: int | None) -> None:
    """Evaluate the run directory RUN on --data with its task's metrics (classify: top-1/top-5 and
    per-class precision/recall; segment: mIoU, pixel accuracy and per-class IoU; superres: PSNR/SSIM
    on Y beside bicubic's), printed, and the confusion matrix written as an image where there is one."""
    from cnnlab.app.evaluate import evaluate_run

    result, meter = evaluate_run(run, spec, split, batch_size, device, limit, precision, tta)
    names = list(result.get("per_class", {}))
    if "confusion" in result:
        from cnnlab.render.confusion import plot_confusion

        result["confusion_png"] = str(plot_confusion(meter.confusion, names, plot or run / "eval_confusion.png"))
    if as_json:
        click.echo(json.dumps(result))
        return
    print_tables(result, names)
    if "confusion_png" in result:
        click.echo(f"confusion matrix image: {result['confusion_png']}")
