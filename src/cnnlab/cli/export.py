"""`cnnlab export RUN --format onnx`: the run's model with its preprocessing as one ONNX graph,
checked against onnxruntime on the same inputs."""

from __future__ import annotations

import contextlib
import io
import logging
import warnings
from pathlib import Path
from typing import Any

import click


def with_preprocess(model: Any, mean: list[float], std: list[float]) -> Any:
    """An nn.Module: float images in [0, 1] (N, C, H, W) -> logits, the run's normalisation baked in.
    (Built inside a function so that importing this command module does not import torch.)"""
    import torch
    from torch import nn

    class WithPreprocess(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(mean).view(1, -1, 1, 1))
            self.register_buffer("std", torch.tensor(std).view(1, -1, 1, 1))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.model((images - self.mean) / self.std)

    return WithPreprocess().eval()


def export_onnx(run_dir: str | Path, out: str | Path | None = None, opset: int = 18,
                exporter: str = "dynamo") -> tuple[Path, float]:
    """Write RUN's model as ONNX (input 'images' float32 in [0, 1], dynamic batch; output 'logits').

    Returns the file and the largest absolute difference between PyTorch and onnxruntime outputs on
    a random batch of 3 (a different batch size than the one traced, to check the dynamic axis).
    """
    import onnxruntime as ort
    import torch

    from cnnlab.train.checkpoint import atomic_write
    from cnnlab.train.run import load_run

    run = load_run(run_dir)
    wrapped = with_preprocess(run.model, run.preprocess.mean, run.preprocess.std)
    h, w = run.image_size
    example = torch.rand(2, run.in_channels, h, w)
    path = Path(out) if out else run.run_dir / "model.onnx"

    def write(tmp: Path) -> None:
        # 'dynamo' (torch.export based, the maintained path) or 'legacy' (TorchScript tracing, faster).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation and constant-folding chatter
            if exporter == "dynamo":
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # 'torchvision is not installed'
                quiet = contextlib.redirect_stdout(io.StringIO())  # it prints its progress on stdout
                with quiet:
                    torch.onnx.export(wrapped, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                                      dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
                                      opset_version=opset, dynamo=True, verbose=False)
            else:
                torch.onnx.export(wrapped, (example,), str(tmp), input_names=["images"], output_names=["logits"],
                                  dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}},
                                  opset_version=opset, dynamo=False)

    atomic_write(path, write)
    check = torch.rand(3, run.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wrapped(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run(["logits"], {"images": check.numpy()})[0]
    return path, float(abs(got - expected).max())


@click.command("export")
@click.argument("run", type=click.Path(path_type=Path))
@click.option("--format", "fmt", type=click.Choice(["onnx"]), default="onnx", show_default=True)
@click.option("--out", type=click.Path(path_type=Path), help="Output file.  [default: RUN/model.onnx]")
@click.option("--opset", type=int, default=18, show_default=True, help="ONNX opset version.")
@click.option("--exporter", type=click.Choice(["dynamo", "legacy"]), default="dynamo", show_default=True,
              help="torch.onnx exporter: dynamo (torch.export) or legacy (TorchScript).")
def export(run: Path, fmt: str, out: Path | None, opset: int, exporter: str) -> None:
    """Export the model of run directory RUN (with its normalisation) and check it with onnxruntime.

    The graph takes 'images': float32 (batch, C, H, W) in [0, 1] and returns 'logits'.
    """
    path, diff = export_onnx(run, out, opset, exporter)
    click.echo(f"wrote {path}")
    click.echo(f"onnxruntime vs PyTorch on 3 random images: max abs difference {diff:.2e}")
