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

SHAPES = "builtin:shapes?n={images}&size={size}"

#: per task: the data, the model, its keywords, the training settings and what the demo reports
DEMOS: dict[str, dict[str, Any]] = {
    "classify": {"model": "mini_xception", "model_kwargs": {"widths": list(DEMO_WIDTHS)}, "batch_size": 64,
                 "lr": 3e-3, "warmup": 0.15, "augment": "flip", "images": 10000, "size": 32, "epochs": 10,
                 "about": "images of 6 shapes", "headline": "top1", "title": "validation top-1",
                 "explain": "gradcam"},
    # U-Net (skips) at 16-128 channels on 32x32 scenes: masks of the same shapes, class 0 = background
    "segment": {"model": "unet_small", "model_kwargs": {}, "batch_size": 32, "lr": 3e-3, "warmup": 0.1,
                "augment": "flip", "images": 4000, "size": 32, "epochs": 16,
                "about": "scenes with per-pixel masks of 6 shapes + background", "headline": "miou",
                "title": "validation mIoU", "explain": "gradcam"},
    # EDSR-style, 4 blocks of 32 channels, x2 on 48-pixel HR patches of 64x64 scenes
    "superres": {"model": "edsr_cpu", "model_kwargs": {"width": 32, "n_blocks": 4}, "batch_size": 32,
                 "lr": 1e-3, "warmup": 0.05, "augment": "flip", "images": 2000, "size": 64, "epochs": 6,
                 "task_options": {"scale": 2, "patch": 48}, "about": "64x64 scenes, upscaled x2",
                 "headline": "psnr", "title": "validation PSNR (dB)", "explain": "activations"},
    # DnCNN's residual idea on a small U-Net: sigma 25 Gaussian noise on 64x64 scenes, 48-pixel patches
    "denoise": {"model": "unet_small", "model_kwargs": {}, "batch_size": 32, "lr": 2e-3, "warmup": 0.05,
                "augment": "flip", "images": 2000, "size": 64, "epochs": 4,
                "task_options": {"sigma": 25.0, "patch": 48}, "about": "64x64 scenes with sigma 25 noise",
                "headline": "psnr", "title": "validation PSNR (dB)", "explain": "activations"},
    # holes of 4-16 pixels over 20% of 64x64 scenes, filled by a small U-Net, beside the diffusion fill
    "inpaint": {"model": "unet_small", "model_kwargs": {}, "batch_size": 32, "lr": 2e-3, "warmup": 0.05,
                "augment": "flip", "images": 2000, "size": 64, "epochs": 4,
                "task_options": {"hole": [4, 16], "patch": 48}, "about": "64x64 scenes with holes",
                "headline": "psnr", "title": "validation hole PSNR (dB)", "explain": "activations"},
    # one box (and class) per 32x32 shapes image, mini_xception at the classify demo's widths; beside it the
    # boxes read off the same model's Grad-CAM and the whole-image baseline
    "localize": {"model": "mini_xception", "model_kwargs": {"widths": list(DEMO_WIDTHS)}, "batch_size": 64,
                 "lr": 3e-3, "warmup": 0.15, "augment": "flip-crop", "images": 4000, "size": 32, "epochs": 8,
                 "about": "images of 6 shapes with their boxes", "headline": "iou", "title": "validation mean IoU",
                 "explain": "gradcam"},
    # the factorized-prior compressor on 64x64 scenes, 48-pixel patches, beside JPEG at no more bits
    "compress": {"model": "compress_small", "model_kwargs": {"init_scale": 1.0}, "batch_size": 16, "lr": 1e-3,
                 "warmup": 0.05, "augment": "flip", "images": 2000, "size": 64, "epochs": 4,
                 "task_options": {"lmbda": 0.01, "patch": 48}, "about": "64x64 scenes, compressed",
                 "headline": "psnr", "title": "validation PSNR (dB)", "explain": "activations",
                 "next": "cnnlab compress {out} {samples} --out {out}/packed   (real files, then `cnnlab decompress`)"},
    # M5 on raw waveforms of 8 procedural sound classes (tones, chords, chirps, clicks, AM/FM, noise)
    "audio": {"model": "m5", "model_kwargs": {}, "batch_size": 32, "lr": 3e-3, "warmup": 0.1, "augment": "auto",
              "images": 2000, "size": None, "epochs": 6, "data": "builtin:tones?n={images}",
              "about": "one-second clips of 8 procedural sound classes", "headline": "top1",
              "title": "validation top-1", "explain": "gradcam"},
}


