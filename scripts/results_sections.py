"""The sections of docs/results.md with a layout of their own: label selection, generated
images and the decode cache."""

from __future__ import annotations

from typing import Any

from results_common import fmt


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
