"""HTML pieces of a self-contained report page: every image is embedded as a base64 PNG data URI, so
the file can be mailed or opened anywhere. This module only draws what it is handed; what goes on a
run's page is decided in ``cnnlab.app.report`` and by the run's task.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
img{max-width:100%;image-rendering:pixelated}.note{color:#777}.samples td img{width:220px}
"""


def png_data_uri(path: str | Path) -> str:
    """The PNG file at ``path`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).exists():
        return f'<p class="note">{html.escape(alt)}: not available</p>'
    return f'<img src="{png_data_uri(path)}" alt="{html.escape(alt)}">'


def write_page(out: str | Path, title: str, parts: list[str]) -> Path:
    """Write the HTML page of ``parts`` (already-rendered sections) to ``out``, atomically."""
    from cnnlab.files import write_text

    # A file or class name that is not UTF-8 (kept by Python as surrogates) is shown as U+FFFD.
    text = page(title, parts).encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    return write_text(out, text)


def page(title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def grid(header: list[str], rows: list[list[str]]) -> str:
    """A table with a header row (the experiments' results): every cell is escaped text."""
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


