"""How well the speed probe guesses the steps a wall-clock budget buys: for each case, the
steps the resolved schedule expected before the first step (``resolved.json``'s
``schedule``, from ``fewlabels.train.facts.speed_probe``) against the steps the run made in
the same budget, with the backbone given so that no step-down hides the guess. One JSON line
per case::

    python benchmarks/bench_probe.py --data cifar10:../shared/data/cifar10 --budget 60s
    python benchmarks/bench_probe.py --data digits --threads 2 --cases supervised:5:convnet

A case is ``method:labels_per_class:backbone``. Run it with the machine otherwise idle.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from fewlabels import api
from fewlabels.core.precision import resolve_precision
from fewlabels.data import Dataset
from fewlabels.methods import method_class

CASES = [
    "supervised:25:convnet",
    "supervised:25:fastnet-s",
    "fixmatch:4:fastnet-s",
    "fixmatch:25:convnet",
    "vicreg:25:fastnet-s",
]


def one_case(data: Dataset, case: str, budget: str, precision: str, seed: int, out: Path) -> dict:
    """Train one case in ``budget`` and compare the steps made with the resolved guess."""
    method, lpc, backbone = case.split(":")
    sp = api.split(data, labels_per_class=int(lpc), seed=seed)
    kind = method_class(method).kind
    kw = {"val": sp.val, "budget": budget, "backbone": backbone, "seed": seed, "out": out}
    kw["precision"] = precision
    t0 = time.perf_counter()
    if kind == "self-supervised":
        res = api.pretrain(method, sp.unlabeled, labeled=sp.labeled, **kw)
    elif kind == "semi-supervised":
        res = api.train(method, sp.labeled, unlabeled=sp.unlabeled, **kw)
    else:
        res = api.train(method, sp.labeled, **kw)
    wall = time.perf_counter() - t0
    rows = json.loads((out / "resolved.json").read_text())["settings"]
    guess = next(r["value"] for r in rows if r["setting"] == "schedule")
    return {
        "case": case,
        "guessed_steps": guess,
        "made_steps": res.steps,
        "made_per_guessed": round(res.steps / guess, 2) if isinstance(guess, int) else None,
        "train_s": round(res.seconds, 1),
        "wall_s": round(wall, 1),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default="digits", help="data spec (default: digits)")
    ap.add_argument("--budget", default="60s", help="wall-clock budget per case")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (a study worker's)")
    ap.add_argument("--precision", default="auto", help="auto, bf16 or fp32")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--cases", nargs="*", default=CASES, help="method:labels_per_class:backbone")
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    data = api.load(a.data)
    precision = resolve_precision(a.precision, torch.device("cpu"))
    for case in a.cases:
        with tempfile.TemporaryDirectory() as tmp:
            row = one_case(data, case, a.budget, a.precision, a.seed, Path(tmp) / "run")
        row.update(data=a.data, budget=a.budget, threads=a.threads, precision=precision)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
