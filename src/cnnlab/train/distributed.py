"""Distributed data parallel when launched by torchrun (RANK / WORLD_SIZE set), a no-op otherwise.

The loop calls the same functions either way (nanoGPT's pattern): ``setup()`` returns a Dist that
knows its rank; ``shard`` gives each rank a disjoint slice of the epoch's permutation; ``sum_``
all-reduces a tensor (losses, metric sums); only rank 0 writes files and prints.

When a rank dies, the others must not hang. A process that is killed closes its sockets, so gloo
fails the next collective at once, but with "Connection reset by peer [address]", which names no
rank; a rank that hangs, or whose machine or network goes, closes nothing, and the others wait in
the collective until its 30-minute timeout. So every rank runs a :class:`Watchdog`: a thread that
beats through the rendezvous store every second and reads the other ranks' beats and exit notes.
A rank that leaves an error note, or whose beat stops for ``CNNLAB_DDP_TIMEOUT`` seconds (default
60; a few seconds once a collective has failed), makes every other rank print one line naming it
and exit with status 1 at once.
"""

from __future__ import annotations

import datetime
import os
import sys
import threading
import time
from dataclasses import dataclass, field

import torch
import torch.distributed as tdist

from cnnlab.errors import CnnlabError

TIMEOUT_ENV = "CNNLAB_DDP_TIMEOUT"
DEFAULT_TIMEOUT_S = 60.0  # silence that counts as dead: generous, a false alarm stops a healthy run
BEAT_S = 1.0
# After one of this rank's collectives failed, a peer whose beat stalls this long is the dead one:
# healthy ranks beat every BEAT_S from their own thread, whatever their main thread is blocked in.
SUSPECT_S = 4 * BEAT_S
PEER_FAILED_EXIT = 1


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    watchdog: Watchdog | None = field(default=None, compare=False, repr=False)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, order: torch.Tensor) -> torch.Tensor:
        """This rank's part of a permutation: every rank gets the same count, remainders dropped."""
        per_rank = len(order) // self.world_size
        return order[self.rank * per_rank:(self.rank + 1) * per_rank]

    def barrier(self) -> None:
        if self.enabled:
            tdist.barrier()

    def sum_(self, t: torch.Tensor) -> torch.Tensor:
        """All-reduce (sum) ``t`` in place across ranks; returns it."""
        if self.enabled:
            tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        return t


def env_world() -> tuple[int, int, int]:
    """(rank, world size, local rank) from torchrun's environment; (0, 1, 0) when not launched by it."""
    rank = int(os.environ.get("RANK", "0"))
    world = int(os.environ.get("WORLD_SIZE", "1"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    return rank, world, local


def peer_timeout() -> float:
    """Seconds without a heartbeat after which a rank counts as dead (``CNNLAB_DDP_TIMEOUT``)."""
    text = os.environ.get(TIMEOUT_ENV, "")
    if not text:
        return DEFAULT_TIMEOUT_S
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not value > 0 or value == float("inf"):
        raise CnnlabError(f"{TIMEOUT_ENV}={text!r} must be a number of seconds above 0 (how long a silent DDP "
                          f"rank may stay silent before the others stop), e.g. {TIMEOUT_ENV}=60")
    return value


def setup(device: torch.device) -> Dist:
    """Join the process group torchrun set up (gloo on CPU, nccl on CUDA) and start this rank's
    watchdog; single process otherwise."""
    rank, world, local = env_world()
    if world <= 1:
        return Dist()
    timeout = peer_timeout()  # a bad value is said before anything starts
    if device.type == "cuda":
        torch.cuda.set_device(device)  # NCCL collectives (and barrier) use the current device
    if not tdist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        tdist.init_process_group(backend, timeout=datetime.timedelta(minutes=30))
    return Dist(rank, world, local, Watchdog.start(rank, world, timeout))


def teardown(dist: Dist) -> None:
    """Stop the watchdog (leaving this rank's exit note) and leave the process group.

    Called from ``fit``'s ``finally``, so ``sys.exc_info()`` is the error on its way out, if any. When
    a collective failed, the likely cause is a dead peer: the watchdog gets a few seconds to find and
    name it (it then exits the process) before this rank's own error goes on as usual.
    """
    if not dist.enabled:
        return
    error = sys.exc_info()[1]
    if dist.watchdog is not None:
        if error is not None and _collective_failed(error):
            dist.watchdog.suspect()
        dist.watchdog.close(error)
    if tdist.is_initialized():
        tdist.destroy_process_group()


def _collective_failed(error: BaseException) -> bool:
    """Whether ``error`` came from a collective or the store (gloo raises a plain RuntimeError naming
    itself: "[.../gloo/transport/tcp/pair.cc:537] Read error ...: Connection reset by peer")."""
    if isinstance(error, tdist.DistError):
        return True
    text = str(error).lower()
    return isinstance(error, RuntimeError) and any(w in text for w in ("gloo", "nccl", "connection", "timed out"))


def _one_line(error: BaseException) -> str:
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0] if lines else ''}".strip()[:300]


