"""Embedding pictures: t-SNE (or UMAP) of validation features, one panel per point of
training.

A run with a labeled validation split saves ``embeddings/step_XXXXXX.npz`` (features and
labels of a fixed subset of validation images) at every evaluation, unless its setting
``save_embeddings`` is false; ``embed_pictures`` draws each as a PNG panel coloured by
class and titled with the step, the training seconds, the validation accuracy and
(self-supervised runs) the kNN accuracy, plus ``tsne.png`` (``umap.png``) with all panels
side by side: clusters forming as training goes on. Each t-SNE panel starts from the
previous panel's layout and is turned (rotation / reflection) to match it, so clusters
stay in place between panels instead of jumping or rotating. For a bare checkpoint, the
panel comes from features computed on a data source. UMAP needs the optional ``umap``
extra (umap-learn).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from fewlabels.core.atomic import atomic_savefig
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.core.progress import Progress
from fewlabels.core.runlock import check_out_folder
from fewlabels.data import load_dataset
from fewlabels.evaluate.features import extract_features, load_encoder
from fewlabels.evaluate.monitor import MAX_POINTS, load_embeddings
from fewlabels.evaluate.plots import literal

PLOTS = ("tsne", "umap")
PANELS_PER_ROW = 5  # the combined picture wraps into rows of this many panels


def _reduce(features: np.ndarray, seed: int) -> np.ndarray:
    """Centred float32 features, PCA to 50 dimensions first when they are wider."""
    from sklearn.decomposition import PCA

    x = np.asarray(features, dtype=np.float32)
    x = x - x.mean(0, keepdims=True)
    if x.shape[1] > 50 and len(x) > 50:
        x = PCA(n_components=50, random_state=seed).fit_transform(x)
    return x


def tsne_2d(features: np.ndarray, seed: int = 0, init: np.ndarray | None = None) -> np.ndarray:
    """2-D t-SNE of ``features`` (PCA to 50 dimensions first when they are wider).

    ``init``: a layout of the same points to start from (e.g. the previous panel's, kept
    at its scale: a start shrunk as sklearn shrinks its PCA start lets the early
    exaggeration shuffle the clusters again); by default the PCA start."""
    from sklearn.manifold import TSNE

    x = _reduce(features, seed)
    n = len(x)
    if n < 5:
        raise DataError(f"t-SNE needs at least 5 points, got {n}")
    perplexity = float(min(30.0, max(2.0, (n - 1) / 3)))
    start: Any = "pca"
    if init is not None:
        start = (np.asarray(init, np.float64) - np.mean(init, axis=0)).astype(np.float32)
    tsne = TSNE(n_components=2, perplexity=perplexity, init=start, random_state=seed)
    return tsne.fit_transform(x)


def align_to(xy: np.ndarray, ref: np.ndarray) -> np.ndarray:
    """``xy`` turned (rotation and reflection, by orthogonal Procrustes) and moved onto
    ``ref``, the same points' earlier layout; its scale is kept."""
    a, b = xy - xy.mean(0), ref - ref.mean(0)
    u, _, vt = np.linalg.svd(a.T @ b)
    return a @ (u @ vt) + ref.mean(0)


def project_sequence(
    features: list[np.ndarray],
    plot: str = "tsne",
    seed: int = 0,
    progress: bool | None = None,
    same_points: list[bool] | None = None,
) -> list[np.ndarray]:
    """2-D layouts of successive feature sets of (usually) the same points, e.g. panels
    over training: a panel of the same points as the previous one starts from its layout
    (t-SNE) and is aligned to it, so the pictures show clusters forming. ``same_points[i]``:
    whether panel ``i`` shows the points of panel ``i - 1`` (default: when as many)."""
    layouts: list[np.ndarray] = []
    with Progress(f"{plot} panels", len(features), enabled=progress, unit="panels") as bar:
        for i, feats in enumerate(features):
            same = same_points[i] if same_points is not None else True
            prev = layouts[-1] if same and layouts and len(layouts[-1]) == len(feats) else None
            if plot == "tsne":
                xy = tsne_2d(feats, seed, init=prev)
            else:
                xy = project_2d(feats, plot, seed)
            layouts.append(align_to(xy, prev) if prev is not None else xy)
            bar.advance()
    return layouts


