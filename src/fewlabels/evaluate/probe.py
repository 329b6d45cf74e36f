"""Evaluation protocols for any encoder (pretrained, supervised or random).

- ``linear``: features of the labeled, val and test images are extracted once (no-grad,
  batched, cached on disk), standardised with the labeled set's statistics, and a
  multinomial logistic regression is fitted full-batch with L-BFGS. Its L2 weight decay
  is picked from a small grid by val accuracy (with no val split, on a seeded 20% of
  the labeled features, then refitted on all of them).
- ``knn``: weighted kNN (cosine, k=200, T=0.1) of test features against labeled ones.
- ``finetune``: an ordinary supervised run (``Trainer``, weak augmentation) from the
  checkpoint's weights with a fresh head; all but the last ``finetune_blocks`` backbone
  blocks frozen (``None``: full fine-tune; ``0``: frozen encoder + linear layer).

Every protocol writes ``metrics.json`` (the keys of a training run's, plus protocol,
train_seconds and labeled) and ``confusion.png`` in ``out``; ``linear`` and ``finetune``
also write a ``model.pt`` classifier (the linear probe's standardisation folded in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict
from torch import nn

from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.data import Dataset, Splits
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.features import cached_features, load_encoder, network_fingerprint
from fewlabels.evaluate.knn import DEFAULTS as KNN_DEFAULTS
from fewlabels.evaluate.knn import knn_predict
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.models import Network
from fewlabels.models.freeze import backbone_blocks, freeze_backbone

# L2 penalties tried by the linear probe (on standardised features; loss = mean CE +
# wd/2 * ||W||^2), strongest first so each fit warm-starts the next.
WEIGHT_DECAYS = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5)


class ProbeConfig(BaseModel):
    """One evaluation of a checkpoint's encoder (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str
    data: str
    test: str | None = None
    labels_per_class: int | None = None
    labeled_fraction: float | None = None
    val: str = "train:0.1"
    protocol: Literal["linear", "knn", "finetune"] = "linear"
    finetune_blocks: int | None = None
    budget: str = "2m"
    seed: int = 0
    out: str
    device: str = "auto"
    strict: bool = False
    # the labeled set from a labels file, or picked by a strategy (as in RunConfig)
    labels: str | None = None
    source_labels: bool = True
    select: dict[str, Any] | None = None


@dataclass
class ProbeResult:
    """What ``run_probe`` produced."""

    out_dir: Path
    metrics: Metrics
    seconds: float
    curve: list[dict[str, Any]] = field(default_factory=list)


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


# -- data and encoder ------------------------------------------------------------------
def _prepare(cfg: ProbeConfig) -> tuple[Dataset, Splits]:
    from fewlabels.train.loop import TrainConfig
    from fewlabels.train.run import RunConfig, prepare_data

    run_cfg = RunConfig(
        data=cfg.data,
        test=cfg.test,
        labels_per_class=cfg.labels_per_class,
        labeled_fraction=cfg.labeled_fraction,
        unlabeled="none",
        val=cfg.val,
        strict=cfg.strict,
        labels=cfg.labels,
        source_labels=cfg.source_labels,
        select=cfg.select,
        train=TrainConfig(seed=cfg.seed),
    )
    return prepare_data(run_cfg)


def _check_shapes(net: Network, images: ImageSet, what: str) -> None:
    c, (h, w) = images.channels, images.image_size
    ec, es = int(net.config["in_channels"]), int(net.config["image_size"])
    if (c, h, w) != (ec, es, es):
        raise DataError(f"{what} images are {c}x{h}x{w} but the encoder expects {ec}x{es}x{es}")


