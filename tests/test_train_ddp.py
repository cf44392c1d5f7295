"""Issue 14 item 6: when a DDP rank dies or hangs, the others stop soon, naming it, instead of hanging.

Two CPU processes under torchrun (gloo) train a tiny model; after the first epoch the test kills or
stops rank 1 and waits for rank 0 to exit on its own. (The healthy 2-process run is in test_cli_train.)
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from cnnlab.errors import CnnlabError
from cnnlab.train.distributed import peer_timeout

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not sys.platform.startswith("linux"), reason="finds the ranks' processes in /proc")]

TINY = ["--data", "builtin:shapes", "--model", "mini_xception", "--limit", "96", "--image-size", "32",
        "--batch-size", "16", "--val-split", "0.25", "--precision", "fp32", "--threads", "1",
        "--model-arg", "widths=[8,16]", "--model-arg", "stem_width=8", "--quiet"]
HANG_GUARD_S = 120  # far above the few seconds it takes: only a hang gets here


def _ranks(launcher: int) -> dict[int, int]:
    """{rank: pid} of torchrun's worker processes (its children, with RANK in their environment)."""
    found = {}
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) != launcher:
                continue
            env = dict(x.split(b"=", 1) for x in (proc / "environ").read_bytes().split(b"\0") if b"=" in x)
        except (OSError, ValueError):
            continue  # gone meanwhile
        if b"RANK" in env:
            found[int(env[b"RANK"])] = int(proc.name)
    return found


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"  # a zombie has exited; torchrun has not reaped it yet


def _launch(tmp_path: Path, *torchrun_args: str) -> tuple[subprocess.Popen, dict[int, int], Path]:
    """Start 2 ranks on a long run and return once rank 0 has logged its first epoch."""
    out, log = tmp_path / "ddp", tmp_path / "stderr.log"
    env = dict(os.environ, OMP_NUM_THREADS="1", CNNLAB_DDP_TIMEOUT="5")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", *torchrun_args,
           "-m", "cnnlab", "train", "classify", *TINY, "--out", str(out), "--epochs", "500"]
    with log.open("w") as err:
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, env=env)
    deadline = time.monotonic() + HANG_GUARD_S
    metrics = out / "metrics.jsonl"
    while not (metrics.is_file() and metrics.read_text().strip()):
        assert proc.poll() is None, log.read_text()[-3000:]
        assert time.monotonic() < deadline, "no epoch finished"
        time.sleep(0.2)
    ranks = _ranks(proc.pid)
    assert sorted(ranks) == [0, 1], ranks
    return proc, ranks, log


def _wait_gone(pid: int, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + HANG_GUARD_S
    while _alive(pid):
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"rank 0 still waits on the dead rank; its log:\n{log.read_text()[-3000:]}")
        time.sleep(0.2)


def test_a_killed_rank_is_named_by_the_others(tmp_path: Path) -> None:
    """A rank on another machine dies: gloo fails the survivor's collective with 'Connection reset by
    peer', which names no rank. A long --monitor-interval keeps the local torchrun from stepping in,
    as it cannot for a process on another machine; the survivor's watchdog names rank 1."""
    proc, ranks, log = _launch(tmp_path, "--monitor-interval", "600")
    try:
        os.kill(ranks[1], signal.SIGKILL)
        _wait_gone(ranks[0], proc, log)
    finally:
        proc.terminate()  # torchrun itself would only look again in 10 minutes
        proc.wait(timeout=60)
    text = log.read_text()
    # (after its collective failed, as a rule; or after 5 s of silence if rank 0 was busy alone that long)
    assert "error: DDP rank 1 stopped: no heartbeat" in text, text[-3000:]
    assert "rank 0 stops too" in text and "--resume" in text
    assert "Traceback" not in text.split("DDP rank 1 stopped")[0]  # the line comes instead of gloo's traceback


def test_a_hung_rank_stops_the_others_naming_it(tmp_path: Path) -> None:
    """A rank that hangs closes no socket and makes torchrun see nothing: without the watchdog the
    other waits in its collective for gloo's 30-minute timeout."""
    proc, ranks, log = _launch(tmp_path)
    os.kill(ranks[1], signal.SIGSTOP)
    try:
        _wait_gone(ranks[0], proc, log)
    finally:
        os.kill(ranks[1], signal.SIGKILL)  # a stopped process would keep torchrun's SIGTERM for 30 s
        proc.wait(timeout=60)
    text = log.read_text()
    assert "error: DDP rank 1 stopped: no heartbeat for 5 s" in text, text[-3000:]
    assert proc.returncode != 0


def test_a_bad_timeout_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CNNLAB_DDP_TIMEOUT", "10s")
    with pytest.raises(CnnlabError, match="CNNLAB_DDP_TIMEOUT='10s' must be a number of seconds"):
        peer_timeout()
    monkeypatch.setenv("CNNLAB_DDP_TIMEOUT", "2.5")
    assert peer_timeout() == 2.5


def test_ddp_does_not_warn_about_grad_strides() -> None:
    """Issue 17: every rank printed "Grad strides do not match bucket view strides" in bf16
    channels_last training (and DDP copied those gradients every step): the depthwise kernel gave
    its (C, 1, 3, 3) weight gradient contiguous strides, the weight has channels_last ones."""
    import datetime
    import warnings

    import torch
    import torch.distributed as tdist

    from cnnlab.kernels import depthwise
    from cnnlab.models import create_model
    from cnnlab.train.precision import make_precision

    if not depthwise.paths():
        pytest.skip("the depthwise kernel is not built here (no C compiler)")
    store = tdist.TCPStore("127.0.0.1", 0, 1, True, timeout=datetime.timedelta(seconds=30))
    tdist.init_process_group("gloo", store=store, rank=0, world_size=1)
    try:
        precision = make_precision("bf16", torch.device("cpu"), channels_last=True)
        net = torch.nn.parallel.DistributedDataParallel(precision.prepare(create_model("mini_xception", num_classes=4)))
        x = precision.batch(torch.rand(2, 3, 64, 64))  # 64 px: the first stage runs the kernel
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with precision.autocast():
                loss = net(x).float().sum()
            loss.backward()
    finally:
        tdist.destroy_process_group()
    assert not [w for w in caught if "Grad strides" in str(w.message)]
    assert all(p.grad.stride() == p.stride() for p in net.module.parameters())
