"""On a CUDA GPU: training images/s of mini_xception and cifar_fast in fp32 and bf16, with cuDNN autotuning
off and on, to decide what `--precision auto` and the trainer should pick on GPUs.

    PYTHONPATH=src python benchmarks/gpu_precision.py
"""

from __future__ import annotations

import json
import time

import torch
import torch.nn.functional as F

from cnnlab.models import create_model
from cnnlab.train.precision import make_precision

CASES = {  # model -> (kwargs, batch, size)
    "mini_xception": ({"num_classes": 2}, 32, 180),
    "cifar_fast": ({"num_classes": 10}, 1024, 32),
}


def img_s(name: str, precision: str, steps: int = 20) -> float:
    kwargs, batch, size = CASES[name]
    torch.manual_seed(0)
    prec = make_precision(precision, "cuda")
    model = prec.prepare(create_model(name, **kwargs))
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.rand(batch, 3, size, size)
    y = torch.randint(0, kwargs["num_classes"], (batch,)).cuda()

    def step() -> None:
        with prec.autocast():
            loss = F.cross_entropy(model(prec.batch(x)).float(), y)
        opt.zero_grad(set_to_none=True)
        prec.backward(loss)
        prec.step(opt)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize()
    return round(batch * steps / (time.perf_counter() - t), 1)


def main() -> None:
    rows = {}
    for bench in (False, True):
        torch.backends.cudnn.benchmark = bench
        for name in CASES:
            for precision in ("fp32", "bf16"):
                rows[f"{name} {precision} cudnn.benchmark={bench}"] = img_s(name, precision)
                print(list(rows.items())[-1], flush=True)
    print(json.dumps({"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__,
                      "tf32_conv": torch.backends.cudnn.allow_tf32, "rows": rows}))


if __name__ == "__main__":
    main()
