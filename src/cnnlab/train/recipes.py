"""Named training recipes: sets of TrainConfig overrides that `cnnlab train --recipe NAME` applies
before the options given on the command line (which still win).

A recipe is data, not code: each entry maps TrainConfig field names to values, with the units and
the source of every number in a comment, so `cnnlab train ... --recipe NAME` is reproducible from
config.json alone (the resolved values are written there).
"""

from __future__ import annotations

from typing import Any

from cnnlab.errors import unknown

# airbench94's hyperparameters (Keller Jordan, https://github.com/KellerJordan/airbench) are given
# "per 1024 examples" for a summed loss; cnnlab's trainer averages the loss over the batch and couples
# weight decay to the learning rate like torch.optim.SGD, so they convert as:
#   kilostep  = 1024 * (1 + 1 / (1 - momentum))            = 7850.7 for momentum 0.85
#   lr        = 11.5 / kilostep * batch_size                 = 1.5 for batch 1024 (mean loss)
#   decay     = 0.0153 * batch_size / kilostep / lr          = 1.33e-3 (torch's weight_decay, x lr per step)
_AIRBENCH_MOMENTUM = 0.85
_KILOSTEP = 1024 * (1 + 1 / (1 - _AIRBENCH_MOMENTUM))
_CIFAR_BATCH = 1024
_CIFAR_LR = 11.5 / _KILOSTEP * _CIFAR_BATCH
_CIFAR_DECAY = 0.0153 * _CIFAR_BATCH / _KILOSTEP / _CIFAR_LR

RECIPES: dict[str, dict[str, Any]] = {
    # The training settings of `cnnlab demo` (mini_xception on 10,000 32x32 shapes: 99% val top-1).
    "shapes-demo": {"epochs": 10, "batch_size": 64, "optimizer": "adamw", "lr": 3e-3, "weight_decay": 5e-4,
                    "schedule": "onecycle", "warmup": 0.15, "augment": "flip"},
    # CIFAR-10 in minutes with `--model cifar_fast` (airbench94's network and optimiser settings; see
    # cifar_fast.py for the lineage: Page's ResNet-9, tysam-code's hlb-CIFAR10, Jordan's airbench).
    # Five epochs: 45k images took 85 s per epoch on two AVX-512-BF16 cores at load ~2, so training
    # takes ~7 minutes and leaves room for per-epoch evaluation and checkpoints within 10; the same
    # schedule with airbench's extra tricks reached 92.2% in benchmarks/cifar10_time_to_acc.py
    # (benchmarks/RESULTS.md); without them (lookahead, TTA, 64x norm lr, the 0.2 -> 1 -> 0.07
    # triangle) `cnnlab train` reached 89.6%. Those four tricks are airbench94's and are used here;
    # what it still does that this recipe does not: 9.9 epochs (`--epochs 10` gets closer to its
    # 94%), a summed loss, flips alternating per epoch and a whitening bias frozen after 3 epochs.
    "cifar10-fast": {
        "model": "cifar_fast",
        "epochs": 5,
        "batch_size": _CIFAR_BATCH,  # large batches keep the bf16 convolutions busy on few cores
        "optimizer": "sgd",  # Nesterov
        "lr": round(_CIFAR_LR, 4),  # peak, per batch-mean loss
        "momentum": _AIRBENCH_MOMENTUM,
        "weight_decay": round(_CIFAR_DECAY, 6),
        # airbench's triangle: 0.2x -> 1x the peak over the first 23% of steps, then linearly to 0.07x
        "schedule": "onecycle",
        "warmup": 0.23,
        "lr_start": 0.2,
        "lr_end": 0.07,
        # airbench's BatchNorm biases train at 64x the lr with weight decay / 64 (the same decay per step)
        "norm_lr_scale": 64.0,
        # airbench's lookahead: EMA pulled onto every 5 steps with decay 0.95**5 * (step/total)**3
        "lookahead": True,
        # airbench's TTA level 2 at the final evaluation only: mirror + 1-pixel translations
        "tta": "flip-translate",
        "task_options": {"label_smoothing": 0.2},
        "augment": "flip-crop",  # mirror + random translation (reflect padding)
    },
    # Super-resolution x3 on the 200 BSDS photos of ../shared/data/sr_train (20 held out for validation):
    # edsr_cpu (8 residual blocks of 48 channels, bicubic global skip), L1 loss, random 96 px HR patches
    # (32 px LR), mirrored. 180 training photos x repeat 100 = 18,000 patches an epoch; 10 epochs are
    # 11,250 steps of 16 patches: 25 min at the 120-130 patches/s measured in bf16 on 2 Zen 5 cores
    # (12 epochs took 35 min with other work on the machine and gained 0.01 dB over epoch 10).
    "superres-x3": {
        "task": "superres",
        "model": "edsr_cpu",
        "task_options": {"scale": 3, "patch": 96},
        "epochs": 10,
        "repeat": 100,
        "batch_size": 16,
        "optimizer": "adamw",
        "lr": 1e-3,  # peak of the one-cycle schedule (EDSR's 1e-4 is for 300k steps, not 13k)
        "weight_decay": 0.0,  # SR networks are trained without decay (EDSR, RCAN)
        "warmup": 0.02,
        "augment": "flip",
    },
    # CamVid (SegNet's 11 classes; value 11 = void, ignored) at half resolution, 180x240: a U-Net
    # (widths 32-256, skips) with cross-entropy + 0.5 x soft Dice (the small classes: poles, signs,
    # pedestrians, bicyclists). 330 training frames (37 held out) at 19 frames/s in bf16 on 2 Zen 5
    # cores: 80 epochs are about 25 min. Scores are at 180x240 (masks resized by nearest neighbour).
    "segment-camvid": {
        "task": "segment",
        "model": "unet",
        "image_size": [180, 240],
        "data_options": {"void_value": 11},
        "task_options": {"dice": 0.5},
        "epochs": 80,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "warmup": 0.05,
        "augment": "flip",
    },
    # ISBI-2012 membrane slices (24 of 512x512 here, 2 held out): cell interior (255) vs membrane (0),
    # random 256 px crops, 25 per slice per epoch.
    "segment-membrane": {
        "task": "segment",
        "model": "unet",
        "data_options": {"mask_values": [0, 255]},
        "task_options": {"patch": 256},
        "epochs": 10,
        "repeat": 25,
        "batch_size": 8,
        "optimizer": "adamw",
        "lr": 2e-3,
        "weight_decay": 1e-4,
        "warmup": 0.05,
        "augment": "flip",
    },
}

