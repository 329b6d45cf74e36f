"""Bare training-step throughput of each backbone: the yardstick of GUIDE section 4.

One step = forward of ``Network(backbone)`` (normalisation + backbone + linear head) on a
ready random float batch, cross-entropy, backward, SGD (momentum, Nesterov). Each
backbone runs in fp32 and in bf16 autocast, both channels_last (``--contiguous`` adds
fp32 in the default layout). Warm-up steps first, then the median of timed steps. Prints
one JSON line per (backbone, setting): {"backbone", "precision", "memory_format",
"batch", "size", "threads", "img_s", "step_ms"}.

    python benchmarks/bench_backbones.py --backbones convnet fastnet --batch 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from contextlib import nullcontext

import torch
import torch.nn.functional as F

from fewlabels.models import Network


def step_rate(
    backbone: str,
    batch: int,
    size: int,
    precision: str,
    channels_last: bool,
    warmup: int,
    iters: int,
) -> float:
    """Median images/s of the bare step."""
    torch.manual_seed(0)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    net = Network(backbone, 3, size, 10, stem="cifar").to(memory_format=fmt).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (batch,))
    ctx = (
        (lambda: torch.autocast("cpu", dtype=torch.bfloat16))
        if precision == "bf16"
        else nullcontext
    )
    times = []
    for i in range(warmup + iters):
        t0 = time.perf_counter()
        with ctx():
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    if not torch.isfinite(loss):
        raise RuntimeError(f"{backbone}/{precision}: non-finite loss")
    return batch / statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--backbones", nargs="+", default=["convnet", "fastnet", "resnet18", "wrn-28-2"]
    )
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--iters", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--contiguous", action="store_true", help="also fp32 without channels_last")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    settings = [("fp32", True), ("bf16", True)]
    if args.contiguous:
        settings.insert(0, ("fp32", False))
    for bb in args.backbones:
        for precision, cl in settings:
            rate = step_rate(bb, args.batch, args.size, precision, cl, args.warmup, args.iters)
            row = {
                "backbone": bb,
                "precision": precision,
                "memory_format": "channels_last" if cl else "contiguous",
                "batch": args.batch,
                "size": args.size,
                "threads": args.threads,
                "img_s": round(rate, 1),
                "step_ms": round(1000 * args.batch / rate, 1),
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
