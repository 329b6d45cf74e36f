"""The self-supervised section of docs/results.md: each method's linear and kNN probes
against the random-init encoder and the supervised 250-label baseline."""

from __future__ import annotations

from typing import Any

from results_common import RESULTS, backbone_of, budget_seconds, fmt, load, machine_of, pct, table


def ssl_row(r: dict[str, Any], rand: dict[str, dict[str, Any]]) -> str:
    """One pretraining run as a row of the SSL table."""
    base = rand.get(backbone_of(r))
    gain = f"{100 * (r['linear_acc'] - base['linear_acc']):+.1f} points" if base else "-"
    opt = f"{r['optimizer']} ({r['lr']:g})" if r.get("optimizer") else "-"
    if r.get("batch_size"):  # recorded since 2026-12-02
        opt = f"batch {r['batch_size']}, {opt}"
    if r.get("grad_clip"):
        opt += f", grad norm <= {r['grad_clip']:g}"
    for k, v in (r.get("method_kwargs") or {}).items():
        if isinstance(v, bool):
            v = "on" if v else "off"
        elif isinstance(v, list):
            v = "-".join(str(d) for d in v)
        elif isinstance(v, int | float):
            v = f"{v:g}"  # strings (an augmentation policy) stay as written
        opt += f", {k} {v}"
    return (
        f"| {r['budget']} | {backbone_of(r)} | {fmt(machine_of(r))} | "
        f"{r['method']} | {opt} | {r['pretrain_steps']:,} | {pct(r['linear_acc'])} | "
        f"{fmt(r['linear_macro_f1'])} | {pct(r['knn_acc'])} | {fmt(r['knn_macro_f1'])} "
        f"| {gain} | {r.get('date', '?')} @ {r.get('commit', '?')} |"
    )