# Denoising at sigma 25 (colour, Gaussian, 0-255 scale) on the 200 BSDS photos of ../shared/data/sr_train
# (20 held out, each with its own fixed noise): unet_small predicting the residual, MSE, random 64 px
# patches, mirrored. 180 photos x repeat 32 = 5,760 patches an epoch, 10 epochs. Sized for ~7 minutes at
# the 150 patches/s (fp32) a short run measured on the 2-core Zen 3; the measured run (2026-12-03, with
# other jobs on the machine) got 48 patches/s and took 18.4 min: 29.02 dB beside the noisy 20.57 dB.
RECIPES["denoise-s25"] = {
    "task": "denoise",
    "model": "unet_small",
    "task_options": {"sigma": 25, "noise": "gaussian", "patch": 64},
    "epochs": 10,
    "repeat": 32,
    "batch_size": 16,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.0,  # restoration networks train without decay (DnCNN, EDSR)
    "warmup": 0.05,
    "augment": "flip",
}
# Inpainting on the same photos: boxes and strokes of 8-32 px covering 20% of each 96 px patch (the
# held-out photos keep their own fixed holes), unet_small on image + mask, L1 on the holes + 0.1 x L1
# elsewhere. 180 x repeat 16 = 2,880 patches an epoch, 10 epochs (sized for ~8 minutes from denoise's
# patch rate scaled by the patch area). Measured: 18.8 min on one shared core, hole PSNR 20.18 dB against
# the diffusion fill's 21.27 (benchmarks/RESULTS.md; --task-arg prefill=diffusion starts from that fill).
RECIPES["inpaint-bsds"] = {
    "task": "inpaint",
    "model": "unet_small",
    "task_options": {"hole": [8, 32], "cover": 0.2, "patch": 96, "valid_weight": 0.1},
    "epochs": 10,
    "repeat": 16,
    "batch_size": 16,
    "optimizer": "adamw",
    "lr": 2e-3,
    "weight_decay": 0.0,
    "warmup": 0.05,
    "augment": "flip",
}

# The same data and schedule for ESPCN (Shi et al. 2016, 31k parameters): the fast baseline, shorter.
RECIPES["superres-x3-espcn"] = {**RECIPES["superres-x3"], "model": "espcn", "epochs": 8, "lr": 2e-3}

