"""Kill benchmark: a small digits study SIGKILLed at random moments, resumed after each kill,
against the same study run without interruption. Prints one JSON line:

    {"kills", "kills_with_work_left", "clean_resumes", "identical_table", "duplicates",
     "lost", "attempts", ...}

A kill lands a random 0..MAX_DELAY seconds after the study process has registered the study
(so kills hit claiming, training, checkpoint and store writes, and the report). After each
kill the store must pass SQLite's integrity check and every run's checkpoint must load; a
resume is clean when the next process then starts, registers and works without an error.
``identical_table``: results.csv (everything but timings) equals the uninterrupted run's.
``duplicates``: runs recorded more than once or runs the study does not have; ``lost``:
runs of the study that are not done at the end. Targets: 20 kills, 20 clean resumes, an
identical table, 0 duplicates, 0 lost.

    python benchmarks/bench_kill.py [--kills 20] [--seed 0] [--max-delay 3]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import FewlabelsError
from fewlabels.study import load_study
from fewlabels.study.store import STORE_NAME, Store

STUDY = """\
name: kill-bench
data: digits
budget: 30steps
train:
  batch_size: 16
  unlabeled_batch_ratio: 2
  evals: 2
  checkpoint_every_s: 0.2
  precision: fp32
grid:
  labels_per_class: [2, 4]
  unlabeled: [100]
  seeds: [0, 1]
methods:
  - supervised
  - fixmatch
upper_bound: true
report:
  accuracies: [0.3]
  tsne: false
"""
STABLE = (
    "cell", "method", "labels", "unlabeled", "n_labeled", "n_unlabeled", "seed", "status",
    "accuracy", "macro_f1", "steps", "run_key",
)  # fmt: skip


def command(spec: Path, out: Path) -> list[str]:
    return [
        sys.executable, "-m", "fewlabels.cli", "study", str(spec), "--out", str(out),
        "--threads", "1",
    ]  # fmt: skip


def table(out: Path) -> list[dict[str, str]]:
    with open(out / "results.csv") as f:
        return [{k: r[k] for k in STABLE} for r in csv.DictReader(f)]


def healthy(out: Path) -> bool:
    """The store passes the integrity check and every run's checkpoint loads."""
    db = out / STORE_NAME
    if not db.exists():
        return True  # killed before the store was made: nothing to damage
    con = sqlite3.connect(db)
    try:
        ok = con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    finally:
        con.close()
    for ckpt in (out / "runs").glob("*/checkpoint.pt"):
        try:
            load_checkpoint(ckpt)
        except FewlabelsError:
            return False
    return ok


def work_left(out: Path) -> bool:
    if not (out / STORE_NAME).exists():
        return True
    store = Store(out / STORE_NAME)
    try:
        c = store.counts()
    finally:
        store.close()
    return c["pending"] + c["running"] > 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kills", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-delay", type=float, default=3.0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        spec = d / "kill.yaml"
        spec.write_text(STUDY)
        plan = load_study(spec)

        t0 = time.perf_counter()
        ref = subprocess.run(command(spec, d / "ref"), capture_output=True, text=True)
        if ref.returncode != 0:
            raise SystemExit(f"uninterrupted run failed: {ref.stderr.strip()[-500:]}")
        clean_s = time.perf_counter() - t0

        out = d / "out"
        kills = with_work = clean = 0
        problems: list[str] = []
        t0 = time.perf_counter()
        while kills < args.kills:
            proc = subprocess.Popen(
                command(spec, out),
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "study NAME: ... cells" once registered
            started = line.startswith("study ")
            if kills and started:
                clean += 1  # the previous kill left a state this process resumed from
            elif kills:
                problems.append(f"resume after kill {kills} failed: {line.strip()[:200]}")
            time.sleep(rng.uniform(0.0, args.max_delay))
            finished = proc.poll() is not None
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            if finished and proc.returncode != 0:
                problems.append(
                    f"process ended with {proc.returncode}: {proc.stderr.read()[-200:]}"
                )
            if finished:
                break  # the study was done before this kill: fewer kills than asked
            kills += 1
            with_work += work_left(out)
            if not healthy(out):
                problems.append(f"unhealthy state after kill {kills}")
        final = subprocess.run(command(spec, out), capture_output=True, text=True)
        if final.returncode == 0 and final.stdout.startswith("study "):
            clean += 1 if kills else 0
        else:
            problems.append(f"final resume failed: {final.stderr.strip()[-300:]}")
        killed_s = time.perf_counter() - t0

        store = Store(out / STORE_NAME)
        try:
            runs = store.runs()
        finally:
            store.close()
        rows = table(out) if final.returncode == 0 else []
        keys = [r["run_key"] for r in rows]
        cells = [r["cell"] for r in rows]
        duplicates = (len(cells) - len(set(cells))) + len(set(runs) - set(plan.jobs))
        lost = sum(1 for k in plan.jobs if runs.get(k, {}).get("status") != "done")
        result = {
            "kills": kills,
            "kills_with_work_left": with_work,
            "clean_resumes": clean,
            "identical_table": bool(rows) and rows == table(d / "ref"),
            "duplicates": duplicates,
            "lost": lost,
            "runs": len(plan.jobs),
            "cells": len(set(keys)),
            "attempts": sum(int(r["attempts"]) for r in runs.values()),
            "uninterrupted_s": round(clean_s, 1),
            "with_kills_s": round(killed_s, 1),
            "problems": problems[:5],
        }
        print(json.dumps(result))


if __name__ == "__main__":
    main()
