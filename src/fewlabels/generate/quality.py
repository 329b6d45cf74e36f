"""Sample quality without downloaded networks: Frechet distance and kNN precision/recall
in the feature space of one of this project's own encoders (e.g. a ``fewlabels pretrain``
checkpoint), against real reference images (the test set).

- Frechet distance (Heusel et al. 2017, "FID" with an Inception network): fit a Gaussian
  to each feature set, ``|mu_r - mu_g|^2 + Tr(S_r + S_g - 2 (S_r S_g)^(1/2))``. Lower is
  better; it depends on the encoder and on the number of images, so compare values only
  at the same encoder and counts.
- Precision and recall (Kynkaanniemi et al. 2019, k=3): each set's manifold is the union
  of balls around its points with radius the distance to the k-th nearest neighbour in
  the same set. Precision = share of generated images inside the real manifold
  (fidelity); recall = share of real images inside the generated manifold (coverage).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import load_dataset
from fewlabels.data.folder import walk_images
from fewlabels.data.sources import SOURCES
from fewlabels.evaluate.features import cached_features
from fewlabels.evaluate.inference import fit_images, warn_converted


def frechet_distance(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor) -> float:
    """Frechet distance between Gaussians fitted to feature sets ``a`` (N, D) and ``b`` (M, D).

    The trace of the matrix square root is taken as the sum of the square roots of the
    eigenvalues of ``sqrt(S_a) S_b sqrt(S_a)`` (symmetric, so it stays real and stable).
    """
    x, y = _as64(a), _as64(b)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise ConfigError(f"feature sets of shapes {x.shape} and {y.shape} cannot be compared")
    if len(x) < 2 or len(y) < 2:
        raise ConfigError("the Frechet distance needs at least 2 images in each set")
    mu_x, mu_y = x.mean(0), y.mean(0)
    s_x, s_y = np.cov(x, rowvar=False), np.cov(y, rowvar=False)
    s_x, s_y = np.atleast_2d(s_x), np.atleast_2d(s_y)
    w, v = np.linalg.eigh(s_x)
    root_x = (v * np.sqrt(np.clip(w, 0, None))) @ v.T
    inner = root_x @ s_y @ root_x
    eig = np.linalg.eigvalsh((inner + inner.T) / 2)
    tr_root = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu_x - mu_y
    fd = float(diff @ diff + np.trace(s_x) + np.trace(s_y) - 2.0 * tr_root)
    return max(fd, 0.0)


def _as64(a: np.ndarray | torch.Tensor) -> np.ndarray:
    if isinstance(a, torch.Tensor):
        a = a.detach().cpu().double().numpy()
    return np.asarray(a, dtype=np.float64)


def _kth_radius(x: torch.Tensor, k: int, chunk: int) -> torch.Tensor:
    """Distance from each row of ``x`` to its k-th nearest other row."""
    out = []
    for s in range(0, len(x), chunk):
        d = torch.cdist(x[s : s + chunk], x)
        # the k+1 smallest include the point itself (distance 0)
        out.append(d.topk(k + 1, dim=1, largest=False).values[:, k])
    return torch.cat(out)


def _covered(points: torch.Tensor, centres: torch.Tensor, radii: torch.Tensor, chunk: int) -> float:
    """Share of ``points`` inside at least one ball (centre, radius)."""
    inside = 0
    for s in range(0, len(points), chunk):
        d = torch.cdist(points[s : s + chunk], centres)
        inside += int((d <= radii[None, :]).any(dim=1).sum())
    return inside / len(points)


def knn_precision_recall(
    real: np.ndarray | torch.Tensor,
    fake: np.ndarray | torch.Tensor,
    k: int = 3,
    *,
    chunk: int = 1024,
) -> tuple[float, float]:
    """(precision, recall) of ``fake`` against ``real`` with k-NN manifolds (Euclidean)."""
    r = torch.as_tensor(_as64(real))
    f = torch.as_tensor(_as64(fake))
    if r.ndim != 2 or f.ndim != 2 or r.shape[1] != f.shape[1]:
        raise ConfigError(f"feature sets of shapes {tuple(r.shape)} and {tuple(f.shape)} differ")
    if k < 1:
        raise ConfigError(f"k must be at least 1, got {k}")
    if len(r) <= k or len(f) <= k:
        raise ConfigError(f"precision/recall with k={k} needs more than {k} images in each set")
    precision = _covered(f, r, _kth_radius(r, k, chunk), chunk)
    recall = _covered(r, f, _kth_radius(f, k, chunk), chunk)
    return precision, recall


def encoder_features(
    encoder: Any,
    images: torch.Tensor,
    *,
    precision: str = "fp32",
    use_cache: bool = True,
    what: str = "images",
) -> torch.Tensor:
    """The encoder's features of uint8 images, fitted to its input size and channels (with
    a one-line warning when they differ, as evaluate and predict warn)."""
    size = int(encoder.config["image_size"])
    channels = int(encoder.config["in_channels"])
    c, h, w = images.shape[1:]
    if (c, h, w) != (channels, size, size):
        found = f"the {what} are {c}x{h}x{w}"
        warn_converted(found, f"{channels}x{size}x{size}", c > channels)
    x = fit_images(images, size, channels)
    feats, _ = cached_features(encoder, x, precision=precision, use_cache=use_cache)
    return feats


def subsample(images: torch.Tensor, n: int, seed: int = 0) -> torch.Tensor:
    """At most ``n`` images, a seeded random subset (in the original order)."""
    if len(images) <= n:
        return images
    g = torch.Generator().manual_seed(seed)
    idx = torch.randperm(len(images), generator=g)[:n].sort().values
    return images[idx]


def sample_quality(
    encoder: Any,
    real: torch.Tensor,
    fake: torch.Tensor,
    *,
    k: int = 3,
    max_images: int = 10_000,
    seed: int = 0,
) -> dict[str, Any]:
    """FD, precision and recall of uint8 ``fake`` images against uint8 ``real`` ones."""
    real, fake = subsample(real, max_images, seed), subsample(fake, max_images, seed + 1)
    fr = encoder_features(encoder, real, what="reference images")
    ff = encoder_features(encoder, fake, what="images judged")
    precision, recall = knn_precision_recall(fr, ff, k)
    return {
        "fd": round(frechet_distance(fr, ff), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "k": k,
        "n_real": len(real),
        "n_fake": len(fake),
        "feature_dim": int(fr.shape[1]),
    }


def load_images(source: str | Path, *, strict: bool = False) -> torch.Tensor:
    """uint8 images of a data spec (its training and unlabeled images) or of any folder.

    A folder that is not a data-spec layout is read at any depth; its images must share
    one size (else a one-line ``DataError`` from the folder source).
    """
    text = str(source)
    kind = text.split(":", 1)[0].lower() if ":" in text else ""
    if kind in SOURCES or text == "digits":
        ds = load_dataset(text, strict=strict)
        parts = [ds.train.images] + ([ds.unlabeled.images] if ds.unlabeled is not None else [])
        return torch.cat(parts)
    return _read_folder(Path(text), strict)


def _read_folder(path: Path, strict: bool) -> torch.Tensor:
    from PIL import Image

    if not path.exists():
        raise DataError(f"no such file or directory: {path}")
    if not path.is_dir():
        raise DataError(f"{path} is not a folder (or a data spec such as folder:PATH)")
    files, _ = walk_images(path)
    if not files:
        raise DataError(f"no images found in {path}")
    arrays: list[np.ndarray] = []
    bad: list[tuple[Path, str]] = []
    for f in files:
        try:
            with Image.open(f) as im:
                arrays.append(np.asarray(im.convert("L" if im.mode in ("1", "L") else "RGB")))
        except Exception as e:  # Pillow raises many types for a bad file
            bad.append((f, type(e).__name__))
    if bad and strict:
        raise DataError(f"unreadable image {bad[0][0]}: {bad[0][1]}")
    if not arrays:
        raise DataError(f"no readable images in {path}")
    color = any(a.ndim == 3 for a in arrays)
    shape = arrays[0].shape[:2]
    out = np.empty((len(arrays), 3 if color else 1, *shape), np.uint8)
    for i, a in enumerate(arrays):
        if a.shape[:2] != shape:
            raise DataError(f"images in {path} differ in size ({a.shape[:2]} vs {shape})")
        out[i] = (
            (np.repeat(a[None], 3, 0) if color else a[None])
            if a.ndim == 2
            else a.transpose(2, 0, 1)
        )
    return torch.from_numpy(out)
