"""Spoken digits from speakers never heard (issue 12): raw-waveform M5 against the log-mel recipe
`audio-fsdd`, with a classical log-mel + SVM beside both, on the Free Spoken Digit Dataset.

Leave one speaker out: for each of the 4 speakers in ../shared/data/fsdd/recordings
(``{label}_{speaker}_{index}.flac``, 8 kHz, 50 clips per digit and speaker) train on the other three
and score the held-out one. Every model sees the same folds; the two networks train with
`cnnlab.train.fit` (the settings `cnnlab train audio` would use), the SVM with scikit-learn (a
benchmark dependency only: ``pip install scikit-learn``).

    python benchmarks/audio_fsdd_bench.py                         # all 4 folds: ~13 min a fold (2-core Zen 3)
    python benchmarks/audio_fsdd_bench.py --folds george,jackson  # two of these at once: ~26 min in all
    python benchmarks/audio_fsdd_bench.py --folds george --quick  # a smoke run: 2 epochs each
    python benchmarks/audio_fsdd_bench.py --models mel,svm --out /tmp/fsdd.json

It prints one row per fold (accuracy on the unseen speaker and training seconds per model), the
means, the CPU (from lscpu) and the torch thread count, and with --out writes them as JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dense_runs import cpu_name  # noqa: E402

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "fsdd" / "recordings"
SPEAKERS = ("george", "jackson", "nicolas", "yweweler")
PATTERN = "{label}_{speaker}_{index}"
MODELS = ("raw", "mel", "svm")
# The raw-waveform network: the recipe's M5 widths, window, augmentation, optimiser and epochs, but on
# samples (an 80-tap strided stem convolution instead of the log-mel front end; no mel options apply).
RAW_MODEL = {"frontend": "raw"}


def train_network(kind: str, speaker: str, data: Path, work: Path, quick: bool, threads: int) -> tuple[float, float]:
    """(accuracy on ``speaker``, training seconds) of the raw network or the `audio-fsdd` recipe."""
    from rich.console import Console

    from cnnlab.train.config import TrainConfig, apply_overrides
    from cnnlab.train.recipes import get_recipe
    from cnnlab.train.runner import fit

    overrides = get_recipe("audio-fsdd")
    if kind == "raw":
        mel_only = ("mel_norm", "top_db", "freq_mask", "time_mask", "masks", "n_mels")
        kwargs = {k: v for k, v in overrides["model_kwargs"].items() if k not in mel_only}
        overrides["model_kwargs"] = {**kwargs, **RAW_MODEL}
    base = TrainConfig(task="audio", data=str(data), out=str(work / f"{kind}_{speaker}"), threads=threads,
                       precision="fp32")
    cfg = apply_overrides(base, overrides, f"{kind} settings")
    data_options = {"label_pattern": PATTERN, "split_by": "speaker", **cfg.data_options, "val_groups": [speaker]}
    cfg = dataclasses.replace(cfg, data_options=data_options, epochs=2 if quick else cfg.epochs)
    start = time.perf_counter()
    result = fit(cfg, console=Console(file=io.StringIO()), progress=False)
    seconds = time.perf_counter() - start
    return float(result.history[-1]["val_top1"]), seconds


def log_mel_features(waves: list[torch.Tensor], rate: int) -> torch.Tensor:
    """(N, 2 * 40 * 9) per clip: the log-mel frames (25 ms, 10 ms hop, 40 bands) of the part above a
    40 dB floor below its peak, averaged over 8 equal time segments and over the whole, plus each
    band's spread: a fixed-size summary of a variable-length utterance, the classical front end."""
    from cnnlab.models.audio import LogMel

    mel = LogMel(rate, 1, 40)
    rows = []
    with torch.no_grad():
        for wave in waves:
            w = wave[:1] - wave[:1].mean()
            spec = mel((w / w.pow(2).mean().sqrt().clamp(min=1e-8))[None])[0]  # (40, frames)
            energy = spec.logsumexp(dim=0)
            keep = energy >= energy.max() - 40 * 2.302585 / 10
            idx = keep.nonzero().flatten()
            spec = spec[:, int(idx[0]):int(idx[-1]) + 1]  # trimmed to the speech
            segments = torch.nn.functional.adaptive_avg_pool1d(spec[None], 8)[0]  # (40, 8)
            rows.append(torch.cat([segments.flatten(), spec.mean(dim=1), spec.std(dim=1, unbiased=False)]))
    return torch.stack(rows)


