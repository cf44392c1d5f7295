"""`cnnlab train TASK --data SPEC --model NAME --out RUN`: train into a run directory (or --resume it)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click


def parse_model_args(pairs: tuple[str, ...]) -> dict[str, Any]:
    """('widths=[8,16]', 'dropout=0.2') -> {'widths': [8, 16], 'dropout': 0.2}."""
    from cnnlab.cli._options import parse_key_values

    return parse_key_values(pairs, "--model-arg", "widths=[32,64]")


def build_config(task: str, options: dict[str, Any], resume: bool) -> Any:
    """The TrainConfig for these CLI options: defaults (or the run's saved config when resuming), then
    the recipe's overrides, then every option given on the command line."""
    import dataclasses

    from cnnlab.train.checkpoint import CONFIG, read_json
    from cnnlab.train.config import TrainConfig, apply_overrides

    given = {k: v for k, v in options.items() if v is not None}
    saved = Path(given.get("out", "")) / CONFIG
    if resume and saved.exists():
        base = TrainConfig.from_dict(read_json(saved)["train"])
        if base.task != task:
            from cnnlab.errors import CnnlabError

            raise CnnlabError(f"{saved.parent} is a {base.task!r} run, not {task!r}: resume it with "
                              f"`cnnlab train {base.task} --out {saved.parent} --resume`, or choose a new --out")
    elif resume:  # say so before "--data is required": the run to take the settings from is missing
        from cnnlab.errors import CnnlabError

        raise CnnlabError(f"--resume: {saved.parent} holds no run (no {CONFIG}); drop --resume to start "
                          "one with --data and --model")
    else:
        base = TrainConfig(task=task)
    recipe = given.get("recipe")
    if recipe:
        from cnnlab.train.recipes import get_recipe

        overrides = get_recipe(recipe)
        if overrides.get("task", task) != task:
            from cnnlab.errors import CnnlabError

            raise CnnlabError(f"recipe {recipe!r} trains task {overrides['task']!r}, not {task!r}: run "
                              f"`cnnlab train {overrides['task']} --recipe {recipe} ...`")
        base = apply_overrides(base, overrides, f"recipe {recipe!r}")
    for key in ("task_options", "data_options"):  # an option given on the command line joins the recipe's
        if key in given:
            given[key] = {**getattr(base, key), **given[key]}
    return dataclasses.replace(base, **given)


#: CLI options that belong to the task (checked by the task: `--scale` on classify is an error)
TASK_FLAGS = ("label_smoothing", "scale", "patch", "dice", "window", "sigma", "noise", "hole")
#: CLI options that say how the data is read (checked by the loader)
DATA_FLAGS = ("mask_values", "void_value", "sample_rate", "audio_channels", "label_pattern", "split_by", "val_groups",
              "input", "fit", "allow_reencode")


def split_options(options: dict[str, Any], task_args: tuple[str, ...] = ()) -> dict[str, Any]:
    """Move the task's and the data's own options into ``task_options`` / ``data_options`` (with the
    --task-arg KEY=VALUE pairs; a named flag wins over the same key there)."""
    from cnnlab.cli._options import parse_key_values

    task = {**parse_key_values(task_args, "--task-arg", "speed=0.2"),
            **{k: options.pop(k) for k in TASK_FLAGS if options.get(k) is not None}}
    data = {k: options.pop(k) for k in DATA_FLAGS if options.get(k) is not None}
    for k in (*TASK_FLAGS, *DATA_FLAGS):
        options.pop(k, None)
    if "mask_values" in data:
        data["mask_values"] = parse_int_list(data["mask_values"], "--mask-values")
    if "audio_channels" in data:  # the audio reader's option is 'channels'
        data["channels"] = data.pop("audio_channels")
    if "val_groups" in data:
        data["val_groups"] = [g.strip() for g in data["val_groups"].split(",") if g.strip()]
    if task:
        options["task_options"] = task
    if data:
        options["data_options"] = data
    return options


def parse_size(text: str) -> int | list[int]:
    """'96' -> 96, '180x240' -> [180, 240]."""
    from cnnlab.errors import CnnlabError

    parts = text.lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        values = []
    if len(values) not in (1, 2) or min(values) < 1:
        raise CnnlabError(f"--image-size {text!r} must be N or HxW in pixels, for example 96 or 180x240")
    return values[0] if len(values) == 1 else values


def parse_int_list(text: str, option: str) -> list[int]:
    """'0,255' -> [0, 255]."""
    from cnnlab.errors import CnnlabError

    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise CnnlabError(f"{option} {text!r} must be integers separated by commas, for example {option} 0,255") from None


@click.command("train")
@click.argument("task")
@click.option("--data", help="Data spec: a folder, an .npz file, builtin:NAME or a named dataset.")
@click.option("--model", help="Registered model name (see `cnnlab models list`).  [default: the task's]")
@click.option("--out", required=True, help="Run directory to create (or continue with --resume).")
@click.option("--epochs", type=int, help="Train until this many epochs are done.  [default: 10]")
@click.option("--batch-size", type=int, help="Batch size per process.  [default: 64]")
@click.option("--seed", type=int, help="Seed for weights, split, order and augmentation.  [default: 0]")
@click.option("--precision", type=click.Choice(["auto", "fp32", "bf16", "fp16"]),
              help="Numeric precision; auto = bf16 where the hardware runs it natively.  [default: auto]")
@click.option("--resume", is_flag=True, help="Continue the run in --out up to --epochs.")
@click.option("--val-split", type=float, help="Held-out fraction when the data has no val split.  [default: 0.1]")
@click.option("--image-size", help="Resize images to this square size, or HxW (e.g. 180x240).")
@click.option("--input", "input", type=click.Choice(["rgb", "dct"]),
              help="classify on a folder of JPEGs: rgb decodes pixels; dct reads the files' DCT coefficients "
                   "(no decoding; --image-size is then a centre crop on the 16-px grid).  [default: rgb]")
@click.option("--fit", type=click.Choice(["resize", "crop"]),
              help="class folders: resize images to --image-size, or centre-crop them on the 16-px grid "
                   "without resampling, as --input dct does.  [default: resize; crop with --input dct]")
@click.option("--allow-reencode", is_flag=True, default=None,
              help="--input dct: decode non-JPEG files and re-encode them as JPEG (quality 95) instead of "
                   "refusing them.")
@click.option("--repeat", type=int, help="Visits of every training image per epoch (fresh random patches).  [default: 1]")
@click.option("--lr", type=float, help="Peak learning rate.  [default: 0.1 sgd, 0.002 adamw]")
@click.option("--optimizer", type=click.Choice(["sgd", "adamw"]), help="sgd (Nesterov) or adamw.  [default: adamw]")
@click.option("--schedule", type=click.Choice(["onecycle", "cosine"]), help="Learning-rate schedule.  [default: onecycle]")
@click.option("--warmup", type=float, help="Fraction of steps in linear warm-up.  [default: 0.1]")
@click.option("--lr-start", type=float,
              help="Warm-up starts at this fraction of the peak lr (0: one warm-up step's worth).  [default: 0]")
@click.option("--lr-end", type=float, help="The schedule ends at this fraction of the peak lr.  [default: 0]")
@click.option("--weight-decay", type=float, help="Weight decay on conv/linear weights.  [default: 0.0005]")
@click.option("--norm-lr-scale", type=float,
              help="Norm-layer params train at lr x this; other than 1 they are also decayed by weight "
                   "decay / this (the weights' decay per step).  [default: 1]")
@click.option("--lookahead/--no-lookahead", default=None,
              help="Keep an EMA of the weights and pull the net onto it every 5 steps (airbench).  [default: off]")
@click.option("--tta", type=click.Choice(["none", "flip", "flip-translate"]),
              help="Test-time augmentation of the final evaluation, reported as val_tta_*.  [default: none]")
@click.option("--label-smoothing", type=float, help="classify: label smoothing.  [default: 0]")
@click.option("--scale", type=int, help="superres: upscaling factor 2, 3 or 4.  [default: 2]")
@click.option("--patch", type=int,
              help="segment/superres/denoise/inpaint: training crop size in target pixels.  "
                   "[default: 256 segment, 96 superres and inpaint, 64 denoise]")
@click.option("--sigma", help="denoise: Gaussian noise sigma on the 0-255 scale, or a range LOW-HIGH for blind "
              "training (e.g. 0-55).  [default: 25]")
@click.option("--noise", type=click.Choice(["gaussian", "poisson", "poisson-gaussian"]),
              help="denoise: noise model (poisson: --task-arg peak=30 photons at white).  [default: gaussian]")
@click.option("--hole", help="inpaint: hole size range LOW-HIGH in pixels (box sides, stroke lengths).  [default: 8-32]")
@click.option("--dice", type=float, help="segment: weight of the Dice loss added to cross-entropy.  [default: 0]")
@click.option("--mask-values", help="segment: mask file values of classes 0, 1, ... in order, e.g. 0,255.")
@click.option("--void-value", type=int, help="segment: mask file value of void pixels (ignored), e.g. 11.")
@click.option("--window", type=float, help="audio: seconds of audio per model input.  [default: 1.0]")
@click.option("--sample-rate", type=int, help="audio: resample every file to this rate in Hz.  "
              "[default: the files' most common rate]")
@click.option("--audio-channels", type=int, help="audio: 1 mixes down to mono, 2 keeps stereo.  [default: 1]")
@click.option("--label-pattern", help="audio: read labels (and groups) from file names, e.g. "
              "'{label}_{speaker}_{index}'.  [default: class folders]")
@click.option("--split-by", help="audio: a --label-pattern field whose values never straddle train and "
              "validation, e.g. speaker.")
@click.option("--val-groups", help="audio: the --split-by values to validate on, comma-separated (e.g. george).  "
              "[default: drawn up to --val-split]")
@click.option("--task-arg", "task_args", multiple=True, metavar="KEY=VALUE",
              help="Extra task option (JSON value), repeatable: --task-arg speed=0.2 (audio augmentation: "
                   "speed, pitch, gain, noise, tilt, mix).")
@click.option("--augment", type=click.Choice(["auto", "none", "flip", "crop", "flip-crop", "shift", "flip-shift"]),
              help="Training augmentation: flip, random translation by up to 1/8 of the size (crop), or "
                   "both. With --input dct, crop moves whole 16-px cells and shift any even number of "
                   "pixels (slower); on pixels they are the same.  [default: auto]")
@click.option("--model-arg", "model_args", multiple=True, metavar="KEY=VALUE",
              help="Extra model keyword (JSON value), repeatable: --model-arg widths=[32,64].")
@click.option("--recipe", help="Named set of training settings (cnnlab.train.recipes).")
@click.option("--compile", "compile_", is_flag=True, default=None, help="torch.compile the model.")
@click.option("--strict", is_flag=True, default=None, help="Fail on unreadable images instead of skipping them.")
@click.option("--limit", type=int, help="Use at most this many images (quick experiments).")
@click.option("--device", help="auto, cpu, cuda or cuda:N.  [default: auto]")
@click.option("--threads", type=int, help="CPU threads for torch.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def train(task: str, model_args: tuple[str, ...], task_args: tuple[str, ...], compile_: bool | None, resume: bool,
          quiet: bool, **options: Any) -> None:
    """Train a model for TASK (classify, segment, superres, denoise, inpaint, audio) on --data into the run directory --out.

    \b
    cnnlab train classify --data photos/ --out runs/photos
    cnnlab train segment --data camvid/ --void-value 11 --out runs/camvid
    cnnlab train superres --data photos/ --scale 3 --out runs/sr3
    cnnlab train audio --data recordings/ --label-pattern '{label}_{speaker}_{index}' --split-by speaker --out runs/digits

    Checkpoints are written every epoch; Ctrl-C saves one and says how to continue. Under torchrun
    (RANK / WORLD_SIZE set) it trains with DistributedDataParallel.
    """
    from cnnlab.tasks import get_task

    get_task(task)  # an unknown or unbuilt task fails before any data is loaded
    options["compile"] = compile_
    split_options(options, task_args)
    if options.get("image_size") is not None:
        options["image_size"] = parse_size(options["image_size"])
    if model_args:
        options["model_kwargs"] = parse_model_args(model_args)
    cfg = build_config(task, options, resume)
    mask_options = sorted({"mask_values", "void_value"} & set(cfg.data_options))
    if mask_options and cfg.data.strip().startswith("builtin:"):  # the loader would ignore them silently
        from cnnlab.errors import CnnlabError
        from cnnlab.tasks import flags

        raise CnnlabError(f"{flags(mask_options)} map the values of mask files; {cfg.data} makes its masks as "
                          "class indices already: drop the option")

    from rich.console import Console

    from cnnlab.train.runner import fit

    console = Console(stderr=True, soft_wrap=True)
    result = fit(cfg, resume=resume, console=console, progress=not quiet)
    from cnnlab.train.distributed import env_world

    if env_world()[0] == 0 and result.trained:
        print_summary(console, result, get_task(cfg.task, **cfg.task_options))


def print_summary(console: Any, result: Any, task: Any) -> None:
    """Final metrics (the task's, with its baseline beside), the files written and the commands to try next."""
    final = task.summary(result.final)
    run, epochs = result.run_dir, len(result.history)
    # the epoch lines show the training loss; this line is the last validation
    scores = f"validation: {final}" if final else "no validation split (every item trained)"
    console.print(f"[bold]done[/]: {epochs} epoch{'' if epochs == 1 else 's'}  {scores}")
    files = ", ".join(sorted(p.name for p in run.iterdir() if p.suffix in (".json", ".safetensors", ".jsonl", ".png")
                             and p.name not in ("state.json", "state.safetensors")))
    console.print(f"run directory: {run}  ({files})")
    console.print(f"next: cnnlab eval {run} --data SPEC  |  cnnlab predict {run} IMAGE...  |  "
                  f"cnnlab export {run} --format onnx")
