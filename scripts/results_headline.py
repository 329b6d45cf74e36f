"""The headline table, shown both in README.md and at the top of docs/results.md: per
machine, the best self-supervised pipeline + linear probe and the best semi-supervised run on
CIFAR-10 with 250 labels at 30 minutes, each against supervised training on the same labels,
backbone and machine; and the best semi-supervised method on digits."""

from __future__ import annotations

import re
from statistics import mean
from typing import Any

from results_common import RESULTS, backbone_of, budget_seconds, load, machine_of, pct
from results_ssl import split_runs, supervised_baselines

HEADER = [
    "| task | machine | backbone | pipeline | test accuracy | supervised alone | difference |",
    "|---|---|---|---|---|---|---|",
]

NOTE = (
    "Machine: the processor, and the precision `precision: auto` picks there (bf16 on a CPU "
    "with native bf16 instructions, AVX512-BF16 or AMX; fp32 otherwise; images of 16 px or "
    "less, such as digits, train in fp32 on every machine). A CPU "
    "with native bf16 makes about twice the steps of one without in the same minutes, so a "
    "budget compares only within one machine. Supervised alone: the same labels, backbone and "
    "machine, trained for the same wall-clock budget. Several runs of the same settings are "
    "shown as their mean."
)

# what makes two SSL rows the same experiment (besides method, budget, backbone, machine)
_SETTINGS = ("batch_size", "optimizer", "lr", "grad_clip", "method_kwargs")


def machine_name(r: dict[str, Any]) -> str:
    """A row's processor (or GPU) and precision, e.g. ``Intel Xeon, bf16``."""
    hw = r.get("gpu") or r.get("cpu") or "?"
    hw = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b", "", hw)).strip()
    precision = r.get("auto_precision") or r.get("precision")
    return f"{hw}, {precision}" if precision else f"{hw}, precision not recorded"


def _same(r: dict[str, Any], s: dict[str, Any]) -> bool:
    keys = ("method", "budget")
    return (
        all(r.get(k) == s.get(k) for k in keys + _SETTINGS)
        and backbone_of(r) == backbone_of(s)
        and machine_of(r) == machine_of(s)
        and not s.get("error")
    )


def _runs(values: list[float]) -> str:
    if len(values) == 1:
        return pct(values[0])
    return (
        f"{pct(mean(values))} (mean of {len(values)} runs, "
        f"{pct(min(values))[:-1]}-{pct(max(values))})"
    )


def _ssl_rows(ssl: list[dict[str, Any]]) -> list[str]:
    """Per machine: the best 30-minute pretraining + linear probe against supervised."""
    sup = supervised_baselines()
    best: dict[str, dict[str, Any]] = {}
    for r in split_runs(ssl)["runs"].values():
        m = machine_of(r)
        if m and r["budget"] == "30m" and r["linear_acc"] > best.get(m, {}).get("linear_acc", 0):
            best[m] = r
    out = []
    for m, r in sorted(best.items(), key=lambda kv: -kv[1]["linear_acc"]):
        s = sup.get((backbone_of(r), m))
        if s is None or s["budget"] != "30m":
            continue
        accs = [x["linear_acc"] for x in ssl if _same(r, x)]
        out.append(
            f"| CIFAR-10, 250 labels, 30 min | {machine_name(r)} | {backbone_of(r)} | "
            f"{r['method']} pretraining without labels, then a linear probe | "
            f"{_runs(accs)} | "
            f"{pct(s['test_acc'])} | {100 * (mean(accs) - s['test_acc']):+.1f} points |"
        )
    return out


def _total_s(r: dict[str, Any]) -> float:
    return budget_seconds(r["budget"]) + (r.get("init_pretrain_s") or 0)


def _pipeline(r: dict[str, Any]) -> str:
    if not r.get("init"):
        return f"{r['method']} from scratch for {r['budget']}"
    return (
        f"{r.get('init_method', '?')} pretraining for {r['init_pretrain_s'] / 60:.0f}m, then "
        f"{r['method']} for {r['budget']}"
    )


