"""The report's section on generated images added to the pretraining pool (``grid.synthetic``).

Each pipeline with ``r`` x the real pool of generated images is compared with the same
pipeline without them (same labels, unlabeled amount and compute): a table, one plain
sentence per comparison saying whether it helped, hurt or made no measurable difference
(within the seed-to-seed spread), a plot of accuracy against ``r``, and the GAN's picture
of real vs generated images.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fewlabels.core.checkpoint import atomic_write_bytes


@dataclass
class SyntheticSection:
    """What the section adds to the report."""

    summary: list[str] = field(default_factory=list)
    tables: list[tuple] = field(default_factory=list)
    figures: list[tuple[str, Path]] = field(default_factory=list)


def _ratio(g: Any) -> float:
    return float(g.rows[0].get("synthetic") or 0.0)


def _base(g: Any) -> str:
    r = _ratio(g)
    return g.method.replace(f" +{r:g}x generated", "") if r else g.method


def _extra_images(g: Any, runs: dict[str, dict]) -> int | None:
    counts = []
    for r in g.rows:
        for k in r.get("job_keys") or []:
            n = ((runs.get(k) or {}).get("metrics") or {}).get("extra_unlabeled")
            if n:
                counts.append(int(n))
    return round(sum(counts) / len(counts)) if counts else None


def synthetic_section(
    groups: list[Any], rows: list[dict], runs: dict[str, dict], study_dir: Path, fig_dir: Path
) -> SyntheticSection:
    """The section, or an empty one when the study has no ``grid.synthetic`` ratio > 0."""
    from fewlabels.study.report import _colors, _panels, _pm, _save

    out = SyntheticSection()
    grid = [g for g in groups if g.role == "grid"]
    syn = [g for g in grid if _ratio(g) > 0]
    gen_keys = sorted(
        {
            k
            for r in rows
            for k in r.get("job_keys") or []
            if runs.get(k, {}).get("kind") == "generate"
        }
    )
    if not syn and not gen_keys:
        return out
    table = []
    families: dict[tuple[str, str, str], list[Any]] = {}
    for g in syn:
        base = next(
            (
                b
                for b in grid
                if b.method == _base(g) and b.labels == g.labels and b.unlabeled == g.unlabeled
            ),
            None,
        )
        families.setdefault((_base(g), g.labels, g.unlabeled), [base] if base else []).append(g)
        n = _extra_images(g, runs)
        delta = 100 * (g.mean - base.mean) if base is not None else None
        spread = 100 * max(g.std, base.std) if base is not None else 0.0
        if delta is None:
            verdict = "no baseline"
        elif len(g.accs) < 2 or len(base.accs) < 2:  # type: ignore[union-attr]
            verdict = "helped" if delta > 0 else "hurt" if delta < 0 else "no change"
            verdict += " (one seed: not tested against noise)"
        elif abs(delta) <= spread:
            verdict = "no measurable effect (within the seed-to-seed spread)"
        else:
            verdict = "helped" if delta > 0 else "hurt"
        table.append(
            [
                _base(g),
                g.labels,
                g.unlabeled,
                f"{_ratio(g):g}x",
                f"{n:,}" if n is not None else "-",
                f"{_pm(base)}" if base is not None else "-",
                _pm(g),
                f"{delta:+.1f}" if delta is not None else "-",
                verdict,
            ]
        )
        if base is not None:
            out.summary.append(
                f"Generated images: adding {_ratio(g):g}x the real pool"
                + (f" ({n:,} images)" if n else "")
                + f" to the pretraining of {_base(g)} at {g.labels} changed test accuracy by "
                f"{delta:+.1f} points ({_pm(base)}% -> {_pm(g)}%) at the same pretraining "
                f"compute: {verdict}."
            )
    if table:
        out.tables.append(
            (
                "Generated images added to the pretraining pool (same pretraining compute; "
                "accuracy in %, mean ± std over seeds)",
                [
                    "method",
                    "labels",
                    "unlabeled",
                    "generated",
                    "generated images",
                    "without",
                    "with",
                    "change (points)",
                    "verdict",
                ],
                table,
            )
        )
    if families:
        import matplotlib.pyplot as plt

        names = list(dict.fromkeys(k[0] for k in families))
        labels = list(dict.fromkeys(k[1] for k in families))
        colors = _colors(names)
        fig, axes = _panels(len(labels))
        for ax, lab in zip(axes, labels, strict=True):
            for (name, lab_, unl), gs in families.items():
                if lab_ != lab:
                    continue
                gs = sorted(gs, key=_ratio)
                ax.errorbar(
                    [_ratio(g) for g in gs],
                    [100 * g.mean for g in gs],
                    yerr=[100 * g.std for g in gs],
                    marker="o",
                    capsize=3,
                    color=colors[name],
                    label=f"{name} (unlabeled {unl})",
                )
            ax.set_title(f"{lab} labeled")
            ax.set_xlabel("generated images (x the real pretraining pool)")
            ax.set_ylabel("test accuracy (%)")
            ax.grid(alpha=0.3)
            ax.legend(fontsize=7)
        out.figures.append(
            (
                "Test accuracy vs generated images added to the pretraining pool, at the "
                "same pretraining compute (mean ± std over seeds)",
                _save(fig, fig_dir / "acc_vs_synthetic.png"),
            )
        )
        plt.close("all")
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
        out.figures.append((f"Real training images vs generated images{how}", dst))
    return out
