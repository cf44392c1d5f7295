"""Shared test fixtures: the real data folder (skip when absent) and per-worker thread limits."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _shared_data_dir() -> Path:
    env = os.environ.get("CNNLAB_SHARED_DATA")
    return Path(env) if env else REPO.parent / "shared" / "data"


if os.environ.get("PYTEST_XDIST_WORKER"):
    # Two workers on two cores: one intra-op thread each, or they fight over the cores.
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (real public datasets); the test is skipped when it is not there."""
    path = _shared_data_dir()
    if not path.is_dir():
        pytest.skip(f"real data not found at {path} (set CNNLAB_SHARED_DATA)")
    return path
