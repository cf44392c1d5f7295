"""`cnnlab models`: list the registry, and summarise one model layer by layer.

Models are built on the meta device here: no weights are allocated and no arithmetic is done, so
listing every model or summarising Xception at 299x299 takes well under a second.
"""

from __future__ import annotations

import click

from cnnlab.errors import CnnlabError


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3,64,64"`` -> (3, 64, 64); also ``C,T`` for 1-D models. Every part a positive integer."""
    try:
        size = tuple(int(p) for p in text.replace("x", ",").split(","))
    except ValueError:
        size = ()
    if len(size) not in (2, 3) or min(size) < 1:
        raise CnnlabError(f"--input-size {text!r} is not valid: give C,H,W (for example 3,224,224) "
                          "or C,T for a 1-D model, positive integers")
    return size


def human(n: int) -> str:
    """1234567 -> '1.23 M' (mult-adds are easier to read rounded; parameters are shown exactly)."""
    for unit, scale in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= scale:
            return f"{n / scale:.2f} {unit}"
    return str(n)


def parse_settings(pairs: tuple[str, ...]) -> dict[str, object]:
    """``("project=false", "widths=[16,32]")`` -> keyword arguments for the model builder."""
    from cnnlab.cli._options import parse_key_values

    return parse_key_values(pairs, "--model-arg", "project=false")


def _console():  # type: ignore[no-untyped-def]
    from rich.console import Console

    console = Console()
    if not console.is_terminal:
        console.width = 160  # piped or captured: do not wrap the layer names at 80 columns
    return console


def _build_on_meta(name: str, **kwargs: object):  # type: ignore[no-untyped-def]
    import torch

    from cnnlab.models import create_model

    with torch.device("meta"):
        return create_model(name, **kwargs)


def _tags(name: str) -> tuple[str, ...]:
    from cnnlab.models import list_models, model_tags

    return model_tags(name) if name in list_models() else ()  # an unknown name fails in create_model


def _outputs(model) -> str:  # type: ignore[no-untyped-def]
    """The 'classes' cell: the class count, or for super-resolution the scale and output channels."""
    if hasattr(model, "scale"):
        return f"x{model.scale} ({model.num_classes} ch)"
    return str(getattr(model, "num_classes", ""))


@click.group()
def models() -> None:
    """List the model registry and summarise a model layer by layer."""


@models.command("list", short_help="Every registered model: parameters at the defaults, tags.")
@click.argument("pattern", required=False)
def list_cmd(pattern: str | None) -> None:
    """Every registered model (optionally matching PATTERN, e.g. 'resnet*'): parameters at the defaults, tags."""
    from rich.table import Table

    from cnnlab.models import list_models, model_tags

    table = Table(title="cnnlab models")
    table.add_column("name", style="bold")
    table.add_column("params", justify="right")
    table.add_column("classes", justify="right")
    table.add_column("tags")
    names = list_models(pattern)
    if not names:
        raise CnnlabError(f"no model matches {pattern!r}; run `cnnlab models list` to see every model")
    for name in names:
        model = _build_on_meta(name)
        params = sum(p.numel() for p in model.parameters())
        table.add_row(name, f"{params:,}", _outputs(model), ", ".join(model_tags(name)))
    _console().print(table)


@models.command("summary", short_help="Every leaf layer: output shape, parameters, mult-adds.")
@click.argument("name")
@click.option("--input-size", required=True, help="Input shape without the batch: C,H,W (or C,T for 1-D).")
@click.option("--num-classes", type=int, default=None, help="Number of outputs (default: the model's).")
@click.option("--in-channels", type=int, default=None,
              help="Build the model for this many input channels (default: C of --input-size).")
@click.option("--model-arg", "--set", "settings", multiple=True, metavar="KEY=VALUE",
              help="Another model keyword, value as JSON (repeatable), as in train: e.g. --model-arg depth=1 or "
                   "--model-arg scale=3 (--set is an alias).")
def summary(name: str, input_size: str, num_classes: int | None, in_channels: int | None,
            settings: tuple[str, ...]) -> None:
    """Every leaf layer of NAME: dotted name, type, output shape, parameters, multiply-adds; then totals.

    If the shapes stop fitting, the table is shown up to the failing layer, then the error.
    """
    from rich.table import Table

    from cnnlab.models._summary import summarize

    size = parse_input_size(input_size)
    if num_classes is not None and "superres" in _tags(name):
        raise CnnlabError(f"model {name!r} is a super-resolution model: it outputs as many channels as it "
                          "takes, so drop --num-classes (set the upscaling with --set scale=3)")
    kwargs = {"num_classes": num_classes, "in_channels": in_channels if in_channels is not None else size[0],
              **parse_settings(settings)}
    try:
        model = _build_on_meta(name, **kwargs)
    except TypeError as exc:  # a keyword the builder does not take
        raise CnnlabError(f"model {name!r} cannot be built with {parse_settings(settings)}: {exc}") from exc
    result = summarize(model, size)
    scale = f" x{model.scale}" if hasattr(model, "scale") else ""
    table = Table(title=f"{name}{scale} on input {tuple(size)}")
    for col, justify in (("layer", "left"), ("type", "left"), ("output", "left"), ("params", "right"),
                         ("mult-adds", "right")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for row in result.rows:
        table.add_row(row.name, row.type, str(row.output_shape), f"{row.params:,}", f"{row.macs:,}")
    console = _console()
    console.print(table)
    if result.error is not None:
        raise CnnlabError(result.error)
    console.print(f"output {result.output_shape}; params {result.total_params:,} "
                  f"(trainable {result.trainable_params:,}); mult-adds per example {result.total_macs:,} "
                  f"({human(result.total_macs)})")
