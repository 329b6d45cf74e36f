"""The report's t-SNE panels: features of the best model at the fewest labels, and of the
supervised baseline beside it.

A panel reads what its runs wrote and never loads a model: the last embeddings a run saved
(``embeddings/step_*.npz``: features of a fixed subset of validation images, written at
each evaluation of a run with a labeled validation split). A fine-tuning probe's are in
its run's ``finetune`` folder. A linear or kNN probe keeps its pretraining's encoder
frozen, so the pretraining's last saved embeddings are the probed features. A cell whose
runs saved none (a study from before classifier runs saved them, or ``save_embeddings``
false) gets no panel; the report says so in a note.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from fewlabels.evaluate.embedding import project_sequence
from fewlabels.evaluate.monitor import load_embeddings
from fewlabels.evaluate.plots import literal
from fewlabels.study.figures import plain_figure, save
from fewlabels.study.results import Row, pct

FROZEN_PROBES = ("linear", "knn")  # probes that keep the pretrained encoder as it is

Points = tuple[np.ndarray, np.ndarray]  # (features, labels)


def _folders(row: Row, study_dir: Path) -> list[Path]:
    """The run folders whose saved embeddings are the features of the cell's model."""
    run = study_dir / "runs" / row.run_key
    if row.pipeline != "pretrain+probe":
        return [run]
    if row.then == "finetune":
        return [run / "finetune"]
    if row.then in FROZEN_PROBES and len(row.job_keys) > 1:
        return [run, study_dir / "runs" / row.job_keys[-2]]  # the frozen encoder it read
    return [run]


def saved_embeddings(row: Row, study_dir: Path) -> Points | None:
    """(features, labels) of the validation images that the cell's model embedded, as its
    runs saved them last; None when they saved none."""
    for folder in _folders(row, study_dir):
        files = sorted((folder / "embeddings").glob("step_*.npz"))
        if files:
            e = load_embeddings(files[-1])
            return np.asarray(e["features"], np.float32), np.asarray(e["labels"])
    return None


@plain_figure
def plot_tsne(panels: list[tuple[Row, Points]], points: int, path: Path) -> Path:
    """A t-SNE panel per (row, saved points) (at most ``points`` images each), coloured by
    class. A panel of the same images as the one before starts from its layout, turned to
    match it, so the same classes sit in the same places."""
    fig = Figure(figsize=(5.2 * len(panels), 4.6))
    axes = fig.subplots(1, len(panels), squeeze=False)[0]
    data = []
    for _, (feats, labels) in panels:
        idx = np.sort(np.random.default_rng(0).permutation(len(feats))[:points])
        data.append((feats[idx], labels[idx]))
    same = [i > 0 and np.array_equal(y, data[i - 1][1]) for i, (_, y) in enumerate(data)]
    layouts = project_sequence([f for f, _ in data], "tsne", 0, False, same)
    for ax, (r, _), (_, y), emb in zip(axes, panels, data, layouts, strict=True):
        sc = ax.scatter(emb[:, 0], emb[:, 1], c=y, cmap="tab10" if y.max() < 10 else "tab20", s=6)
        title = f"{r.method}, {r.labels}, seed {r.seed}: {pct(r.accuracy)}\n(validation images)"
        ax.set_title(literal(title), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        if int(y.max()) < 20:
            ax.legend(*sc.legend_elements(), fontsize=6, loc="best", markerscale=0.7)
    return save(fig, path)
