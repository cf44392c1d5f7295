"""Option parsing shared by several commands."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from cnnlab.errors import CnnlabError

PYTHON_CONSTANTS = {"True": True, "False": False, "None": None}

#: eval and predict --precision: cnnlab.train.precision.INFERENCE_PRECISIONS, spelled out so that
#: --help does not import torch (tests/test_inference_precision.py keeps the two equal)
INFERENCE_PRECISIONS = ("run", "auto", "fp32", "bf16", "fp16")


def parse_key_values(pairs: tuple[str, ...], option: str, example: str) -> dict[str, Any]:
    """``("widths=[8,16]", "project=false")`` -> ``{"widths": [8, 16], "project": False}``.

    Values are JSON where they parse as JSON, Python's spellings ``True`` / ``False`` / ``None`` are
    accepted too (``project=False`` must not become the truthy string 'False'), numbers separated by
    commas are a list (``widths=32,64`` as ``widths=[32,64]``: every builder then gets a list, not the
    string '32,64' it would fail on obscurely), and anything else is a plain string, so ``act=gelu``
    needs no quotes; ``create_model`` refuses a string where the builder expects a bool or a number.
    """
    kwargs: dict[str, Any] = {}
    for pair in pairs:
        key, sep, text = pair.partition("=")
        if not sep or not key.isidentifier():
            raise CnnlabError(f"{option} {pair!r} must look like KEY=VALUE, for example {option} {example}")
        if text in PYTHON_CONSTANTS:
            kwargs[key] = PYTHON_CONSTANTS[text]
            continue
        try:
            kwargs[key] = json.loads(text)
        except json.JSONDecodeError as exc:
            if text.lstrip().startswith(("[", "{", '"')):  # meant as JSON: a bare string would fail later, obscurely
                raise CnnlabError(f"{option} {pair!r}: the value is not valid JSON ({exc.msg}); "
                                  f"write lists like {option} widths=[16,32]") from None
            kwargs[key] = _number_list(text)
    return kwargs


def _number_list(text: str) -> Any:
    """'32,64' -> [32, 64] when every comma-separated piece is a JSON number; ``text`` itself otherwise."""
    if "," not in text:
        return text
    try:
        numbers = [json.loads(piece) for piece in text.split(",")]
    except json.JSONDecodeError:
        return text
    ok = all(isinstance(n, int | float) and not isinstance(n, bool) for n in numbers)
    return numbers if ok else text


def echo_rows(rows: list[dict[str, Any]], fmt: str, line: Callable[[dict[str, Any]], str], summary: str) -> None:
    """Print the rows of a per-file command: all of them as JSON, or one `line` each and a `summary` on stderr
    (so that `--format table | grep` sees only the rows)."""
    import click

    if fmt == "json":
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        click.echo(line(row))
    click.echo(summary, err=True)
