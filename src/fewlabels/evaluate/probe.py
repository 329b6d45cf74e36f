"""Evaluation protocols on an encoder's frozen features (pure: nothing here trains).

- ``linear``: features of the labeled, val and test images are extracted once (no-grad,
  batched, cached on disk), standardised with the labeled set's statistics, and a
  multinomial logistic regression is fitted full-batch with L-BFGS. Its L2 weight decay
  is picked from a small grid by val accuracy (with no val split, on a seeded 20% of
  the labeled features, then refitted on all of them).
- ``knn``: weighted kNN (cosine, k=200, T=0.1) of test features against labeled ones.

Fine-tuning, which trains, and ``run_probe`` (a checkpoint and a data spec to a results
folder) are in ``fewlabels.train.probing``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.features import cached_features, network_fingerprint
from fewlabels.evaluate.knn import DEFAULTS as KNN_DEFAULTS
from fewlabels.evaluate.knn import knn_predict
from fewlabels.models import Network

# L2 penalties tried by the linear probe (on standardised features; loss = mean CE +
# wd/2 * ||W||^2), strongest first so each fit warm-starts the next.
WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


# -- logistic regression ---------------------------------------------------------------
def fit_logistic(
    x: torch.Tensor,
    y: torch.Tensor,
    num_classes: int,
    weight_decay: float,
    *,
    max_iter: int = 100,
    init: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Multinomial logistic regression ``(W (K, D), b (K,))`` minimising
    ``mean CE(x W^T + b, y) + weight_decay / 2 * ||W||^2`` full-batch with L-BFGS."""
    x = x.float()
    w = torch.zeros(num_classes, x.shape[1]) if init is None else init[0].clone()
    b = torch.zeros(num_classes) if init is None else init[1].clone()
    w.requires_grad_(True)
    b.requires_grad_(True)
    opt = torch.optim.LBFGS(
        [w, b],
        lr=1.0,
        max_iter=max_iter,
        history_size=20,
        tolerance_grad=1e-5,
        tolerance_change=1e-9,
        line_search_fn="strong_wolfe",
    )

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = F.cross_entropy(x @ w.T + b, y) + 0.5 * weight_decay * w.pow(2).sum()
        loss.backward()
        return loss

    with torch.enable_grad():
        opt.step(closure)
    return w.detach(), b.detach()


