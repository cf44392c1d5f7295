"""Hand-written CPU kernels for the memory-bound ops of CPU training, built from C at first use.

Why hand-written: on the lecture's small Xception, the first stage's activations (63 MB each in bf16)
make BatchNorm, ReLU and the depthwise weight gradient memory-bound, and oneDNN's depthwise weight
gradient runs at 2.6-6x its memory floor (benchmarks/NOTES-speed.md, attempts 14-17). Why C through
ctypes instead of a torch C++ extension: no torch headers (a C file compiles in about a second, a
torch extension in about a minute) and no ninja; the kernels only need raw pointers.

Each kernel family is one C file in this folder, compiled with the system's C compiler (``$CC``,
else ``cc``) with ``-O3 -march=native`` into ``~/.cache/cnnlab/kernels`` (``$CNNLAB_CACHE`` or
``$XDG_CACHE_HOME`` move it) under a name hashed from the source, the compiler, the flags and this
CPU's feature flags, so a cache shared between machines never hands one CPU another's code.
``CNNLAB_KERNELS=0`` turns them off; without a compiler, or when a build fails, ``load`` warns once
and returns None, and every caller keeps its PyTorch path.

Parallelism: ctypes releases the GIL during a foreign call, so ``parallel_chunks`` runs a kernel on
contiguous chunks of its rows from a small thread pool (``torch.get_num_threads()`` threads) with no
OpenMP runtime of its own to fight torch's.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import warnings
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from cnnlab.files import atomic_write

FLAGS = ("-O3", "-march=native", "-fPIC", "-shared", "-std=c11")
_SOURCES = Path(__file__).parent


class KernelWarning(UserWarning):
    """A hand-written kernel could not be built; the PyTorch path is used instead."""


def enabled() -> bool:
    """False when the user switched the kernels off with CNNLAB_KERNELS=0."""
    return os.environ.get("CNNLAB_KERNELS", "1") != "0"


def cache_dir() -> Path:
    root = os.environ.get("CNNLAB_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "cnnlab")
    return Path(root) / "kernels"


def _cpu_flags() -> str:
    """This CPU's feature flags (-march=native code must not run on a CPU that lacks them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("flags", "Features")):
                return line
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _compiler() -> str | None:
    return os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")


def _build(name: str, source: Path, compiler: str) -> Path:
    """The shared library for ``source``, compiled once per (source, compiler, flags, CPU)."""
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, timeout=30).stdout
    headers = [h.read_text() for h in sorted(source.parent.glob("*.h"))]  # e.g. bf16.h, shared by all
    key = hashlib.sha256("\0".join([source.read_text(), *headers, compiler, version, *FLAGS, _cpu_flags()])
                         .encode())
    target = cache_dir() / f"{name}-{key.hexdigest()[:16]}.so"
    if target.exists():
        return target

    def compile_to(tmp: Path) -> None:
        result = subprocess.run([compiler, *FLAGS, "-o", str(tmp), str(source), "-lm"], capture_output=True,
                                text=True, timeout=120)
        if result.returncode != 0:
            raise RuntimeError(result.stderr.strip().splitlines()[-1] if result.stderr.strip() else "failed")

    # atomic: concurrent builders (pytest workers) each compile into a private temporary file and
    # rename a whole library into place, executable like any shared library (0755 under umask 022)
    return atomic_write(target, compile_to, mode=0o777, suffix=".so.tmp")


@functools.cache
def load(name: str) -> ctypes.CDLL | None:
    """The compiled kernels of ``cnnlab/kernels/<name>.c``; None (after one warning) when they cannot
    be built here, or when CNNLAB_KERNELS=0 (no warning)."""
    if not enabled():
        return None
    compiler = _compiler()
    if compiler is None:
        warnings.warn("no C compiler found (set CC): cnnlab's CPU kernels are off, training uses PyTorch's "
                      "ops (slower on CPU; install gcc or clang to enable them)", KernelWarning, stacklevel=2)
        return None
    try:
        return ctypes.CDLL(str(_build(name, _SOURCES / f"{name}.c", compiler)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        warnings.warn(f"building cnnlab's CPU kernel {name!r} failed ({exc}); training uses PyTorch's ops "
                      "(set CNNLAB_KERNELS=0 to skip the attempt)", KernelWarning, stacklevel=2)
        return None


@functools.cache
def load_required(source: Path) -> ctypes.CDLL:
    """The compiled library of ``source``, for C code cnnlab has no PyTorch fallback for (the JPEG
    coefficient reader): ignores CNNLAB_KERNELS, and raises a CnnlabError that says how to get a
    compiler when the build cannot happen."""
    from cnnlab.errors import CnnlabError

    compiler = _compiler()
    if compiler is None:
        raise CnnlabError(f"{source.name} needs a C compiler and none was found: install gcc or clang "
                          "(or set CC)")
    try:
        return ctypes.CDLL(str(_build(source.stem, source, compiler)))
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        raise CnnlabError(f"building {source} with {compiler} failed: {exc}") from None


def declare_once(lib: ctypes.CDLL, declare: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL:
    """Run ``declare(lib)`` (set the C signatures: without argtypes ctypes passes ints as C int) the
    first time this library object is seen; ``load.cache_clear()`` gives a new object, declared anew."""
    if "_cnnlab_declared" not in vars(lib):
        declare(lib)
        lib._cnnlab_declared = True
    return lib


def library(name: str, declare: Callable[[ctypes.CDLL], None]) -> ctypes.CDLL | None:
    """``load(name)`` with its signatures declared by ``declare``; None when the kernels are off or
    could not be built here."""
    lib = load(name)
    return None if lib is None else declare_once(lib, declare)


def has_hooks(*modules: torch.nn.Module) -> bool:
    """True when any of ``modules`` or torch's global module hooks would expect to see the stock
    modules run: a kernel that replaces them must then step aside (explain's recorders, summaries)."""
    m = torch.nn.modules.module
    if (m._global_forward_hooks or m._global_forward_pre_hooks or m._global_backward_hooks
            or getattr(m, "_global_backward_pre_hooks", None)):
        return True
    return any(module._forward_hooks or module._forward_pre_hooks or module._backward_hooks
               or getattr(module, "_backward_pre_hooks", None) for module in modules)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(threads, thread_name_prefix="cnnlab-kernel")


def parallel_chunks(fn: Callable[..., object], total: int, *args: object, chunks: int | None = None) -> int:
    """Call ``fn(*args, chunk, start, end)`` for ``chunks`` contiguous slices of ``range(total)``, in
    parallel (default: torch's intra-op thread count, at most ``total``); returns the chunk count,
    so callers can size per-chunk partial results before the call with ``chunk_count``."""
    n = chunk_count(total) if chunks is None else chunks
    bounds = [total * i // n for i in range(n + 1)]
    if n == 1:
        fn(*args, 0, 0, total)
        return 1
    futures = [_pool(n).submit(fn, *args, i, bounds[i], bounds[i + 1]) for i in range(n)]
    for future in futures:
        future.result()
    return n


def chunk_count(total: int) -> int:
    """How many chunks ``parallel_chunks`` splits ``total`` rows into by default."""
    return max(1, min(torch.get_num_threads(), total))
