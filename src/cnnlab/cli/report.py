"""`cnnlab report RUN [--out FILE] [--inputs IMAGE_OR_FOLDER]...`: one self-contained HTML page for a run."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("run_dir", metavar="RUN")
@click.option("--out", default=None, help="HTML file to write.  [default: RUN/report.html]")
@click.option("--inputs", multiple=True, help="Image file or folder to show (repeatable).  "
              "[default: validation images of the run's data spec]")
@click.option("--samples", default=8, show_default=True, help="How many sample images to show.")
@click.option("--device", default="auto", show_default=True, help="auto (a GPU when there is one), cpu, cuda or cuda:N.")
def report(run_dir: str, out: str | None, inputs: tuple[str, ...], samples: int, device: str) -> None:
    """Write RUN's learning curves, its task's plots and sample predictions (Grad-CAM overlays, masks
    or super-resolved crops), feature maps and a filter atlas into ONE HTML file with every image
    embedded. RUN may also be the --out folder of a `cnnlab experiment`: its page has the findings,
    the table, the plots and each trained run's curves.

    \b
    cnnlab report runs/shapes
    cnnlab report runs/shapes --out shapes.html --inputs photos/
    """
    from cnnlab.app.report import write_report

    path = write_report(run_dir, out, list(inputs) or None, samples=samples, device=device)
    click.echo(f"report: {path}")
