"""Pictures: confusion matrices and contact sheets of a data set.

Class names, titles and paths come from the user and are drawn literally: ``literal``
escapes matplotlib's math-text markers (``$``), and the figures are drawn with LaTeX off
(``text.usetex`` False), so a class called ``$x$`` or ``50%_a`` is shown as written and
never crashes the plot.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from fewlabels.core.atomic import atomic_savefig
from fewlabels.core.errors import ConfigError
from fewlabels.core.runlock import check_out_file

# rc settings under which user strings are drawn as plain text
PLAIN_TEXT = {"text.usetex": False}


def literal(text: object) -> str:
    """``text`` as matplotlib shows it literally: every ``$`` escaped, so no math text."""
    return str(text).replace("$", r"\$")


@contextmanager
def plain_text() -> Iterator[None]:
    """Draw with LaTeX off, whatever the user's matplotlibrc says."""
    with matplotlib.rc_context(PLAIN_TEXT):
        yield


def plot_confusion(
    confusion: list[list[int]], class_names: list[str], path: str | Path, title: str = ""
) -> Path:
    """Row-normalised confusion matrix as a PNG (counts in the cells when there are few)."""
    with plain_text():
        return _plot_confusion(confusion, [literal(n) for n in class_names], path, literal(title))


def _plot_confusion(
    confusion: list[list[int]], class_names: list[str], path: Path | str, title: str
) -> Path:
    cm = np.asarray(confusion, dtype=float)
    k = len(class_names)
    norm = cm / np.maximum(cm.sum(1, keepdims=True), 1)
    size = min(14.0, 2.5 + 0.45 * k)
    fig, ax = plt.subplots(figsize=(size, size * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), class_names, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), class_names, fontsize=8)
    if k <= 15:
        for i in range(k):
            for j in range(k):
                ax.text(
                    j,
                    i,
                    int(cm[i, j]),
                    ha="center",
                    va="center",
                    fontsize=7,
                    color="white" if norm[i, j] > 0.5 else "black",
                )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion matrix (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=110)
    plt.close(fig)
    return path


FIGURE_SUFFIXES = (".png", ".jpg", ".jpeg", ".pdf", ".svg")


def check_figure_path(path: str | Path, setting: str = "path") -> Path:
    """``path`` of a figure to write, refused (one line naming ``setting``) when its
    extension is no image format (``s.txt``) or it cannot be written. Writes nothing."""
    p = check_out_file(path, setting=setting)
    if p.suffix.lower() not in FIGURE_SUFFIXES:
        raise ConfigError(
            f"{setting} {p} is not an image file name; end it with {', '.join(FIGURE_SUFFIXES)}"
        )
    return p


def plot_contact_sheet(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    path: str | Path,
    per_class: int = 8,
    max_classes: int = 20,
    title: str = "",
) -> Path:
    """A grid with one row per class (first ``max_classes``) of its first ``per_class`` images.

    Unlabeled images (label -1) get a row of their own at the bottom.
    """
    check_figure_path(path)
    with plain_text():
        return _plot_contact_sheet(
            images,
            labels,
            [literal(n) for n in class_names],
            path,
            per_class,
            max_classes,
            literal(title),
        )


def _plot_contact_sheet(
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: list[str],
    path: str | Path,
    per_class: int,
    max_classes: int,
    title: str,
) -> Path:
    rows: list[tuple[str, torch.Tensor]] = []
    for k, name in enumerate(class_names[:max_classes]):
        idx = torch.nonzero(labels == k).flatten()[:per_class]
        if len(idx):
            rows.append((name, images[idx]))
    unl = torch.nonzero(labels < 0).flatten()[:per_class]
    if len(unl):
        rows.append(("(unlabeled)", images[unl]))
    if not rows:
        rows.append(("", images[:per_class]))
    fig, axes = plt.subplots(
        len(rows), per_class, figsize=(1.1 * per_class + 1.2, 1.1 * len(rows) + 0.4), squeeze=False
    )
    for r, (name, imgs) in enumerate(rows):
        for c in range(per_class):
            ax = axes[r][c]
            ax.set_xticks([])
            ax.set_yticks([])
            for s in ax.spines.values():
                s.set_visible(False)
            if c < len(imgs):
                im = imgs[c].permute(1, 2, 0).cpu().numpy()
                if im.shape[2] == 1:
                    ax.imshow(im[:, :, 0], cmap="gray", vmin=0, vmax=255)
                else:
                    ax.imshow(im)
            if c == 0:
                ax.set_ylabel(_clip(name, 14), rotation=0, ha="right", va="center", fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_savefig(fig, path, dpi=90)
    plt.close(fig)
    return path


def _clip(name: str, n: int) -> str:
    """The first ``n`` characters of an escaped name, never ending inside an escape."""
    out = name[:n]
    return out[:-1] if out.endswith("\\") else out
