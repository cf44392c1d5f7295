"""Explain benchmarks on mini_xception: what a CAM costs, captum side by side, batched filter ascent.

    python benchmarks/explain_bench.py                 # CPU, batch 32 at 64x64
    python benchmarks/explain_bench.py --device cuda   # same on a GPU

1. Grad-CAM of a batch vs ONE plain forward of the same batch (no_grad). The CAM needs a forward
   that keeps activations plus a backward from the score down to the hooked layer only, so the
   goal is <= 2.5x.
2. Images/s of cnnlab.explain.grad_cam vs captum's LayerGradCam (relu_attributions=True, then
   LayerAttribution.interpolate to the input size and the same per-image max normalisation), same
   model, batch, layer and targets; the maps are checked to agree before timing.
3. A 64-channel filter atlas (30 plain steps) as ONE batch vs one channel at a time, the loop of the
   Keras "visualizing what convnets learn" example. The goal is >= 10x.

Each figure is the median of --repeats runs after one warm-up; prints a markdown table.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import time
from collections.abc import Callable

import torch


def timed(fn: Callable[[], object], repeats: int, sync: Callable[[], None]) -> float:
    """Median wall seconds of fn() over ``repeats`` runs after one warm-up run."""
    fn()
    sync()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--steps", type=int, default=30, help="filter ascent steps")
    parser.add_argument("--channels", type=int, default=64, help="filters in the atlas")
    args = parser.parse_args()

    from captum.attr import LayerAttribution, LayerGradCam

    from cnnlab.explain import get_layer, grad_cam, last_spatial_layer, visualize_filters
    from cnnlab.models import create_model

    device = torch.device(args.device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    torch.manual_seed(0)
    model = create_model("mini_xception", num_classes=7, in_channels=3).to(device).eval()
    x = torch.rand(args.batch, 3, args.size, args.size, device=device)
    layer = last_spatial_layer(model, x[:1])
    with torch.no_grad():
        target = model(x).argmax(dim=1)

    def forward() -> None:
        with torch.no_grad():
            model(x)

    def ours() -> torch.Tensor:
        return grad_cam(model, x, layer, target=target)

    captum_cam = LayerGradCam(model, get_layer(model, layer))

    def theirs() -> torch.Tensor:
        attr = captum_cam.attribute(x, target=target, relu_attributions=True)
        up = LayerAttribution.interpolate(attr, (args.size, args.size), interpolate_mode="bilinear")[:, 0]
        return up / up.flatten(1).amax(1).clamp(min=1e-30)[:, None, None]

    max_diff = (ours() - theirs()).abs().max().item()

    t_forward = timed(forward, args.repeats, sync)
    t_ours = timed(ours, args.repeats, sync)
    t_captum = timed(theirs, args.repeats, sync)

    # The filter layer: the first convolution with at least --channels output channels.
    conv = next(n for n, m in model.named_modules()
                if isinstance(m, torch.nn.Conv2d) and m.out_channels >= args.channels)
    channels = list(range(args.channels))

    def batched() -> torch.Tensor:
        return visualize_filters(model, conv, channels, steps=args.steps, size=args.size, seed=0)

    def one_at_a_time() -> torch.Tensor:
        return torch.cat([visualize_filters(model, conv, [c], steps=args.steps, size=args.size, seed=0) for c in channels])

    diff = (batched() - one_at_a_time()).abs()
    f_repeats = max(1, args.repeats // 2)
    t_batched = timed(batched, f_repeats, sync)
    t_loop = timed(one_at_a_time, f_repeats, sync)

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or platform.machine()
    print(f"device: {device} ({name}), torch {torch.__version__}, threads {torch.get_num_threads()}")
    print(f"mini_xception, batch {args.batch} x 3 x {args.size} x {args.size}, CAM layer {layer}, "
          f"median of {args.repeats}; filters: {args.channels} channels of {conv}, {args.steps} steps, "
          f"median of {f_repeats}\n")
    print("| measurement | seconds | figure |")
    print("|---|---|---|")
    print(f"| plain forward (no_grad) | {t_forward:.4f} | {args.batch / t_forward:.0f} img/s |")
    print(f"| cnnlab grad_cam | {t_ours:.4f} | {args.batch / t_ours:.0f} img/s, {t_ours / t_forward:.2f}x forward (goal <= 2.5x) |")
    print(f"| captum LayerGradCam + interpolate + normalise | {t_captum:.4f} | {args.batch / t_captum:.0f} img/s "
          f"(max |ours - captum| = {max_diff:.1e}) |")
    print(f"| filter atlas, one batch | {t_batched:.3f} | {args.channels / t_batched:.2f} filters/s |")
    print(f"| filter atlas, one channel at a time | {t_loop:.3f} | {t_loop / t_batched:.1f}x slower than the batch "
          f"(goal >= 10x); batch vs loop pixels differ by max {diff.max():.1e}, mean {diff.mean():.1e} |")


if __name__ == "__main__":
    main()