def _umap_module() -> Any:
    try:
        import umap
    except ImportError:
        raise ConfigError(
            "`plot` umap needs umap-learn: pip install 'fewlabels[umap]' (or use `plot` tsne)"
        ) from None
    return umap


def umap_2d(features: np.ndarray, seed: int = 0) -> np.ndarray:
    """2-D UMAP of ``features`` (15 neighbours, or fewer for small sets; PCA to 50 first)."""
    x = _reduce(features, seed)
    n = len(x)
    if n < 5:
        raise DataError(f"UMAP needs at least 5 points, got {n}")
    reducer = _umap_module().UMAP(
        n_components=2, n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1
    )
    threads = torch.get_num_threads()
    try:
        return np.asarray(reducer.fit_transform(x))
    finally:
        # numba's OpenMP layer resets the process's OpenMP thread count, which torch
        # shares: put torch's back, or later training here runs (and rounds) differently
        torch.set_num_threads(threads)


def project_2d(features: np.ndarray, plot: str = "tsne", seed: int = 0) -> np.ndarray:
    """The 2-D picture coordinates of ``features`` by ``plot`` (tsne or umap)."""
    if plot == "umap":
        return umap_2d(features, seed)
    if plot == "tsne":
        return tsne_2d(features, seed)
    raise ConfigError(f"unknown plot {plot!r}: choose tsne or umap")


def _title(info: dict[str, Any]) -> str:
    parts = []
    if np.isfinite(info.get("step", np.nan)):
        parts.append(f"step {int(info['step'])}")
    if np.isfinite(info.get("time_s", np.nan)):
        parts.append(f"{info['time_s']:.0f} s")
    if np.isfinite(info.get("val_acc", np.nan)):
        parts.append(f"val {100 * info['val_acc']:.1f}%")
    if np.isfinite(info.get("knn_acc", np.nan)):
        parts.append(f"kNN {100 * info['knn_acc']:.1f}%")
    return " | ".join(parts) or str(info.get("title", ""))


