"""`cnnlab eval RUN --data SPEC [--json]`: a run's loss, top-1/top-5, per-class precision/recall and
confusion matrix on a data spec."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click


def evaluate_run(run_dir: str | Path, spec: str, split: str = "auto", batch_size: int = 256,
                 device: str = "cpu", limit: int | None = None) -> tuple[dict[str, Any], Any]:
    """Evaluate ``run_dir`` on ``spec``; returns (metrics as a JSON-ready dict, the filled meter).

    ``split='auto'`` evaluates the held-out validation split when ``spec`` is the data the run was
    trained on (the same split, from the same seed) and every example of any other spec.
    """
    import torch

    from cnnlab.data import load_data
    from cnnlab.errors import CnnlabError
    from cnnlab.train.loop import evaluate
    from cnnlab.train.precision import make_precision

    if batch_size < 1:
        raise CnnlabError(f"--batch-size must be at least 1, got {batch_size}")
    from cnnlab.train.run import load_run

    run = load_run(run_dir, device)
    train_cfg = run.config["train"]
    same_data = str(spec) == run.config["data"]["spec"]
    if limit is None and same_data:
        limit = train_cfg.get("limit")  # the run's own subset, so 'val' is the split it held out
    bundle = load_data(spec, run.config["task"], val_split=train_cfg["val_split"], seed=train_cfg["seed"],
                       image_size=run.image_size, limit=limit)
    if list(bundle.class_names) != run.class_names:
        raise CnnlabError(f"--data {spec} has classes {bundle.class_names}, the run was trained on "
                          f"{run.class_names}; evaluate on data with the same classes")
    if bundle.in_channels != run.in_channels:
        raise CnnlabError(f"--data {spec} has {bundle.in_channels} channel(s), the run expects {run.in_channels}")
    if split == "auto":
        split = "val" if same_data else "all"
    parts = {"val": [bundle.val], "train": [bundle.train], "all": [bundle.train, bundle.val]}[split]
    x = torch.cat([p.x for p in parts])
    y = torch.cat([p.y for p in parts])
    if len(x) == 0:
        raise CnnlabError(f"the {split!r} split of --data {spec} is empty; pass --split all")
    precision = make_precision("fp32", device, channels_last=False)
    meter = evaluate(run.model, run.task, x, y, run.preprocess, precision, batch_size, len(run.class_names))
    result: dict[str, Any] = {"run": str(run_dir), "data": str(spec), "split": split, "examples": len(x)}
    result.update(meter.compute())
    per_class = getattr(meter, "per_class", None)
    if per_class is not None:
        stats = per_class()
        result["per_class"] = {name: {k: stats[k][i] for k in stats} for i, name in enumerate(run.class_names)}
        result["confusion"] = meter.confusion.tolist()
    return result, meter


def print_tables(result: dict[str, Any], class_names: list[str]) -> None:
    """Metrics, per-class precision/recall and the confusion matrix as rich tables."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(f"{result['run']} on {result['data']}: {result['split']} split, {result['examples']} examples")
    summary = Table()
    keys = [k for k, v in result.items() if isinstance(v, float)]
    for key in keys:
        summary.add_column(key, justify="right")
    summary.add_row(*(f"{result[k]:.4f}" for k in keys))
    console.print(summary)
    if "per_class" not in result:
        return
    per = Table(title="per class")
    for col in ("class", "precision", "recall", "support"):
        per.add_column(col, justify="left" if col == "class" else "right")
    for name, row in result["per_class"].items():
        per.add_row(name, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{int(row['support'])}")
    console.print(per)
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
@click.option("--batch-size", type=int, default=256, show_default=True)
@click.option("--device", default="cpu", show_default=True)
@click.option("--limit", type=int, help="Evaluate at most this many images.")
def evaluate(run: Path, spec: str, split: str, as_json: bool, plot: Path | None, batch_size: int, device: str,
             limit: int | None) -> None:
    """Evaluate the run directory RUN on --data: loss, top-1/top-5, per-class precision/recall and
    the confusion matrix (printed and written as an image)."""
    result, meter = evaluate_run(run, spec, split, batch_size, device, limit)
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