def demo_config(out: Path, epochs: int, images: int, size: int, widths: tuple[int, ...] | None, precision: str,
                seed: int, task: str = "classify") -> Any:
    from cnnlab.train.config import TrainConfig

    preset = DEMOS[task]
    kwargs = dict(preset["model_kwargs"])
    if widths is not None:
        kwargs["widths"] = list(widths)
    data = preset.get("data", SHAPES).format(images=images, size=size)
    return TrainConfig(task=task, data=data, model=preset["model"],
                       out=str(out), model_kwargs=kwargs, epochs=epochs, batch_size=preset["batch_size"],
                       seed=seed, precision=precision, optimizer="adamw", lr=preset["lr"], weight_decay=5e-4,
                       schedule="onecycle", warmup=preset["warmup"], augment=preset["augment"],
                       task_options=dict(preset.get("task_options", {})))


def resume_or_refuse(out: Path, cfg: Any) -> bool:
    """True when ``out`` holds an earlier demo run (continue it); an error when it holds anything else."""
    from cnnlab.errors import CnnlabError
    from cnnlab.files import read_json
    from cnnlab.rundir import CONFIG

    if out.exists() and not out.is_dir():
        raise CnnlabError(f"--out {out} is a file; the demo writes a run directory: pass a folder")
    if not (out / CONFIG).exists():
        return False
    saved = read_json(out / CONFIG)["train"]
    if saved.get("data") == cfg.data and saved.get("model") == cfg.model:
        return True
    raise CnnlabError(f"{out} holds another run; pass a new --out for the demo")


def parse_widths(text: str) -> tuple[int, ...]:
    """'32,64,128' -> (32, 64, 128): positive stage widths."""
    from cnnlab.errors import CnnlabError

    try:
        values = tuple(int(w) for w in text.split(","))
    except ValueError:
        values = ()
    if not values or min(values) < 1:
        raise CnnlabError(f"--widths {text!r} must be positive integers separated by commas, e.g. --widths 32,64,128")
    return values


def write_samples(out: Path, count: int = 12) -> Path:
    """A few validation items of the demo run in ``out`` as files in OUT/samples, to try `cnnlab predict`
    and `explain` on (PNGs, WAVs for audio; classification: 2 per class, named by class), written by the
    task (noisy inputs for denoise). They come from the run's own validation split (its seed, split and
    limit), and only they are loaded."""
    from cnnlab.app.report import validation
    from cnnlab.errors import CnnlabError
    from cnnlab.rundir import load_run

    run = load_run(out)
    names = run.class_names
    val, why = validation(run, 2 * len(names) if run.task.data_layout in ("labels", "audio") else count)
    if val is None:
        raise CnnlabError(f"cannot write the demo's sample images: {why}")
    samples = out / "samples"
    samples.mkdir(parents=True, exist_ok=True)
    if "label" in val:
        picks, seen = [], [0] * len(names)
        for i, c in enumerate(val.y.tolist()):
            picks.append((f"{names[c]}_{seen[c]}", i))
            seen[c] += 1
    else:
        picks = [(f"val_{i}", i) for i in range(len(val))]
    for name, i in picks:
        run.task.save_example(val, i, samples / name, run.info)
    return samples


@click.command("demo")
@click.option("--task", type=click.Choice(sorted(DEMOS)), default="classify", show_default=True,
              help="Which task to demonstrate on built-in data (shapes; tones for audio).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory to write (an earlier demo run there is continued).  [default: cnnlab-demo, "
                   "or cnnlab-demo-TASK for the other tasks]")
@click.option("--epochs", type=int, help="[default: 10 classify, 16 segment, 8 localize, 6 superres and audio, 4 denoise, "
                                   "inpaint and compress]")
@click.option("--images", type=int, help="How many shape images (audio: clips) to draw.  [default: 10000 classify, "
              "4000 segment and localize, 2000 the others]")
