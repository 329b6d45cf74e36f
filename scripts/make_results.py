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
import re
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
        "python benchmarks/bench_ssl_step.py --backbone fastnet-s",
    ),
    "malloc": (
        "Pretraining step with and without freed memory kept mapped",
        "loop step time, page faults and kernel time per step in fresh processes, glibc's "
        "malloc as it comes (keep_freed false: FEWLABELS_KEEP_FREED_MEMORY=0) against "
        "core/process.py's settings (true), alternating",
        "python benchmarks/bench_malloc.py --methods rotnet vicreg simclr --processes 2",
    ),
    "ssl": (
        "Self-supervised pretraining, then probes with 250 labels",
        "CIFAR-10, pretraining on the 20,000 training images without labels, linear and kNN "
        "probes on 25 labels per class, 10,000 test images; targets: every method above a "
        "random-init encoder, the best linear probe >= 0.60 within 30 minutes of pretraining "
        "and >= 15 points above the supervised 250-label baseline",
        "python benchmarks/bench_ssl.py --backbone fastnet-s --budget 10m (--random-init "
        "--no-pretrain for the baseline, --probe-speed for the timing)",
    ),
    "semi": (
        "Semi-supervised training against supervised",
        "CIFAR-10 with 25 labels per class (the other training images unlabeled), 10 minutes "
        "per method (target: the best method >= 20 points above supervised at 30 minutes); "
        "digits with 5 labels per class, 60 s per method, target >= 0.95; FixMatch step "
        "throughput >= 0.9 of the bare backbone's",
        "python benchmarks/bench_semi.py --backbone fastnet-s --mu 3 --budget 10m (add "
        "--init RUN for the self-supervised init); python benchmarks/bench_semi.py --digits; "
        "python benchmarks/bench_semi.py --step-speed --backbone fastnet-s --mu 3",
    ),
    "data": (
        "Data loading",
        "first (decode) and second (cached) load; target: cached CIFAR-10 under 2 s",
        "python benchmarks/bench_data.py",
    ),
    "study": (
        "The demo study with 1 and 2 workers",
        "examples/digits.yaml end to end: `make demo` (2 workers) within 5 minutes; 2 workers "
        "at most 0.65 of the time of 1; semi- or self-supervised above supervised at 2 labels "
        "per class",
        "python benchmarks/bench_study.py",
    ),
    "select": (
        "Which images to label: selection strategies at 10 and 40 labels",
        "CIFAR-10, a strategy picks 10 or 40 of the 20,000 training images (labels in all), "
        "linear probe on their SimCLR features, 10,000 test images, mean over 3 seeds; "
        "target: TypiClust (or the best representative strategy) >= 10 points above random",
        "python benchmarks/bench_select.py",
    ),
    "generate": (
        "Generated images: GAN sample quality and their effect on pretraining",
        "CIFAR-10, a DiffAugment GAN trained on the 20,000 training images for a "
        "wall-clock budget; Frechet distance (lower is better) and k=3 precision/recall of "
        "10,000 samples against the 10,000 test images in an encoder's feature space, "
        "beside 10,000 real training images (the floor) and per-pixel Gaussian noise; "
        "when measured, SimCLR pretraining with 0, 0.5x and 1x generated images added to the "
        "real pool at the same compute, linear probe on 25 labels per class, one seed",
        "python benchmarks/bench_generate.py --gan-budget 12m --encoder "
        "supervised-fastnet=runs/bench/cifar-full --synthetic",
    ),
    "kill": (
        "Resuming a study after SIGKILLs",
        "a 10-run digits study killed at 20 random moments and resumed after each kill, "
        "against the same study uninterrupted; target: 20 clean resumes, an identical "
        "results table, 0 duplicate and 0 lost runs",
        "python benchmarks/bench_kill.py --kills 20",
    ),
    "cache": (
        "Data bigger than memory: the decode cache of 100,000 JPEGs",
        "a folder of 100,000 generated 96x96 JPEGs; building the cache (one streaming pass, "
        "fresh process and cache folder) must keep peak resident memory under 1.5 GiB; then "
        "a small backbone trains with the images in memory and reading each batch from the "
        "cache file (--no-data-in-memory), img/s after 20 warm-up steps",
        "python benchmarks/bench_cache.py",
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


def render_select(rows: list[dict[str, Any]]) -> list[str]:
    """Test accuracy per strategy (rows) and budget (columns), then the verdicts."""
    sel = [r for r in rows if r.get("mode") == "select"]
    last: dict[tuple, dict[str, Any]] = {}

    def feats_of(r: dict[str, Any]) -> str:
        enc = r.get("encoder")
        return f"{r['features']} ({enc})" if enc and enc != "-" else r["features"]

    for r in sel:  # the latest measurement of each cell
        last[(feats_of(r), r["strategy"], r["budget"])] = r
    budgets = sorted({k[2] for k in last})
    out = ["| features | strategy | " + " | ".join(f"{b} labels" for b in budgets) + " |"]
    out.append("|---|---|" + "---|" * len(budgets))
    for feats, strat in dict.fromkeys((k[0], k[1]) for k in last):
        cells = []
        for b in budgets:
            r = last.get((feats, strat, b))
            cells.append(
                f"{100 * r['test_acc']:.1f} ± {100 * r['std']:.1f} "
                f"({r['classes_covered']:g} classes)"
                if r
                else "-"
            )
        out.append(f"| {feats} | {strat} | " + " | ".join(cells) + " |")
    summary: dict[tuple, dict[str, Any]] = {}
    # a summary line follows its select lines: name the encoder they used
    enc: dict[tuple, str] = {}
    for r in rows:
        if r.get("mode") == "select":
            enc[(r["features"], r["budget"])] = feats_of(r)
        elif r.get("mode") == "summary":
            r = {**r, "features": enc.get((r["features"], r["budget"]), r["features"])}
            summary[(r["features"], r["budget"])] = r
    out.append("")
    for (feats, b), r in summary.items():
        # the target: TypiClust or the best representative strategy >= target points over
        # random (rows before best_gain_points judged TypiClust alone: judged again here)
        best_gain = 100 * (r["best_acc"] - r["random_acc"])
        met = max(r["typiclust_gain_points"], best_gain) >= r["target_points"]
        out.append(
            f"- {feats} features, {b} labels: TypiClust {100 * (r['typiclust_acc'] or 0):.1f}% "
            f"vs random {100 * r['random_acc']:.1f}%: {r['typiclust_gain_points']:+.1f} points; "
            f"best: {r['best_strategy']} {100 * r['best_acc']:.1f}% ({best_gain:+.1f}) "
            f"(target +{r['target_points']} for either: {'met' if met else 'not met'})."
        )
    dates = sorted({f"{r.get('date', '?')} @ {r.get('commit', '?')}" for r in sel})
    out += ["", f"Measured: {', '.join(dates)}."]
    return out


def render_generate(rows: list[dict[str, Any]]) -> list[str]:
    """The GAN run, quality per encoder (real, noise, GAN) and the effect on pretraining."""
    last: dict[tuple, dict[str, Any]] = {}
    for r in rows:  # the latest measurement of each kind
        last[(r.get("step"), r.get("encoder"), r.get("images"), r.get("ratio"))] = r
    out: list[str] = []
    gans = [r for (s, *_), r in last.items() if s == "gan"]
    if gans:
        out += [
            "| GAN budget | width | batch | steps | training s | steps/s | D loss | G loss |",
            "|---|---|---|---|---|---|---|---|",
        ]
        out += [
            f"| {r['gan_budget']} | {r['width']} | {r['batch_size']} | {r['gan_steps']} | "
            f"{r['gan_train_s']} | {r['gan_steps_per_s']} | {fmt(r.get('d_loss'))} | "
            f"{fmt(r.get('g_loss'))} |"
            for r in gans
        ]
        out.append("")
    qual = [r for (s, *_), r in last.items() if s == "quality"]
    if qual:
        out += [
            "| encoder | images vs test | FD | precision | recall | real / other |",
            "|---|---|---|---|---|---|",
        ]
        for r in qual:
            if "fd" not in r:
                out.append(f"| {r['encoder']} | {r.get('skipped', '-')} | - | - | - | - |")
                continue
            out.append(
                f"| {r['encoder']} | {r['images']} | {r['fd']:.4g} | {r['precision']:.3f} | "
                f"{r['recall']:.3f} | {r['n_real']:,} / {r['n_fake']:,} |"
            )
        out.append("")
    syn = sorted((r for (s, *_), r in last.items() if s == "synthetic"), key=lambda r: r["ratio"])
    if syn:
        out += [
            "| generated (x real pool) | generated images | pretraining steps | "
            "backbone images | linear probe acc | change (points) |",
            "|---|---|---|---|---|---|",
        ]
        for r in syn:
            out.append(
                f"| {r['ratio']:g} | {r.get('generated_images', 0):,} | {r['pretrain_steps']} | "
                f"{fmt(r.get('backbone_images'))} | {100 * r['linear_probe_acc']:.1f}% | "
                f"{fmt(r.get('change_points'))} |"
            )
        out.append("")
    dates = sorted({f"{r.get('date', '?')} @ {r.get('commit', '?')}" for r in rows})
    return [*out, f"Measured: {', '.join(dates)}."]


def render_cache(rows: list[dict[str, Any]]) -> list[str]:
    """The latest cache build (speed, peak memory vs the target) and training from memory
    vs from the cache file."""
    builds = [r for r in rows if r.get("phase") == "build"]
    trains: dict[str, dict[str, Any]] = {}
    for r in rows:
        if str(r.get("phase", "")).startswith("train"):
            trains[r["phase"]] = r
    out = []
    if builds:
        b = builds[-1]
        ok = "met" if b["peak_rss_mib"] < b["target_peak_rss_mib"] else "not met"
        out += [
            "| images | image | build s | images/s | decoded MiB | peak RSS MiB "
            "(after imports) | target |",
            "|---|---|---|---|---|---|---|",
            f"| {b['images']:,} | {b['shape']} | {b['seconds']:g} | {b['images_per_s']:,} | "
            f"{b['decoded_mib']:,} | {b['peak_rss_mib']:,} ({b['baseline_rss_mib']:,}) | "
            f"< {b['target_peak_rss_mib']:,}: {ok} |",
        ]
    if trains:
        out += [
            "",
            "| training | backbone | batch | steps | img/s | set-up s | peak RSS MiB |",
            "|---|---|---|---|---|---|---|",
        ]
        for name, r in trains.items():
            out.append(
                f"| {name} | {r['backbone']} | {r['batch']} | {r['steps']} | "
                f"{r['img_per_s']:g} | {r['setup_s']:g} | {r['peak_rss_mib']:,} |"
            )
    dates = sorted({f"{r.get('date', '?')} @ {r.get('commit', '?')}" for r in rows})
    out += ["", f"Measured: {', '.join(dates)}."]
    return out


def _pct(v: Any) -> str:
    return "-" if v is None else f"{100 * v:.1f}%"


def _secs(v: Any) -> str:
    return "never" if v is None else f"{v:.0f} s"


def render_semi(rows: list[dict[str, Any]]) -> list[str]:
    """CIFAR-10 250 labels: the latest run per method, init and budget, with the best
    semi-supervised method against supervised at each budget; digits: the 60 s runs; then
    every recorded row."""
    out: list[str] = []
    cifar: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        if r.get("data") == "cifar10" and "method" in r:
            key = (r["budget"], _backbone(r), r["method"], r.get("init"), r.get("mu"))
            key += (_machine(r),)  # two machines' runs are separate cells
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
                    f"{p['kept']:,} kept, {_pct(p['pseudo_label_accuracy'])} right"
                    for p in r["pseudo_labels"]
                )
                method += f" ({r['rounds']} round(s), threshold {r['threshold']:g}: {kept})"
            init = Path(r["init"]).name + " encoder" if r.get("init") else "-"
            out.append(
                f"| {r['budget']} | {_backbone(r)} | {fmt(_machine(r))} | {method} | "
                f"{init} | {fmt(r.get('mu'))} | "
                f"{_pct(r['test_acc'])} | {fmt(r['test_macro_f1'])} | "
                f"{_secs(r.get('time_to_40'))} | {_secs(r.get('time_to_50'))} | "
                f"{r['steps']:,} | {r.get('date', '?')} @ {r.get('commit', '?')} |"
            )
        out.append("")
        for (budget, backbone, machine), group in _groups(ordered).items():
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
                init = (
                    f" from the {Path(best['init']).name} encoder ({spent} pretraining not counted)"
                )
            where = f"{budget}, {backbone}" + (f", {machine}" if machine else "")
            line = (
                f"- {where}: best {best['method']}{init} "
                f"{_pct(best['test_acc'])} vs supervised {_pct(sup[-1]['test_acc'])}: "
                f"{gain:+.1f} points"
            )
            if budget == "30m":
                line += f" (target +20: {'met' if gain >= 20 else 'not met'})"
            scratch = [r for r in semi if not r.get("init")]
            if best.get("init") and scratch:
                b0 = max(scratch, key=lambda r: r["test_acc"])
                line += (
                    f"; from scratch: {b0['method']} {_pct(b0['test_acc'])}, "
                    f"{100 * (b0['test_acc'] - sup[-1]['test_acc']):+.1f} points"
                )
            out.append(line + ".")
        out += _same_compute(list(cifar.values()))
        out.append("")
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
                f"{_pct(r['test_acc'])} | {fmt(r['test_macro_f1'])} | {r['steps']:,} | "
                f"{r.get('date', '?')} @ {r.get('commit', '?')} |"
            )
        out.append("")
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
    out += ["All recorded rows:", "", *table(rows)]
    return out


