"""CIFAR-10 time-to-accuracy on this CPU: cnnlab's `cifar_fast` with airbench94's training recipe.

Trains on 45k images of ../shared/data/cifar10/cifar10_train.npz and validates on cnnlab's own 5k split
(``load_data(..., val_split=0.1, seed=0)``, stratified), printing wall time and val accuracy per epoch.

Recipe (airbench94 by Keller Jordan, https://github.com/KellerJordan/airbench, after tysam-code's
hlb-CIFAR10 and David Page's "How to train your ResNet"): batch 1024, Nesterov SGD (lr 11.5 and
weight decay 0.0153 per 1024 examples, momentum 0.85, BN biases at 64x lr), summed label-smoothed
(0.2) cross-entropy, triangular LR (0.2 -> 1 over the first 23% of steps -> 0.07), whitening-layer
bias trained for 3 epochs then frozen, flips alternating per epoch + 2-pixel reflect translation,
lookahead (EMA pull every 5 steps), test-time augmentation (mirror + 1-pixel translations).
Precision: bf16 autocast on channels_last with fp32 weights (cnnlab's Precision object).

    python benchmarks/cifar10_time_to_acc.py --epochs 9.9              # the full airbench94 schedule
    python benchmarks/cifar10_time_to_acc.py --epochs 5 --json out.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from cnnlab._runtime import tune_allocator
from cnnlab.data import load_data
from cnnlab.models import create_model
from cnnlab.train.precision import make_precision

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "cifar10" / "cifar10_train.npz"


def batch_translate(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Random translation by up to `pad` pixels (reflect padding), one offset per image, in batches."""
    n, _, h, w = x.shape
    padded = F.pad(x, (pad,) * 4, mode="reflect")
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=gen)
    windows = padded.unfold(2, h, 1).unfold(3, w, 1)  # (N, C, 2p+1, 2p+1, H, W), a view
    return windows[torch.arange(n), :, dy, dx]  # one gather: (N, C, H, W)


