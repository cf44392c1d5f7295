"""Atomic file writes: the one helper every module that writes a file uses.

A file is written to a temporary name in the same folder and renamed over the target, so a reader
(or a run killed mid-write) sees the old file or the new one, never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError


def umask() -> int:
    """The process's file-creation mask. Linux shows it in /proc; elsewhere os.umask can only read it by
    setting it, which another thread creating a file at that moment would see, so that is the fallback."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except OSError:
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], mode: int = 0o666, *,
                 suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    The file gets ``mode`` less the umask, as ``open()`` would have given it: mkstemp makes its file
    0600 whatever the umask, and that mode would survive the rename, so a run trained on a shared
    server could be read by nobody else (0666 gives 0644 under the usual umask 022; pass 0o777 for
    an executable or shared library).
    The temporary file is ``.<name>.<random><suffix>``, private to this call, so concurrent writers
    (pytest workers, the ranks of a distributed run) never share one and each renames a whole file;
    if ``write`` raises, it is removed and ``path`` is left as it was.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.chmod(tmp, mode & ~umask())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write(path, lambda p: p.write_text(text, encoding="utf-8"))


def write_json(path: str | os.PathLike, data: Any) -> Path:
    return write_text(path, json.dumps(data, indent=2) + "\n")


def read_json(path: str | os.PathLike) -> Any:
    """The JSON in ``path``; a damaged file (edited by hand, cut short by a full disk) is a user error."""
    try:
        return json.loads(Path(path).read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CnnlabError(f"{path} is damaged (not valid JSON: {exc}); restore it from a copy or train "
                          "a new run") from None


def expand_inputs(paths: Any, find: Callable[[Path], list[Path]], what: str, kinds: str) -> list[Path]:
    """Input files and folders -> files, in order: a folder stands for what ``find`` finds in it. A missing
    path, a folder where ``find`` finds nothing, or no paths at all is an error that names ``what`` (plural
    noun: 'images') and ``kinds`` (what such files look like: their extensions)."""
    files: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found = find(p)
            if not found:
                raise CnnlabError(f"folder {p} holds no {what} ({kinds})")
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise CnnlabError(f"input {p} does not exist; pass files or folders of {what} ({kinds})")
    if not files:
        raise CnnlabError(f"no input {what} given; pass files or folders of {what} ({kinds})")
    return files
