"""The report's t-SNE panels: features of the best model at the fewest labels, and of the
supervised baseline beside it.

A panel reads what its runs wrote: the embeddings a self-supervised run saves at each
evaluation (``embeddings/step_*.npz``, features of a fixed set of validation images).
A linear or kNN probe keeps its pretraining's encoder frozen, so the pretraining's last
saved embeddings are the probed features. Runs that save no embeddings (supervised and
semi-supervised training, fine-tuning) leave the panel one way to get features:
``features_from_model``, the one place the report loads a model.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure

from fewlabels.core.errors import ConfigError
from fewlabels.data import load_dataset
from fewlabels.evaluate.embedding import project_sequence
from fewlabels.evaluate.inference import LoadedModel, load_model
from fewlabels.evaluate.monitor import load_embeddings
from fewlabels.evaluate.plots import literal
from fewlabels.study.figures import plain_figure, save
from fewlabels.study.results import Row, pct

FROZEN_PROBES = ("linear", "knn")  # probes that keep the pretrained encoder as it is


def saved_embeddings(row: Row, study_dir: Path) -> tuple[np.ndarray, np.ndarray] | None:
    """(features, labels) of the validation images that the cell's model embedded, as its
    runs saved them; None when they saved none."""
    keys = [row.run_key]
    if row.pipeline == "pretrain+probe" and row.then in FROZEN_PROBES and len(row.job_keys) > 1:
        keys.append(row.job_keys[-2])  # the frozen encoder the probe read
    for key in keys:
        files = sorted((study_dir / "runs" / key / "embeddings").glob("step_*.npz"))
        if files:
            e = load_embeddings(files[-1])
            return np.asarray(e["features"], np.float32), np.asarray(e["labels"])
    return None


def _find_model(row: Row, study_dir: Path) -> LoadedModel:
    for key in reversed(row.job_keys):
        for name in ("model.pt", "checkpoint.pt"):
            path = study_dir / "runs" / key / name
            if path.exists():
                try:
                    return load_model(path)
                except Exception:  # an encoder-only file: try the next
                    continue
    raise ConfigError(f"no model file for {row.cell}")


def features_from_model(
    row: Row, runs: dict[str, dict], study_dir: Path, points: int
) -> tuple[np.ndarray, np.ndarray]:
    """(features, labels) of up to ``points`` test images, computed by loading the cell's
    model: for cells whose runs saved no embeddings."""
    model = _find_model(row, study_dir)
    spec = runs[row.job_keys[-1]]["spec"]
    cfg = spec.get("config") or spec.get("probe", {})
    ds = load_dataset(cfg.get("test") or cfg["data"])
    test = ds.test if ds.test is not None else ds.train
    idx = np.sort(np.random.default_rng(0).permutation(len(test))[: min(points, len(test))])
    x = test.images[torch.from_numpy(idx)].float().div(255)
    with torch.no_grad():
        feats = model.network.features(x.contiguous(memory_format=torch.channels_last))
    return feats.float().numpy(), test.labels[torch.from_numpy(idx)].numpy()


def _features(
    row: Row, runs: dict[str, dict], study_dir: Path, points: int
) -> tuple[np.ndarray, np.ndarray, str]:
    saved = saved_embeddings(row, study_dir)
    if saved is not None:
        feats, labels = saved
        idx = np.sort(np.random.default_rng(0).permutation(len(feats))[:points])
        return feats[idx], labels[idx], "validation"
    return (*features_from_model(row, runs, study_dir, points), "test")


@plain_figure
def plot_tsne(
    rows: list[Row], runs: dict[str, dict], study_dir: Path, points: int, path: Path
) -> Path:
    """A t-SNE panel per row (at most ``points`` images each), coloured by class. A panel
    of the same images as the one before starts from its layout, turned to match it, so
    the same classes sit in the same places."""
    fig = Figure(figsize=(5.2 * len(rows), 4.6))
    axes = fig.subplots(1, len(rows), squeeze=False)[0]
    panels = [_features(r, runs, study_dir, points) for r in rows]
    same = [
        i > 0 and what == panels[i - 1][2] and np.array_equal(y, panels[i - 1][1])
        for i, (_, y, what) in enumerate(panels)
    ]
    layouts = project_sequence([f for f, _, _ in panels], "tsne", 0, False, same)
    for ax, r, (_, y, what), emb in zip(axes, rows, panels, layouts, strict=True):
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=6)
        title = f"{r.method}, {r.labels}, seed {r.seed}: {pct(r.accuracy)}\n({what} images)"
        ax.set_title(literal(title), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if int(y.max()) < 20:
            ax.legend(*sc.legend_elements(), fontsize=6, loc="best", markerscale=0.7)
    return save(fig, path)
