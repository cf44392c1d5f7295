"""Kept for imports written before the run directory got its own module: see ``cnnlab.rundir``."""

from cnnlab.rundir import LoadedRun, load_run, resolve_device

__all__ = ["LoadedRun", "load_run", "resolve_device"]
