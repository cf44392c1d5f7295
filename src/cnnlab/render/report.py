"""One self-contained HTML page for a run directory: every image is embedded as a base64 PNG data URI,
so the file can be mailed or opened anywhere without the run directory beside it.

Sections: summary and final metrics, learning curves (the run's curves.png, or drawn from
metrics.jsonl), confusion matrix (confusion.png), sample predictions with Grad-CAM overlays,
feature-map grids with the silent-channel share by depth, and a filter atlas.
"""

from __future__ import annotations

import base64
import html
import os
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:2em}
table{border-collapse:collapse}td,th{border:1px solid #ddd;padding:.3em .6em;text-align:left}
img{max-width:100%;image-rendering:pixelated}.note{color:#777}.samples td img{width:220px}
"""


def png_data_uri(path: str | Path) -> str:
    """The PNG file at ``path`` as a ``data:image/png;base64,...`` URI."""
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _img(path: Path | None, alt: str) -> str:
    if path is None or not Path(path).exists():
        return f'<p class="note">{html.escape(alt)}: not available</p>'
    return f'<img src="{png_data_uri(path)}" alt="{html.escape(alt)}">'


def write_report(run_dir: str | Path, out: str | Path | None = None, inputs: Sequence[str] | None = None,
                 samples: int = 8, device: str = "cpu", filter_channels: int = 16, filter_steps: int = 20) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default RUN/report.html) and return its path.

    ``inputs`` are image files/folders to show; without them the first ``samples`` validation
    images of the run's own data spec are used when that spec can be loaded here.
    """
    from cnnlab.errors import CnnlabError
    from cnnlab.train import load_run

    if samples < 1:  # zero images would fail deep inside the CAM normalisation
        raise CnnlabError(f"samples={samples}: show at least 1 sample image (--samples 1 or more)")
    run = load_run(run_dir, device)
    out = Path(out) if out else Path(run_dir) / "report.html"
    with tempfile.TemporaryDirectory() as tmp:
        parts = [_summary(run), _curves(run, Path(tmp)), _confusion(run)]
        parts += _explained(run, inputs, samples, filter_channels, filter_steps, Path(tmp))
        page = _page(f"cnnlab report: {run.run_dir.name}", parts)
    out.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_path = tempfile.mkstemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(page)
        os.chmod(tmp_path, 0o644)  # mkstemp makes it private; a report is meant to be shared
        os.replace(tmp_path, out)
    finally:
        Path(tmp_path).unlink(missing_ok=True)
    return out


def _page(title: str, parts: list[str]) -> str:
    body = "\n".join(parts)
    return (f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
            f"<style>{_STYLE}</style></head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n")


def _table(rows: list[tuple[str, str]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(v)}</td></tr>" for k, v in rows)
    return f"<table>{cells}</table>"


def _summary(run: Any) -> str:
    config = run.config
    rows = [("run directory", str(run.run_dir)), ("model", config["model"]["name"]), ("task", config["task"]),
            ("classes", ", ".join(run.class_names)),
            ("input", f"{run.in_channels} x {run.image_size[0]} x {run.image_size[1]}"),
            ("data", str(config.get("data", {}).get("spec", "?")))]
    if run.history:
        last = run.history[-1]
        rows += [(key, f"{value:.4g}" if isinstance(value, float) else str(value)) for key, value in last.items()]
    return "<h2>Summary</h2>" + _table(rows)


def _curves(run: Any, tmp: Path) -> str:
    path = run.run_dir / "curves.png"
    if not path.exists() and run.history:
        from cnnlab.render.curves import plot_curves

        path = plot_curves(run.history, tmp / "curves.png")
    return "<h2>Learning curves</h2>" + _img(path if path.exists() else None, "learning curves")


def _confusion(run: Any) -> str:
    path = run.run_dir / "confusion.png"
    return "<h2>Confusion matrix (validation)</h2>" + _img(path if path.exists() else None, "confusion matrix")


def _sample_inputs(run: Any, inputs: Sequence[str] | None, samples: int):  # type: ignore[no-untyped-def]
    """(Inputs, where they came from) or (None, why not)."""
    from cnnlab.errors import CnnlabError
    from cnnlab.explain import runs

    if inputs:
        data = runs.load_inputs(run, inputs)
        return runs.Inputs(data.raw[:samples], data.x[:samples], data.names[:samples]), "the images passed with --inputs"
    spec = run.config.get("data", {}).get("spec")
    if not spec:
        return None, "the run records no data spec; pass --inputs IMAGE..."
    from cnnlab.data import load_data

    try:
        bundle = load_data(spec, run.config["task"], image_size=tuple(run.image_size))
    except (CnnlabError, OSError) as exc:  # the report still has curves and filters; say why samples are missing
        return None, f"could not load the run's data {spec!r} here ({exc}); pass --inputs IMAGE..."
    val = bundle.val if len(bundle.val.x) else bundle.train
    raw, labels = val.x[:samples], val.y[:samples].tolist()
    names = [f"val {i}" for i in range(len(raw))]
    return runs.inputs_from_tensor(run, raw, names, labels if val.y.dim() == 1 else None), f"validation images of {spec}"


def _explained(run: Any, inputs: Sequence[str] | None, samples: int, filter_channels: int, filter_steps: int,
               tmp: Path) -> list[str]:
    from cnnlab.explain import runs

    data, source = _sample_inputs(run, inputs, samples)
    parts = []
    layer = runs.default_layer(run, data)
    if data is None:
        parts.append(f'<h2>Sample predictions</h2><p class="note">{html.escape(source)}</p>')
    else:
        rows = runs.explain_cams(run, data, layer, "gradcam", None, tmp / "cams")
        cells = "".join(
            f"<tr><td>{_img(r['png'], r['input'])}</td><td>{html.escape(r['input'])}</td>"
            f"<td>{html.escape(r['predicted'])} ({r['probability']:.2f})</td>"
            f"<td>{html.escape(r['label'] or '-')}</td></tr>" for r in rows)
        parts.append(f"<h2>Sample predictions</h2><p>{html.escape(source)}; Grad-CAM of <code>{html.escape(layer)}"
                     "</code> for the predicted class (image | heat map).</p>"
                     f'<table class="samples"><tr><th>image | Grad-CAM</th><th>input</th><th>predicted (p)</th>'
                     f"<th>label</th></tr>{cells}</table>")
        act = runs.explain_activations(run, runs.Inputs(data.raw[:1], data.x[:1], data.names[:1]), layer, tmp / "maps")
        parts.append(f"<h2>Feature maps</h2><p><code>{html.escape(layer)}</code> for {html.escape(data.names[0])}: "
                     f"{act['channels']} channels, strongest first; {act['silent']} never activate on this image.</p>"
                     + _img(act["grids"][0], "feature maps")
                     + "<p>Share of channels that never activate (&le; 0 everywhere), by depth:</p>"
                     + _img(act["depth_png"], "silent channels by depth"))
    filters = runs.explain_filters(run, None, tmp / "filters", count=filter_channels, steps=filter_steps)
    parts.append(f"<h2>Filter atlas</h2><p>Inputs that maximise the first {len(filters['channels'])} channels of "
                 f"<code>{html.escape(filters['layer'])}</code> (gradient ascent from grey noise).</p>"
                 + _img(filters["png"], "filter atlas"))
    return parts