# `cnnlab experiment degradation` (He et al. 2016, fig. 1): plain20/56 and resnet20/56 on CIFAR-10 with
# the paper's optimiser (SGD, momentum 0.9, lr 0.1 at batch 128, flips + 4 px translations), shortened
# from its 64k steps to ~280 (4 epochs of a 9,000-image stratified subset). Sized from the trainer's
# measured fp32 speeds on one thread of the busy 2-core Zen 3 (plain20 100, plain56 48, resnet20 206,
# resnet56 67 img/s: 16.0 min for half this subset), so about 30 minutes there for the four runs; on
# two threads at load ~2 the four took 16.6 min (2026-12-03, benchmarks/RESULTS.md).
# `--epochs` / `--limit` scale it. The no-model recipe takes `--model`:
# `cnnlab train classify --recipe degradation --model plain56 ...` is one of its runs.
RECIPES["degradation"] = {
    "epochs": 4,
    "limit": 10_000,  # images taken from the spec before the 10% validation split
    "batch_size": 128,
    "optimizer": "sgd",  # Nesterov
    "lr": 0.1,  # the paper's, at batch 128
    "momentum": 0.9,
    "weight_decay": 5e-4,  # the paper's 1e-4 is for 64k steps; a short run needs more
    "schedule": "onecycle",
    "warmup": 0.05,  # a few steps: plain-56 at lr 0.1 from the first step can stall (the paper warms ResNet-110)
    "augment": "flip-crop",
}
# `cnnlab experiment inception-vs-xception`: inception_small vs xception_small, one recipe for both:
# the same optimiser, subset and epochs as `degradation`. Measured: 30.1 min for the pair on the busy
# 2-core Zen 3, one fp32 thread (inception_small 37, xception_small 50 img/s).
RECIPES["inception-vs-xception"] = {**RECIPES["degradation"]}

# benchmarks/eval_bench.py (issue 15): a short mini_xception run whose only purpose is to be timed:
# one logit for two classes at 128 px (the cats-vs-dogs case), 600 photos, 1 epoch.
RECIPES["eval-speed"] = {"model": "mini_xception", "model_kwargs": {"num_classes": 1}, "epochs": 1, "limit": 600,
                         "image_size": 128, "batch_size": 32, "val_split": 0.5, "optimizer": "adamw", "lr": 1e-3,
                         "augment": "flip"}


# Issue 13 (benchmarks/jpeg_train_bench.py): RGB against DCT input on the original cats-vs-dogs JPEGs,
# everything else shared: the same files, split (val_split 0.2, seed 0), crop geometry (a centred 224 px
# window on the 16-px grid, no resizing: DCT coefficients cannot be resized without decoding, so the
# RGB run crops the same way with --fit crop), the mini_xception family (mini_xception_dct is its stages
# from H/8 down, fed by the coefficients), one logit, optimiser, schedule and augmentation (flip +
# shifts of up to 1/8 of the size; 2 cells = 32 px for DCT).
RECIPES["catsdogs-rgb"] = {"model": "mini_xception", "model_kwargs": {"num_classes": 1}, "epochs": 20,
                           "image_size": 224, "batch_size": 32, "val_split": 0.2, "optimizer": "adamw",
                           "lr": 2e-3, "augment": "flip-crop", "data_options": {"fit": "crop"}}
RECIPES["catsdogs-dct"] = {**RECIPES["catsdogs-rgb"], "model": "mini_xception_dct",
                           "data_options": {"input": "dct"}}


def get_recipe(name: str) -> dict[str, Any]:
    """A copy of recipe ``name``'s overrides (TrainConfig field -> value); unknown names get did-you-mean."""
    if name not in RECIPES:
        raise unknown("recipe", name, RECIPES)
    return dict(RECIPES[name])


# Issue 11, localisation: `cnnlab train localize --data "builtin:shapes?n=4000&size=32" --recipe localize-shapes`.
# mini_xception with 4 box outputs + 6 class logits, L1 x 5 + (1 - GIoU) x 2 (DETR's weights) + class CE,
# flips and translations of up to 4 px that move the boxes too. Sized from a 2-epoch smoke run at 32 px on
# the busy 2-core Zen 3 (about 110 img/s with the per-epoch CAM evaluation): 3,600 x 15 epochs ~ 8 min.
# Measured (287 s of training on one shared core): mean IoU 0.883, acc50 1.000; benchmarks/RESULTS.md.
RECIPES["localize-shapes"] = {
    "task": "localize",
    "model": "mini_xception",
    "epochs": 15,
    "batch_size": 64,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 5e-4,
    "schedule": "onecycle",
    "warmup": 0.15,
    "augment": "flip-crop",
}

