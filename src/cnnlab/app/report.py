"""`write_report(run_dir)`: one self-contained HTML page for a run directory.

Sections: summary and final metrics; learning curves; the task's plots (confusion matrix, per-class
IoU, ...); the task's sample section (classify: a class-balanced set with Grad-CAM, mistakes last;
segment: truth and prediction overlays; superres: input / bicubic / model / HR crops); feature maps
with the silent-channel share by depth; a filter atlas. Samples come from the run's own validation
split, drawn with the run's seed, split, limit and data options; only the items shown are decoded.
"""

from __future__ import annotations

import html
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from cnnlab.errors import CnnlabError
from cnnlab.render.report import img, table, write_page


def write_report(run_dir: str | Path, out: str | Path | None = None, inputs: Sequence[str] | None = None,
                 samples: int = 8, device: str = "cpu", filter_channels: int = 16, filter_steps: int = 20) -> Path:
    """Write the HTML report of ``run_dir`` to ``out`` (default RUN/report.html) and return its path.

    ``inputs`` are image files/folders to show; without them ``samples`` validation items of the run's
    own data are used when that data can be loaded here.
    """
    from cnnlab.rundir import load_run

    if samples < 1:  # zero images would fail deep inside the CAM normalisation
        raise CnnlabError(f"samples={samples}: show at least 1 sample image (--samples 1 or more)")
    if not (Path(run_dir) / "config.json").exists():  # not a run: perhaps an experiment's output folder
        from cnnlab.experiments.record import find_record

        record = find_record(run_dir)
        if record is not None:
            from cnnlab.app.experiment_report import write_experiment_report

            return write_experiment_report(run_dir, record, out)
    run = load_run(run_dir, device)
    out = Path(out) if out else Path(run_dir) / "report.html"
    with tempfile.TemporaryDirectory() as tmp:
        parts = [summary(run), curves(run, Path(tmp)), task_plots(run)]
        parts += explained(run, inputs, samples, filter_channels, filter_steps, Path(tmp))
        return write_page(out, f"cnnlab report: {run.run_dir.name}", parts)


def summary(run: Any) -> str:
    config = run.config
    rows = [("run directory", str(run.run_dir)), ("model", config["model"]["name"]), ("task", config["task"]),
            ("input", run.task.describe_input(run)), ("data", str(config.get("data", {}).get("spec", "?")))]
    if run.class_names:
        rows.insert(3, ("classes", ", ".join(run.class_names)))
    if run.history:
        last = run.history[-1]
        hidden = hidden_metrics(run)
        rows += [(k, f"{v:.4g}" if isinstance(v, float) else str(v)) for k, v in last.items() if k not in hidden]
    return "<h2>Summary</h2>" + table(rows)


def hidden_metrics(run: Any) -> set[str]:
    """Metrics not worth a row: top-5 with 5 classes or fewer is always 1.0."""
    return {k for k in ("train_top5", "val_top5", "val_tta_top5")} if 0 < len(run.class_names) <= 5 else set()


def curves(run: Any, tmp: Path) -> str:
    path = run.run_dir / "curves.png"
    if not path.exists() and run.history:
        from cnnlab.render.curves import plot_curves

        path = plot_curves(run.history, tmp / "curves.png")
    return "<h2>Learning curves</h2>" + img(path if path.exists() else None, "learning curves")


#: headings of the plots tasks write into a run directory (others are shown under their file name)
PLOT_TITLES = {"confusion": "Confusion matrix (validation)", "iou": "IoU per class (validation)"}


def task_plots(run: Any) -> str:
    """Every plot the task wrote into the run directory after its last validation, one section each."""
    found = [p for p in sorted(run.run_dir.glob("*.png")) if p.name != "curves.png" and not p.name.startswith("eval_")]
    return "".join(f"<h2>{html.escape(PLOT_TITLES.get(p.stem, p.stem))}</h2>" + img(p, p.stem) for p in found)


