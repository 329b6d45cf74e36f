"""Gather the defaults matrix's finished studies into one Markdown page (``docs/defaults.md``).

Reads what each study wrote (``results.csv``, ``verdict.csv``, the report's provenance
footer); nothing is recomputed. A study that has not run yet is listed as such::

    python benchmarks/defaults/summarize.py runs/defaults --out docs/defaults.md
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path

# the commit from which a study that names no backbone has the rules choose one
RULES_IN_STUDIES = "abe8baf"
DATA = {
    "digits": "scikit-learn digits, 8x8 grayscale, 10 classes (30 s per run)",
    "cifar10": "CIFAR-10, 32x32 colour, 10 classes, the 20,000 training images present",
    "gray28": "CIFAR-10 as 28x28 grayscale, 10 classes (`make_variants.py`)",
    "tiny32": "Tiny-ImageNet subset at 32x32, 200 classes x 50 training images",
    "tiny100": "its first 100 classes at 32x32 (`make_variants.py`)",
}


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open(newline="") as f:
        return list(csv.DictReader(f))


def _footer(report: Path) -> list[str]:
    if not report.is_file():
        return []
    lines = report.read_text().splitlines()
    return [ln.strip().strip("_").strip() for ln in lines if ln.startswith("_runs:")]


def _backbone(folder: Path) -> str:
    """Which backbone the study's runs trained and who chose it."""
    try:
        chosen = json.loads((folder / "backbone.json").read_text())
        return (
            f"Backbone: {chosen['backbone']} for every run, chosen by the rules ({chosen['rule']})."
        )
    except (OSError, ValueError, KeyError):
        pass
    names = set()
    for cfg in (folder / "runs").glob("*/config.json"):
        names.add(json.loads(cfg.read_text()).get("backbone"))
    return (
        f"Backbone: {', '.join(sorted(n for n in names if n))}, the study default of the time "
        f"(before commit {RULES_IN_STUDIES} a study that named no backbone trained the convnet; "
        "since then the rules choose one for the whole study)."
    )


def _pct(x: float) -> str:
    return f"{100 * x:.1f}"


