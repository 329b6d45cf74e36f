"""Supervised accuracy at a fixed budget on real data (what the README's figures come from).

Scenarios (each prints one JSON line with test accuracy, macro-F1, steps, seconds):
  cifar-full    CIFAR-10, all 20,000 training images labeled, target >= 0.80 in 15 min
  cifar-250     CIFAR-10, 25 labels per class: the baseline label-efficient methods must beat
  tiny          the Tiny-ImageNet subset through the folder source, end to end
  precision     the same ConvNet CIFAR run (1500 steps) in fp32 and bf16: accuracy holds?

    python benchmarks/bench_supervised.py cifar-full --budget 12m
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path
from typing import Any

import torch

from fewlabels.train.run import RunConfig, run_training

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"

ADAMW = {"optimizer": "adamw", "lr": 0.002, "weight_decay": 0.05}

SCENARIOS: dict[str, dict[str, Any]] = {
    "cifar-full": {
        "data": f"cifar10:{DATA / 'cifar10'}",
        # fp32 CPUs (no native bf16): fastnet runs ~130 img/s here, fastnet-s ~470
        "backbone": "fastnet-s",
        "val": "none",
        "tta": True,
        "method_kwargs": {"label_smoothing": 0.2},
        "train": {"budget": "12m", "batch_size": 512, **ADAMW, "evals": 10},
    },
    "cifar-250": {
        "data": f"cifar10:{DATA / 'cifar10'}",
        "labels_per_class": 25,
        "backbone": "fastnet",
        "val": "train:0.1",
        "tta": True,
        "method_kwargs": {"label_smoothing": 0.2},
        "train": {"budget": "10m", "batch_size": 128, **ADAMW, "lr": 0.001, "evals": 10},
    },
    # 200 classes of 45 labeled 64 px images each; read at 32 px (size=32) so a CPU
    # minute buys ~3 epochs instead of a third of one (fastnet at 64 px: ~30 img/s here)
    "tiny": {
        "data": f"folder:{DATA / 'tiny-imagenet-200'},size=32",
        "backbone": "fastnet-s",
        "val": "train:0.1",
        "tta": True,
        "train": {"budget": "4m", "batch_size": 256, **ADAMW, "evals": 4},
    },
    # bf16 against fp32 at the same number of steps (ConvNet: fp32 is affordable)
    "precision": {
        "data": f"cifar10:{DATA / 'cifar10'}",
        "backbone": "convnet",
        "val": "none",
        "train": {"budget": "1500steps", "batch_size": 512, "lr": 0.05, "evals": 3},
    },
}


def run(name: str, cfg: dict[str, Any], out: Path) -> dict[str, Any]:
    # A benchmark measures a fresh run: a run folder left by an earlier one would resume.
    shutil.rmtree(out / name, ignore_errors=True)
    rc = RunConfig(**{**cfg, "out": str(out / name)})
    res = run_training(rc, progress=False, log=lambda s: None)
    last = res.curve[-1] if res.curve else {}
    return {
        "scenario": name,
        "budget": str(rc.train.budget),
        "backbone": rc.backbone,
        "batch_size": rc.train.batch_size,
        "lr": rc.train.lr,
        "labeled": json.loads((out / name / "metrics.json").read_text())["labeled"],
        "test_acc": round(res.metrics.accuracy, 4) if res.metrics else None,
        "test_macro_f1": round(res.metrics.macro_f1, 4) if res.metrics else None,
        "steps": res.steps,
        "train_s": round(res.train_seconds, 1),
        "wall_s": round(res.wall_seconds, 1),
        "last_val_acc": last.get("val_acc"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("scenario", choices=list(SCENARIOS))
    ap.add_argument("--budget", help="override the scenario's budget")
    ap.add_argument("--backbone", help="override the scenario's backbone")
    ap.add_argument("--batch-size", type=int, help="override the scenario's batch size")
    ap.add_argument("--lr", type=float, help="override the scenario's learning rate")
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    cfg = json.loads(json.dumps(SCENARIOS[args.scenario]))
    cfg["train"]["seed"] = args.seed
    if args.budget:
        cfg["train"]["budget"] = args.budget
    if args.backbone:
        cfg["backbone"] = args.backbone
    if args.batch_size:
        cfg["train"]["batch_size"] = args.batch_size
    if args.lr:
        cfg["train"]["lr"] = args.lr
    if args.scenario != "precision":
        print(json.dumps(run(args.scenario, cfg, args.out)), flush=True)
        return
    for prec in ("fp32", "bf16"):
        c = json.loads(json.dumps(cfg))
        c["train"]["precision"] = prec
        print(json.dumps({**run(f"precision-{prec}", c, args.out), "precision": prec}), flush=True)


if __name__ == "__main__":
    main()