def validation(run: Any, count: int) -> tuple[Any, str]:
    """(``count`` items of the run's validation split, where they came from), or (None, why not): the
    split is drawn as the run drew it (its seed, val split, limit and data options) and only the items
    shown are decoded (``cnnlab.data.preview``)."""
    from cnnlab.app.evaluate import loaded_as
    from cnnlab.data.preview import load_preview

    data = run.config.get("data", {})
    spec = data.get("spec")
    if not spec:
        return None, "the run records no data spec; pass --inputs IMAGE..."
    # The absolute path recorded at training time still finds a folder from another working directory.
    where = data["path"] if data.get("path") and Path(data["path"]).exists() else spec
    try:
        split, part = load_preview(where, run.config["task"], count, limit=run.config["train"].get("limit"),
                                   in_channels=run.in_channels, **loaded_as(run))
    except (CnnlabError, OSError) as exc:  # the report still has curves and filters; say why samples are missing
        return None, f"could not load the run's data {spec!r} here ({exc}); pass --inputs IMAGE..."
    if not len(split):
        return None, f"none of the shown images of {spec} could be read here (see the warning); pass --inputs IMAGE..."
    if part == "val":
        return split, f"validation images of {spec}"
    return split, f"training images of {spec} (it has no validation split)"


def explained(run: Any, inputs: Sequence[str] | None, samples: int, filter_channels: int, filter_steps: int,
              tmp: Path) -> list[str]:
    """The task's sample section, then feature maps and the filter atlas (any model)."""
    from cnnlab.app import explain as runs

    if inputs:
        data = runs.load_inputs(run, inputs)
        first = runs.Inputs(data.raw[:samples], data.x[:samples], data.names[:samples])
        parts = [run.task.report_samples(run, None, first, "the images passed with --inputs", samples, tmp)]
    else:
        split, source = validation(run, min(samples, run.task.report_items or samples))
        if split is None:
            parts, first = [f'<h2>Sample predictions</h2><p class="note">{html.escape(source)}</p>'], None
        else:
            parts = [run.task.report_samples(run, split, None, source, samples, tmp)]
            first = runs.inputs_from_split(run, split, 1)
    layer = runs.default_layer(run, first)
    if first is not None:
        act = runs.explain_activations(run, runs.Inputs(first.raw[:1], first.x[:1], first.names[:1]), layer, tmp / "maps")
        parts.append(f"<h2>Feature maps</h2><p><code>{html.escape(layer)}</code> for {html.escape(first.names[0])}: "
                     f"{act['channels']} channels, strongest first; {act['silent']} never activate on this image.</p>"
                     + img(act["grids"][0], "feature maps")
                     + "<p>Share of channels that never activate (&le; 0 everywhere), by depth:</p>"
                     + img(act["depth_png"], "silent channels by depth"))
    filters = runs.explain_filters(run, None, tmp / "filters", count=filter_channels, steps=filter_steps,
                                   at_most=True)
    parts.append(f"<h2>Filter atlas</h2><p>Inputs that maximise the first {len(filters['channels'])} channels of "
                 f"<code>{html.escape(filters['layer'])}</code> (gradient ascent from grey noise).</p>"
                 + img(filters["png"], "filter atlas"))
    return parts


def cam_table(run: Any, data: Any, source: str, tmp: Path, note: str = "") -> str:
    """Sample rows with Grad-CAM of the default layer for each image's predicted class."""
    from cnnlab.app import explain as runs

    layer = runs.default_layer(run, data)
    rows = runs.explain_cams(run, data, layer, "gradcam", None, tmp / "cams")
    cells = "".join(
        f"<tr><td>{img(r['png'], r['input'])}</td><td>{html.escape(r['input'])}</td>"
        f"<td>{html.escape(r['predicted'])} ({r['probability']:.2f})</td>"
        f"<td>{html.escape(r['label'] or '-')}</td></tr>" for r in rows)
    return (f"<h2>Sample predictions</h2><p>{html.escape(source)}{html.escape(note)}; Grad-CAM of "
            f"<code>{html.escape(layer)}</code> for the predicted class (image | heat map).</p>"
            f'<table class="samples"><tr><th>image | Grad-CAM</th><th>input</th><th>predicted (p)</th>'
            f"<th>label</th></tr>{cells}</table>")
