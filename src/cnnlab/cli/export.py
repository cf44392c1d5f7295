"""`cnnlab export RUN --format onnx`: the run's model with its preprocessing as one ONNX graph,
checked against onnxruntime on the same inputs."""

from __future__ import annotations

from pathlib import Path

import click


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Output file.  [default: RUN/model.onnx]")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), default="dynamo", show_default=True,
              help="torch.onnx exporter: dynamo (torch.export) or legacy (TorchScript).")
def export(run: Path, fmt: str, out: Path | None, opset: int, exporter: str) -> None:
    """Export the model of run directory RUN (with its normalisation) and check it with onnxruntime.

    The graph takes 'images': float32 (batch, C, H, W) in [0, 1] and returns 'logits' (classify,
    segment) or 'image' (superres).
    """
    from cnnlab.app.export import export_onnx

    path, diff = export_onnx(run, out, opset, exporter)
    click.echo(f"wrote {path}")
    click.echo(f"onnxruntime vs PyTorch on 3 random images: max abs difference {diff:.2e}")
