"""Rebuild ``docs/results.md`` and the results table in ``README.md`` from the measurements
in ``benchmarks/results/*.jsonl``.

Every table is made from recorded JSON lines (written by ``scripts/record.py``), shown with
the machine they ran on. The page opens with the headline table (``results_headline.py``),
also written into README.md between ``<!-- results:start -->`` and ``<!-- results:end -->``,
then the notes kept with the measurements (``docs/results-notes.md``, included as written),
then one section per benchmark. The section order, titles and the targets they are read
against are listed in ``SECTIONS``; a results file not listed there still gets a section.

    python scripts/make_results.py            # writes docs/results.md and README.md's table
    python scripts/make_results.py --check    # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the results_* modules beside this

import results_common as common
import results_headline as headline
import results_sections as sections
import results_semi as semi
import results_ssl as ssl

ROOT = common.ROOT
RESULTS = common.RESULTS
OUT = ROOT / "docs" / "results.md"
README = ROOT / "README.md"
NOTES = ROOT / "docs" / "results-notes.md"
START, END = "<!-- results:start -->", "<!-- results:end -->"

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
    "pipeline": (
        "A whole pipeline with the resolved defaults",
        "CIFAR-10, 25 labels per class, self-supervised pretraining on every training image "
        "and then a semi-supervised method from that encoder, each stage given only data, "
        "labels, method and budget (`fewlabels pretrain`, then `fewlabels train --init`); "
        "targets: within 2 points of the tuned recipe at the same budgets (VICReg 10m then "
        "FixMatch 20m: 66.5%, AMD EPYC bf16), and >= 70% (bf16) / 60% (fp32) in 30 minutes",
        "python benchmarks/bench_pipeline.py --ssl-budget 10m --semi-budget 20m",
    ),
    "study_backbone": (
        "The backbone each defaults study trains",
        "what `fewlabels study` chooses before its first run when the file names no "
        "backbone (the smallest any from-scratch run steps down to, with the speed probe at "
        "each worker's threads); no target: which backbone a budget buys on this machine",
        "python benchmarks/defaults/backbones.py",
    ),
    "probe": (
        "How well the speed probe guesses a run's steps",
        "the steps a wall-clock run resolves its schedule to before the first step (the speed "
        "probe's guess) against the steps it made, backbone given; target: made / guessed "
        "near 1 for every method and backbone (the backbone rule and the warm-up read it)",
        "python benchmarks/bench_probe.py --data cifar10:PATH --budget 60s",
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


RENDERERS = {
    "semi": semi.render_semi,
    "ssl": ssl.render_ssl,
    "select": sections.render_select,
    "generate": sections.render_generate,
    "cache": sections.render_cache,
}


def render() -> str:
    """The whole of docs/results.md."""
    files = {p.stem: p for p in sorted(RESULTS.glob("*.jsonl"))}
    order = [k for k in SECTIONS if k in files] + [k for k in files if k not in SECTIONS]
    out = [
        "# Measured results",
        "",
        "Made by `scripts/make_results.py` from `benchmarks/results/*.jsonl`; every row is a "
        "measurement recorded by `scripts/record.py`. Timings on a shared 2-core machine are "
        "noisy: compare ratios measured in one run, not absolute times across runs.",
        "",
        "## Headline",
        "",
        "The table README.md shows.",
        "",
        *headline.render_headline(),
        "",
    ]
    if NOTES.exists():
        out += [NOTES.read_text().rstrip("\n"), ""]
    for name in order:
        rows = common.load(files[name])
        title, target, how = SECTIONS.get(name, (name, "", ""))
        out += [f"## {title}", ""]
        if target:
            out += [f"Read against: {target}.", ""]
        if how:
            out += [f"Reproduce: `{how}`.", ""]
        out += [f"Measured on: {common.machines(rows)}.", ""]
        out += [*RENDERERS.get(name, common.table)(rows), ""]
    return "\n".join(out)


def readme_text(current: str) -> str:
    """README.md with the headline table between its markers replaced by the current one."""
    start, end = current.find(START), current.find(END)
    if start < 0 or end < start:
        raise SystemExit(f"README.md has no {START} ... {END} markers")
    table = "\n".join(["", *headline.render_headline(), ""])
    return current[: start + len(START)] + table + current[end:]


def main() -> int:
    """Write (or with --check, compare) docs/results.md and README.md's results table."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument(
        "--check", action="store_true", help="fail if docs/results.md or README.md is stale"
    )
    args = ap.parse_args()
    page = render()
    readme = README.read_text()
    new_readme = readme_text(readme)
    if args.check:
        stale = [
            p.name
            for p, old, new in ((OUT, _read(OUT), page), (README, readme, new_readme))
            if old != new
        ]
        if stale:
            print(f"{' and '.join(stale)} out of date: run python scripts/make_results.py")
            return 1
        return 0
    OUT.write_text(page)
    README.write_text(new_readme)
    print(f"wrote {OUT} and the results table in {README}")
    return 0


def _read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


if __name__ == "__main__":
    sys.exit(main())
