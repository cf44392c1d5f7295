"""Which speed levers pay for mini_xception training on this CPU? CPU-seconds per step, one thread.

The benchmark machine is shared (several processes on 2 cores), so wall-clock microbenchmarks were
noise. This script measures what a lever changes in the work itself: one intra-op thread, CPU time
(user + system) per step from getrusage, variants interleaved round by round, best round kept. Each
allocator setting runs in its own subprocess because mallopt is process-wide.

    python benchmarks/levers_xception.py                  # the table in benchmarks/NOTES-speed.md
    python benchmarks/levers_xception.py --size 96 --rounds 2

img/s per core = batch / CPU-seconds per step; two idle cores give up to twice that.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys

VARIANTS = ("fp32-nchw", "fp32-cl", "autocast-cl", "bf16-weights-cl", "autocast-cl-inplace-relu")


def build(variant: str, size: int, batch: int):
    """A closure running one training step of mini_xception in `variant`."""
    import torch
    import torch.nn.functional as F

    from cnnlab.models import create_model

    torch.manual_seed(0)
    model = create_model("mini_xception", num_classes=1)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, 2, (batch,)).float()
    if variant != "fp32-nchw":
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    if variant == "bf16-weights-cl":  # bf16 weights and activations, fp32 master copy in the optimizer
        master = [p.detach().clone() for p in model.parameters()]
        model = model.to(torch.bfloat16)
        x = x.to(torch.bfloat16)
    if variant.endswith("inplace-relu"):
        for m in model.modules():
            if isinstance(m, torch.nn.ReLU):
                m.inplace = True  # pre-activation BN -> ReLU: BN's backward needs its input, not its output
    params = master if variant == "bf16-weights-cl" else list(model.parameters())
    for p in params:
        p.requires_grad_(True)
    opt = torch.optim.RMSprop(params, lr=1e-3)
    autocast = variant.startswith("autocast")

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
            loss = F.binary_cross_entropy_with_logits(model(x).float().view(-1), y)
        model.zero_grad(set_to_none=True)
        loss.backward()
        if variant == "bf16-weights-cl":
            for m, p in zip(master, model.parameters(), strict=True):
                m.grad = p.grad.float()
        opt.step()
        if variant == "bf16-weights-cl":
            with torch.no_grad():
                for m, p in zip(master, model.parameters(), strict=True):
                    p.copy_(m)

    return step


def cpu_seconds() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime, r.ru_stime


def worker(size: int, batch: int, rounds: int, tune: bool) -> dict:
    import torch

    torch.set_num_threads(1)
    if tune:
        from cnnlab._runtime import tune_allocator

        tune_allocator()
    steps = {v: build(v, size, batch) for v in VARIANTS}
    for step in steps.values():
        step()  # warm-up: oneDNN primitive creation, first allocations
    best: dict[str, dict] = {}
    for _ in range(rounds):
        for v, step in steps.items():
            u0, s0 = cpu_seconds()
            step()
            u1, s1 = cpu_seconds()
            row = {"user_s": u1 - u0, "sys_s": s1 - s0}
            if v not in best or row["user_s"] + row["sys_s"] < best[v]["user_s"] + best[v]["sys_s"]:
                best[v] = row
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=180)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--worker", choices=["tuned", "default"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        print(json.dumps(worker(args.size, args.batch, args.rounds, args.worker == "tuned")))
        return
    print(f"mini_xception {args.size}x{args.size} batch {args.batch}, 1 thread, CPU seconds per training step")
    print(f"{'variant':28s} {'allocator':>10s} {'user s':>7s} {'sys s':>6s} {'img/s/core':>10s}")
    for alloc in ("default", "tuned"):
        env = {**os.environ, "CNNLAB_TUNE_MALLOC": "1" if alloc == "tuned" else "0"}
        out = subprocess.run([sys.executable, __file__, "--worker", alloc, "--size", str(args.size),
                              "--batch", str(args.batch), "--rounds", str(args.rounds)],
                             env=env, capture_output=True, text=True, check=True)
        for v, row in json.loads(out.stdout.strip().splitlines()[-1]).items():
            total = row["user_s"] + row["sys_s"]
            print(f"{v:28s} {alloc:>10s} {row['user_s']:7.2f} {row['sys_s']:6.2f} {args.batch / total:10.1f}")


if __name__ == "__main__":
    main()
