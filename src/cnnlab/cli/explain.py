"""`cnnlab explain RUN INPUT... --method M --layer NAME --out DIR`: look inside a trained model.

Methods: ``activations`` (feature-map grids + silent channels by depth), ``filters`` (a filter atlas
by gradient ascent; needs no INPUT), ``gradcam``, ``gradcam++``, ``hirescam`` (heat maps over the
images). ``--list-layers`` prints every layer's dotted name, type and output shape.
"""

from __future__ import annotations

from pathlib import Path

import click

METHODS = ("activations", "filters", "gradcam", "gradcam++", "hirescam")


@click.command("explain")
@click.argument("run_dir", metavar="RUN")
@click.argument("inputs", nargs=-1, metavar="INPUT...")
@click.option("--method", type=click.Choice(METHODS), default="gradcam", show_default=True,
              help="What to draw.")
@click.option("--layer", default=None, help="Dotted layer name (see --list-layers). "
              "[default: the coarsest feature map >= 4 px; filters: the middle convolution]")
@click.option("--out", "out_dir", default=None, help="Folder for the PNGs.  [default: RUN/explain]")
@click.option("--target", default=None, help="CAM class (index or name).  [default: the predicted class]")
@click.option("--channels", type=int, help="filters: how many channels to draw (an error past the layer's).  "
              "[default: up to 64]")
@click.option("--steps", default=None, type=int, help="filters: ascent steps.  [default: 30 plain, 128 robust]")
@click.option("--filter-method", type=click.Choice(["plain", "robust"]), default="plain", show_default=True,
              help="filters: the lecture recipe or jitter/scale/rotate + Fourier images.")
@click.option("--list-layers", is_flag=True, help="Print the model's layers and output shapes, then stop.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
def explain(run_dir: str, inputs: tuple[str, ...], method: str, layer: str | None, out_dir: str | None,
            target: str | None, channels: int, steps: int | None, filter_method: str, list_layers: bool,
            device: str) -> None:
    """Feature maps, filter visualisation and CAMs for the model of run directory RUN.

    \b
    cnnlab explain runs/shapes --list-layers
    cnnlab explain runs/shapes cat.png --method gradcam --out expl
    cnnlab explain runs/shapes img/ --method activations --layer stages.1
    cnnlab explain runs/shapes --method filters --layer stages.0.main.0.conv.pointwise
    """
    from cnnlab.app import explain as runs
    from cnnlab.errors import CnnlabError
    from cnnlab.rundir import load_run

    run = load_run(run_dir, device)
    if list_layers:
        _print_layers(run)
        return
    out = Path(out_dir) if out_dir else Path(run_dir) / "explain"
    if method == "filters":
        for name, value in (("--channels", channels), ("--steps", steps)):
            if value is not None and value < 1:
                raise CnnlabError(f"{name} must be at least 1, got {value}")
        if inputs:
            click.echo("note: --method filters starts from noise; the INPUT images are not used", err=True)
        from rich.console import Console

        from cnnlab.train.progress import make_progress

        # the ascent of a 64-channel atlas takes 20 s and more on a CPU: show where it is
        with make_progress(True, Console(stderr=True, soft_wrap=True)) as bar:
            task = bar.add_task("filter ascent", total=None, stats="")
            result = runs.explain_filters(run, layer, out, count=channels or 64, steps=steps, method=filter_method,
                                          at_most=channels is None,
                                          on_step=lambda done, total: bar.update(task, completed=done, total=total))
        click.echo(f"filter atlas of {result['layer']} ({len(result['channels'])} channels): {result['png']}")
        return
    if not inputs:
        raise CnnlabError(f"--method {method} needs at least one INPUT image or folder")
    data = runs.load_inputs(run, inputs)
    layer = layer or runs.default_layer(run, data)
    if method == "activations":
        _report_activations(runs.explain_activations(run, data, layer, out), layer)
    else:
        rows = runs.explain_cams(run, data, layer, method, runs.parse_target(run, target), out)
        _print_cams(rows, method, layer)


def _print_layers(run) -> None:  # type: ignore[no-untyped-def]
    from rich.console import Console
    from rich.table import Table

    from cnnlab.app.explain import probe
    from cnnlab.explain import list_layers

    shape = "x".join(map(str, (1, run.in_channels, *run.input_size)))
    table = Table(title=f"layers of {run.config['model']['name']} for a {shape} input")
    for column in ("layer", "type", "output shape", "CAM"):
        table.add_column(column)
    for info in list_layers(run.model, probe(run)):
        shape = "x".join(map(str, info.output_shape)) if info.output_shape else "-"
        table.add_row(info.name, info.type, shape, "yes" if info.spatial else "")
    Console().print(table)


def _report_activations(result: dict, layer: str) -> None:
    click.echo(f"{layer}: {result['silent']} of {result['channels']} channels silent (never > 0) on these inputs")
    for path in result["grids"]:
        click.echo(f"feature maps: {path}")
    if result["depth_png"]:
        click.echo(f"silent share by depth: {result['depth_png']}")


def _print_cams(rows: list[dict], method: str, layer: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{method} of {layer}")
    for column in ("input", "predicted", "p", "map for", "png"):
        table.add_column(column)
    for row in rows:
        table.add_row(row["input"], row["predicted"], f"{row['probability']:.3f}", row["target"], str(row["png"]))
    Console(width=200).print(table)
    for row in rows:
        if row["empty"]:  # drawn as a flat tint it would read as "everything matters equally"
            click.echo(f"note: the {method} map of {row['input']} for {row['target']} is zero everywhere: nothing at "
                       f"layer {layer} raises that score (its PNG says so too); try another --layer or --target")
