"""Issue 14: the same command gives the same weights, and no kill loses a run.

- two bf16 runs with 2 threads and the hand-written kernels on end bit-identical;
- a kill inside the checkpoint write, at every file of it, resumes to the uninterrupted weights;
- SIGKILL at random moments at the default precision, then --resume, ends bit-identical;
- SIGTERM stops like the first Ctrl-C: checkpoint, resume hint, exit 143;
- the fp16 GradScaler's state is part of the checkpoint;
- run files get the mode the umask gives.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from cnnlab.kernels import depthwise
from cnnlab.train import checkpoint as ckpt
from cnnlab.train.config import TrainConfig
from cnnlab.train.runner import fit

pytestmark = pytest.mark.slow

# 4 steps per epoch of 16 images; fp32 unless a test says otherwise
TINY = TrainConfig(data="builtin:shapes", model="mini_xception", epochs=3, batch_size=16, limit=96,
                   val_split=0.25, image_size=32, precision="fp32", threads=1,
                   model_kwargs={"widths": [8, 16], "stem_width": 8})


def weights(run_dir: Path) -> dict[str, torch.Tensor]:
    return load_file(str(Path(run_dir) / ckpt.MODEL))


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> Path:
    cfg = dataclasses.replace(TINY, out=str(tmp_path_factory.mktemp("ref") / "run"))
    return fit(cfg, progress=False).run_dir


@pytest.mark.skipif(not depthwise.paths(), reason="the C kernels are not built here")
def test_bf16_runs_with_two_threads_and_the_kernels_give_the_same_weights(tmp_path, monkeypatch) -> None:
    """The kernels' threads claim work dynamically; the sums must not depend on which thread took what.
    64 px and 32 channels put the depthwise kernel on the 32x32 stage (its MIN_PIXELS)."""
    calls = []
    real = depthwise.depthwise3x3_weight_grad
    monkeypatch.setattr(depthwise, "depthwise3x3_weight_grad", lambda *a, **k: calls.append(1) or real(*a, **k))
    cfg = dataclasses.replace(TINY, precision="bf16", threads=2, epochs=1, limit=48, image_size=64,
                              model_kwargs={"widths": [32, 32], "stem_width": 16})
    a = fit(dataclasses.replace(cfg, out=str(tmp_path / "a")), progress=False).run_dir
    b = fit(dataclasses.replace(cfg, out=str(tmp_path / "b")), progress=False).run_dir
    assert calls, "the depthwise kernel never ran: the test would prove nothing"
    assert_same_weights(a, b)


class Killed(BaseException):
    """Stands for SIGKILL: nothing in cnnlab catches it, so nothing runs after it."""


# one checkpoint after the first renames 2 x its files into place: the .previous/ links, then the new files
@pytest.mark.parametrize("kill_at", range(2 * len(ckpt.FILES)))
def test_a_kill_inside_the_checkpoint_write_resumes_to_the_same_weights(tmp_path, monkeypatch, reference,
                                                                        kill_at) -> None:
    """Killed at the kill_at-th rename of the second epoch's checkpoint (so a complete checkpoint
    exists before it), the run resumes with --resume and ends with the uninterrupted weights."""
    import cnnlab.train.runner as runner

    state = {"saves": 0, "renames": None}
    real_save, real_replace = runner.save_checkpoint, os.replace

    def counting_save(*args, **kwargs):
        state["saves"] += 1
        state["renames"] = 0 if state["saves"] == 2 else None
        return real_save(*args, **kwargs)

    def replace(src, dst):
        if state["renames"] is not None:
            if state["renames"] == kill_at:
                raise Killed
            state["renames"] += 1
        return real_replace(src, dst)

    monkeypatch.setattr(runner, "save_checkpoint", counting_save)
    monkeypatch.setattr(os, "replace", replace)
    cfg = dataclasses.replace(TINY, out=str(tmp_path / "run"))
    with pytest.raises(Killed):
        fit(cfg, progress=False)
    monkeypatch.setattr(os, "replace", real_replace)
    with pytest.warns(ckpt.CheckpointWarning) if kill_at > len(ckpt.FILES) else _nothing():
        fit(cfg, resume=True, progress=False)
    assert_same_weights(tmp_path / "run", reference)
    rows = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2, 3]  # no row lost, none twice


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def test_a_run_whose_checkpoint_and_previous_are_both_broken_is_refused(tmp_path, reference) -> None:
    import shutil

    from cnnlab.errors import CnnlabError

    run = tmp_path / "run"
    shutil.copytree(reference, run)
    (run / ckpt.STATE).write_bytes(b"cut")
    shutil.rmtree(run / ckpt.PREVIOUS)
    with pytest.raises(CnnlabError, match="damaged or inconsistent.*start a new --out"):
        fit(dataclasses.replace(TINY, out=str(run), epochs=4), resume=True, progress=False)


def _cli(*args: str, **kwargs) -> subprocess.Popen:
    env = dict(os.environ, CNNLAB_KERNELS=os.environ.get("CNNLAB_KERNELS", "1"))
    return subprocess.Popen([sys.executable, "-m", "cnnlab", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kwargs)


# the default precision (auto: bf16 with the kernels where the CPU has fast bf16), 2 threads
COMMAND = ["train", "classify", "--data", "builtin:shapes", "--model", "mini_xception", "--epochs", "3",
           "--batch-size", "16", "--limit", "96", "--image-size", "64", "--threads", "2",
           "--model-arg", "widths=[32,32]", "--model-arg", "stem_width=16"]


def test_sigkill_at_random_moments_then_resume_ends_bit_identical(tmp_path) -> None:
    whole = _cli(*COMMAND, "--out", str(tmp_path / "whole"))
    out, _ = whole.communicate(timeout=300)
    assert whole.returncode == 0, out
    rng = random.Random(14)
    run, kills, tries = tmp_path / "killed", 0, 0
    while tries < 12:
        tries += 1
        proc = _cli(*COMMAND, "--out", str(run), *(["--resume"] if (run / "config.json").exists() else []))
        if kills < 3:
            time.sleep(rng.uniform(2.0, 6.0))  # python + torch start in ~2 s; a run lasts several more
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                kills += 1
        out, _ = proc.communicate(timeout=300)
        if proc.returncode == 0:
            break
        assert proc.returncode == -signal.SIGKILL, out
    assert kills >= 1 and proc.returncode == 0, f"{kills} kills, rc {proc.returncode} after {tries} tries"
    assert_same_weights(run, tmp_path / "whole")


def test_sigterm_checkpoints_the_step_and_exits_143_with_the_resume_hint(tmp_path) -> None:
    run = tmp_path / "run"
    proc = _cli(*COMMAND[:6], "--epochs", "50", *COMMAND[8:], "--out", str(run))
    deadline = time.monotonic() + 120
    while not (run / "metrics.jsonl").exists():  # past the first epoch: training is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()[0]
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 143, out
    assert "interrupted by SIGTERM: checkpoint saved" in out and "--resume" in out
    state = json.loads((run / "state.json").read_text())
    assert state["step"] > 4  # the epoch in progress was checkpointed, not only the first one


def test_fp16_loss_scale_is_checkpointed_and_restored(tmp_path) -> None:
    """The GradScaler's scale and growth counter round-trip through the checkpoint (fp16 needs a GPU
    for training, but the state and its restore are device-independent)."""
    from cnnlab.train.loop import Position
    from cnnlab.train.resume import restore_checkpoint, save_checkpoint

    model = torch.nn.Linear(3, 2)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    scaler = torch.amp.GradScaler("cpu", init_scale=1024.0, growth_interval=7)
    scaler.scale(model(torch.ones(1, 3)).sum()).backward()
    scaler.step(optimizer)
    scaler.update()  # one good step: the growth counter is 1
    scaler.update(new_scale=96.0)
    save_checkpoint(tmp_path, model, optimizer, Position(epoch=1, step=1), scaler=scaler)
    fresh = torch.amp.GradScaler("cpu", growth_interval=7)
    restore_checkpoint(tmp_path, model, optimizer, _Meter(), scaler=fresh)
    assert fresh.state_dict() == scaler.state_dict()
    assert fresh.get_scale() == 96.0


class _Meter:
    def load_state(self, state: torch.Tensor) -> None:
        raise AssertionError("no epoch was in progress")


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_run_files_get_the_mode_the_umask_gives(tmp_path, mask) -> None:
    previous = os.umask(mask)
    try:
        run = fit(dataclasses.replace(TINY, epochs=1, out=str(tmp_path / "run")), progress=False).run_dir
    finally:
        os.umask(previous)
    files = [p for p in run.rglob("*") if p.is_file()]
    assert len(files) >= 5
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in files}
    assert set(modes.values()) == {0o666 & ~mask}, modes