def study_table(folder: Path) -> list[str]:
    """The Markdown lines for one finished (or partly finished) study folder."""
    rows = _rows(folder / "results.csv")
    res = [r for r in rows if r["status"] == "done" and r["role"] == "grid"]
    verdicts = _rows(folder / "verdict.csv") if (folder / "verdict.csv").is_file() else []
    vs = {
        (v["labels"], v["method"], v["unlabeled"]): v
        for v in verdicts
        if v["kind"] == "vs_supervised"
    }
    out = [
        "| labels | unlabeled | method | seeds | test accuracy, mean (min-max) | "
        "vs supervised, paired (95% interval) | verdict | steps (mean) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    keys = list(dict.fromkeys((r["labels"], r["unlabeled"], r["method"]) for r in res))
    for lab, unl, method in keys:
        rs = [r for r in res if (r["labels"], r["unlabeled"], r["method"]) == (lab, unl, method)]
        acc = [float(r["accuracy"]) for r in rs]
        steps = [float(r["steps"]) for r in rs if r["steps"]]
        v = vs.get((lab, method, unl))
        diff, word = "-", "-"
        if v and v["low"]:
            lo, hi = _pct(float(v["low"])), _pct(float(v["high"]))
            diff, word = f"{100 * float(v['mean']):+.1f} ({lo} to {hi})", v["verdict"]
        mean = f"{_pct(statistics.mean(acc))} ({_pct(min(acc))}-{_pct(max(acc))})"
        n_steps = f"{statistics.mean(steps):.0f}" if steps else "-"
        out.append(
            f"| {lab} | {unl} | {method} | {len(rs)} | {mean} | {diff} | {word} | {n_steps} |"
        )
    return out


def _budget(folder: Path) -> str:
    """A follow-up study's budget per run, from the study file its folder keeps."""
    for line in (folder / "study.yaml").read_text().splitlines():
        if line.startswith("budget:"):
            b = line.split(":", 1)[1].strip()
            return f"{b[:-1]} minutes" if b.endswith("m") else f"{b[:-1]} s"
    return "?"


def tuning_table(root: Path) -> list[str]:
    """Defaults (trial 0) against the trial chosen on validation, from each ``tune-*`` study."""
    out = [
        "| data | method | labels | seed | trials | test acc, defaults | test acc, tuned "
        "(chosen on val) | tuned - defaults | chosen trial |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for folder in sorted(root.glob("tune-*")):
        if not (folder / "tuning.csv").is_file():
            continue
        for t in _rows(folder / "tuning.csv"):
            if not (t["test_acc_resolved"] and t["test_acc_chosen"]):
                continue
            base, best = float(t["test_acc_resolved"]), float(t["test_acc_chosen"])
            out.append(
                f"| {folder.name[5:]} | {t['method']} | {t['labels']} | {t['seed']} | "
                f"{t['trials_done']} | {_pct(base)} | {_pct(best)} | "
                f"{100 * (best - base):+.1f} | {t['chosen_trial']}: {t['chosen']} |"
            )
    return out if len(out) > 2 else []


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("root", help="folder holding one study folder per data set")
    ap.add_argument("--out", default="docs/defaults.md")
    a = ap.parse_args()
    root = Path(a.root)
    md = [
        "# The defaults matrix",
        "",
        "Generated by `benchmarks/defaults/summarize.py` from the studies in "
        "`benchmarks/defaults/*.yaml`: each data set x {4, 25} labels per class x "
        "{supervised, FixMatch, FlexMatch, VICReg pretraining + linear probe} x 3 seeds, with "
        "nothing but data, labels, budget and method given (every other setting resolved). "
        "2 minutes of wall clock per run (30 s on digits); the VICReg pipeline's budget is its "
        "pretraining, the linear probe comes on top. Run with `--workers 2` on a 2-core machine: "
        "each run has one core, and nothing else ran beside the study. Differences are paired "
        "by seed (seeds share splits), with a 95% t-interval over the 3 seeds.",
        "",
        "The matrix changed the rules. Its first run (commit 61b8aa7) had FlexMatch at "
        "2-7% against supervised's 10-13% on Tiny-ImageNet's 100 and 200 classes at 25 labels "
        "per class, and FixMatch below supervised on 200 classes: the curriculum's near-zero "
        "early thresholds took a weak model's every guess, and at mu = 7 a 2-minute run passed "
        "over 2,500-5,000 labels only 12-23 times (the speed probe, timing fp32 on a bf16 "
        "machine, also guessed a third of the steps the runs made). Since commit 7375671 the "
        "probe times the run's precision, mu is lowered until the labels get 40 passes, and "
        "FlexMatch's and FreeMatch's thresholds have a floor of 0.5. The FixMatch and FlexMatch "
        "rows below were run again after that change; the supervised and VICReg rows are from "
        "the first run (the change leaves supervised's settings as they were; VICReg's warm-up, "
        "a share of the probe's step estimate, may now be 5% where it was up to 7%). The "
        "footers name the commits and how many runs each made.",
        "",
        f"Since commit {RULES_IN_STUDIES} a study that names no backbone trains the one the "
        "rules choose for the whole study (before, it trained the convnet as a default). For "
        "every 2-minute study here they choose the convnet again (FixMatch at 4 labels per "
        "class buys fastnet-s under 400 steps on one core; "
        "`benchmarks/defaults/backbones.py`), so those rows are what the rules run today; "
        "CIFAR-10 was run again under the rules and its means moved by at most 1.9 points "
        "(4/class FlexMatch 24.7 to 22.8, within the seeds' spread). For the 10-minute "
        "follow-ups the rules of commit abe8baf chose fastnet-s, and the CIFAR-10 follow-up "
        "was run again with it. That rerun was the rules' failure: on "
        "fastnet-s FlexMatch made 1,431-1,554 steps and no longer beats supervised (23.8% "
        "against 24.6%, -0.8 points), where on the convnet (about 8,000 steps) it reached "
        "28.2% against supervised's 23.3% (+4.9, -0.6 to 10.3). The speed probe then guessed"
        " about half the steps a run made (FlexMatch 674 for 1,554, supervised 12,055 for "
        "22,050). Since commit 4a209e7 it times channels-last at the method's view size "
        "(runs make 0.81-1.30 of its guess, `benchmarks/bench_probe.py`) and the step-down "
        "thresholds are restated in made steps (fastnet 4,000, fastnet-s 400), which keeps "
        "every 2-minute choice above (`backbones.py`). The CIFAR-10 cell at 25 labels per "
        "class and 10 minutes, run on both backbones (`cifar10-25-10m-*` below), has "
        "FlexMatch at 45.9% on fastnet-s (578-667 steps) and 47.1% on the convnet, supervised "
        "39.7% and 40.2%: at 10 minutes on one core the convnet is as good or better for a "
        "semi-supervised run from scratch at both label amounts. Since commit 5c51e0b such a "
        "run wants 2,000 steps of fastnet-s (else the convnet), so every 10-minute follow-up "
        "trains the convnet again; the CIFAR-10 follow-up below is its convnet run (the "
        "fastnet-s rerun is kept in runs/defaults-fastnet-s).",
        "",
        "Reproduce: `python benchmarks/defaults/make_variants.py --cifar10 DIR --tiny DIR`, "
        "then `fewlabels study benchmarks/defaults/NAME.yaml --out runs/defaults/NAME "
        "--workers 2` for each NAME, then this script.",
        "",
    ]
    for name, what in DATA.items():
        folder = root / name
        md += [f"## {name}: {what}", ""]
        if not (folder / "results.csv").is_file():
            md += ["Not run yet.", ""]
            continue
        md += [*study_table(folder), "", _backbone(folder), ""]
        md += [f"_{line}_  " for line in _footer(folder / "report.md")] + [""]
    for folder in sorted([*root.glob("*-10m"), *root.glob("*-5x")]):
        if (folder / "results.csv").is_file():
            md += [f"## {folder.name}: the same cells at {_budget(folder)} per run", ""]
            md += [*study_table(folder), "", _backbone(folder), ""]
            md += [f"_{line}_  " for line in _footer(folder / "report.md")] + [""]
    for folder in sorted(root.glob("*-10m-*")):  # one cell on a named backbone
        if (folder / "results.csv").is_file():
            md += [
                f"## {folder.name}: one cell at {_budget(folder)} per run, backbone named",
                "",
                f"Why: `benchmarks/defaults/{folder.name}.yaml`.",
                "",
                *study_table(folder),
                "",
            ]
            md += [f"_{line}_  " for line in _footer(folder / "report.md")] + [""]
    for folder in sorted(root.glob("*-calibrated")):
        if (folder / "results.csv").is_file():
            md += [
                f"## {folder.name}: the cells the calibrated speed probe resolves anew",
                "",
                "Its study file says which cells and why (`benchmarks/defaults/"
                f"{folder.name}.yaml`); the resolved mu per run is in each run's "
                "`resolved.json`.",
                "",
                *study_table(folder),
                "",
                _backbone(folder),
                "",
            ]
            md += [f"_{line}_  " for line in _footer(folder / "report.md")] + [""]
    for folder in sorted(root.glob("digits-demo-*")):
        if (folder / "results.csv").is_file():
            md += [
                f"## {folder.name}: `make demo`'s labels with every unlabeled image, "
                f"{_budget(folder)} per run",
                "",
                "What longer runs show for the demo's question (examples/digits.yaml trains "
                "10 s per run): its verdict should match this one.",
                "",
                *study_table(folder),
                "",
                _backbone(folder),
                "",
            ]
            md += [f"_{line}_  " for line in _footer(folder / "report.md")] + [""]
    tuned = tuning_table(root)
    md += [
        "## Defaults against tuning (`tune-*.yaml`)",
        "",
        "Each method gets 8 trials of 2 minutes around its resolved settings (trial 0 is the "
        "resolved settings; the others move the lr, weight decay, `lambda_u` or threshold "
        "by a factor, one setting and then two at a time; the lr and weight decay as factors "
        "on the values the rules give the run, `train.scale`); the trial with the best final "
        "validation accuracy is chosen (the validation split holds as many labels as the "
        "labeled set), and only then scored on the test set.",
        "",
    ]
    md += [*tuned, ""] if tuned else ["Not run yet.", ""]
    for folder in sorted(root.glob("tune-*")):
        md += [f"_{folder.name}: {line}_  " for line in _footer(folder / "report.md")]
    Path(a.out).write_text("\n".join(md).rstrip() + "\n")
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