def _same_compute(rows: list[dict[str, Any]]) -> list[str]:
    """Runs started from a pretrained encoder whose pretraining time is recorded, against
    the supervised run whose budget equals pretraining + training (within 2%)."""
    out = []
    sup = {
        (r["backbone"], _machine(r), _seconds(r["budget"])): r
        for r in rows
        if r["method"] == "supervised"
    }
    for r in rows:
        if r["method"] == "supervised" or not r.get("init_pretrain_s"):
            continue
        total = _seconds(r["budget"]) + r["init_pretrain_s"]
        match = [
            v
            for (b, m, t), v in sup.items()
            if (b, m) == (r["backbone"], _machine(r)) and abs(t - total) <= 0.02 * t
        ]
        if not match:
            continue
        s = match[0]
        gain = 100 * (r["test_acc"] - s["test_acc"])
        out.append(
            f"- Same total compute ({s['budget']}): {r['method']} for {r['budget']} from a "
            f"{r['init_pretrain_s'] / 60:.0f}-minute {r.get('init_method', '?')} encoder "
            f"{_pct(r['test_acc'])} vs supervised {_pct(s['test_acc'])}: {gain:+.1f} points"
            + (
                f" (target +20: {'met' if gain >= 20 else 'not met'})"
                if s["budget"] == "30m"
                else ""
            )
            + "."
        )
    return out