def svm_fold(speaker: str, data: Path) -> tuple[float, float]:
    """(accuracy on ``speaker``, training seconds) of standardised log-mel summaries -> RBF SVM."""
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC

    from cnnlab.data.audio import read_audio

    files = sorted(data.glob("*.flac")) + sorted(data.glob("*.wav"))
    waves, labels, speakers, rate = [], [], [], None
    for f in files:
        label, who, _ = f.stem.split("_")
        wave, rate = read_audio(f)
        waves.append(torch.as_tensor(wave))
        labels.append(int(label))
        speakers.append(who)
    start = time.perf_counter()
    x = log_mel_features(waves, int(rate)).numpy()
    y = torch.tensor(labels).numpy()
    train = [s != speaker for s in speakers]
    test = [s == speaker for s in speakers]
    clf = make_pipeline(StandardScaler(), SVC(C=10.0, gamma="scale"))
    clf.fit(x[train], y[train])
    seconds = time.perf_counter() - start
    return float((clf.predict(x[test]) == y[test]).mean()), seconds


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="\n\n".join(__doc__.split("\n\n")[1:]))
    parser.add_argument("--data", type=Path, default=DATA, help=f"the FSDD recordings folder (default {DATA})")
    parser.add_argument("--folds", default=",".join(SPEAKERS),
                        help="held-out speakers, comma-separated (default: all four)")
    parser.add_argument("--models", default=",".join(MODELS), help="which of raw, mel, svm (default: all)")
    parser.add_argument("--quick", action="store_true", help="2 epochs per network: a smoke run, not a figure")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per run (default 1)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument("--keep", type=Path, help="keep the run directories here (default: a temporary folder)")
    args = parser.parse_args(argv)
    folds = [f.strip() for f in args.folds.split(",") if f.strip()]
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [f for f in folds if f not in SPEAKERS] + [m for m in models if m not in MODELS]
    if bad:
        parser.error(f"unknown fold(s)/model(s) {bad}; speakers: {', '.join(SPEAKERS)}; models: {', '.join(MODELS)}")
    if not args.data.is_dir():
        parser.error(f"{args.data} is not a folder; pass --data ../shared/data/fsdd/recordings")
    if "svm" in models:
        try:
            import sklearn  # noqa: F401
        except ImportError:
            parser.error("the SVM baseline needs scikit-learn: pip install scikit-learn (or --models raw,mel)")
    torch.set_num_threads(args.threads)
    work = args.keep or Path(tempfile.mkdtemp(prefix="fsdd_bench_"))
    machine = f"{cpu_name()}, {os.cpu_count()} CPU(s); torch {torch.__version__}, {args.threads} thread(s)"
    print(f"# FSDD leave-one-speaker-out, {machine}{' (quick)' if args.quick else ''}", flush=True)
    print(f"{'held out':<10}" + "".join(f"{m + ' acc':>10}{m + ' s':>9}" for m in models), flush=True)
    rows = []
    try:
        for speaker in folds:
            row: dict[str, float | str] = {"speaker": speaker}
            for m in models:
                acc, secs = svm_fold(speaker, args.data) if m == "svm" else train_network(
                    m, speaker, args.data, work, args.quick, args.threads)
                row[f"{m}_acc"], row[f"{m}_seconds"] = round(acc, 4), round(secs, 1)
            rows.append(row)
            print(f"{speaker:<10}" + "".join(f"{row[m + '_acc']:>10.3f}{row[m + '_seconds']:>9.0f}" for m in models),
                  flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    mean = {k: round(sum(float(r[k]) for r in rows) / len(rows), 4) for k in rows[0] if k != "speaker"}
    print(f"{'mean':<10}" + "".join(f"{mean[m + '_acc']:>10.3f}{mean[m + '_seconds']:>9.0f}" for m in models))
    if args.out:
        args.out.write_text(json.dumps({"machine": machine, "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
                                        "quick": args.quick, "folds": rows, "mean": mean}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
