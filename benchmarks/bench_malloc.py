"""Pretraining step time with and without keeping freed memory mapped (core/process.py).

Each method's loop step (``Trainer.fit`` on resident uint8 images, bench_ssl's settings at
the images' own size, as ``bench_ssl_step.py`` times it) runs in fresh processes, with
``FEWLABELS_KEEP_FREED_MEMORY=0`` (glibc's malloc as it comes) and without it, alternating
(off, on, off, on, ...) so a drifting machine biases neither. Per process: the median step
time after a warm-up, and the page faults and kernel (system) time per step. Prints one JSON
line per method and setting with the medians over its processes: {"method", "keep_freed",
"step_ms", "minor_faults_per_step", "sys_ms_per_step", "processes"}.

    python benchmarks/bench_malloc.py --methods rotnet vicreg simclr --processes 2
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
from pathlib import Path

from fewlabels.core.process import ENV, keep_freed_memory


def child(method: str, backbone: str, batch: int, steps: int, threads: int) -> None:
    """Time one method's loop steps in this process and print one JSON line."""
    import torch
    from bench_ssl_step import LoopSteps

    from fewlabels.core.precision import resolve_precision

    torch.set_num_threads(threads)
    keep_freed_memory()  # as the CLI does; off when the environment variable says 0
    loop = LoopSteps(method, backbone, batch, 32, resolve_precision("auto", torch.device("cpu")))
    loop.times(3)  # warm-up: the heap grows to its peak, first-call dispatch
    r0 = resource.getrusage(resource.RUSAGE_SELF)
    times = loop.times(steps)
    r1 = resource.getrusage(resource.RUSAGE_SELF)
    n = steps + 1  # times() runs one step more than it reports (the fit's first)
    print(
        json.dumps(
            {
                "step_ms": 1000 * statistics.median(times),
                "faults": (r1.ru_minflt - r0.ru_minflt) / n,
                "sys_ms": 1000 * (r1.ru_stime - r0.ru_stime) / n,
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=["rotnet", "vicreg", "simclr"])
    ap.add_argument("--backbone", default="fastnet-s")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--steps", type=int, default=20, help="timed steps per process")
    ap.add_argument("--processes", type=int, default=2, help="processes per setting")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        child(args.child, args.backbone, args.batch, args.steps, args.threads)
        return
    for method in args.methods:
        runs: dict[bool, list[dict[str, float]]] = {False: [], True: []}
        for _ in range(args.processes):
            for keep in (False, True):
                env = {k: v for k, v in os.environ.items() if k != ENV}
                if not keep:
                    env[ENV] = "0"
                cmd = [sys.executable, str(Path(__file__).resolve()), "--child", method]
                cmd += ["--backbone", args.backbone, "--batch", str(args.batch)]
                cmd += ["--steps", str(args.steps), "--threads", str(args.threads)]
                out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True)
                runs[keep].append(json.loads(out.stdout.strip().splitlines()[-1]))
        for keep in (False, True):
            rs = runs[keep]
            row = {
                "method": method,
                "backbone": args.backbone,
                "batch": args.batch,
                "keep_freed": keep,
                "step_ms": round(statistics.median(r["step_ms"] for r in rs), 1),
                "step_ms_each": [round(r["step_ms"], 1) for r in rs],
                "minor_faults_per_step": round(statistics.median(r["faults"] for r in rs)),
                "sys_ms_per_step": round(statistics.median(r["sys_ms"] for r in rs), 1),
                "processes": len(rs),
                "steps": args.steps,
            }
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
