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


def atomic_write(path: str | os.PathLike, write: Callable[[Path], None], mode: int | None = 0o644, *,
                 suffix: str = ".tmp") -> Path:
    """Call ``write(tmp)`` on a temporary file next to ``path``, then rename it over ``path``.

    ``mode`` sets the permissions (mkstemp makes files private; outputs are meant to be shared);
    None keeps what the file has after ``write`` (mkstemp's 0600 unless ``write`` replaced it).
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
        if mode is not None:
            os.chmod(tmp, mode)
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