def _semi_rows(semi: list[dict[str, Any]]) -> list[str]:
    """Per machine: the best semi-supervised run at 30 minutes of compute in all (pretraining
    included), and the best from scratch when that one started from an encoder."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in semi:
        if r.get("data") == "cifar10" and "method" in r and machine_of(r):
            key = (r["budget"], backbone_of(r), r["method"], r.get("init"), r.get("mu"))
            latest[(*key, machine_of(r))] = r
    rows = list(latest.values())
    sup = {
        (backbone_of(r), machine_of(r)): r
        for r in rows
        if r["method"] == "supervised" and r["budget"] == "30m"
    }
    out = []
    for m in sorted({machine_of(r) for r in rows}):
        cands = [
            r
            for r in rows
            if machine_of(r) == m
            and r["method"] != "supervised"
            and (r.get("init_pretrain_s") or not r.get("init"))
            and abs(_total_s(r) - 1800) <= 36
            and (backbone_of(r), m) in sup
        ]
        if not cands:
            continue
        best = max(cands, key=lambda r: r["test_acc"])
        shown = [best]
        scratch = [r for r in cands if not r.get("init")]
        if best.get("init") and scratch:
            shown.append(max(scratch, key=lambda r: r["test_acc"]))
        for r in shown:
            s = sup[(backbone_of(r), m)]
            out.append(
                f"| CIFAR-10, 250 labels, 30 min in all | {machine_name(r)} | {backbone_of(r)} | "
                f"{_pipeline(r)}, the other training images unlabeled | {pct(r['test_acc'])} | "
                f"{pct(s['test_acc'])} | {100 * (r['test_acc'] - s['test_acc']):+.1f} points |"
            )
    return out


def _defaults_rows(rows: list[dict[str, Any]]) -> list[str]:
    """Per machine and pipeline: bench_pipeline.py's runs with every setting resolved (mean
    over seeds) against supervised at 30 minutes on the same backbone and machine."""
    sup = supervised_baselines()
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        total = (r.get("pretrain_s") or 0) + (r.get("train_s") or 0)
        if r.get("data") == "cifar10" and machine_of(r) and abs(total - 1800) <= 36:
            cells.setdefault((r["pipeline"], backbone_of(r), machine_of(r)), []).append(r)
    out = []
    for (pipeline, backbone, m), runs in sorted(cells.items()):
        s = sup.get((backbone, m))
        if s is None or s["budget"] != "30m":
            continue
        accs = [r["test_acc"] for r in runs]
        out.append(
            f"| CIFAR-10, 250 labels, 30 min in all, defaults only | {machine_name(runs[0])} | "
            f"{backbone} | {pipeline} (`fewlabels pretrain`, then `fewlabels train --init`; every "
            f"other setting resolved), the other training images unlabeled | {_runs(accs)} | "
            f"{pct(s['test_acc'])} | {100 * (mean(accs) - s['test_acc']):+.1f} points |"
        )
    return out


def rows_of(name: str) -> list[dict[str, Any]]:
    """The recorded rows of one benchmark (none if it was never recorded)."""
    path = RESULTS / f"{name}.jsonl"
    return load(path) if path.exists() else []


def _digits_rows(semi: list[dict[str, Any]]) -> list[str]:
    """The best semi-supervised method on digits (mean over seeds) against supervised."""
    latest: dict[tuple, dict[str, Any]] = {}
    for r in semi:
        if r.get("data") == "digits" and "method" in r:
            latest[(r["budget"], r["backbone"], r["method"], r.get("seed"))] = r
    cells: dict[tuple, list[dict[str, Any]]] = {}
    for (budget, backbone, method, seed), r in latest.items():
        seeded = any(k[:3] == (budget, backbone, method) and k[3] is not None for k in latest)
        if seed is not None or not seeded:  # a seeded rerun supersedes the unseeded one
            cells.setdefault((budget, backbone, method), []).append(r)
    out = []
    for (budget, backbone, method), sup in cells.items():
        if method != "supervised":
            continue
        others = [
            (k, v) for k, v in cells.items() if k[:2] == (budget, backbone) and k[2] != method
        ]
        if not others:
            continue
        (_, _, best_method), runs = max(others, key=lambda kv: mean(r["test_acc"] for r in kv[1]))
        accs = [r["test_acc"] for r in runs]
        s_acc = mean(r["test_acc"] for r in sup)
        labels = runs[0].get("labels_per_class", "?")
        out.append(
            f"| digits, {labels} labels per class, {budget} | {machine_name(runs[0])} | "
            f"{backbone} | {best_method}, the other training images unlabeled | "
            f"{_runs(accs)} | {pct(s_acc)} | {100 * (mean(accs) - s_acc):+.1f} points |"
        )
    return out


def render_headline() -> list[str]:
    """The headline table and its note, as Markdown lines."""
    ssl, semi = rows_of("ssl"), rows_of("semi")
    body = [*_defaults_rows(rows_of("pipeline")), *_ssl_rows(ssl), *_semi_rows(semi)]
    body += _digits_rows(semi)
    return [*HEADER, *body, "", NOTE]
