"""The features a strategy works on: a self-supervised encoder's, or a raw-pixel fallback.

- With an encoder (a ``model.pt``, ``checkpoint.pt`` or run folder, e.g. of ``fewlabels
  pretrain``): its backbone features, extracted once and cached on disk
  (``evaluate.features.cached_features``, keyed by the weights and the images).
- Without one: raw pixels, average-pooled to at most 16x16, standardised per dimension
  and projected on their top 64 principal components (exact SVD of the covariance, so
  deterministic). Cheap and model-free, but pixel distances mostly measure colour and
  layout, not content: the TypiClust and ProbCover gains need a self-supervised encoder.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fewlabels.core.errors import DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.evaluate.features import cached_features, load_encoder

PIXEL_SIDE = 16
PIXEL_DIMS = 64


def pixel_features(
    images: torch.Tensor, *, side: int = PIXEL_SIDE, dims: int = PIXEL_DIMS
) -> np.ndarray:
    """Pooled, standardised raw pixels of uint8 NCHW ``images`` projected on ``dims`` PCs."""
    rows = []
    for s in range(0, len(images), 4096):
        x = images[s : s + 4096].float().div_(255)
        h, w = x.shape[-2:]
        if h > side or w > side:
            x = F.adaptive_avg_pool2d(x, (min(h, side), min(w, side)))
        rows.append(x.flatten(1).double())
    if not rows:
        return np.zeros((0, dims), np.float32)
    x = torch.cat(rows)
    x = (x - x.mean(0)) / x.std(0).clamp_min(1e-6) if len(x) > 1 else x * 0
    cov = x.T @ x / max(1, len(x) - 1)
    _, vecs = torch.linalg.eigh(cov)  # ascending eigenvalues
    top = vecs[:, -min(dims, vecs.shape[1]) :].flip(1)
    top = top * torch.sign(top[0:1] + 1e-12)  # a fixed sign per component
    return (x @ top).float().numpy()


def encoder_features(encoder: str | Path, images: torch.Tensor) -> np.ndarray:
    """Backbone features of ``images`` by the encoder in ``encoder``, through the disk cache."""
    net, _ = load_encoder(encoder)
    c, h, w = (int(v) for v in images.shape[1:])
    ec, es = int(net.config["in_channels"]), int(net.config["image_size"])
    if (c, h, w) != (ec, es, es):
        raise DataError(f"the images are {c}x{h}x{w} but the encoder expects {ec}x{es}x{es}")
    net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    precision = resolve_precision("auto", device)
    feats, _ = cached_features(net.to(device), images, precision=precision, device=device)
    return feats.float().numpy()


def pool_features(images: torch.Tensor, encoder: str | Path | None) -> np.ndarray:
    """Features of ``images`` for selection: the encoder's if given, else raw pixels."""
    if encoder is None:
        return pixel_features(images)
    return encoder_features(encoder, images)
