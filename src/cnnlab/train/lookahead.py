"""Lookahead as airbench does it (Keller Jordan, https://github.com/KellerJordan/airbench).

An exponential moving average of every floating-point entry of the model's state_dict (weights and
BatchNorm running statistics alike) is kept; every ``EVERY`` optimizer steps the EMA moves towards the
net and the net is then set to the EMA. The EMA's decay ramps up as ``BASE_DECAY * (step / total)**3``:
early in training the net is barely pulled back (it must move fast), late in training it is averaged
over many steps, and after the last step the net is replaced by the EMA outright (``finish``). It works for
any model, and under DDP every rank applies the same update to the same (synchronised) weights, so no
extra communication is needed.

The EMA is saved next to the weights (``lookahead.safetensors``, tagged with the step like the other
checkpoint files) so a resumed run continues with exactly the EMA an uninterrupted one would have.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import nn

from cnnlab.errors import CnnlabError
from cnnlab.train.checkpoint import atomic_write

FILE = "lookahead.safetensors"
EVERY = 5  # optimizer steps between two pulls
BASE_DECAY = 0.95 ** EVERY  # airbench: 0.95 per step, applied every 5 steps


def decay_at(step: int, total_steps: int) -> float:
    """The EMA decay of the pull after optimizer step ``step`` (1-based count of finished steps)."""
    return BASE_DECAY * (step / max(total_steps, 1)) ** 3


class Lookahead:
    """The EMA of ``model``'s floating-point state, started from its current values."""

    def __init__(self, model: nn.Module) -> None:
        self.model = model  # the unwrapped model (not DDP / compiled), whose state_dict names are stable
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def pull(self, decay: float) -> None:
        """EMA <- decay * EMA + (1 - decay) * net, then net <- EMA (in place, so optimizers keep
        pointing at the same tensors)."""
        for key, value in self.model.state_dict().items():
            if key in self.ema:
                self.ema[key].lerp_(value, 1.0 - decay)
                value.copy_(self.ema[key])

    def after_step(self, step: int, total_steps: int) -> None:
        """Call after every optimizer step with the number of finished steps: pulls every EVERY steps."""
        if step % EVERY == 0:
            self.pull(decay_at(step, total_steps))

    def finish(self, step: int, total_steps: int) -> None:
        """The end of training after ``step`` finished steps: the net becomes the EMA (decay 1).

        airbench ends with the decay-1 pull only, which throws away the steps since the last 5-step
        pull: up to 4, negligible in its hundreds of steps but 4 of 14 in a short run. Here those
        steps are folded in first with this step's decay, as a pull at this step would have done;
        when ``step`` is a multiple of EVERY (cifar10-fast's 43 x 5 = 215 steps) it is airbench's.
        """
        if step % EVERY:
            self.pull(decay_at(step, total_steps))
        self.pull(1.0)

    def save(self, path: Path, step: int) -> Path:
        """The EMA as safetensors tagged with ``step`` (written atomically)."""
        tensors = {k: v.detach().cpu().contiguous().clone() for k, v in self.ema.items()}
        return atomic_write(path, lambda p: save_file(tensors, str(p), metadata={"step": str(step)}))

    def load(self, path: Path, step: int) -> None:
        """Restore the EMA saved by ``save`` at ``step``; a missing, stale or foreign file is an error."""
        from safetensors import SafetensorError, safe_open

        if not path.exists():
            raise CnnlabError(f"{path} is missing: this run trains with --lookahead and its checkpoint "
                              "needs the EMA; restore the file or start a new --out")
        try:
            with safe_open(str(path), framework="pt") as f:
                saved_step = int((f.metadata() or {}).get("step", -1))
            tensors = load_file(str(path))
        except SafetensorError as exc:
            raise CnnlabError(f"{path} is damaged ({exc}); restore it or start a new --out") from None
        if saved_step != step:
            raise CnnlabError(f"the checkpoint in {path.parent} is inconsistent ({path.name} is from step "
                              f"{saved_step}, state.json from step {step}); start a new --out")
        if tensors.keys() != self.ema.keys() or any(t.shape != self.ema[k].shape for k, t in tensors.items()):
            raise CnnlabError(f"{path} does not belong to this run's model; restore it or start a new --out")
        with torch.no_grad():
            for key, value in tensors.items():
                self.ema[key].copy_(value)