def _draw(ax: Any, xy: np.ndarray, labels: np.ndarray, class_names: list[str], title: str) -> None:
    cmap = plt.get_cmap("tab10" if len(class_names) <= 10 else "tab20")
    for k, name in enumerate(class_names):
        m = labels == k
        if m.any():
            ax.scatter(xy[m, 0], xy[m, 1], s=4, color=cmap(k % cmap.N), label=literal(name[:12]))
    ax.set_title(literal(title), fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_panels(
    points: list[dict[str, Any]],
    out_dir: Path,
    seed: int = 0,
    plot: str = "tsne",
    progress: bool | None = None,
) -> list[Path]:
    """One PNG per point (``<plot>_<name>.png``) and ``<plot>.png`` with every panel, in
    rows of up to ``PANELS_PER_ROW`` in training order (``plot``: tsne or umap); each
    panel starts from and is aligned to the one before (``project_sequence``)."""
    if plot not in PLOTS:
        raise ConfigError(f"unknown plot {plot!r}: choose tsne or umap")
    out_dir.mkdir(parents=True, exist_ok=True)
    layouts = project_sequence([p["features"] for p in points], plot, seed, progress)
    drawn = list(zip(points, layouts, strict=True))
    for p, xy in drawn:
        fig, ax = plt.subplots(figsize=(4.2, 4.2))
        _draw(ax, xy, p["labels"], p["class_names"], _title(p))
        if len(p["class_names"]) <= 20:
            ax.legend(fontsize=6, markerscale=2, loc="best", frameon=False)
        fig.tight_layout()
        atomic_savefig(fig, out_dir / f"{plot}_{p['name']}.png", dpi=110)
        plt.close(fig)
    cols = min(PANELS_PER_ROW, len(drawn))
    rows = -(-len(drawn) // cols)
    fig, axes = plt.subplots(
        rows, cols, figsize=(3.2 * cols + 0.4, 3.4 * rows + 0.3), squeeze=False
    )
    flat = list(axes.flat)
    for ax, (p, xy) in zip(flat, drawn, strict=False):
        _draw(ax, xy, p["labels"], p["class_names"], _title(p))
    for ax in flat[len(drawn) :]:
        ax.set_axis_off()
    handles, names = flat[len(drawn) - 1].get_legend_handles_labels()
    if handles and len(names) <= 20:
        fig.legend(handles, names, loc="lower center", ncol=min(10, len(names)), fontsize=7)
        fig.tight_layout(rect=(0, 0.3 / (3.4 * rows + 0.3), 1, 1))
    else:
        fig.tight_layout()
    atomic_savefig(fig, out_dir / f"{plot}.png", dpi=110)
    plt.close(fig)
    return [out_dir / f"{plot}_{p['name']}.png" for p, _ in drawn] + [out_dir / f"{plot}.png"]


def _checkpoint_points(
    source: Path, data: str | None, strict: bool, seed: int, progress: bool | None = None
) -> list[dict[str, Any]]:
    if data is None:
        raise ConfigError(f"{source} has no saved embeddings; give `data` to compute some")
    net, meta = load_encoder(source)
    ds = load_dataset(data, strict=strict)
    images = ds.test if ds.test is not None and len(ds.test) else ds.train
    keep = torch.nonzero(images.is_labeled).flatten()
    if len(keep) == 0:
        raise DataError(f"{data} holds no labeled images to colour the embedding by")
    g = torch.Generator().manual_seed(seed)
    keep = keep[torch.randperm(len(keep), generator=g)[:MAX_POINTS].sort().values]
    sub = images.subset(keep)
    c, (h, w) = sub.channels, sub.image_size
    ec, es = int(net.config["in_channels"]), int(net.config["image_size"])
    if (c, h, w) != (ec, es, es):
        raise DataError(f"data images are {c}x{h}x{w} but the encoder expects {ec}x{es}x{es}")
    feats = extract_features(
        net, sub.images, precision=resolve_precision("auto", torch.device("cpu")), progress=progress
    )
    name = source.parent.name if source.is_file() else source.name
    return [
        {
            "name": "checkpoint",
            "features": feats.numpy(),
            "labels": sub.labels.numpy(),
            "class_names": list(sub.class_names),
            "title": f"{name} ({meta.get('method') or 'encoder'})",
        }
    ]


def embed_pictures(
    source: str | Path,
    *,
    plot: str = "tsne",
    data: str | None = None,
    out: str | Path | None = None,
    strict: bool = False,
    seed: int = 0,
    log: Callable[[str], Any] = print,
    progress: bool | None = None,
) -> list[Path]:
    """Draw the embeddings of a run folder (its saved points) or of a checkpoint on ``data``.

    Returns the PNG paths written (one per point, then the overview ``<plot>.png``).
    ``progress``: a bar while fitting (None: when stderr is a terminal).
    """
    if plot not in PLOTS:
        raise ConfigError(f"plot {plot!r} is not available; choose from {', '.join(PLOTS)}")
    if plot == "umap":
        _umap_module()  # a missing extra is an error before any work
    src = Path(source)
    if not src.exists():
        raise ConfigError(f"{src} does not exist")
    if out is not None:
        check_out_folder(out)
    saved = sorted((src / "embeddings").glob("step_*.npz")) if src.is_dir() else []
    if saved and data is None:
        points = []
        for f in saved:
            p = load_embeddings(f)
            p["name"] = f.stem
            points.append(p)
        out_dir = Path(out) if out is not None else src / "embeddings"
        log(f"{len(points)} saved points in {src / 'embeddings'}")
    else:
        points = _checkpoint_points(src, data, strict, seed, progress)
        base = src if src.is_dir() else src.parent
        out_dir = Path(out) if out is not None else base / "embeddings"
    check_out_folder(out_dir)
    return plot_panels(points, out_dir, seed, plot, progress)
