"""The semi-supervised section of docs/results.md: CIFAR-10 with 250 labels per machine,
digits with 5 labels per class, and the FixMatch step throughput."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from results_common import backbone_of, budget_seconds, fmt, groups, machine_of, pct, secs, table


def render_semi(rows: list[dict[str, Any]]) -> list[str]:
    """CIFAR-10 250 labels: the latest run per method, init and budget, with the best
    semi-supervised method against supervised at each budget; digits: the 60 s runs; the
    FixMatch step throughput; then every recorded row."""
    out = [*_cifar(rows), *_digits(rows), *_step_speed(rows)]
    return [*out, "All recorded rows:", "", *table(rows)]


def _cifar(rows: list[dict[str, Any]]) -> list[str]:
    """The CIFAR-10 table, then the best method against supervised per budget and machine."""
    out: list[str] = []
    cifar: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("data") == "cifar10" and "method" in r:
            key = (r["budget"], backbone_of(r), r["method"], r.get("init"), r.get("mu"))
            key += (machine_of(r),)  # two machines' runs are separate cells
            cifar[key] = r  # the latest measurement of each cell
    if cifar:
        out += [
            "CIFAR-10, 250 labels, the other training images unlabeled (latest run of each "
            "cell; time to 40/50% = first validation evaluation at or above it; machine = the "
            "precision `auto` trained in and the processor, where recorded: a CPU with native bf16 "
            "runs about twice the steps of one without, so budgets compare only within one "
            "machine):",
            "",
            "| budget | backbone | machine | method | init | mu | test acc | macro-F1 | "
            "time to 40% | time to 50% | steps | measured |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        ordered = sorted(
            cifar.values(), key=lambda r: (r["budget"] != "10m", r["budget"], -r["test_acc"])
        )
        for r in ordered:
            method = r["method"]
            if r.get("pseudo_labels"):
                kept = ", ".join(
                    f"{p['kept']:,} kept, {pct(p['pseudo_label_accuracy'])} right"
                    for p in r["pseudo_labels"]
                )
                method += f" ({r['rounds']} round(s), threshold {r['threshold']:g}: {kept})"
            init = Path(r["init"]).name + " encoder" if r.get("init") else "-"
            out.append(
                f"| {r['budget']} | {backbone_of(r)} | {fmt(machine_of(r))} | {method} | "
                f"{init} | {fmt(r.get('mu'))} | "
                f"{pct(r['test_acc'])} | {fmt(r['test_macro_f1'])} | "
                f"{secs(r.get('time_to_40'))} | {secs(r.get('time_to_50'))} | "
                f"{r['steps']:,} | {r.get('date', '?')} @ {r.get('commit', '?')} |"
            )
        out.append("")
        out += _verdicts(ordered)
        out += _same_compute(list(cifar.values()))
        out.append("")
    return out


def _verdicts(ordered: list[dict[str, Any]]) -> list[str]:
    """Per budget, backbone and machine: the best method against the supervised run."""
    out: list[str] = []
    for (budget, backbone, machine), group in groups(ordered).items():
        sup = [r for r in group if r["method"] == "supervised"]
        semi = [r for r in group if r["method"] != "supervised"]
        if not sup or not semi:
            continue
        best = max(semi, key=lambda r: r["test_acc"])
        gain = 100 * (best["test_acc"] - sup[-1]["test_acc"])
        init = ""
        if best.get("init"):
            cost = best.get("init_pretrain_s")
            spent = f"{cost / 60:.0f} minutes of" if cost else "its"
            init = f" from the {Path(best['init']).name} encoder ({spent} pretraining not counted)"
        where = f"{budget}, {backbone}" + (f", {machine}" if machine else "")
        line = (
            f"- {where}: best {best['method']}{init} "
            f"{pct(best['test_acc'])} vs supervised {pct(sup[-1]['test_acc'])}: "
            f"{gain:+.1f} points"
        )
        if budget == "30m":
            line += f" (target +20: {'met' if gain >= 20 else 'not met'})"
        scratch = [r for r in semi if not r.get("init")]
        if best.get("init") and scratch:
            b0 = max(scratch, key=lambda r: r["test_acc"])
            line += (
                f"; from scratch: {b0['method']} {pct(b0['test_acc'])}, "
                f"{100 * (b0['test_acc'] - sup[-1]['test_acc']):+.1f} points"
            )
        out.append(line + ".")
    return out


def _digits(rows: list[dict[str, Any]]) -> list[str]:
    """The digits runs, latest per method, budget, backbone and seed."""
    out: list[str] = []
    digits: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("data") == "digits" and "method" in r:
            digits[(r["method"], r["budget"], r["backbone"], r.get("seed"))] = r
    if digits:
        out += [
            "digits, 5 labels per class (latest run of each cell; target: the best >= 95%):",
            "",
            "| budget | backbone | method | seed | test acc | macro-F1 | steps | measured |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for r in sorted(digits.values(), key=lambda r: (r["budget"], -r["test_acc"])):
            out.append(
                f"| {r['budget']} | {r['backbone']} | {r['method']} | {fmt(r.get('seed'))} | "
                f"{pct(r['test_acc'])} | {fmt(r['test_macro_f1'])} | {r['steps']:,} | "
                f"{r.get('date', '?')} @ {r.get('commit', '?')} |"
            )
        out.append("")
    return out


def _step_speed(rows: list[dict[str, Any]]) -> list[str]:
    """FixMatch's loop step against the bare backbone step."""
    out: list[str] = []
    speed = [r for r in rows if r.get("mode") == "step-speed"]
    if speed:
        out += [
            "FixMatch step throughput: the full loop step (B labeled + 2 x mu B unlabeled views: "
            "sampling, batched weak and strong augmentation, the method, the optimiser, the EMA "
            "when one is kept) against bare backbone steps with the same optimiser on the same "
            "number of images (target ratio >= 0.9; rows without an optimiser: SGD in both, no "
            "EMA):",
            "",
            "| backbone | labeled batch | mu | images/step | precision | optimizer | EMA | "
            "bare img/s | FixMatch img/s | ratio | measured |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for r in speed:
            out.append(
                f"| {r['backbone']} | {r['labeled_batch']} | {fmt(r['mu'])} | "
                f"{r['images_per_step']} | {r['precision']} | {r.get('optimizer', 'sgd')} | "
                f"{fmt(r.get('ema'))} | {fmt(r['bare_img_s'])} | "
                f"{fmt(r['fixmatch_img_s'])} | {fmt(r['ratio'])} "
                f"({'met' if r['ratio'] >= r['target'] else 'not met'}) | "
                f"{r.get('date', '?')} @ {r.get('commit', '?')} |"
            )
        out.append("")
    return out


def _same_compute(rows: list[dict[str, Any]]) -> list[str]:
    """Runs started from a pretrained encoder whose pretraining time is recorded, against
    the supervised run whose budget equals pretraining + training (within 2%)."""
    out = []
    sup = {
        (backbone_of(r), machine_of(r), budget_seconds(r["budget"])): r
        for r in rows
        if r["method"] == "supervised"
    }
    for r in rows:
        if r["method"] == "supervised" or not r.get("init_pretrain_s"):
            continue
        total = budget_seconds(r["budget"]) + r["init_pretrain_s"]
        match = [
            v
            for (b, m, t), v in sup.items()
            if (b, m) == (backbone_of(r), machine_of(r)) and abs(t - total) <= 0.02 * t
        ]
        if not match:
            continue
        s = match[0]
        gain = 100 * (r["test_acc"] - s["test_acc"])
        out.append(
            f"- Same total compute ({s['budget']}): {r['method']} for {r['budget']} from a "
            f"{r['init_pretrain_s'] / 60:.0f}-minute {r.get('init_method', '?')} encoder "
            f"{pct(r['test_acc'])} vs supervised {pct(s['test_acc'])}: {gain:+.1f} points"
            + (
                f" (target +20: {'met' if gain >= 20 else 'not met'})"
                if s["budget"] == "30m"
                else ""
            )
            + "."
        )
    return out