def _seconds(budget: str) -> float:
    """A wall-clock budget (``600s``, ``10m``, ``30min``, ``1h``) in seconds; inf for the
    other kinds (steps, epochs, images) and for text that is not a budget."""
    from fewlabels.core.budget import Budget
    from fewlabels.core.errors import ConfigError

    try:
        b = Budget.parse(budget)
    except ConfigError:
        return float("inf")
    return b.amount if b.kind == "seconds" else float("inf")


def _machine(r: dict[str, Any]) -> str | None:
    """What a budget buys on a row's machine: the precision ``auto`` trained in and the
    processor, e.g. ``bf16, Intel Xeon`` (``None`` where the precision is not recorded).
    Two CPUs with native bf16 can differ in speed as much as bf16 and fp32 on one CPU."""
    if not r.get("auto_precision"):
        return None
    hw = r.get("gpu") or r.get("cpu") or "?"
    hw = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b", "", hw)).strip()
    return f"{r['auto_precision']}, {hw}"


def _backbone(r: dict[str, Any]) -> str:
    """A row's backbone with its options (``--backbone-kwargs``), e.g. ``fastnet-s
    (widths 32-128-256)``."""
    opts = [
        f"{k} {'-'.join(str(d) for d in v) if isinstance(v, list) else v}"
        for k, v in (r.get("backbone_kwargs") or {}).items()
    ]
    return r["backbone"] + (f" ({', '.join(opts)})" if opts else "")