# Learned compression (issue 11) on the 200 BSDS photos of ../shared/data/sr_train (20 held out, scored
# whole, beside JPEG 4:2:0 at no more bits): compress_small with M=48 latent channels, rate + lmbda x
# MSE(0-255), random 64 px patches, mirrored. lmbda 0.0015 aims low (~0.2 bpp), where JPEG is weakest
# (on the held-out photos q5 is 0.181 bpp / 23.14 dB); other lambdas give other points of the curve
# (`--task-arg lmbda=...`). 180 photos x repeat 30 = 5,400 patches an epoch, 20 epochs: 20 minutes at the
# ~90 patches/s one thread of the 2-core Zen 3 gave when quiet (32.7 min wall when shared with another
# job's training). Measured (benchmarks/RESULTS.md): real files 0.181 bpp, 24.52 dB on the 20 held-out
# photos, where JPEG's curve gives 23.14 dB (q5, 0.181 bpp). Tuned in 75-second probes at lmbda 0.0015 (RESULTS.md): at a low lambda
# most latent channels should carry nothing, yet each costs ~1 bit a position until its density becomes a
# spike at 0, so half of the default 96 channels and densities that start narrow (init_scale 0.3; Balle's
# 10 costs ~2 bpp at the start) brought the rate down from the first steps (0.56 -> 0.21 bpp at equal
# PSNR). lr 1e-3: 2e-3 blew the inverse GDNs up within an epoch of a long run (Balle et al. train 1M
# steps at 1e-4).
RECIPES["compress-bsds"] = {
    "task": "compress",
    "model": "compress_small",
    "model_kwargs": {"init_scale": 0.3, "latent": 48},
    "task_options": {"lmbda": 0.0015, "patch": 64},
    "epochs": 20,
    "repeat": 30,
    "batch_size": 16,
    "optimizer": "adamw",
    "lr": 1e-3,
    "weight_decay": 0.0,
    "warmup": 0.05,
    "augment": "flip",
}
# The curve's lower point: lambda 0.0008 (~0.12 bpp, around JPEG's lowest quality, 0.112 bpp / 20.92 dB on
# the held-out photos), the same model and schedule, 8 epochs (11.4 min on one shared core).
RECIPES["compress-bsds-low"] = {**RECIPES["compress-bsds"], "task_options": {"lmbda": 0.0008, "patch": 64},
                                "epochs": 8}

# Issue 12, spoken digits (FSDD, ../shared/data/fsdd/recordings, labels and speakers from the file names):
# `cnnlab train audio --recipe audio-fsdd --data ../shared/data/fsdd/recordings` trains on every speaker
# there; add `--val-groups george` (or another speaker) to hold one out, as benchmarks/audio_fsdd_bench.py
# does for each of the four. What mattered for speakers never heard was the front end and augmentation,
# not size. Log-mel frames (25 ms, 10 ms hop, 40 bands) floored top_db below each clip's peak: the four
# recordings' backgrounds differ (the quietest frame is 22 dB below the peak for nicolas, 37 dB for
# yweweler). On the nicolas fold (20 epochs) a floor of 80 dB gave 18%, 40 dB 53%, 32 dB ~77%, 25 dB
# 78%, 18 dB 67%; but 25 dB also floors weak consonants (jackson's "two" and "three" became "zero"),
# and 32 dB gave jackson ~73% against 60%. Each clip's bands normalised over its own frames (instance
# CMVN; 74% against 43% with a BatchNorm of the training speakers on the george fold). Speed
# perturbation (+-25%: pitch, formants and tempo together, i.e. vocal-tract length and speaking rate),
# white noise at 15-35 dB SNR, SpecAugment masks (+5 points on nicolas), then a small M5-style 1D CNN
# over the frames. Pitch shifts, cropping the clips' ends, a 2D convolution stem over the bands (tried,
# not kept) and lookahead gave nothing measurable on the george fold (each within +-3 points, its
# epoch-to-epoch spread). One seed per setting, short runs on a shared machine: indications, not
# measurements. The four-fold figures: benchmarks/RESULTS.md.
RECIPES["audio-fsdd"] = {
    "task": "audio",
    "model": "m5",
    "model_kwargs": {"frontend": "mel", "mel_norm": "instance", "top_db": 32.0, "freq_mask": 6, "time_mask": 10,
                     "widths": [64, 64, 128, 256]},
    # FSDD clips are 0.14-1.0 s; SNR of the added noise is drawn in [15, 35] dB of the window's level
    "task_options": {"window": 1.0, "speed": 0.25, "gain": 6.0, "noise": 15.0},
    "data_options": {"label_pattern": "{label}_{speaker}_{index}", "split_by": "speaker"},
    "val_split": 0.0,  # every speaker trains; --val-groups NAME holds one out
    "epochs": 25,
    "batch_size": 32,
    "optimizer": "adamw",
    "lr": 3e-3,
    "weight_decay": 5e-4,
    "warmup": 0.1,
}
