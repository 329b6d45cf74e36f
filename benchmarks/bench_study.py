"""The `make demo` study (examples/digits.yaml) end to end: wall-clock with 1 and 2 worker
processes, and what its report says at 2 labels per class.

Prints one JSON line per worker count ({"workers", "wall_s", "runs", "failed"}), then one
summary line: the 2-worker / 1-worker time ratio (target <= 0.65), whether the results
tables of the two studies are identical, and mean test accuracy per method at 2 labels per
class (target: a semi- or self-supervised method above supervised). Each study starts
from an empty folder (a resumed study would skip its runs).

    python benchmarks/bench_study.py                 # workers 2 then 1
    python benchmarks/bench_study.py --workers 2     # just the demo's timing
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
FEWLABELS = Path(sys.executable).parent / "fewlabels"


def run_study(spec: Path, out: Path, workers: int) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    proc = subprocess.run(
        [str(FEWLABELS), "study", str(spec), "--out", str(out), "--workers", str(workers)],
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"study failed ({proc.returncode}): {proc.stderr.strip()[-500:]}")
    with open(out / "results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return {
        "workers": workers,
        "wall_s": round(wall, 1),
        "runs": len(rows),
        "failed": sum(r["status"] != "done" for r in rows),
        "_rows": rows,
    }


def table(rows: list[dict[str, str]]) -> list[tuple[str, str, str]]:
    """(cell, accuracy, macro-F1) sorted: what must match between two runs of a study."""
    return sorted((r["cell"], r["accuracy"], r["macro_f1"]) for r in rows)


def at_labels(rows: list[dict[str, str]], labels_per_class: str) -> dict[str, float]:
    """Mean test accuracy per method over every cell with ``labels_per_class``."""
    acc: dict[str, list[float]] = defaultdict(list)
    for r in rows:
        real = r["role"] != "upper_bound" and r["accuracy"]
        if real and r["labels_per_class"] == labels_per_class:
            acc[r["method"]].append(float(r["accuracy"]))
    return {m: round(statistics.mean(v), 4) for m, v in sorted(acc.items())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spec", type=Path, default=ROOT / "examples" / "digits.yaml")
    ap.add_argument("--workers", type=int, nargs="+", default=[2, 1])
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-study")
    args = ap.parse_args()
    results = {}
    for w in args.workers:
        res = run_study(args.spec, args.out / f"workers-{w}", w)
        results[w] = res
        print(json.dumps({k: v for k, v in res.items() if k != "_rows"}), flush=True)
    first = results[args.workers[0]]["_rows"]
    summary: dict[str, Any] = {
        "summary": args.spec.name,
        "accuracy_at_2_per_class": at_labels(first, "2"),
    }
    if 1 in results and 2 in results:
        summary["ratio_2_to_1"] = round(results[2]["wall_s"] / results[1]["wall_s"], 3)
        summary["target_ratio"] = 0.65
        summary["identical_tables"] = table(results[1]["_rows"]) == table(results[2]["_rows"])
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()
