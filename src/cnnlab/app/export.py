"""Export a run's model with its preprocessing as one ONNX graph, checked against onnxruntime."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any


def with_preprocess(model: Any, mean: list[float], std: list[float]) -> Any:
    """An nn.Module: float images in [0, 1] (N, C, H, W) -> the model's outputs, the run's normalisation
    baked in. (Built inside a function so that importing this module does not import torch.)"""
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
    """Write RUN's model as ONNX (input 'images' float32 in [0, 1], dynamic batch; output named by the
    task: 'logits' for classifiers and segmenters, 'image' for super-resolution).

    Returns the file and the largest absolute difference between PyTorch and onnxruntime outputs on
    a random batch of 3 (a different batch size than the one traced, to check the dynamic axis).
    """
    import onnxruntime as ort
    import torch

    from cnnlab.files import atomic_write
    from cnnlab.rundir import load_run

    run = load_run(run_dir)
    wrapped = with_preprocess(run.model, run.preprocess.mean, run.preprocess.std)
    h, w = run.input_size
    example = torch.rand(2, run.in_channels, h, w)
    path = Path(out) if out else run.run_dir / "model.onnx"
    name = run.task.output_name

    def export(tmp: Path) -> None:
        # 'dynamo' (torch.export based, the maintained path) or 'legacy' (TorchScript tracing, faster).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation and constant-folding chatter
            if exporter == "dynamo":
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # 'torchvision is not installed'
                quiet = contextlib.redirect_stdout(io.StringIO())  # it prints its progress on stdout
                with quiet:
                    torch.onnx.export(wrapped, (example,), str(tmp), input_names=["images"], output_names=[name],
                                      dynamic_shapes={"images": {0: torch.export.Dim("batch")}},
                                      opset_version=opset, dynamo=True, verbose=False)
            else:
                torch.onnx.export(wrapped, (example,), str(tmp), input_names=["images"], output_names=[name],
                                  dynamic_axes={"images": {0: "batch"}, name: {0: "batch"}},
                                  opset_version=opset, dynamo=False)

    def write(target: Path) -> None:
        # The dynamo exporter stores the weights as external data next to the file it writes (a
        # .data file named after the temporary name, which no rename would carry along); loading
        # the export and saving it again with the weights inside gives one file that can travel.
        import onnx

        with tempfile.TemporaryDirectory() as folder:
            draft = Path(folder) / "model.onnx"
            export(draft)
            onnx.save_model(onnx.load(str(draft), load_external_data=True), str(target),
                            save_as_external_data=False)

    atomic_write(path, write)
    check = torch.rand(3, run.in_channels, h, w, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wrapped(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([name], {"images": check.numpy()})[0]
    return path, float(abs(got - expected).max())