def classifier_network(encoder: Network, num_classes: int) -> Network:
    """A copy of ``encoder`` (weights and normalisation) with a fresh ``num_classes`` head."""
    net = Network.from_config({**encoder.config, "num_classes": num_classes})
    state = {k: v for k, v in encoder.state_dict().items() if not k.startswith("head.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert not unexpected and all(k.startswith("head.") for k in missing), (missing, unexpected)
    return net


# -- the protocols ---------------------------------------------------------------------
def run_probe(
    cfg: ProbeConfig, *, log: Callable[[str], Any] = print, progress: bool = True
) -> ProbeResult:
    """Evaluate the encoder in ``cfg.checkpoint`` with ``cfg.protocol``; results in ``cfg.out``."""
    from fewlabels.core.device import pick_device
    from fewlabels.train.run import export_model, write_json

    t0 = time.perf_counter()
    if cfg.finetune_blocks is not None and cfg.protocol != "finetune":
        raise ConfigError("--finetune-blocks only applies to --protocol finetune")
    Budget.parse(cfg.budget)
    encoder, meta = load_encoder(cfg.checkpoint)
    ds, splits = _prepare(cfg)
    if splits.test is None or len(splits.test) == 0:
        raise DataError(f"{cfg.data} has no test set to report on; give one with --test")
    for what, part in (("training", splits.labeled), ("test", splits.test)):
        _check_shapes(encoder, part, what)
    device = pick_device(cfg.device)
    precision = resolve_precision("auto", device)
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    k = ds.train.num_classes
    labeled, val, test = splits.labeled, splits.val, splits.test
    has_val = val is not None and len(val) > 0
    log(
        f"{cfg.protocol} probe of {cfg.checkpoint} ({meta.get('method') or 'unknown method'}, "
        f"{encoder.config['backbone']}): {len(labeled)} labeled, "
        f"{len(val) if has_val and val is not None else 0} val, {len(test)} test"
    )
    extra: dict[str, Any] = {}
    curve: list[dict[str, Any]] = []
    classifier: Network | None = None
    train_s = 0.0

    if cfg.protocol in ("linear", "knn"):
        encoder = encoder.to(device).to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        fp = network_fingerprint(encoder)
        t_feat = time.perf_counter()
        hits = 0

        def feats(images: ImageSet) -> torch.Tensor:
            nonlocal hits
            f, hit = cached_features(
                encoder, images.images, precision=precision, device=device, net_fp=fp
            )
            hits += int(hit)
            return f

        f_lab, f_test = feats(labeled), feats(test)
        f_val = feats(val) if has_val and val is not None else None
        extra["feature_seconds"] = round(time.perf_counter() - t_feat, 2)
        extra["features_cached"] = hits
        t_fit = time.perf_counter()
        if cfg.protocol == "linear":
            w, b, info = linear_probe(
                f_lab,
                labeled.labels,
                k,
                f_val,
                val.labels if f_val is not None and val is not None else None,
                seed=cfg.seed,
            )
            pred = (f_test @ w.T + b).argmax(1)
            extra.update(info)
            curve = info["grid"]
            classifier = classifier_network(encoder.cpu(), k)
            head = classifier.head
            assert isinstance(head, nn.Linear)
            with torch.no_grad():
                head.weight.copy_(w)
                head.bias.copy_(b)
        else:
            kk = min(KNN_DEFAULTS["k"], len(labeled))
            pred = knn_predict(f_lab, labeled.labels, f_test, k)
            extra.update({"k": kk, "temperature": KNN_DEFAULTS["temperature"]})
            if f_val is not None and val is not None:
                vpred = knn_predict(f_lab, labeled.labels, f_val, k)
                extra["val_acc"] = round(float((vpred == val.labels).float().mean()), 5)
        train_s = time.perf_counter() - t_fit
    else:
        classifier, fit_curve, train_s, extra = _finetune(
            cfg, encoder, labeled, val if has_val else None, k, device, out, progress, log
        )
        curve = fit_curve
        logits = predict_logits(classifier, test.images, device=device, precision=precision)
        pred = logits.argmax(1)

    metrics = classification_metrics(test.labels.numpy(), pred.cpu().numpy(), ds.class_names)
    seconds = time.perf_counter() - t0
    write_json(
        out / "metrics.json",
        {
            **metrics.to_dict(),
            "protocol": cfg.protocol,
            "checkpoint": cfg.checkpoint,
            "train_seconds": round(train_s, 3),
            "seconds": round(seconds, 2),
            "labeled": len(labeled),
            **extra,
        },
    )
    plot_confusion(
        metrics.confusion,
        ds.class_names,
        out / "confusion.png",
        title=f"{cfg.protocol} probe, {len(labeled)} labels: {100 * metrics.accuracy:.1f}%",
    )
    if classifier is not None:
        export_model(
            out / "model.pt",
            classifier.cpu(),
            ds.class_names,
            {
                "method": f"probe:{cfg.protocol}",
                "metrics": metrics.summary(),
                "init": cfg.checkpoint,
            },
        )
    return ProbeResult(out, metrics, seconds, curve)


def _finetune(
    cfg: ProbeConfig,
    encoder: Network,
    labeled: ImageSet,
    val: ImageSet | None,
    num_classes: int,
    device: torch.device,
    out: Path,
    progress: bool,
    log: Callable[[str], Any],
) -> tuple[Network, list[dict[str, Any]], float, dict[str, Any]]:
    from fewlabels.methods.supervised import Supervised
    from fewlabels.train.loop import TrainConfig, Trainer

    net = classifier_network(encoder, num_classes)
    frozen = freeze_backbone(net.backbone, cfg.finetune_blocks)
    n_blocks = len(backbone_blocks(net.backbone))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    log(
        f"fine-tuning {n_blocks - len(frozen)} of {n_blocks} backbone blocks + a new head "
        f"({trainable:,} trainable parameters) for {cfg.budget}"
    )
    train_cfg = TrainConfig(
        budget=cfg.budget,
        # the supervised CIFAR-250 setting of benchmarks/bench_supervised.py
        batch_size=min(128, max(8, len(labeled))),
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        evals=5,
        seed=cfg.seed,
        save_embeddings=False,
    )
    torch.manual_seed(cfg.seed)
    method = Supervised(net)
    trainer = Trainer(train_cfg, device=device, out_dir=out / "finetune", progress=progress)
    fit = trainer.fit(method, labeled, None, val, resume=False)
    info = {
        "finetune_blocks": cfg.finetune_blocks,
        "backbone_blocks": n_blocks,
        "trainable_parameters": trainable,
        "steps": fit.steps,
    }
    return method.network, fit.curve, fit.train_seconds, info


def read_metrics(out: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` a probe wrote."""
    return json.loads((Path(out) / "metrics.json").read_text())


__all__ = [
    "ProbeConfig",
    "ProbeResult",
    "fit_logistic",
    "linear_probe",
    "read_metrics",
    "run_probe",
]


def run_data(checkpoint: str | Path) -> tuple[str | None, str | None]:
    """The ``data`` and ``test`` specs a run folder (or a file inside one) was trained on."""
    p = Path(checkpoint)
    cfg_file = (p if p.is_dir() else p.parent) / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None, None
    return cfg.get("data"), cfg.get("test")
