"""One error type for everything a user can get wrong, and the did-you-mean helper its messages use.

The CLI's error boundary prints a CnnlabError as one line (the traceback only with CNNLAB_DEBUG=1), so
each message must say what is wrong and what would fix it.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class CnnlabError(ValueError):
    """A problem with the user's input: the message names it and says how to fix it."""


def did_you_mean(name: str, options: Iterable[str], n: int = 3) -> str:
    """' (did you mean: a, b?)' for the closest options, or '' when nothing is close."""
    close = difflib.get_close_matches(name, list(options), n=n, cutoff=0.5)
    return f" (did you mean: {', '.join(close)}?)" if close else ""


def unknown(kind: str, name: str, options: Iterable[str], where: str | None = None) -> CnnlabError:
    """The standard 'unknown X' error: the name, close matches, and every choice, or (past 12 of them,
    when there is a command that lists them) ``where`` to see them."""
    options = sorted(options)
    hint = did_you_mean(name, options)
    if where is not None and len(options) > 12:
        return CnnlabError(f"unknown {kind} {name!r}{hint}; {len(options)} choices: see {where}")
    listing = ", ".join(options) if len(options) <= 40 else f"{len(options)} choices"
    return CnnlabError(f"unknown {kind} {name!r}{hint}; choose from: {listing}")
