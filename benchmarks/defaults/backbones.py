"""Which backbone the rules choose for each defaults study, and why, without running it: the
choice `fewlabels study` makes before its first run (``study.backbone``), with the speed
probe at the thread count each of --workers workers trains with. One JSON line per study::

    python benchmarks/defaults/backbones.py                 # every benchmarks/defaults/*.yaml
    python benchmarks/defaults/backbones.py --workers 1 cifar10

Run it with the machine otherwise idle: the probe times the device.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from fewlabels.core.provenance import usable_threads
from fewlabels.study import load_study
from fewlabels.study.backbone import choose_backbone

HERE = Path(__file__).resolve().parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("names", nargs="*", help="study names (default: every one here)")
    ap.add_argument("--workers", type=int, default=2, help="the study's --workers")
    a = ap.parse_args()
    files = [HERE / f"{n}.yaml" for n in a.names] or sorted(HERE.glob("*.yaml"))
    threads = max(1, usable_threads() // a.workers)  # as run_study splits them
    for f in files:
        plan = load_study(f)
        t0 = time.perf_counter()
        got = choose_backbone(plan, threads)
        row = {
            "study": f.stem,
            "data": plan.spec.data,
            "budget": plan.spec.budget,
            "workers": a.workers,
            "threads": threads,
            "backbone": got["backbone"],
            "rule": got["rule"],
            "choose_s": round(time.perf_counter() - t0, 1),
        }
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
