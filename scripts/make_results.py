"""Rebuild ``docs/results.md`` from the measurements in ``benchmarks/results/*.jsonl``.

Nothing in the page is typed by hand: each section is one benchmark's recorded JSON lines
(written by ``scripts/record.py``), shown as a table with the machine they ran on. The
section order, titles and the targets they are read against are listed in ``SECTIONS``;
a results file not listed there still gets a section of its own.

    python scripts/make_results.py            # writes docs/results.md
    python scripts/make_results.py --check    # exit 1 if docs/results.md is out of date
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
OUT = ROOT / "docs" / "results.md"

META = ("bench", "cpu", "cores", "gpu", "torch", "commit", "date")

# bench name -> (title, what it is read against, how to reproduce)
SECTIONS: dict[str, tuple[str, str, str]] = {
    "train_step": (
        "Training-step throughput (supervised)",
        "full loop step (index sampling, uint8 gather, batched weak augmentation, method, "
        "optimiser) as a fraction of the bare backbone step in the same precision; "
        "target ratio >= 0.9",
        "python benchmarks/bench_train_step.py --backbones convnet resnet18",
    ),
    "supervised": (
        "Supervised accuracy at a wall-clock budget",
        "CIFAR-10 (20,000 training images, 10,000 test): cifar-full >= 0.80 test accuracy "
        "within 15 minutes; cifar-250 is the 250-label baseline that label-efficient methods "
        "must beat; tiny = the Tiny-ImageNet subset end to end through the folder source",
        "python benchmarks/bench_supervised.py SCENARIO",
    ),
    "ssl_step": (
        "Pretraining-step throughput",
        "full two-view step as a fraction of the bare backbone's two-view rate; target >= 0.9",
        "python benchmarks/bench_ssl_step.py",
    ),
    "ssl": (
        "Self-supervised pretraining, then probes with 250 labels",
        "CIFAR-10, pretraining on the 20,000 training images without labels, linear and kNN "
        "probes on 25 labels per class, 10,000 test images",
        "python benchmarks/bench_ssl.py --budget 10m",
    ),
    "semi": (
        "Semi-supervised training with 250 labels",
        "CIFAR-10, 25 labels per class, the other training images unlabeled",
        "python benchmarks/bench_semi.py --budget 10m",
    ),
}


def load(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v).replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> list[str]:
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in META and k not in cols]
    cols += ["date", "commit"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def machines(rows: list[dict[str, Any]]) -> str:
    seen = []
    for r in rows:
        m = f"{r.get('cpu', '?')}, {r.get('cores', '?')} cores" + (
            f", GPU {r['gpu']}" if r.get("gpu") else ""
        )
        m += f", torch {r.get('torch', '?')}"
        if m not in seen:
            seen.append(m)
    return "; ".join(seen)


def render() -> str:
    files = {p.stem: p for p in sorted(RESULTS.glob("*.jsonl"))}
    order = [k for k in SECTIONS if k in files] + [k for k in files if k not in SECTIONS]
    out = [
        "# Measured results",
        "",
        "Made by `scripts/make_results.py` from `benchmarks/results/*.jsonl`; every row is a "
        "measurement recorded by `scripts/record.py`. Timings on a shared 2-core machine are "
        "noisy: compare ratios measured in one run, not absolute times across runs.",
        "",
    ]
    for name in order:
        rows = load(files[name])
        title, target, how = SECTIONS.get(name, (name, "", ""))
        out += [f"## {title}", ""]
        if target:
            out += [f"Read against: {target}.", ""]
        if how:
            out += [f"Reproduce: `{how}`.", ""]
        out += [f"Measured on: {machines(rows)}.", ""]
        out += [*table(rows), ""]
    return "\n".join(out)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="fail if docs/results.md is stale")
    args = ap.parse_args()
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print("docs/results.md is out of date: run python scripts/make_results.py")
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