def _accuracy(w: torch.Tensor, b: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> float:
    return float(((x @ w.T + b).argmax(1) == y).float().mean()) if len(y) else float("nan")


def linear_probe(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    num_classes: int,
    val_x: torch.Tensor | None = None,
    val_y: torch.Tensor | None = None,
    *,
    weight_decays: tuple[float, ...] = WEIGHT_DECAYS,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:
    """Standardise, pick the weight decay on val, fit; returns ``(W, b, info)`` acting on
    the raw features (standardisation folded into them). Without val, a seeded 20% of
    the training features choose the weight decay and the final fit uses all of them."""
    train_x = train_x.float()
    refit = val_x is None or val_y is None or len(val_y) == 0
    if refit:
        g = torch.Generator().manual_seed(seed)
        perm = torch.randperm(len(train_y), generator=g)
        n_hold = max(1, len(perm) // 5) if len(perm) >= 5 else 0
        hold, fit_rows = perm[:n_hold], perm[n_hold:]
        sel_x, sel_y, val_x, val_y = (
            train_x[fit_rows],
            train_y[fit_rows],
            train_x[hold],
            train_y[hold],
        )
    else:
        sel_x, sel_y = train_x, train_y
    assert val_x is not None and val_y is not None
    mean = sel_x.mean(0)
    std = sel_x.std(0).clamp_min(1e-6) if len(sel_x) > 1 else torch.ones_like(mean)

    def z(a: torch.Tensor) -> torch.Tensor:
        return (a.float() - mean) / std

    zs, zv = z(sel_x), z(val_x)
    grid: list[dict[str, float]] = []
    best: tuple[float, float, tuple[torch.Tensor, torch.Tensor]] | None = None
    params = None
    for wd in weight_decays:
        params = fit_logistic(zs, sel_y, num_classes, wd, init=params)
        acc = _accuracy(*params, zv, val_y) if len(val_y) else 0.0
        grid.append({"weight_decay": wd, "val_acc": round(acc, 5)})
        if best is None or acc > best[0]:
            best = (acc, wd, params)
    assert best is not None
    val_acc, wd, (w, b) = best
    if refit:  # the chosen penalty, refitted on every labeled feature
        mean = train_x.mean(0)
        std = train_x.std(0).clamp_min(1e-6) if len(train_x) > 1 else torch.ones_like(mean)
        w, b = fit_logistic(z(train_x), train_y, num_classes, wd, init=(w, b))
    w_raw = w / std
    b_raw = b - w_raw @ mean
    info = {"weight_decay": wd, "val_acc": round(val_acc, 5), "grid": grid}
    return w_raw, b_raw, info


# -- encoder ---------------------------------------------------------------------------
def check_shapes(net: Network, images: ImageSet, what: str) -> None:
    c, (h, w) = images.channels, images.image_size
    ec, es = int(net.config["in_channels"]), int(net.config["image_size"])
    """Refuse images that are not the shape ``net`` was built for (one-line DataError)."""
    if (c, h, w) != (ec, es, es):
        raise DataError(f"{what} images are {c}x{h}x{w} but the encoder expects {ec}x{es}x{es}")


def classifier_network(encoder: Network, num_classes: int) -> Network:
    """A copy of ``encoder`` (weights and normalisation) with a fresh ``num_classes`` head."""
    net = Network.from_config({**encoder.config, "num_classes": num_classes})
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    return net


# -- the feature protocols --------------------------------------------------------------
@dataclass
class FeatureProbe:
    """What a linear or kNN probe of frozen features predicted, and how it got there."""

    pred: torch.Tensor  # test predictions
    train_seconds: float
    extra: dict[str, Any] = field(default_factory=dict)  # what metrics.json records
    curve: list[dict[str, Any]] = field(default_factory=list)  # the weight-decay grid
    classifier: Network | None = None  # linear: the encoder with the fitted head


def feature_probe(
    encoder: Network,
    labeled: ImageSet,
    test: ImageSet,
    val: ImageSet | None = None,
    *,
    protocol: Literal["linear", "knn"] = "linear",
    device: torch.device | str = "cpu",
    precision: str = "fp32",
    seed: int = 0,
    use_cache: bool = True,
) -> FeatureProbe:
    """Probe ``encoder``'s frozen features: a logistic regression (``linear``, weight decay
    picked on ``val``) or weighted kNN (``knn``) fitted on ``labeled``, predicting ``test``.

    ``use_cache`` keeps the features in the on-disk feature cache (``cached_features``)."""
    if protocol not in ("linear", "knn"):
        raise ConfigError(f"unknown feature probe {protocol!r}; expected linear or knn")
    device = torch.device(device)
    k = labeled.num_classes
    encoder = encoder.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
    fp = network_fingerprint(encoder) if use_cache else None
    t_feat = time.perf_counter()
    hits = 0

    def feats(images: ImageSet) -> torch.Tensor:
        nonlocal hits
        f, hit = cached_features(
            encoder,
            images.images,
            precision=precision,
            device=device,
            net_fp=fp,
            use_cache=use_cache,
        )
        hits += int(hit)
        return f

    has_val = val is not None and len(val) > 0
    f_lab, f_test = feats(labeled), feats(test)
    f_val = feats(val) if has_val and val is not None else None
    extra: dict[str, Any] = {"feature_seconds": round(time.perf_counter() - t_feat, 2)}
    extra["features_cached"] = hits
    t_fit = time.perf_counter()
    if protocol == "linear":
        y_val = val.labels if f_val is not None and val is not None else None
        w, b, info = linear_probe(f_lab, labeled.labels, k, f_val, y_val, seed=seed)
        extra.update(info)
        classifier = classifier_network(encoder.cpu(), k)
        head = classifier.head
        assert isinstance(head, nn.Linear)
        with torch.no_grad():
            head.weight.copy_(w)
            head.bias.copy_(b)
        pred = (f_test @ w.T + b).argmax(1)
        return FeatureProbe(pred, time.perf_counter() - t_fit, extra, info["grid"], classifier)
    kk = min(KNN_DEFAULTS["k"], len(labeled))
    pred = knn_predict(f_lab, labeled.labels, f_test, k)
    extra.update({"k": kk, "temperature": KNN_DEFAULTS["temperature"]})
    if f_val is not None and val is not None:
        vpred = knn_predict(f_lab, labeled.labels, f_val, k)
        extra["val_acc"] = round(float((vpred == val.labels).float().mean()), 5)
    return FeatureProbe(pred, time.perf_counter() - t_fit, extra)


__all__ = [
    "WEIGHT_DECAYS",
    "FeatureProbe",
    "check_shapes",
    "classifier_network",
    "feature_probe",
    "fit_logistic",
    "linear_probe",
]