class Lookahead:
    """airbench's lookahead: keep an EMA of every float state entry and pull the net back onto it."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.ema = {k: v.detach().clone() for k, v in model.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, model: torch.nn.Module, decay: float) -> None:
        for k, v in model.state_dict().items():
            if k in self.ema:
                self.ema[k].lerp_(v, 1 - decay)
                v.copy_(self.ema[k])


def lr_factor(step: int, total: int) -> float:
    """Triangular schedule: 0.2 -> 1.0 over the first 23% of steps, then linearly down to 0.07."""
    warm = int(total * 0.23)
    if step < warm:
        return 0.2 + 0.8 * step / warm
    return 1.0 - 0.93 * (step - warm) / max(1, total - warm)


@torch.no_grad()
def evaluate(model, prec, x_u8: torch.Tensor, y: torch.Tensor, tta: int, batch: int = 1000) -> float:
    """Top-1 accuracy; tta=0 plain, 1 adds the mirror, 2 also 1-pixel translations (airbench's levels)."""
    model.eval()
    correct = 0
    for i in range(0, len(x_u8), batch):
        xb = prec.batch(x_u8[i:i + batch].float().div_(255))
        with prec.autocast():
            logits = model(xb).float()
            if tta >= 1:
                logits = 0.5 * (logits + model(xb.flip(-1)).float())
            if tta >= 2:
                pad = F.pad(xb, (1,) * 4, mode="reflect")
                shifted = [pad[:, :, :-2, :-2], pad[:, :, 2:, 2:]]  # up-left and down-right by one pixel
                extra = sum(model(s).float() + model(s.flip(-1)).float() for s in shifted) / 4
                logits = 0.5 * logits + 0.5 * extra
        correct += (logits.argmax(1) == y[i:i + batch]).sum().item()
    model.train()
    return correct / len(x_u8)


def train(epochs: float, batch_size: int, width: int, seed: int, precision: str, tta: int,
          budget_s: float | None, verbose: bool = False) -> dict:
    tune_allocator()  # what `cnnlab train` does: keep activation buffers mapped between steps
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    t_load = time.perf_counter()
    bundle = load_data(str(DATA), val_split=0.1, seed=0)
    x_train, y_train = bundle.train.x, bundle.train.y  # uint8 (45000, 3, 32, 32), int64
    x_val, y_val = bundle.val.x, bundle.val.y
    load_s = time.perf_counter() - t_load

    prec = make_precision(precision, "cpu")
    model = create_model("cifar_fast", num_classes=10, width=width)
    model.init_from_data(x_train[:5000].float().div(255))
    model = prec.prepare(model)

    # airbench94 hyperparameters, "per 1024 examples" units converted to PyTorch SGD's.
    momentum, label_smoothing = 0.85, 0.2
    kilostep = 1024 * (1 + 1 / (1 - momentum))
    lr = 11.5 / kilostep
    wd = 0.0153 * batch_size / kilostep
    lr_bias = lr * 64
    norm_biases = [p for n, p in model.named_parameters() if "norm" in n and p.requires_grad]
    others = [p for n, p in model.named_parameters() if "norm" not in n and p.requires_grad]
    groups = [dict(params=norm_biases, lr=lr_bias, weight_decay=wd / lr_bias, base=lr_bias),
              dict(params=others, lr=lr, weight_decay=wd / lr, base=lr)]
    opt = torch.optim.SGD(groups, momentum=momentum, nesterov=True)

    steps_per_epoch = math.ceil(len(x_train) / batch_size)
    total_steps = int(epochs * steps_per_epoch)
    lookahead = Lookahead(model)
    flip_mask = torch.rand(len(x_train), generator=gen) < 0.5  # alternating flips: drawn once, toggled per epoch

    history: list[dict] = []
    step, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    train_s = 0.0
    epoch = 0
    while step < total_steps:
        t_ep = time.perf_counter()
        if epoch == 3:  # airbench: the whitening bias learns for 3 epochs only
            model.whiten.bias.requires_grad_(False)
        flips = flip_mask ^ bool(epoch % 2)
        order = torch.randperm(len(x_train), generator=gen)
        for i in range(0, len(order), batch_size):
            if step >= total_steps:
                break
            idx = order[i:i + batch_size]
            xb = x_train[idx].float().div_(255)  # uint8 stays in memory; augment one batch at a time
            xb = torch.where(flips[idx, None, None, None], xb.flip(-1), xb)
            xb, yb = prec.batch(batch_translate(xb, 2, gen)), y_train[idx]
            for g in opt.param_groups:
                g["lr"] = g["base"] * lr_factor(step, total_steps)
            with prec.autocast():
                logits = model(xb)
            loss = F.cross_entropy(logits.float(), yb, label_smoothing=label_smoothing, reduction="sum")
            opt.zero_grad(set_to_none=True)
            prec.backward(loss)
            prec.step(opt)
            step += 1
            if verbose and step % 10 == 0:
                print(f"step {step}/{total_steps} {time.perf_counter() - t0:.0f}s", flush=True)
            if step % 5 == 0:
                lookahead.update(model, decay=0.95 ** 5 * (step / total_steps) ** 3)
        epoch += 1
        train_s += time.perf_counter() - t_ep
        if step >= total_steps:
            lookahead.update(model, decay=1.0)
        acc = evaluate(model, prec, x_val, y_val, tta=0)
        row = dict(epoch=epoch, train_s=round(train_s, 1), wall_s=round(time.perf_counter() - t0, 1),
                   cpu_s=round(time.process_time() - cpu0, 1), val_top1=round(acc, 4),
                   loadavg=round(os.getloadavg()[0], 1))  # other processes on the 2 cores slow wall time
        history.append(row)
        print(json.dumps(row), flush=True)
        if budget_s is not None and time.perf_counter() - t0 > budget_s:
            break
    final = evaluate(model, prec, x_val, y_val, tta=tta)
    result = dict(epochs=epochs, batch_size=batch_size, width=width, precision=prec.name, tta=tta,
                  load_s=round(load_s, 1), train_s=round(train_s, 1),
                  wall_s=round(time.perf_counter() - t0, 1), final_val_top1_tta=round(final, 4),
                  threads=torch.get_num_threads(), history=history)
    print(json.dumps({k: v for k, v in result.items() if k != "history"}), flush=True)
    return result


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=float, default=9.9)
    ap.add_argument("--batch-size", type=int, default=1024)
    ap.add_argument("--width", type=int, default=256)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--precision", default="auto")
    ap.add_argument("--tta", type=int, default=2)
    ap.add_argument("--budget-s", type=float, default=None, help="stop after the epoch that crosses this")
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--verbose", action="store_true", help="print progress every 10 steps")
    args = ap.parse_args()
    result = train(args.epochs, args.batch_size, args.width, args.seed, args.precision, args.tta, args.budget_s,
                   args.verbose)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
