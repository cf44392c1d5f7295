"""What every experiment writes beside its plot: one JSON record, the same shape for all of them.

``OUT/<name>.json`` holds the experiment's name, title, what it shows, its settings, a table
(columns + rows of strings, as printed), the findings in words, the plots and the run directories
it trained, plus the experiment's own numbers. ``cnnlab report OUT`` renders any record from these
common keys alone, so a new experiment needs no report code.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.files import read_json, write_json

#: keys every record has (``runs`` and the experiment's own numbers come on top)
KEYS = ("experiment", "title", "shows", "settings", "table", "findings", "plots")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities replaced by None: strict JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def write_record(out_dir: str | Path, record: dict[str, Any]) -> Path:
    """Write ``record`` to ``OUT/<experiment>.json`` (atomically) and return the path."""
    missing = [k for k in KEYS if k not in record]
    if missing:  # a programming error in an experiment, not a user error
        raise ValueError(f"experiment record lacks {missing}")
    name = record["experiment"].replace("-", "_")
    return write_json(Path(out_dir) / f"{name}.json", json_safe(record))


def find_record(folder: str | Path) -> dict[str, Any] | None:
    """The experiment record in ``folder`` (a dict with every key of KEYS), or None when there is none."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = []
    for path in sorted(folder.glob("*.json")):
        data = read_json(path)
        if isinstance(data, dict) and all(k in data for k in KEYS):
            found.append(data)
    if len(found) > 1:
        names = ", ".join(r["experiment"] for r in found)
        raise CnnlabError(f"{folder} holds the records of several experiments ({names}); give each "
                          "experiment its own --out folder")
    return found[0] if found else None


def table_text(table: dict[str, Any]) -> list[list[str]]:
    """The record's table as rows of strings, header first (for printing and for HTML)."""
    return [list(table["columns"]), *[[str(c) for c in row] for row in table["rows"]]]