class Watchdog:
    """One rank's heartbeat, and its watch over the others' (see the module docstring).

    Keys in the rendezvous store, under a prefix per torchrun run and restart: ``beat/R`` (a counter
    rank R raises every BEAT_S) and ``exit/R`` ("ok", or R's error in one line). The thread has its
    own store connection; every store call holds ``_lock`` (the main thread writes the exit note).
    """

    def __init__(self, store: tdist.Store, rank: int, world: int, timeout: float, where: str,
                 beat: float = BEAT_S) -> None:
        self.store, self.rank, self.world, self.timeout, self.where, self.beat = store, rank, world, timeout, where, beat
        run = os.environ.get("TORCHELASTIC_RUN_ID", "run")
        self.prefix = f"cnnlab/ddp/{run}/{os.environ.get('TORCHELASTIC_RESTART_COUNT', '0')}"
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._suspect = threading.Event()
        self._finished: set[int] = set()
        self._thread = threading.Thread(target=self._watch, name=f"cnnlab-ddp-watchdog-{rank}", daemon=True)

    @classmethod
    def start(cls, rank: int, world: int, timeout: float) -> Watchdog:
        """Connect to the store torchrun's rendezvous uses (MASTER_ADDR:MASTER_PORT) and start beating."""
        host, port = os.environ.get("MASTER_ADDR", "127.0.0.1"), int(os.environ.get("MASTER_PORT", "29500"))
        store = tdist.TCPStore(host, port, is_master=False, wait_for_workers=False,
                               timeout=datetime.timedelta(seconds=timeout))
        dog = cls(store, rank, world, timeout, f"{host}:{port}")
        dog._thread.start()
        return dog

    def _key(self, what: str, rank: int) -> str:
        return f"{self.prefix}/{what}/{rank}"

    def suspect(self) -> None:
        """One of this rank's collectives failed: judge silent peers after SUSPECT_S instead of the
        full timeout, and wait that long for the verdict (the thread exits the process on one)."""
        self._suspect.set()
        self._stop.wait(SUSPECT_S + 3 * self.beat)

    def close(self, error: BaseException | None = None) -> None:
        """Leave this rank's exit note ("ok" or its error) and stop beating."""
        note = "ok" if error is None else _one_line(error)
        with self._lock:
            # First: from now on this rank's own outcome goes on (a peer failing the same way at the
            # same moment, bad data say, must not cut this rank's error short with a verdict on it).
            self._stop.set()
        try:
            with self._lock:
                self.store.set(self._key("exit", self.rank), note)
        except (RuntimeError, OSError):
            pass  # the store is gone with its host, so nobody is left to read the note
        self._thread.join(timeout=2 * self.beat)

    def _watch(self) -> None:
        others = [r for r in range(self.world) if r != self.rank]
        last = {r: (-1, time.monotonic()) for r in others}  # (beat count, when it last changed)
        while not self._stop.is_set():
            try:
                with self._lock:
                    self.store.add(self._key("beat", self.rank), 1)
                for r in others:
                    if r not in self._finished:
                        self._check(r, last)
            except (RuntimeError, OSError) as exc:  # the store's host is gone
                if self._stop.is_set() or 0 in self._finished:
                    return  # the run is ending: rank 0 (or its torchrun agent) may host the store
                self._fail(f"lost the DDP rendezvous store at {self.where} ({_one_line(exc)}): the process or "
                           "machine hosting it (rank 0, or the first node's torchrun) is gone")
            self._stop.wait(self.beat)

    def _check(self, r: int, last: dict[int, tuple[int, float]]) -> None:
        """Fail on rank ``r``'s error note, or on its beat standing still past the limit."""
        key = self._key("exit", r)
        with self._lock:
            note = self.store.get(key).decode(errors="replace") if self.store.check([key]) else None
            count = self.store.add(self._key("beat", r), 0)
        if note == "ok":
            self._finished.add(r)
            return
        if note is not None:
            self._fail(f"DDP rank {r} failed: {note}")
        now = time.monotonic()
        if count != last[r][0]:
            last[r] = (count, now)
            return
        limit = SUSPECT_S if self._suspect.is_set() else self.timeout
        if now - last[r][1] > limit:
            after = "after a collective with it failed" if self._suspect.is_set() else f"for {limit:g} s"
            self._fail(f"DDP rank {r} stopped: no heartbeat {after} (killed, crashed, hung, or its machine or "
                       "network lost)")

    def _fail(self, reason: str) -> None:
        """Say why on stderr and end this process now: its main thread may be blocked in a collective
        that never returns, and nothing in Python can interrupt that."""
        self._lock.acquire()  # held until the exit: ``close`` cannot start in between
        if self._stop.is_set():
            self._lock.release()
            return
        sys.stderr.write(f"error: {reason}; rank {self.rank} stops too. Continue from the last checkpoint with "
                         f"the same command plus --resume ({TIMEOUT_ENV} sets how long a rank may be silent)\n")
        sys.stderr.flush()
        os._exit(PEER_FAILED_EXIT)