def _ssl_row(r: dict[str, Any], rand: dict[str, dict[str, Any]]) -> str:
    """One pretraining run as a row of the SSL table."""
    base = rand.get(_backbone(r))
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
        f"| {r['budget']} | {_backbone(r)} | {fmt(_machine(r))} | "
        f"{r['method']} | {opt} | {r['pretrain_steps']:,} | {_pct(r['linear_acc'])} | "
        f"{fmt(r['linear_macro_f1'])} | {_pct(r['knn_acc'])} | {fmt(r['knn_macro_f1'])} "
        f"| {gain} | {r.get('date', '?')} @ {r.get('commit', '?')} |"
    )


def render_ssl(rows: list[dict[str, Any]]) -> list[str]:
    """Each method's linear and kNN probe (latest run per method, budget and backbone)
    against the random-init encoder, the targets in words, and the probe's speed."""
    out: list[str] = []
    runs: dict[tuple, dict[str, Any]] = {}
    rand: dict[str, dict[str, Any]] = {}
    speed: list[dict[str, Any]] = []
    variants: list[dict[str, Any]] = []
    for r in rows:
        if r.get("mode") == "probe-speed":
            speed.append(r)
        elif r.get("method") == "random-init":
            rand[_backbone(r)] = r
        elif r.get("variant"):
            variants.append(r)
        elif r.get("method") and r.get("budget"):
            runs[(r["budget"], _backbone(r), r["method"], _machine(r))] = r
    failed = {k: r for k, r in runs.items() if r.get("error")}
    runs = {k: r for k, r in runs.items() if not r.get("error")}
    # the supervised baseline: the best CIFAR-10 run within 30 minutes per backbone and
    # machine (budgets compare only on machines that train at the same speed)
    sup: dict[tuple, dict[str, Any]] = {}
    for r in load(RESULTS / "semi.jsonl") if (RESULTS / "semi.jsonl").exists() else []:
        if (
            r.get("data") == "cifar10"
            and r.get("method") == "supervised"
            and _seconds(r["budget"]) <= 1800
        ):
            key = (_backbone(r), _machine(r))
            best = sup.get(key)
            if best is None or r["test_acc"] > best["test_acc"]:
                sup[key] = r
    if runs:
        out += [
            "Latest run of each method, budget, backbone and machine (linear: logistic "
            "regression on frozen features; kNN: cosine, k = 200; machine: the precision `auto` "
            "trained in and the processor, where recorded):",
            "",
            "| budget | backbone | machine | method | batch, optimizer (lr), options | steps | "
            "linear acc | linear F1 | kNN acc | kNN F1 | linear vs random init | measured |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        ordered = sorted(
            runs.values(), key=lambda r: (r["budget"], r["backbone"], -(r["linear_acc"] or 0))
        )
        out += [_ssl_row(r, rand) for r in ordered]
        out.append("")
    done = [r for r in variants if not r.get("error")]
    if done:
        out += [
            "Recipe variants (`bench_ssl.py --method-kwargs`, `--backbone-kwargs`, "
            "`--batch-size` or `--lr`: one method's settings changed for a comparison; not the "
            "recipes above):",
            "",
            "| budget | backbone | machine | method | batch, optimizer (lr), options | steps | "
            "linear acc | linear F1 | kNN acc | kNN F1 | linear vs random init | measured |",
            "|---|---|---|---|---|---|---|---|---|---|---|---|",
            *(_ssl_row(r, rand) for r in done),
            "",
        ]
    for backbone, base in rand.items():
        out.append(
            f"- Random-init {backbone}: linear {_pct(base['linear_acc'])}, kNN "
            f"{_pct(base['knn_acc'])}."
        )
        mine = [r for r in runs.values() if _backbone(r) == backbone]
        mine += [r for r in failed.values() if _backbone(r) == backbone]
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
    by_machine: dict[str, list[dict[str, Any]]] = {}
    for r in runs.values():  # one line per machine: two hosts' budgets buy different work
        if _seconds(r["budget"]) <= 1800:
            machine = _machine(r) or "precision not recorded"
            by_machine.setdefault(machine, []).append(r)
    for machine, budget_ok in sorted(by_machine.items()):
        best = max(budget_ok, key=lambda r: r["linear_acc"])
        line = (
            f"- Best linear probe within 30 minutes ({machine}): {best['method']} "
            f"({best['budget']}, {_backbone(best)}) {_pct(best['linear_acc'])} (target 60%: "
            f"{'met' if best['linear_acc'] >= 0.6 else 'not met'})"
        )
        s_row = sup.get((_backbone(best), _machine(best)))
        if s_row:
            gain = 100 * (best["linear_acc"] - s_row["test_acc"])
            line += (
                f"; the supervised 250-label baseline ({s_row['budget']}, same backbone "
                "and machine) "
                f"{_pct(s_row['test_acc'])}: {gain:+.1f} points (target +15: "
                f"{'met' if gain >= 15 else 'not met'})"
            )
        out.append(line + ".")
    for r in speed:
        out.append(
            f"- Feature extraction + linear probe for {r['images']:,} images "
            f"({r['backbone']}, {r['precision']}): {r['total_s']:.1f} s "
            f"({r['extract_s']:.1f} s extraction at {r['extract_img_per_s']:,.0f} images/s, "
            f"{r['probe_fit_s']:.1f} s fit; target < {r['target_s']} s: "
            f"{'met' if r['total_s'] < r['target_s'] else 'not met'})."
        )
    return [*out, "", "All recorded rows:", "", *table(rows)]


def _groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        groups.setdefault((r["budget"], _backbone(r), _machine(r)), []).append(r)
    return groups


RENDERERS = {
    "semi": render_semi,
    "ssl": render_ssl,
    "select": render_select,
    "generate": render_generate,
    "cache": render_cache,
}


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
        out += [*RENDERERS.get(name, table)(rows), ""]
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
