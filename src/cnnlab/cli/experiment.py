"""`cnnlab experiment`: small experiments that re-run a lecture claim and write a PNG plot + a JSON record."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import click


@click.group()
def experiment() -> None:
    """Small experiments that re-run a lecture claim on your machine.

    Each writes OUT/<name>.png and OUT/<name>.json (its numbers, settings and findings);
    `cnnlab report OUT` turns the folder into one HTML page. The trained ones (degradation,
    inception-vs-xception) write one ordinary run directory per model, OUT/<model>, so eval, report
    and explain work on each; run the same command again to continue or re-plot them.
    """


def _print_record(record: dict[str, Any], out_dir: Path) -> None:
    """The record's table, its findings, and where the files are."""
    from rich.console import Console
    from rich.table import Table

    from cnnlab.experiments.record import table_text

    header, *rows = table_text(record["table"])
    table = Table(title=record["title"])
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i == 0 else "right")
    for row in rows:
        table.add_row(*row)
    console = Console()
    if not console.is_terminal:  # a log file or a pipe: whole lines, not 80-column wrapped cells
        console = Console(width=160)
    console.print(table)
    for line in record["findings"]:
        console.print(f"- {line}", highlight=False)
    name = record["experiment"].replace("-", "_")
    console.print(f"plot: {out_dir / record['plots'][0]}  numbers: {out_dir / (name + '.json')}  "
                  f"html: cnnlab report {out_dir}", highlight=False)


@experiment.command("vanishing-gradients",
                    short_help="Gradient norm per layer: plain vs residual stacks, sigmoid vs ReLU, and the fixes.")
@click.option("--depth", type=int, default=30, show_default=True, help="Conv layers per stack.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("vanishing-gradients"), show_default=True, help="Folder for the plot and the JSON.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for weights, batches and labels.")
@click.option("--init", type=click.Choice(["he", "default"]), default="he", show_default=True,
              help="Kaiming-normal weights, or PyTorch's default initialisation.")
@click.option("--steps", type=int, default=0, show_default=True,
              help="Also measure after this many SGD steps on random batches (0: at initialisation only).")
@click.option("--lr", type=float, default=0.01, show_default=True, help="SGD learning rate for --steps (momentum 0.9).")
def vanishing_gradients(depth: int, out_dir: Path, seed: int, init: str, steps: int, lr: float) -> None:
    """Seven deep stacks of 3x3 convs, one backward pass each: the weight-gradient norm of every layer.

    Plain sigmoid: the gradient VANISHES towards the input (about 1e-16 of the last layer's at depth 30).
    Residual ReLU without normalisation: it EXPLODES (about 1e6, far above the weights' own norm).
    The fixes (BN in the branch, a 1/sqrt(depth) branch scale, a zero-initialised branch) keep it
    level and usable. The table shows the absolute norms, the first/last ratio, the largest
    gradient/weight ratio and a verdict; --steps N measures again after N training steps.

    Writes OUT/vanishing_gradients.png (log scale) and OUT/vanishing_gradients.json.
    """
    from cnnlab.experiments.record import write_record
    from cnnlab.experiments.vanishing_gradients import VARIANTS, gradient_norms, plot, to_record

    with _bar(len(VARIANTS) * steps, "training the stacks") as advance:
        at_init, trained = gradient_norms(depth, seed=seed, init=init, steps=steps, lr=lr, on_step=advance)
    name = "vanishing_gradients.png"
    plot(at_init, trained, out_dir / name)
    settings = {"depth": depth, "width": 16, "size": 8, "batch": 16, "seed": seed, "init": init, "steps": steps,
                "lr": lr, "dtype": "float64"}
    record = to_record(at_init, trained, settings, name)
    write_record(out_dir, record)
    _print_record(record, out_dir)


class _bar:
    """A progress bar over ``total`` steps on a terminal (nothing when ``total`` is 0 or in a log)."""

    def __init__(self, total: int, what: str) -> None:
        from rich.console import Console

        from cnnlab.train.progress import make_progress

        console = Console(stderr=True, soft_wrap=True)
        self.progress = make_progress(total > 0 and console.is_terminal, console)
        self.total, self.what = total, what

    def __enter__(self) -> Callable[[], None]:
        self.progress.__enter__()
        task = self.progress.add_task(self.what, total=self.total, stats="")
        return lambda: self.progress.advance(task)

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)


