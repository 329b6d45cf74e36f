"""The report's section on generated images added to the pretraining pool (``grid.synthetic``).

Each pipeline with ``r`` x the real pool of generated images is compared with the same
pipeline without them (same labels, unlabeled amount and compute): a table, one plain
sentence per comparison saying whether it helped, hurt or made no measurable difference
(within the seed-to-seed spread), a plot of accuracy against ``r``, and the GAN's picture
of real vs generated images.
"""

from __future__ import annotations

from pathlib import Path

from fewlabels.core.checkpoint import atomic_write_bytes
from fewlabels.study.figures import plot_vs_synthetic
from fewlabels.study.plan import method_name
from fewlabels.study.results import Group, pm
from fewlabels.study.sections import Picture, Results, Section, Table

HEADER = [
    "method",
    "labels",
    "unlabeled",
    "generated",
    "generated images",
    "without",
    "with",
    "change (points)",
    "verdict",
]


def _extra_images(g: Group, runs: dict[str, dict]) -> int | None:
    counts = []
    for r in g.rows:
        for k in r.job_keys:
            n = ((runs.get(k) or {}).get("metrics") or {}).get("extra_unlabeled")
            if n:
                counts.append(int(n))
    return round(sum(counts) / len(counts)) if counts else None


def _verdict(g: Group, base: Group | None) -> tuple[float | None, str]:
    """The change in points against the baseline and what it means."""
    if base is None:
        return None, "no baseline"
    delta = 100 * (g.mean - base.mean)
    if len(g.accs) < 2 or len(base.accs) < 2:
        verdict = "helped" if delta > 0 else "hurt" if delta < 0 else "no change"
        return delta, verdict + " (one seed: not tested against noise)"
    if abs(delta) <= 100 * max(g.std, base.std):
        return delta, "no measurable effect (within the seed-to-seed spread)"
    return delta, "helped" if delta > 0 else "hurt"


def _comparison(g: Group, base: Group | None, n: int | None, sec: Section) -> list[str]:
    """The table row of ``g`` against ``base``; adds its summary sentence to ``sec``."""
    delta, verdict = _verdict(g, base)
    name = method_name(g.base_method, strategy=g.strategy)
    if base is not None and delta is not None:
        sec.summary.append(
            f"Generated images: adding {g.synthetic:g}x the real pool"
            + (f" ({n:,} images)" if n else "")
            + f" to the pretraining of {name} at {g.labels} changed test accuracy by "
            f"{delta:+.1f} points ({pm(base)}% -> {pm(g)}%) at the same pretraining "
            f"compute: {verdict}."
        )
    return [
        name,
        g.labels,
        g.unlabeled,
        f"{g.synthetic:g}x",
        f"{n:,}" if n is not None else "-",
        pm(base) if base is not None else "-",
        pm(g),
        f"{delta:+.1f}" if delta is not None else "-",
        verdict,
    ]


def _gan_pictures(
    gen_keys: list[str], runs: dict[str, dict], study_dir: Path, fig_dir: Path
) -> list[Picture]:
    """The GAN runs' pictures of real vs generated images, copied beside the report."""
    out = []
    for i, key in enumerate(gen_keys):
        src = study_dir / "runs" / key / "real_vs_generated.png"
        if not src.is_file():
            continue
        dst = fig_dir / (f"real_vs_generated_{i}.png" if i else "real_vs_generated.png")
        atomic_write_bytes(dst, src.read_bytes())
        m = runs[key].get("metrics") or {}
        how = (
            f" (GAN: {m['steps']} steps, {float(m.get('train_seconds') or 0):.0f} s of training, "
            f"{int(m.get('images') or 0):,} images sampled)"
            if m.get("steps")
            else ""
        )
        out.append(Picture(f"Real training images vs generated images{how}", dst))
    return out


def synthetic_section(res: Results) -> Section:
    """The section; empty when the study has no ``grid.synthetic`` ratio > 0."""
    sec = Section("synthetic")
    grid = [g for g in res.groups if g.role == "grid"]
    syn = [g for g in grid if g.synthetic > 0]
    gen_keys = sorted(
        {k for r in res.rows for k in r.job_keys if res.runs.get(k, {}).get("kind") == "generate"}
    )
    if not syn and not gen_keys:
        return sec
    table = []
    families: dict[tuple[str, str, str], list[Group]] = {}
    for g in syn:
        base = next(
            (
                b
                for b in grid
                if b.synthetic == 0
                and b.base_method == g.base_method
                and b.strategy == g.strategy
                and b.labels == g.labels
                and b.unlabeled == g.unlabeled
            ),
            None,
        )
        key = (g.base_method, g.labels, g.unlabeled)
        families.setdefault(key, [base] if base else []).append(g)
        table.append(_comparison(g, base, _extra_images(g, res.runs), sec))
    if table:
        title = (
            "Generated images added to the pretraining pool (same pretraining compute; "
            "accuracy in %, mean ± std over seeds)"
        )
        sec.tables.append(Table(title, HEADER, table))
    if families:
        caption = (
            "Test accuracy vs generated images added to the pretraining pool, at the "
            "same pretraining compute (mean ± std over seeds)"
        )
        path = plot_vs_synthetic(families, res.fig_dir / "acc_vs_synthetic.png")
        sec.figures.append(Picture(caption, path))
    sec.figures += _gan_pictures(gen_keys, res.runs, res.study_dir, res.fig_dir)
    return sec
