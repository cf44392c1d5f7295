"""How training uses the machine: CPU threads on a busy machine, channels_last where it pays, and a
first Ctrl-C or SIGTERM that waits for the step to finish."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

import torch
from rich.console import Console

from cnnlab.train.config import TrainConfig
from cnnlab.train.precision import resolve_precision


def choose_threads(requested: int | None, console: Console) -> int:
    """Set and return torch's CPU thread count: ``requested``, else torch's default, except on a busy
    machine (1-minute load above the core count), where one thread is used: OpenMP threads that
    wait at every barrier for a core held by another job made 2-thread training 10-60x slower than
    1-thread training on a shared 2-core machine (measured; see the README)."""
    if requested:
        torch.set_num_threads(requested)
        return requested
    current = torch.get_num_threads()
    cores = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    if current > 1 and load > cores:
        torch.set_num_threads(1)
        console.print(f"note: the machine is busy (load {load:.1f} on {cores} cores), training with 1 thread; "
                      f"pass --threads {current} to use {current}")
        return 1
    return current


def use_channels_last(cfg: TrainConfig, device: torch.device) -> bool:
    """channels_last, except fp32 on a CPU: there it buys little, and torch 2.13's oneDNN crashes
    (segfault) in the weight gradient of 1x1 stride-2 convs with fewer than 16 input channels."""
    return cfg.channels_last and not (device.type == "cpu" and resolve_precision(cfg.precision, device) == "fp32")


class StopRequested(KeyboardInterrupt):
    """Training was asked to stop by ``signum`` (SIGINT: Ctrl-C; SIGTERM: ``kill``, ``timeout``, a
    scheduler); a KeyboardInterrupt, so everything that handles Ctrl-C handles it the same way."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


# SIGTERM is what schedulers (Slurm, Kubernetes), `timeout` and `kill` send before a SIGKILL: it
# gets the first Ctrl-C's treatment (finish the step, checkpoint, exit with the resume hint).
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@contextlib.contextmanager
def deferred_interrupt(enabled: bool) -> Iterator[Callable[[], int]]:
    """While active, a first Ctrl-C or SIGTERM only records the signal (checked after each step, so
    the checkpoint holds a finished step); a second one interrupts at once. Yields 'which signal
    asked to stop?' (0: none)."""
    pressed = {"signum": 0}
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield lambda: 0
        return

    def handler(signum: int, frame: Any) -> None:
        pressed["signum"] = signum
        for sig, old in previous.items():  # a second signal stops immediately
            signal.signal(sig, old)

    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield lambda: pressed["signum"]
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