def _training_options(default_out: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """The options every trained experiment shares (the recipe's values apply where one is left out)."""

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        options = [
            click.option("--data", required=True,
                         help="Classification data spec, e.g. ../shared/data/cifar10/cifar10_train.npz."),
            click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
                         default=Path(default_out), show_default=True,
                         help="Folder for the plot, the JSON and one run directory per model."),
            click.option("--epochs", type=int, help="Epochs per model.  [default: the recipe's]"),
            click.option("--limit", type=int,
                         help="Images taken from the data before the validation split.  [default: the recipe's]"),
            click.option("--image-size", help="Resize images to N or HxW pixels (e.g. 128 for photos)."),
            click.option("--seed", type=int, help="Seed for weights, split, order and augmentation.  [default: 0]"),
            click.option("--threads", type=int, help="CPU threads for torch.  [default: automatic]"),
            click.option("--quiet", is_flag=True, help="No progress bars."),
        ]
        for option in reversed(options):
            fn = option(fn)
        return fn

    return wrap


def _overrides(epochs: int | None, limit: int | None, image_size: str | None, seed: int | None,
               threads: int | None, **model_kwargs: Any) -> dict[str, Any]:
    """TrainConfig overrides from the shared options (None: the recipe decides)."""
    from cnnlab.cli.train import parse_size

    kwargs = {k: v for k, v in model_kwargs.items() if v is not None}
    return {"epochs": epochs, "limit": limit, "image_size": parse_size(image_size) if image_size else None,
            "seed": seed, "threads": threads, "model_kwargs": kwargs or None}


@experiment.command("degradation", short_help="Plain vs residual nets at 20 and 56 layers (He et al. 2016, fig. 1).")
@_training_options("degradation")
def degradation(data: str, out_dir: Path, quiet: bool, **options: Any) -> None:
    """Train plain20, plain56, resnet20 and resnet56 with one recipe (`degradation`) and compare.

    He et al.'s finding: the 56-layer PLAIN net has a higher TRAINING error than the 20-layer one (an
    optimisation problem, not overfitting), while ResNet-56 beats ResNet-20. The plot shows training
    (dashed) and validation (bold) error per epoch; the table and the findings say, with the
    numbers, whether this run reproduces each half. The defaults (4 epochs of 9,000 CIFAR-10
    images, about 280 SGD steps against the paper's 64,000) took 17 minutes on a 2-core Zen 3
    (benchmarks/RESULTS.md; longer on a busier machine); --epochs and --limit scale them. A short
    run shows the plain half, not the ResNet half.

    \b
    cnnlab experiment degradation --data ../shared/data/cifar10/cifar10_train.npz --out degradation
    """
    from cnnlab.experiments import degradation as exp

    record = exp.run(data, out_dir, _overrides(**options), progress=not quiet)
    _print_record(record, out_dir)


@experiment.command("inception-vs-xception",
                    short_help="Inception-v3-style vs Xception-style nets at equal parameters (Chollet 2017).")
@_training_options("inception-vs-xception")
@click.option("--stem-stride", type=int,
              help="Stride of both nets' first conv: 2 for 96-128 px photos.  [default: 1, for 32x32]")
def inception_vs_xception(data: str, out_dir: Path, quiet: bool, stem_stride: int | None, **options: Any) -> None:
    """Train inception_small and xception_small (same skeleton, parameters within 2%) with one recipe.

    Xception's claim: replacing Inception's multi-tower modules by depthwise separable convolutions
    uses the same parameters more efficiently. The table puts validation accuracy, training
    images/s and mult-adds side by side; the plot shows accuracy per epoch and per minute. A short
    run on small images says little about ImageNet or JFT, and the findings say so. The defaults (4
    epochs of 9,000 CIFAR-10 images) take 20-35 minutes on 2 CPU cores.

    \b
    cnnlab experiment inception-vs-xception --data ../shared/data/cifar10/cifar10_train.npz
    cnnlab experiment inception-vs-xception --data ../shared/data/cats_vs_dogs/train \\
        --image-size 128 --stem-stride 2 --out ivx-cats
    """
    from cnnlab.experiments import inception_vs_xception as exp

    if stem_stride is not None and stem_stride not in (1, 2):
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"--stem-stride {stem_stride}: use 1 (32x32 images) or 2 (96-128 px photos)")
    record = exp.run(data, out_dir, _overrides(**options, stem_stride=stem_stride), progress=not quiet)
    _print_record(record, out_dir)
