"""A loaded run made fast for inference: the run's precision, channels_last, autocast (issue 15).

Separate from ``cnnlab.rundir`` because reading a run must not need the trainer, and the Precision
object lives there. eval and predict use it; export and explain keep the plain fp32 model (an exact
ONNX comparison, exact maps).
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from cnnlab.rundir import LoadedRun, load_run


def fast_inference(run: LoadedRun, precision: str = "run") -> LoadedRun:
    """``run`` (changed in place and returned) with its model channels_last and under autocast in
    ``precision`` ('run': the precision it trained in, as it resolves on this device), its preprocess
    returning channels_last batches and ``run.precision`` set for ``cnnlab.train.loop.evaluate``.
    Tasks scored on 8-bit levels (``Task.eval_fp32``) stay fp32. The module names are unchanged."""
    from cnnlab.train.precision import inference_precision

    fast = inference_precision(precision, run.config.get("train", {}).get("precision", "fp32"), run.device,
                               exact=run.task.eval_fp32)
    run.model = fast.prepare(run.model)
    run.preprocess.channels_last = True
    if fast.dtype is not None:
        run.model.forward = _autocast_forward(run.model.forward, fast)  # the instance's own forward
    run.precision = fast
    return run


def load_fast(run_dir: Any, device: str = "cpu", precision: str = "run") -> LoadedRun:
    """``load_run`` then ``fast_inference``."""
    return fast_inference(load_run(run_dir, device), precision)


def _autocast_forward(forward: Any, precision: Any) -> Any:
    """``forward`` under ``precision``'s autocast, with float32 outputs (what callers compare and save)."""

    @functools.wraps(forward)
    def run(*args: Any, **kwargs: Any) -> Any:
        with precision.autocast():
            out = forward(*args, **kwargs)
        return out.float() if isinstance(out, torch.Tensor) and out.is_floating_point() else out

    return run
