"""Builders for the bad-input corpus (tests/test_bad_input.py): every file is made by the test itself.

``Workspace`` makes good files, then breaks them the ways users' files break: cut short, emptied,
renamed to another format, decompression bombs (a PNG header that claims billions of pixels, a few
bytes on disk), symlink loops, unreadable modes and names that are not UTF-8. It also simulates a full
disk and a read-only file system for the writes that go through ``cnnlab.files.atomic_write``.
"""

from __future__ import annotations

import errno
import os
import shutil
import struct
import tempfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image


def png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims ``width`` x ``height`` pixels, with almost no pixel data: the file is
    tiny, the image it describes is a decompression bomb."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)  # 8-bit grayscale
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00" * 64))
            + chunk(b"IEND", b""))


class Workspace:
    """One case's folder (``root``), and the trained runs it may copy in (``runs``: task -> run dir)."""

    def __init__(self, root: Path, runs: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.root, self._runs, self._monkeypatch = root, runs, monkeypatch

    def path(self, rel: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        return path

    # --- good files ------------------------------------------------------------------------------
    def image(self, rel: str, size: int = 16, seed: int = 0, fmt: str | None = None, mode: str = "RGB") -> Path:
        """Random pixels (so JPEG and PNG files are not trivially small)."""
        rng = np.random.default_rng(seed)
        shape = (size, size, 3) if mode == "RGB" else (size, size)
        path = self.path(rel)
        Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode).save(path, format=fmt)
        return path

    def mask(self, rel: str, size: int = 16, values: tuple[int, int] = (0, 1), fmt: str | None = None) -> Path:
        """A two-class mask: the top half ``values[1]``, the rest ``values[0]``."""
        m = np.full((size, size), values[0], np.uint8)
        m[: size // 2] = values[1]
        path = self.path(rel)
        Image.fromarray(m, "L").save(path, format=fmt)
        return path

    def classes(self, rel: str, per_class: int = 6, names: tuple[str, ...] = ("a", "b")) -> Path:
        """rel/<class>/<i>.png"""
        for c, name in enumerate(names):
            for i in range(per_class):
                self.image(f"{rel}/{name}/{i}.png", seed=10 * c + i)
        return self.root / rel

    def jpeg_classes(self, rel: str, per_class: int = 6, size: int = 32) -> Path:
        """rel/<a|b>/<i>.jpg: JPEG files for --input dct"""
        for c, name in enumerate(("a", "b")):
            for i in range(per_class):
                self.image(f"{rel}/{name}/{i}.jpg", size=size, seed=10 * c + i, fmt="JPEG")
        return self.root / rel

    def pairs(self, rel: str, n: int = 6) -> Path:
        """rel/images/<i>.png + rel/masks/<i>.png"""
        for i in range(n):
            self.image(f"{rel}/images/{i}.png", seed=i)
            self.mask(f"{rel}/masks/{i}.png")
        return self.root / rel

    def photos(self, rel: str, n: int = 6, size: int = 32) -> Path:
        """rel/<i>.png (plain images for superres)"""
        for i in range(n):
            self.image(f"{rel}/{i}.png", size=size, seed=i)
        return self.root / rel

    def wav(self, rel: str, seconds: float = 0.25, rate: int = 4000, seed: int = 0) -> Path:
        """A mono 16-bit WAV of noise (the standard library writes it: no audio package needed)."""
        import wave

        samples = np.random.default_rng(seed).integers(-8000, 8000, int(seconds * rate), dtype=np.int16)
        path = self.path(rel)
        with wave.open(str(path), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate)
            f.writeframes(samples.tobytes())
        return path

    def recordings(self, rel: str, per_class: int = 4, names: tuple[str, ...] = ("hi", "lo")) -> Path:
        """rel/<class>/<i>.wav"""
        for c, name in enumerate(names):
            for i in range(per_class):
                self.wav(f"{rel}/{name}/{i}.wav", seed=10 * c + i)
        return self.root / rel

    def npz(self, rel: str, **arrays: Any) -> Path:
        path = self.path(rel)
        np.savez(path, **arrays)
        return path

    def images_npz(self, rel: str, n: int = 12, dtype: Any = np.uint8) -> Path:
        """x (N, 16, 16, 3), y (N,) with two classes, class_names."""
        x = np.random.default_rng(0).integers(0, 256, (n, 16, 16, 3)).astype(dtype)
        return self.npz(rel, x=x, y=np.arange(n) % 2, class_names=np.array(["a", "b"]))

    def run(self, task: str) -> Path:
        """A copy of a trained ``task`` run inside this case's folder (so the no-file-lost check covers it)."""
        target = self.root / f"run_{task}"
        if not target.exists():
            shutil.copytree(self._runs(task), target)
        return target

    # --- broken files ----------------------------------------------------------------------------
    def truncated(self, path: Path, keep: float = 0.5) -> Path:
        data = path.read_bytes()
        path.write_bytes(data[: max(1, int(len(data) * keep))])
        return path

    def empty(self, rel: str) -> Path:
        path = self.path(rel)
        path.write_bytes(b"")
        return path

    def text(self, rel: str, content: bytes = b"this is not an image\n") -> Path:
        path = self.path(rel)
        path.write_bytes(content)
        return path

    def bomb(self, rel: str, width: int = 20_000, height: int = 20_000) -> Path:
        """A decompression bomb: 400 M pixels (over twice Pillow's limit) by default."""
        path = self.path(rel)
        path.write_bytes(png_header(width, height))
        return path

    def symlink_loop(self, folder: str, ext: str = ".png") -> Path:
        """Two links in ``folder`` that point at each other (opening either fails with ELOOP)."""
        a, b = self.path(f"{folder}/loop_a{ext}"), self.path(f"{folder}/loop_b{ext}")
        os.symlink(b, a)
        os.symlink(a, b)
        return a

    def unreadable(self, path: Path) -> Path:
        """``path`` with mode 000; skips the case where that does not stop reads (root: see ``denied``)."""
        path.chmod(0)
        try:
            with path.open("rb"):
                pass
        except PermissionError:
            return path
        path.chmod(0o644)
        pytest.skip("chmod 000 does not stop this user (root) from reading files")

    def denied(self, path: Path) -> Path:
        """Opening ``path`` from Python fails with EACCES, as a mode-000 file does for a user other than
        root (the tests run as root here, which chmod cannot stop). Python-level opens only: Pillow and
        NumPy open files with ``open``; libsndfile and safetensors open them in C."""
        import builtins
        import io

        real, target = builtins.open, os.path.abspath(path)

        def guarded(file: Any, *args: Any, **kwargs: Any) -> Any:
            if isinstance(file, (str, bytes, os.PathLike)) and os.path.abspath(os.fsdecode(file)) == target:
                raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fsdecode(file))
            return real(file, *args, **kwargs)

        self._monkeypatch.setattr(builtins, "open", guarded)
        self._monkeypatch.setattr(io, "open", guarded)
        return path

    def non_utf8(self, folder: str, name: bytes, source: Path | None = None, content: bytes = b"") -> Path:
        """A file in ``folder`` whose name is the bytes ``name`` (not valid UTF-8)."""
        directory = self.path(f"{folder}/x").parent
        target = os.path.join(os.fsencode(directory), name)
        with open(target, "wb") as f:
            f.write(source.read_bytes() if source is not None else content)
        return Path(os.fsdecode(target))

    # --- output folders that cannot be written ---------------------------------------------------
    def full_disk(self) -> None:
        """Every atomic write's temporary file becomes a link to /dev/full, so writing it fails with a
        real ENOSPC from the kernel, whichever library writes (json, Pillow, safetensors, matplotlib)."""
        if not os.path.exists("/dev/full"):
            pytest.skip("/dev/full is not available to simulate a full disk")
        real = tempfile.mkstemp

        def mkstemp(*args: Any, **kwargs: Any) -> tuple[int, str]:
            fd, name = real(*args, **kwargs)
            os.close(fd)
            os.unlink(name)
            os.symlink("/dev/full", name)
            return os.open(name, os.O_WRONLY), name

        self._monkeypatch.setattr(tempfile, "mkstemp", mkstemp)

    def read_only(self) -> None:
        """Creating any atomic write's temporary file fails with EROFS, as on a read-only mount (a mode
        of 0555 would not stop root)."""
        def mkstemp(*args: Any, dir: Any = None, **kwargs: Any) -> tuple[int, str]:  # noqa: A002
            raise OSError(errno.EROFS, os.strerror(errno.EROFS), str(dir))

        self._monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


def snapshot(root: Path) -> dict[str, bytes | str]:
    """Every file under ``root``: its bytes, or for a symbolic link where it points. Read with os.open,
    so a case that makes Python's ``open`` refuse a file (``Workspace.denied``) still gets compared."""
    found: dict[str, bytes | str] = {}
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
                continue
            fd = os.open(path, os.O_RDONLY)
            try:
                chunks = []
                while chunk := os.read(fd, 1 << 20):
                    chunks.append(chunk)
            finally:
                os.close(fd)
            found[path] = b"".join(chunks)
    return found


def invoke(argv: list[str]) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of ``cnnlab ARGV`` in this process, through ``cnnlab.cli.main``'s
    error boundary (what a user's shell sees). An exception that escapes it fails the case with its
    traceback."""
    import warnings

    from click.testing import CliRunner

    from cnnlab.cli import main

    code = 0
    shown = warnings.showwarning  # main installs its one-line warning printer: put pytest's back after
    try:
        with CliRunner().isolation() as (out, err, _), warnings.catch_warnings():
            warnings.simplefilter("always")  # each case sees its own warnings, however many ran before
            try:
                main(argv)
            except SystemExit as exc:
                code = exc.code if isinstance(exc.code, int) else 1
            stdout, stderr = out.getvalue(), err.getvalue()
    finally:
        warnings.showwarning = shown
    return code, stdout.decode("utf-8", "replace"), stderr.decode("utf-8", "replace")
