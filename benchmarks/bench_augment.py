"""Throughput of each augmentation policy on CPU (images/s; two-view policies count both views).

python benchmarks/bench_augment.py [--batch 256] [--size 32] [--threads 2]

Prints one JSON line per policy: {"policy", "img_per_s" (median run), "best_img_per_s",
"target", "meets_target", ...}. Sets OMP_WAIT_POLICY=PASSIVE unless given (see below).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time

# OpenMP's default busy-waiting makes 2 threads collapse (10-100x slower) when other jobs
# share the 2 cores; passive waiting keeps them at least as fast as 1 thread. Set before
# torch loads OpenMP; an explicit OMP_WAIT_POLICY wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import torch

from fewlabels.augment import POLICIES, build_policy

TARGETS = {"weak": 20_000, "twoview": 8_000, "strong": 5_000}  # at 32 px, batch 256, 2 threads


def measure(
    name: str, batch: int = 256, size: int = 32, reps: int = 20, warmup: int = 3
) -> dict[str, object]:
    """Median and best throughput of policy ``name`` on random uint8 images."""
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, generator=g)
    pol = build_policy(name, image_size=size)
    for _ in range(warmup):
        pol(x, g)
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        pol(x, g)
        times.append(time.perf_counter() - t0)
    n_img = batch * pol.num_views
    target = TARGETS.get(name)
    rate = n_img / statistics.median(times)
    return {
        "policy": name,
        "img_per_s": round(rate),
        "best_img_per_s": round(n_img / min(times)),
        "target": target,
        "meets_target": None if target is None else rate >= target,
        "batch": batch,
        "size": size,
        "threads": torch.get_num_threads(),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--policies", nargs="*", default=list(POLICIES), choices=list(POLICIES))
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.policies:
        print(json.dumps(measure(name, args.batch, args.size, args.reps)), flush=True)


if __name__ == "__main__":
    main()