@click.option("--size", type=int, help="Image size in pixels (not audio).  [default: 32, 64 superres/denoise/inpaint/compress]")
@click.option("--widths", help="Model stage widths, comma-separated.  [default: 32,64,128 for classify]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]), default="auto", show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
def demo(task: str, out: Path | None, epochs: int | None, images: int | None, size: int | None, widths: str | None,
         precision: str, seed: int) -> None:
    """Train a model for --task on built-in data (about two minutes on a laptop CPU), evaluate it,
    and write a run directory with plots and an HTML report to try the other commands on.

    \b
    cnnlab demo                     mini_xception classifies 6 shapes (99% top-1)
    cnnlab demo --task segment      a small U-Net labels every pixel
    cnnlab demo --task superres     an EDSR-style network upscales x2, beside bicubic
    cnnlab demo --task denoise      a small U-Net removes sigma 25 noise, beside the noisy input
    cnnlab demo --task inpaint      a small U-Net fills holes, beside a diffusion fill
    cnnlab demo --task localize     mini_xception draws one box per image, beside its Grad-CAM boxes
    cnnlab demo --task compress     an auto-encoder compresses scenes into real bits, beside JPEG
    cnnlab demo --task audio        M5 classifies raw waveforms of 8 sound classes
    """
    import time

    from rich.console import Console

    from cnnlab.app.evaluate import evaluate_run
    from cnnlab.app.report import write_report
    from cnnlab.cli.evaluate import print_tables
    from cnnlab.tasks import get_task
    from cnnlab.train.runner import fit

    preset = DEMOS[task]
    out = out or Path("cnnlab-demo" if task == "classify" else f"cnnlab-demo-{task}")
    console = Console(stderr=True, soft_wrap=True)
    stage_widths = parse_widths(widths) if widths else None
    # "is None", not "or": --epochs 0 is an error to report, not a request for the default
    epochs, images, size = (preset[key] if value is None else value
                            for key, value in (("epochs", epochs), ("images", images), ("size", size)))
    if preset["size"] is None and size is not None:
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"--size does not apply to the {task} demo (its clips have no image size); drop it")
    cfg = demo_config(out, epochs, images, size, stage_widths, precision, seed, task)
    cfg.resolved()  # its errors (--epochs 0) come before the banner, as one line
    resume = resume_or_refuse(out, cfg)
    console.print(f"[bold]cnnlab demo --task {task}[/]: {cfg.model} on {cfg.data}: {images} {preset['about']}, "
                  f"10% held out, {epochs} epochs")
    start = time.perf_counter()
    trained = fit(cfg, resume=resume, console=console).trained
    minutes = (time.perf_counter() - start) / 60
    result, _ = evaluate_run(out, cfg.data)
    print_tables(result, list(result.get("per_class", {})))
    samples = write_samples(out)
    console.print("writing the HTML report ...")
    report = write_report(out)
    headline = result[preset["headline"]]
    shown = f"{headline:.1%}" if preset["headline"] != "psnr" else f"{headline:.2f} dB"
    first = sorted(f for f in samples.iterdir() if f.is_file())[0].name
    run_task = get_task(task, **cfg.task_options)
    # inpainting samples come with their hole masks in samples/masks (predict takes them with --mask)
    masks = samples / "masks"
    inputs = f"{samples}/*.png --mask {masks}" if masks.is_dir() else str(samples)
    predict = f"cnnlab predict {out} {inputs}" + (f" --out {out}/predicted" if run_task.writes_images else "")
    explain = f"  cnnlab explain {out} {samples}/{first} --method {preset['explain']}\n"
    when = f"after {minutes:.1f} min of training" if trained else "(the run was already trained)"
    console.print(f"\n[bold]{preset['title']} {shown}[/] {when} ({run_task.summary(result)}).\n"
                  f"Look at: {report} (everything on one page), {out}/curves.png, {out}/metrics.jsonl\n"
                  "Try next:\n"
                  f"  cnnlab eval {out} --data '{cfg.data}' --json\n"
                  f"  {predict}\n"
                  f"{explain}"
                  + (f"  {preset['next'].format(out=out, samples=samples)}\n" if "next" in preset else "") +
                  f"  cnnlab export {out} --format onnx\n"
                  "  cnnlab ops tour        (the exact arithmetic of one convolution, step by step)")
