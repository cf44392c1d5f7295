"""The HTML page of an experiment's output folder: `cnnlab report OUT` where OUT holds an experiment
record (``OUT/<name>.json``, see ``cnnlab.experiments.record``) instead of a run's config.json.

Sections: what the experiment shows; its findings; its table; its plots; its settings; and, for
the experiments that train, each run's learning curves with the command for that run's own report.
Everything comes from the record's common keys, so a new experiment needs nothing here.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

from cnnlab.experiments.record import table_text
from cnnlab.render.report import grid, img, table, write_page


def write_experiment_report(folder: str | Path, record: dict[str, Any], out: str | Path | None = None) -> Path:
    """Write the page of the experiment ``record`` found in ``folder`` (default OUT/report.html)."""
    folder = Path(folder)
    out = Path(out) if out else folder / "report.html"
    header, *rows = table_text(record["table"])
    findings = "".join(f"<li>{html.escape(line)}</li>" for line in record["findings"])
    parts = [f"<p>{html.escape(record['shows'])}</p>",
             f"<h2>Findings</h2><ul>{findings}</ul>",
             "<h2>Results</h2>" + grid(header, rows)]
    parts += [f"<h2>Plot: {html.escape(name)}</h2>" + img(folder / name, name) for name in record["plots"]]
    parts.append("<h2>Settings</h2>" + table([(k, _text(v)) for k, v in record["settings"].items()]))
    for model, sub in record.get("runs", {}).items():
        run_dir = folder / sub
        parts.append(f"<h2>Run {html.escape(model)}</h2><p>Run directory <code>{html.escape(str(run_dir))}</code>; "
                     f"its own report: <code>cnnlab report {html.escape(str(run_dir))}</code></p>"
                     + img(run_dir / "curves.png", f"learning curves of {model}"))
    return write_page(out, f"cnnlab experiment {record['experiment']}: {record['title']}", parts)


def _text(value: Any) -> str:
    return "-" if value is None else str(value)
