"""cnnlab.kernels' loader: compile-once cache, switches and fallbacks, and the chunked thread runner."""

from __future__ import annotations

import ctypes
import threading

import pytest

from cnnlab import kernels

SOURCE = "long add(long a, long b) { return a + b; }\n"


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    monkeypatch.setenv("CNNLAB_CACHE", str(tmp_path / "cache"))
    kernels.load.cache_clear()
    yield tmp_path
    kernels.load.cache_clear()


@pytest.mark.skipif(kernels._compiler() is None, reason="no C compiler on this machine")
def test_build_compiles_once_into_the_cache_and_the_library_works(fresh) -> None:
    source = fresh / "add.c"
    source.write_text(SOURCE)
    first = kernels._build("add", source, kernels._compiler())
    assert first.parent == kernels.cache_dir() and first.name.startswith("add-")
    stamp = first.stat().st_mtime_ns
    assert kernels._build("add", source, kernels._compiler()) == first and first.stat().st_mtime_ns == stamp
    lib = ctypes.CDLL(str(first))
    lib.add.restype, lib.add.argtypes = ctypes.c_long, [ctypes.c_long, ctypes.c_long]
    assert lib.add(40, 2) == 42
    (fresh / "shared.h").write_text("#define TWO 2\n")
    with_header = kernels._build("add", source, kernels._compiler())
    assert with_header != first  # a header beside the source is part of the key: changing it rebuilds
    source.write_text(SOURCE + "long sub(long a, long b) { return a - b; }\n")
    assert kernels._build("add", source, kernels._compiler()) not in (first, with_header)  # a changed source too
    assert not list(kernels.cache_dir().glob("*.tmp"))


def test_switched_off_means_none_and_no_warning(fresh, monkeypatch, recwarn) -> None:
    monkeypatch.setenv("CNNLAB_KERNELS", "0")
    assert kernels.load("dw3x3") is None
    assert not [w for w in recwarn if issubclass(w.category, kernels.KernelWarning)]


def test_a_failing_compiler_warns_once_and_falls_back(fresh, monkeypatch) -> None:
    monkeypatch.setenv("CC", str(fresh / "no-such-cc"))
    with pytest.warns(kernels.KernelWarning, match="failed"):
        assert kernels.load("dw3x3") is None
    assert kernels.load("dw3x3") is None  # cached: no second attempt, no second warning


def test_parallel_chunks_cover_every_row_once_from_several_threads() -> None:
    seen: list[tuple[int, int, int]] = []
    names: set[str] = set()
    lock = threading.Lock()

    def work(tag: str, chunk: int, start: int, end: int) -> None:
        with lock:
            seen.append((chunk, start, end))
            names.add(threading.current_thread().name)
        assert tag == "x"

    n = kernels.parallel_chunks(work, 10, "x", chunks=3)
    assert n == 3 and sorted(seen) == [(0, 0, 3), (1, 3, 6), (2, 6, 10)]
    assert all(name.startswith("cnnlab-kernel") for name in names)
    assert kernels.parallel_chunks(work, 5, "x", chunks=1) == 1 and (0, 0, 5) in seen