def split_runs(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The SSL rows by role: ``runs`` (latest completed run per budget, backbone, method and
    machine), ``failed``, ``rand`` (random-init encoder per backbone), ``variants`` and
    ``speed`` (probe timing)."""
    runs: dict[tuple, dict[str, Any]] = {}
    rand: dict[str, dict[str, Any]] = {}
    speed: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    for r in rows:
        if r.get("mode") == "probe-speed":
            speed.append(r)
        elif r.get("method") == "random-init":
            rand[backbone_of(r)] = r
        elif r.get("variant"):
            variants.append(r)
        elif r.get("method") and r.get("budget"):
            runs[(r["budget"], backbone_of(r), r["method"], machine_of(r))] = r
    return {
        "runs": {k: r for k, r in runs.items() if not r.get("error")},
        "failed": {k: r for k, r in runs.items() if r.get("error")},
        "rand": rand,
        "variants": [r for r in variants if not r.get("error")],
        "speed": speed,
    }


def supervised_baselines() -> dict[tuple, dict[str, Any]]:
    """The supervised 250-label baseline: the best CIFAR-10 run within 30 minutes per
    backbone and machine (budgets compare only on machines that train at the same speed)."""
    sup: dict[tuple, dict[str, Any]] = {}
    for r in load(RESULTS / "semi.jsonl") if (RESULTS / "semi.jsonl").exists() else []:
        if (
            r.get("data") == "cifar10"
            and r.get("method") == "supervised"
            and budget_seconds(r["budget"]) <= 1800
        ):
            key = (backbone_of(r), machine_of(r))
            best = sup.get(key)
            if best is None or r["test_acc"] > best["test_acc"]:
                sup[key] = r
    return sup


_HEADER = [
    "| budget | backbone | machine | method | batch, optimizer (lr), options | steps | "
    "linear acc | linear F1 | kNN acc | kNN F1 | linear vs random init | measured |",
    "|---|---|---|---|---|---|---|---|---|---|---|---|",
]


def render_ssl(rows: list[dict[str, Any]]) -> list[str]:
    """Each method's linear and kNN probe (latest run per method, budget and backbone)
    against the random-init encoder, the targets in words, and the probe's speed."""
    out: list[str] = []
    parts = split_runs(rows)
    runs, rand = parts["runs"], parts["rand"]
    if runs:
        out += [
            "Latest run of each method, budget, backbone and machine (linear: logistic "
            "regression on frozen features; kNN: cosine, k = 200; machine: the precision `auto` "
            "trained in and the processor, where recorded):",
            "",
            *_HEADER,
        ]
        ordered = sorted(
            runs.values(), key=lambda r: (r["budget"], r["backbone"], -(r["linear_acc"] or 0))
        )
        out += [ssl_row(r, rand) for r in ordered]
        out.append("")
    if parts["variants"]:
        out += [
            "Recipe variants (`bench_ssl.py --method-kwargs`, `--backbone-kwargs`, "
            "`--batch-size` or `--lr`: one method's settings changed for a comparison; not the "
            "recipes above):",
            "",
            *_HEADER,
            *(ssl_row(r, rand) for r in parts["variants"]),
            "",
        ]
    out += _against_random(runs, parts["failed"], rand)
    out += _best_per_machine(runs)
    out += [_probe_speed(r) for r in parts["speed"]]
    return [*out, "", "All recorded rows:", "", *table(rows)]


def _against_random(
    runs: dict[tuple, dict[str, Any]],
    failed: dict[tuple, dict[str, Any]],
    rand: dict[str, dict[str, Any]],
) -> list[str]:
    """How many runs beat the random-init encoder of their backbone; the failed runs."""
    out: list[str] = []
    for backbone, base in rand.items():
        out.append(
            f"- Random-init {backbone}: linear {pct(base['linear_acc'])}, kNN "
            f"{pct(base['knn_acc'])}."
        )
        mine = [r for r in runs.values() if backbone_of(r) == backbone]
        mine += [r for r in failed.values() if backbone_of(r) == backbone]
        if mine:
            acc = base["linear_acc"]
            above = sorted(r["method"] for r in mine if r.get("linear_acc", 0) > acc)
            below = sorted(r["method"] for r in mine if r.get("linear_acc", 0) <= acc)
            out.append(
                f"- Above the random-init linear probe: {len(above)} of {len(mine)} runs"
                + (f" (not: {', '.join(below)})" if below else "")
                + "."
            )
    for (budget, backbone, method, _), r in sorted(failed.items(), key=lambda kv: kv[0][:3]):
        opt = f", {r['optimizer']} lr {r['lr']:g}" if r.get("optimizer") else ""
        out.append(f"- {method} ({budget}, {backbone}{opt}) did not complete: {r['error']}")
    return out


def _best_per_machine(runs: dict[tuple, dict[str, Any]]) -> list[str]:
    """The best linear probe within 30 minutes per machine, against the supervised one."""
    out: list[str] = []
    sup = supervised_baselines()
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for r in runs.values():  # one line per machine: two hosts' budgets buy different work
        if budget_seconds(r["budget"]) <= 1800:
            machine = machine_of(r) or "precision not recorded"
            by_machine.setdefault(machine, []).append(r)
    for machine, budget_ok in sorted(by_machine.items()):
        best = max(budget_ok, key=lambda r: r["linear_acc"])
        line = (
            f"- Best linear probe within 30 minutes ({machine}): {best['method']} "
            f"({best['budget']}, {backbone_of(best)}) {pct(best['linear_acc'])} (target 60%: "
            f"{'met' if best['linear_acc'] >= 0.6 else 'not met'})"
        )
        s_row = sup.get((backbone_of(best), machine_of(best)))
        if s_row:
            gain = 100 * (best["linear_acc"] - s_row["test_acc"])
            line += (
                f"; the supervised 250-label baseline ({s_row['budget']}, same backbone "
                "and machine) "
                f"{pct(s_row['test_acc'])}: {gain:+.1f} points (target +15: "
                f"{'met' if gain >= 15 else 'not met'})"
            )
        out.append(line + ".")
    return out


def _probe_speed(r: dict[str, Any]) -> str:
    """One timing of feature extraction + linear probe against its target."""
    return (
        f"- Feature extraction + linear probe for {r['images']:,} images "
        f"({r['backbone']}, {r['precision']}): {r['total_s']:.1f} s "
        f"({r['extract_s']:.1f} s extraction at {r['extract_img_per_s']:,.0f} images/s, "
        f"{r['probe_fit_s']:.1f} s fit; target < {r['target_s']} s: "
        f"{'met' if r['total_s'] < r['target_s'] else 'not met'})."
    )
