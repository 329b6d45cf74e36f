"""Throughput of each augmentation policy (images/s; two-view policies count both views).

python benchmarks/bench_augment.py --batch 256 --size 32
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from fewlabels.augment import POLICIES, build_policy

TARGETS = {"weak": 20_000, "twoview": 8_000, "strong": 5_000}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (args.batch, 3, args.size, args.size), dtype=torch.uint8)
    for name in POLICIES:
        pol = build_policy(name, image_size=args.size)
        times = []
        for i in range(args.reps + 3):
            t0 = time.perf_counter()
            pol(x, g)
            if i >= 3:
                times.append(time.perf_counter() - t0)
        rate = args.batch * pol.num_views / statistics.median(times)
        print(
            json.dumps(
                {
                    "policy": name,
                    "batch": args.batch,
                    "size": args.size,
                    "img_per_s": round(rate),
                    "target": TARGETS.get(name),
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
