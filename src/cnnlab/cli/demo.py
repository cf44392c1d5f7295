"""`cnnlab demo`: train the lecture's small Xception on built-in shapes, evaluate it, and say what next.

Needs no download. The defaults take about two minutes on a 2-core laptop CPU (bf16 where the CPU runs
it natively); the run directory it writes is an ordinary one, so every other command works on it.
The exact-arithmetic tour that used to be the demo is `cnnlab ops tour`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

#: mini_xception reduced to three stages: 32x32 shapes need no 256- or 512-wide stage
DEMO_WIDTHS = (32, 64, 128)


def demo_config(out: Path, epochs: int, images: int, size: int, widths: tuple[int, ...], precision: str,
                seed: int) -> Any:
    from cnnlab.train.config import TrainConfig

    return TrainConfig(task="classify", data=f"builtin:shapes?n={images}&size={size}", model="mini_xception",
                       out=str(out), model_kwargs={"widths": list(widths)}, epochs=epochs, batch_size=64,
                       seed=seed, precision=precision, optimizer="adamw", lr=3e-3, weight_decay=5e-4,
                       schedule="onecycle", warmup=0.15, augment="flip")


def resume_or_refuse(out: Path, cfg: Any) -> bool:
    """True when ``out`` holds an earlier demo run (continue it); an error when it holds anything else."""
    from cnnlab.errors import CnnlabError
    from cnnlab.train.checkpoint import CONFIG, read_json

    if not (out / CONFIG).exists():
        return False
    saved = read_json(out / CONFIG)["train"]
    if saved.get("data") == cfg.data and saved.get("model") == cfg.model:
        return True
    raise CnnlabError(f"{out} holds another run; pass a new --out for the demo")


def write_samples(out: Path, spec: str, per_class: int = 2) -> Path:
    """A few validation images as PNGs in OUT/samples, to try `cnnlab predict` and `explain` on."""
    from PIL import Image

    from cnnlab.data import load_data

    samples = out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    bundle = load_data(spec, "classify")
    for c, name in enumerate(bundle.class_names):
        rows = (bundle.val.y == c).nonzero().flatten()[:per_class].tolist()
        for k, i in enumerate(rows):
            Image.fromarray(bundle.val.x[i].permute(1, 2, 0).numpy()).save(samples / f"{name}_{k}.png")
    return samples


@click.command("demo")
@click.option("--out", type=click.Path(path_type=Path), default=Path("cnnlab-demo"), show_default=True,
              help="Run directory to write (an earlier demo run there is continued).")
@click.option("--epochs", type=int, default=10, show_default=True)
@click.option("--images", type=int, default=10000, show_default=True, help="How many shape images to draw.")
@click.option("--size", type=int, default=32, show_default=True, help="Image size in pixels.")
@click.option("--widths", default=",".join(map(str, DEMO_WIDTHS)), show_default=True,
              help="mini_xception stage widths, comma-separated.")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(out: Path, epochs: int, images: int, size: int, widths: str, precision: str, seed: int) -> None:
    """Train mini_xception on builtin:shapes (about two minutes on a laptop CPU), evaluate it, and
    write a run directory with plots to try the other commands on."""
    import time

    from rich.console import Console

    from cnnlab.app.evaluate import evaluate_run
    from cnnlab.app.report import write_report
    from cnnlab.cli.evaluate import print_tables
    from cnnlab.train.runner import fit

    console = Console(stderr=True, soft_wrap=True)
    stage_widths = tuple(int(w) for w in widths.split(","))
    cfg = demo_config(out, epochs, images, size, stage_widths, precision, seed)
    console.print(f"[bold]cnnlab demo[/]: mini_xception (widths {stage_widths}) on {cfg.data}: "
                  f"{images} images of 6 shapes, 10% held out, {epochs} epochs")
    start = time.perf_counter()
    fit(cfg, resume=resume_or_refuse(out, cfg), console=console)
    minutes = (time.perf_counter() - start) / 60
    result, _ = evaluate_run(out, cfg.data)
    print_tables(result, list(result.get("per_class", {})))
    samples = write_samples(out, cfg.data)
    console.print("writing the HTML report (Grad-CAM overlays, feature maps, filter atlas) ...")
    report = write_report(out)
    console.print(f"\n[bold]validation top-1 {result['top1']:.1%}[/] after {minutes:.1f} min of training.\n"
                  f"Look at: {report} (everything on one page), {out}/curves.png, {out}/confusion.png, "
                  f"{out}/metrics.jsonl\n"
                  "Try next:\n"
                  f"  cnnlab eval {out} --data '{cfg.data}' --json\n"
                  f"  cnnlab predict {out} {samples}\n"
                  f"  cnnlab explain {out} {samples}/star_0.png --method gradcam\n"
                  f"  cnnlab export {out} --format onnx\n"
                  "  cnnlab ops tour        (the exact arithmetic of one convolution, step by step)")
