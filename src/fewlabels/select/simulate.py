"""Simulated label requests on a labeled benchmark: the splits of a study cell or a benchmark
whose labeled set is chosen by a strategy instead of drawn per class.

The source's labels play the oracle. Validation and test sets are cut as usual
(``make_splits`` with all labels); the pool is every remaining labeled training image,
labels hidden; the strategy picks ``budget`` of them (a cold start: no labels yet) and
those get their labels back. The other pool images (and any images the source gives
without labels) form the unlabeled set, of the size ``unlabeled`` asks for.
"""

from __future__ import annotations

import numpy as np
import torch

from fewlabels.core.errors import ConfigError, SplitError
from fewlabels.data import Dataset, SplitConfig, Splits, make_splits, parse_unlabeled
from fewlabels.data.imageset import ImageSet
from fewlabels.data.settings import SelectConfig, SourceSettings
from fewlabels.select import select, strategy
from fewlabels.select.base import Pool
from fewlabels.select.features import pool_features

__all__ = [
    "SelectConfig",
    "check_select",
    "select_splits",
    "selected_data",
    "selected_sizes",
    "unlabeled_count",
]


def check_select(cfg: SelectConfig) -> None:
    """Refuse what cannot run from zero labels before any work is done."""
    s = strategy(cfg.strategy)
    if s.needs_labels:
        raise ConfigError(
            f"strategy {s.name} needs a classifier trained on labels, and a simulated request "
            "starts from none; use random, representative, typiclust, probcover or coreset"
        )
    if cfg.budget <= 0:
        raise ConfigError(f"selection budget must be a positive number of labels, got {cfg.budget}")


def unlabeled_count(unlabeled: str, available: int, n_labeled: int) -> int:
    """How many unlabeled images ``unlabeled`` (rest, count, fraction, ratio) asks for."""
    spec = parse_unlabeled(unlabeled)
    want = {
        "rest": available,
        "count": int(spec.value),
        "fraction": int(np.floor(spec.value * available + 0.5)),
        "ratio": int(np.floor(spec.value * n_labeled + 0.5)),
    }[spec.kind]
    if want > available:
        raise SplitError(
            f"unlabeled {unlabeled!r} asks for {want} unlabeled images but only "
            f"{available} are available"
        )
    return want


def selected_sizes(base: Splits, budget: int, unlabeled: str) -> tuple[int, int]:
    """(labeled, unlabeled) sizes of ``select_splits`` from its base splits, without features."""
    if budget > len(base.labeled):
        raise SplitError(
            f"a budget of {budget} labels is more than the {len(base.labeled)} labeled "
            "training images left after the validation set"
        )
    available = len(base.labeled) - budget + len(base.unlabeled)
    return budget, unlabeled_count(unlabeled, available, budget)


def select_splits(
    dataset: Dataset,
    cfg: SelectConfig,
    *,
    val: str = "train:0.1",
    unlabeled: str = "rest",
    seed: int = 0,
    features: np.ndarray | None = None,
) -> Splits:
    """Splits whose labeled set is ``cfg.budget`` images picked by ``cfg.strategy``.

    ``features`` (of the pool, in the order of ``make_splits``' labeled set) skips the
    feature extraction, e.g. when a benchmark compares strategies on the same pool.
    """
    check_select(cfg)
    base = make_splits(dataset, SplitConfig(unlabeled="rest", val=val, seed=seed))
    pool_set = base.labeled
    _, want = selected_sizes(base, cfg.budget, unlabeled)
    feats = features if features is not None else pool_features(pool_set.images, cfg.encoder)
    if len(feats) != len(pool_set):
        raise ConfigError(f"{len(feats)} feature rows for a pool of {len(pool_set)} images")
    pool = Pool(feats, num_classes=dataset.train.num_classes)
    picked = select(pool, cfg.strategy, cfg.budget, seed=seed, **cfg.options)
    chosen = np.asarray(picked.index, np.int64)
    rest = np.setdiff1d(np.arange(len(pool_set)), chosen)
    labeled = pool_set.subset(chosen.tolist())

    # the unlabeled set: the rest of the pool, then what the source gives unlabeled
    extra = base.unlabeled
    available = len(rest) + len(extra)
    take = np.arange(available)
    if want < available:
        take = np.sort(np.random.default_rng([seed, 7]).choice(available, want, replace=False))
    from_pool, from_extra = rest[take[take < len(rest)]], take[take >= len(rest)] - len(rest)
    parts = [pool_set.subset(from_pool.tolist()).unlabel()]
    hidden = [pool_set.labels[torch.from_numpy(from_pool)]]
    if len(from_extra):
        parts.append(extra.subset(from_extra.tolist()))
        hidden.append(base.unlabeled_true_labels[torch.from_numpy(from_extra)])
    unl = ImageSet.concat(parts)

    record = dict(base.record)
    lab_rows = np.asarray(base.record["labeled_rows"], np.int64)
    k = dataset.train.num_classes
    record["config"] = {**record["config"], "unlabeled": unlabeled}
    record["labeled_rows"] = np.sort(lab_rows[chosen]).tolist()
    record["sizes"] = {**record["sizes"], "labeled": len(labeled), "unlabeled": len(unl)}
    record["counts_per_class"] = {
        **record["counts_per_class"],
        "labeled": np.bincount(labeled.labels.numpy(), minlength=k).tolist(),
    }
    record["selection"] = {
        **cfg.model_dump(),
        "features": "encoder" if cfg.encoder else "pixels",
        "picked_ids": [pool_set.ids[i] for i in chosen] if pool_set.ids else chosen.tolist(),
        "info": picked.info,
    }
    return Splits(labeled, unl, base.val, base.test, torch.cat(hidden).long(), record)


def selected_data(
    cfg: SourceSettings, *, unlabeled: str = "rest", seed: int = 0
) -> tuple[Dataset, Splits]:
    """The dataset of a run's or probe's settings and the splits its ``select`` request
    picks: what such a run trains on (``run_training(cfg, data=...)``)."""
    if cfg.select is None:
        raise ConfigError("selected_data needs a select setting (strategy and budget)")
    ds = cfg.load()
    if cfg.labels_per_class is not None or cfg.labeled_fraction is not None:
        raise ConfigError("a selected labeled set takes no labels per class or fraction")
    return ds, select_splits(ds, cfg.select, val=cfg.val, unlabeled=unlabeled, seed=seed)
