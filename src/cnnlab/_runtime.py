"""Process-wide runtime settings that make CPU training faster: the allocator, measured to pay.

Why: a training step frees and reallocates the same large activation buffers every step (~130 MB for
the lecture's mini_xception at 180x180, batch 32). glibc serves blocks above its mmap threshold with
fresh ``mmap`` calls and returns freed memory to the kernel, so every step page-faults all of that
memory back in: on the 2-core benchmark machine ~300k minor faults and 0.76 s of kernel time per
step against 1.1 s of user time. Raising the mmap threshold to its maximum and never trimming keeps
the pages in the process (like tcmalloc or jemalloc without decay, measured equal, but with no library
to preload and no re-exec): kernel time fell to 0.02 s per step (benchmarks/NOTES-speed.md).
glibc caps that threshold at 32 MiB, and one bf16 activation of mini_xception's first stage is 63 MB,
so those blocks were still mmapped afresh each step (20k-145k faults per step, varying from run to
run); turning mmap off for malloc (M_MMAP_MAX=0) serves them from the heap too: ~1-3k faults.

The cost is resident memory: freed buffers stay mapped, so the peak of a run stays allocated. Set
``CNNLAB_TUNE_MALLOC=0`` to keep glibc's defaults (the benchmarks use it to measure the difference).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

# mallopt parameter numbers from glibc's <malloc.h>.
_M_TRIM_THRESHOLD = -1
_M_TOP_PAD = -2
_M_MMAP_THRESHOLD = -3
_M_MMAP_MAX = -4
_MMAP_THRESHOLD_MAX = 32 * 1024 * 1024  # glibc's ceiling on 64-bit (4 MiB * sizeof(long))


@functools.cache
def tune_allocator() -> bool:
    """Keep freed memory in the process (glibc mallopt); True when applied, False when switched off
    (CNNLAB_TUNE_MALLOC=0) or elsewhere (macOS, musl).

    Idempotent. Safe to call before or after torch is imported; it affects only later allocations.
    """
    if os.environ.get("CNNLAB_TUNE_MALLOC", "1") == "0" or not sys.platform.startswith("linux"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    ok = mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX)
    ok &= mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)  # never give the heap top back to the kernel
    ok &= mallopt(_M_TOP_PAD, 256 * 1024 * 1024)  # grow the heap in big steps: fewer brk calls and faults
    ok &= mallopt(_M_MMAP_MAX, 0)  # blocks above the 32 MiB threshold cap come from the heap as well
    return bool(ok)


#: libgomp's spin before a waiting worker sleeps, when the user has not chosen one (iterations).
OPENMP_SPINCOUNT = "10000"


def tune_openmp_env() -> bool:
    """Shorten OpenMP's busy-wait when cnnlab's CPU kernels are on; True when it set the variable.

    Why: after each oneDNN op torch's libgomp workers keep spinning for ~300k iterations (a few ms),
    holding a core that cnnlab's kernels (cnnlab.kernels, run from their own threads) then wait for:
    the depthwise weight gradient took 10-11 ms right after a oneDNN op and 6.5 ms alone. With
    GOMP_SPINCOUNT=10000 the mini_xception step with the kernels was 8-9% faster than the stock
    step, against 0-4% with libgomp's default spin (benchmarks/NOTES-speed.md, attempt 20).
    Only effective before torch is imported (libgomp reads it once), so the CLI calls it first thing.
    A value the user set (GOMP_SPINCOUNT or OMP_WAIT_POLICY) is left alone, as is CNNLAB_KERNELS=0.
    """
    if os.environ.get("CNNLAB_KERNELS", "1") == "0" or "GOMP_SPINCOUNT" in os.environ \
            or "OMP_WAIT_POLICY" in os.environ or "torch" in sys.modules:
        return False
    os.environ["GOMP_SPINCOUNT"] = OPENMP_SPINCOUNT
    return True
