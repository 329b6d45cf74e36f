"""A whole label-efficient pipeline with nothing but data, labels, budget and method given,
the way a user runs it: ``fewlabels pretrain`` (self-supervised, every training image) for
--ssl-budget, then ``fewlabels train`` of a semi-supervised method from that encoder
(``--init``) for --semi-budget. Every other setting is resolved by the rules. One JSON line:
test accuracy and macro-F1 of the final model, the steps and seconds of both stages, and the
settings the rules resolved (backbone, batch, mu, lr, EMA), against the tuned recipe it
restates (bench_semi.py --init with --mu 3, --tta and a 10% validation split).

    python benchmarks/bench_pipeline.py                       # VICReg 10m, then FixMatch 20m
    python benchmarks/bench_pipeline.py --ssl-budget 5m --semi-budget 25m
    python benchmarks/bench_pipeline.py --reuse               # finished stages are read back
    python benchmarks/bench_pipeline.py --precision fp32      # fp32 on a CPU with bf16

--reuse reads a stage's metrics from its folder when that folder holds a finished run made
by the same command (its config.json has the same data, labels, method, budget and seed);
without it each stage starts fresh.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
FEWLABELS = [str(Path(sys.executable).with_name("fewlabels"))]
# the resolved values the row reports, by resolved.json's setting name
SHOWN = ("backbone", "train.batch_size", "train.unlabeled_batch_ratio", "train.lr", "train.ema")


def stage_args(a: argparse.Namespace, method: str, budget: str, out: Path) -> list[str]:
    """The CLI flags of one stage: data, labels, method, budget, seed and folder only (and
    the precision, where --precision names one)."""
    return [
        "--data", a.data, "--labels-per-class", str(a.labels_per_class), "--method", method,
        "--budget", budget, "--seed", str(a.seed), "--out", str(out), "--no-progress",
        *(["--precision", a.precision] if a.precision != "auto" else []),
    ]  # fmt: skip


def finished(out: Path, method: str, budget: str, a: argparse.Namespace) -> bool:
    """Whether ``out`` holds a finished run of this stage's command."""
    try:
        cfg = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return False
    same = (
        cfg.get("data") == a.data
        and cfg.get("labels_per_class") == a.labels_per_class
        and cfg.get("method") == method
        and cfg.get("train", {}).get("budget") == budget
        and cfg.get("train", {}).get("seed") == a.seed
        and cfg.get("train", {}).get("precision") == a.precision
    )
    return same and (out / "metrics.json").is_file()


def run_stage(
    a: argparse.Namespace, command: str, method: str, budget: str, out: Path, *extra: str
) -> dict[str, Any]:
    """Run (or with --reuse read back) one stage; its metrics and resolved settings."""
    if not (a.reuse and finished(out, method, budget, a)):
        shutil.rmtree(out, ignore_errors=True)
        cmd = [*FEWLABELS, command, *stage_args(a, method, budget, out), *extra]
        print("$ fewlabels", " ".join(cmd[1:]), file=sys.stderr)
        subprocess.run(cmd, check=True, cwd=ROOT, stdout=sys.stderr)
    metrics = json.loads((out / "metrics.json").read_text())
    rows = json.loads((out / "resolved.json").read_text())["settings"]
    resolved = {r["setting"]: r["value"] for r in rows if r["setting"] in SHOWN}
    trained = json.loads((out / "provenance.json").read_text()).get("precision")
    return {"metrics": metrics, "resolved": resolved, "precision": trained}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", default=f"cifar10:{DATA / 'cifar10'}")
    ap.add_argument("--labels-per-class", type=int, default=25)
    ap.add_argument("--ssl", default="vicreg")
    ap.add_argument("--ssl-budget", default="10m")
    ap.add_argument("--semi", default="fixmatch")
    ap.add_argument("--semi-budget", default="20m")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-pipeline")
    ap.add_argument("--reuse", action="store_true", help="read back finished stages")
    ap.add_argument(
        "--precision",
        default="auto",
        choices=["auto", "bf16", "fp32"],
        help="both stages' precision (default: what auto picks on this machine)",
    )
    a = ap.parse_args()
    pre_dir, semi_dir = a.out / a.ssl, a.out / a.semi
    pre = run_stage(a, "pretrain", a.ssl, a.ssl_budget, pre_dir)
    semi = run_stage(a, "train", a.semi, a.semi_budget, semi_dir, "--init", str(pre_dir))
    m, pm = semi["metrics"], pre["metrics"]
    row = {
        "pipeline": f"{a.ssl} {a.ssl_budget} then {a.semi} {a.semi_budget}",
        "data": a.data.split(":", 1)[0],
        "labels_per_class": a.labels_per_class,
        "seed": a.seed,
        "defaults": True,
        "precision": semi["precision"],  # what both stages trained in
        "backbone": semi["resolved"].get("backbone"),
        "ssl_resolved": pre["resolved"],
        "semi_resolved": semi["resolved"],
        "pretrain_steps": pm.get("steps"),
        "pretrain_s": pm.get("train_seconds"),
        "pretrain_probe_acc": pm.get("accuracy"),  # linear probe of the encoder, the labels
        "steps": m.get("steps"),
        "train_s": m.get("train_seconds"),
        "test_acc": m.get("accuracy"),
        "test_macro_f1": m.get("macro_f1"),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
