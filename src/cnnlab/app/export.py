"""Export a run's model with its preprocessing as one ONNX graph, checked against onnxruntime."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
from pathlib import Path
from typing import Any


def with_preprocess(model: Any, mean: list[float], std: list[float], dims: int = 2) -> Any:
    """An nn.Module: float images in [0, 1] (N, C, H, W) (or waveforms (N, C, T) with ``dims=1``) ->
    the model's outputs, the run's normalisation baked in. (Built inside a function so that importing
    this module does not import torch.)"""
    import torch
    from torch import nn

    shape = (1, -1) + (1,) * dims

    class WithPreprocess(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model
            self.register_buffer("mean", torch.tensor(mean).view(shape))
            self.register_buffer("std", torch.tensor(std).view(shape))

        def forward(self, images: torch.Tensor) -> torch.Tensor:
            return self.model((images - self.mean) / self.std)

    return WithPreprocess().eval()


def check_opset(opset: int, exporter: str) -> None:
    """A CnnlabError for an opset the exporter cannot write: outside its range the legacy exporter fails
    with a torch traceback, and the dynamo one silently writes its default opset instead."""
    from torch.onnx import _constants  # the exporters' own limits (private: read with fallbacks)

    from cnnlab.errors import CnnlabError

    low = getattr(_constants, "ONNX_MIN_OPSET", 7)
    high = (getattr(_constants, "ONNX_TORCHSCRIPT_EXPORTER_MAX_OPSET", 20) if exporter == "legacy"
            else getattr(_constants, "ONNX_MAX_OPSET", 23))
    if not low <= opset <= high:
        raise CnnlabError(f"--opset {opset} is outside what the {exporter} exporter writes ({low}..{high}); "
                          f"pass --opset {min(max(opset, low), high)} (the default is 18)")


def export_onnx(run_dir: str | Path, out: str | Path | None = None, opset: int = 18,
                exporter: str = "dynamo") -> tuple[Path, float]:
    """Write RUN's model as ONNX (input named by the task: 'images' float32 in [0, 1], or 'waveform'
    (N, C, T) for audio; dynamic batch; output named by the task: 'logits' for classifiers and
    segmenters, 'image' for super-resolution).

    Returns the file and the largest absolute difference between PyTorch and onnxruntime outputs on
    a random batch of 3 (a different batch size than the one traced, to check the dynamic axis).
    """
    import onnxruntime as ort
    import torch

    from cnnlab.errors import CnnlabError
    from cnnlab.files import atomic_write
    from cnnlab.rundir import load_run

    check_opset(opset, exporter)
    if out is not None and Path(out).is_dir():  # found before the export, which takes seconds
        raise CnnlabError(f"--out {out} is a folder; pass the file to write, e.g. --out {Path(out) / 'model.onnx'}")
    run = load_run(run_dir)
    size = run.input_size  # (H, W), or (T,) for audio
    wrapped = with_preprocess(run.model, run.preprocess.mean, run.preprocess.std, len(size))
    # The model's input channels: the data's, plus any the task adds (inpaint's hole mask comes last).
    channels = len(run.preprocess.mean)
    example = torch.rand(2, channels, *size)
    path = Path(out) if out else run.run_dir / "model.onnx"
    name, input_name = run.task.output_name, run.task.input_name

    def export(tmp: Path) -> None:
        # 'dynamo' (torch.export based, the maintained path) or 'legacy' (TorchScript tracing, faster).
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the exporters' deprecation and constant-folding chatter
            if exporter == "dynamo":
                logging.getLogger("torch.onnx").setLevel(logging.ERROR)  # 'torchvision is not installed'
                quiet = contextlib.redirect_stdout(io.StringIO())  # it prints its progress on stdout
                with quiet:
                    torch.onnx.export(wrapped, (example,), str(tmp), input_names=[input_name], output_names=[name],
                                      dynamic_shapes=({0: torch.export.Dim("batch")},),  # by position: the input's name is the task's
                                      opset_version=opset, dynamo=True, verbose=False)
            else:
                torch.onnx.export(wrapped, (example,), str(tmp), input_names=[input_name], output_names=[name],
                                  dynamic_axes={input_name: {0: "batch"}, name: {0: "batch"}},
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
    check = torch.rand(3, channels, *size, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        expected = wrapped(check).numpy()
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    got = session.run([name], {input_name: check.numpy()})[0]
    return path, float(abs(got - expected).max())
