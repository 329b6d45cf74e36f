"""Seeded, stratified splits of a Dataset into labeled / unlabeled / val / test sets.

Order of selection (each step with its own random stream, so changing a later step never
changes an earlier one):

1. ``val``: ``auto`` (the default) takes as many labels as a few-label user has: per class
   as many as the labeled set takes (``labels_per_class``, but at most half of what the
   class holds beyond them, so that unlabeled images remain), for a ``labeled_fraction`` F
   the same count as the labeled set (F/(1+F) of each class), and with every image labeled
   10%; never more than the labeled set.
   ``train:F`` takes a stratified fraction F of the labeled training rows; ``test:F`` a
   stratified fraction F of the test set (the rest stays the test set); ``none`` nothing.
   The validation set draws the curves and the time-to-accuracy figures; it never selects
   a model on the test set.
2. labeled: ``labels_per_class`` rows of every class, or ``labeled_fraction`` of every
   class, or (neither) all remaining labeled rows. The first k rows of a class's seeded
   permutation are taken, so with one seed the set for k=10 lies inside the set for k=25.
3. unlabeled: from the remaining training rows (labels hidden) plus ``Dataset.unlabeled``:
   ``rest`` (all of them), ``none``/``0``, a count ``N``, a fraction ``0.5`` of them, or a
   ratio ``1:R`` (R times as many as there are labeled images), drawn uniformly.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import asdict, dataclass, field
from typing import Any, NamedTuple

import numpy as np
import torch

from fewlabels.core.errors import SplitError
from fewlabels.data.imageset import Dataset, ImageSet

_RATIO = re.compile(r"^\s*1\s*:\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*$")


class UnlabeledSpec(NamedTuple):
    """A parsed ``unlabeled`` setting: kind is rest, count, fraction or ratio."""

    kind: str
    value: float


def parse_unlabeled(s: str | int) -> UnlabeledSpec:
    """Parse ``rest``, ``none``, a count ``500``, a fraction ``0.5`` or a ratio ``1:20``."""
    text = str(s).strip().lower()
    if text in ("rest", "all"):
        return UnlabeledSpec("rest", 0.0)
    if text in ("none", "0"):
        return UnlabeledSpec("count", 0.0)
    m = _RATIO.match(text)
    if m:
        r = float(m.group(1))
        if not r > 0 or not math.isfinite(r):
            raise SplitError(f"unlabeled ratio {s!r}: R in 1:R must be positive")
        return UnlabeledSpec("ratio", r)
    if re.fullmatch(r"[+-]?\d+", text):
        n = int(text)
        if n < 0:
            raise SplitError(f"unlabeled count {n} is negative")
        return UnlabeledSpec("count", float(n))
    try:
        f = float(text)
    except ValueError:
        raise SplitError(
            f"unlabeled {s!r} is not rest, none, a count (500), a fraction (0.5) or a ratio (1:20)"
        ) from None
    if not 0 < f <= 1:
        raise SplitError(f"unlabeled fraction {s!r} is outside (0, 1]")
    return UnlabeledSpec("fraction", f)


def parse_val(s: str) -> tuple[str, float]:
    """Parse ``train:F``, ``test:F`` or ``none`` into (source, fraction)."""
    text = str(s).strip().lower()
    if text in ("none", "no", ""):
        return "none", 0.0
    if text == "auto":
        return "auto", 0.0
    src, sep, frac = text.partition(":")
    if not sep or src not in ("train", "test"):
        raise SplitError(f"val {s!r} is not train:F, test:F or none (or auto; e.g. train:0.1)")
    try:
        f = float(frac)
    except ValueError:
        raise SplitError(f"val {s!r}: {frac!r} is not a number") from None
    if not 0 < f < 1:
        raise SplitError(f"val fraction in {s!r} must be between 0 and 1 (exclusive)")
    return src, f


@dataclass
class SplitConfig:
    """How to cut a Dataset; validated on creation (``SplitError`` on a bad value)."""

    labels_per_class: int | None = None
    labeled_fraction: float | None = None
    unlabeled: str = "rest"
    val: str = "auto"
    seed: int = 0

    def __post_init__(self) -> None:
        if self.labels_per_class is not None and self.labeled_fraction is not None:
            raise SplitError("give labels per class or a labeled fraction, not both")
        if self.labels_per_class is not None:
            if isinstance(self.labels_per_class, bool) or int(self.labels_per_class) != float(
                self.labels_per_class
            ):
                raise SplitError(f"labels per class {self.labels_per_class!r} is not a number")
            self.labels_per_class = int(self.labels_per_class)
            if self.labels_per_class <= 0:
                raise SplitError(f"labels per class must be positive, got {self.labels_per_class}")
        if self.labeled_fraction is not None:
            f = float(self.labeled_fraction)
            if not 0 < f <= 1:
                raise SplitError(f"labeled fraction {f} is outside (0, 1]")
            self.labeled_fraction = f
        self.unlabeled = str(self.unlabeled).strip()
        parse_unlabeled(self.unlabeled)
        parse_val(self.val)
        if int(self.seed) != self.seed or self.seed < 0:
            raise SplitError(f"seed must be a non-negative integer, got {self.seed!r}")
        self.seed = int(self.seed)


@dataclass
class Splits:
    """The sets a run trains and evaluates on, and the JSON record that reproduces them."""

    labeled: ImageSet
    unlabeled: ImageSet
    val: ImageSet | None
    test: ImageSet | None
    unlabeled_true_labels: torch.Tensor
    record: dict[str, Any] = field(default_factory=dict)


def _round(x: float) -> int:
    """Round half up (Python's round() rounds half to even)."""
    return math.floor(x + 0.5 + 1e-9)


def _rng(seed: int, step: int) -> np.random.Generator:
    return np.random.default_rng([seed, step])


def _by_class(labels: np.ndarray, rows: np.ndarray, k: int) -> list[np.ndarray]:
    return [rows[labels[rows] == c] for c in range(k)]


def _stratified_take(
    labels: np.ndarray, rows: np.ndarray, k: int, frac: float, rng: np.random.Generator
) -> np.ndarray:
    """round(frac * n_c) rows of each class c, chosen at random."""
    taken = []
    for cls_rows in _by_class(labels, rows, k):
        perm = rng.permutation(cls_rows)
        taken.append(perm[: _round(frac * len(cls_rows))])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


def _counts(labels: np.ndarray, k: int) -> list[int]:
    lab = labels[labels >= 0]
    return np.bincount(lab, minlength=k).tolist() if k else []


def _warn_no_validation(val: str, frac: float, labels: np.ndarray, what: str) -> None:
    """Warn (not refuse: the run is still valid, without validation scores) when the
    stratified fraction rounds to 0 images in every class, e.g. 1,000 classes of 2 images."""
    largest = int(np.bincount(labels).max())
    warnings.warn(
        f"val {val!r} takes no validation images: {frac:g} of each class's {what} images "
        f"rounds to 0 (the largest class has {largest}), so nothing is validated; use a "
        "larger fraction, test:F, or none",
        stacklevel=4,
    )


def _auto_take(cfg: SplitConfig, y: np.ndarray, rows: np.ndarray, k: int) -> np.ndarray:
    """``val: auto``'s rows: per class min(labels per class, half of what the class holds
    beyond them); for a labeled fraction F, F/(1+F) of the class (as many as the labeled set
    then takes); with every image labeled, 10% of the class. They are the tail of the
    labeled step's permutation (stream 2), so that the labeled sets of one seed stay
    nested whatever the validation set takes (the labeled set is its head)."""
    rng = _rng(cfg.seed, 2)
    taken = []
    for cls_rows in _by_class(y, rows, k):
        perm = rng.permutation(cls_rows)
        n = len(cls_rows)
        if cfg.labels_per_class is not None:
            m = max(0, min(cfg.labels_per_class, (n - cfg.labels_per_class) // 2))
        elif cfg.labeled_fraction is not None:
            f = cfg.labeled_fraction
            m = min(_round(f / (1 + f) * n), n - 1) if f < 1 else _round(0.1 * n)
        else:
            m = _round(0.1 * n)
        taken.append(perm[n - max(0, m) :])
    return np.sort(np.concatenate(taken)) if taken else np.zeros(0, np.int64)


class _Validation(NamedTuple):
    """Step 1's result: the validation set and what is left of the test set."""

    val_rows: np.ndarray  # rows of the training pool (empty unless val is train:F)
    val_set: ImageSet | None
    test_set: ImageSet | None
    val_test_rows: np.ndarray | None  # rows of the test set (val is test:F)
    test_rows: np.ndarray | None


def _take_validation(
    dataset: Dataset, cfg: SplitConfig, y: np.ndarray, labeled_rows: np.ndarray
) -> _Validation:
    """Step 1: a stratified fraction of the labeled training rows or of the test set."""
    k = len(dataset.train.class_names)
    val_src, val_frac = parse_val(cfg.val)
    if val_src == "auto":
        val_rows = _auto_take(cfg, y, labeled_rows, k)
        return _Validation(
            val_rows, dataset.train.subset(val_rows.tolist()), dataset.test, None, None
        )
    if val_src == "train":
        val_rows = _stratified_take(y, labeled_rows, k, val_frac, _rng(cfg.seed, 1))
        if not len(val_rows) and len(labeled_rows):
            _warn_no_validation(cfg.val, val_frac, y[labeled_rows], "labeled training")
        return _Validation(
            val_rows, dataset.train.subset(val_rows.tolist()), dataset.test, None, None
        )
    no_rows = np.zeros(0, np.int64)
    if val_src != "test":
        return _Validation(no_rows, None, dataset.test, None, None)
    if dataset.test is None:
        raise SplitError(
            f"val {cfg.val!r} needs a test set and {dataset.name} has none; use train:F or none"
        )
    ty = dataset.test.labels.cpu().numpy()
    trows = np.arange(len(ty))
    val_test_rows = _stratified_take(ty, trows[ty >= 0], k, val_frac, _rng(cfg.seed, 1))
    if not len(val_test_rows) and bool((ty >= 0).any()):
        _warn_no_validation(cfg.val, val_frac, ty[ty >= 0], "test")
    test_rows = np.setdiff1d(trows, val_test_rows)
    val_set = dataset.test.subset(val_test_rows.tolist())
    test_set = dataset.test.subset(test_rows.tolist())
    return _Validation(no_rows, val_set, test_set, val_test_rows, test_rows)


def _take_labeled(
    dataset: Dataset,
    cfg: SplitConfig,
    y: np.ndarray,
    pool: np.ndarray,
    after_val: bool,
    drawn_from: np.ndarray | None = None,
) -> np.ndarray:
    """Step 2: the first n rows of each class's seeded permutation of ``pool``, sorted
    (``drawn_from``: permute these rows instead and skip those outside ``pool``, as
    ``val: auto`` does, whose rows are the tail of that same permutation)."""
    names = dataset.train.class_names
    per_class = _by_class(y, pool, len(names))
    if drawn_from is not None:
        inside = set(pool.tolist())
        rng_full = _rng(cfg.seed, 2)
        per_class = [
            np.array([r for r in rng_full.permutation(rows) if r in inside], dtype=np.int64)
            for rows in _by_class(y, drawn_from, len(names))
        ]
    after = " after taking the validation set" if after_val else ""
    if not len(pool):
        raise SplitError(f"{dataset.name} has no labeled training images left to label")
    if cfg.labels_per_class is not None or cfg.labeled_fraction is not None:
        for c, rows in enumerate(per_class):
            if not len(rows):
                raise SplitError(f"class {names[c]!r} has no labeled training images{after}")
    rng = _rng(cfg.seed, 2)
    chosen = []
    for rows in per_class:
        # drawn for every class whatever is asked: nested sets (already drawn: drawn_from)
        perm = rng.permutation(rows) if drawn_from is None else rows
        if cfg.labels_per_class is not None:
            n = cfg.labels_per_class
        elif cfg.labeled_fraction is not None:
            n = max(1, _round(cfg.labeled_fraction * len(rows))) if len(rows) else 0
        else:
            n = len(rows)
        chosen.append(perm[:n])
    if cfg.labels_per_class is not None:
        sizes = [len(r) for r in per_class]
        c_min = int(np.argmin(sizes))
        if cfg.labels_per_class > sizes[c_min]:
            raise SplitError(
                f"{cfg.labels_per_class} labels per class is more than class "
                f"{names[c_min]!r} has: {sizes[c_min]} labeled training images{after}"
            )
    return np.sort(np.concatenate(chosen)) if chosen else np.zeros(0, np.int64)


def _unlabeled_wanted(cfg: SplitConfig, available: int, n_labeled: int) -> int:
    """How many unlabeled images the ``unlabeled`` setting asks for, out of ``available``."""
    spec = parse_unlabeled(cfg.unlabeled)
    if spec.kind == "rest":
        want = available
    elif spec.kind == "count":
        want = int(spec.value)
    elif spec.kind == "fraction":
        want = _round(spec.value * available)
    else:
        want = _round(spec.value * n_labeled)
    if want > available:
        raise SplitError(
            f"unlabeled {cfg.unlabeled!r} asks for {want} unlabeled images but only "
            f"{available} are available"
        )
    return want


class _Unlabeled(NamedTuple):
    """Step 3's result: the unlabeled set, its hidden labels and the rows it came from."""

    images: ImageSet
    true_labels: torch.Tensor
    train_rows: np.ndarray  # rows of the training pool
    extra_rows: np.ndarray  # rows of Dataset.unlabeled


def _take_unlabeled(
    dataset: Dataset, cfg: SplitConfig, y: np.ndarray, rest_rows: np.ndarray, n_labeled: int
) -> _Unlabeled:
    """Step 3: a uniform draw from ``rest_rows`` of the training pool, then Dataset.unlabeled."""
    train = dataset.train
    n_extra = len(dataset.unlabeled) if dataset.unlabeled is not None else 0
    available = len(rest_rows) + n_extra
    want = _unlabeled_wanted(cfg, available, n_labeled)
    if want == available:
        pick = np.arange(available)
    else:
        pick = np.sort(_rng(cfg.seed, 3).choice(available, size=want, replace=False))
    unl_train = rest_rows[pick[pick < len(rest_rows)]]
    unl_extra = pick[pick >= len(rest_rows)] - len(rest_rows)

    parts = [train.subset(unl_train.tolist()).unlabel()]
    hidden = [torch.as_tensor(y[unl_train], dtype=torch.int64)]
    if dataset.unlabeled is not None and len(unl_extra):
        if len(unl_extra) == n_extra:
            extra = dataset.unlabeled.unlabel()
        else:
            extra = dataset.unlabeled.subset(unl_extra.tolist()).unlabel()
        extra.class_names = list(train.class_names)
        parts.append(extra)
        hidden.append(dataset.unlabeled.labels[torch.from_numpy(unl_extra)].cpu())
    # the whole of a large unlabeled set is used as is, not copied
    unlabeled = parts[1] if len(parts) == 2 and not len(unl_train) else ImageSet.concat(parts)
    return _Unlabeled(unlabeled, torch.cat(hidden).to(torch.int64), unl_train, unl_extra)


def _record(
    dataset: Dataset,
    cfg: SplitConfig,
    y: np.ndarray,
    val: _Validation,
    lab_rows: np.ndarray,
    unl: _Unlabeled,
) -> dict[str, Any]:
    """The JSON record of a split: sizes, counts per class and every chosen row."""
    names = dataset.train.class_names
    k = len(names)
    val_set, test_set = val.val_set, val.test_set
    record: dict[str, Any] = {
        "dataset": dataset.name,
        "fingerprint": dataset.fingerprint,
        "seed": cfg.seed,
        "config": asdict(cfg),
        "sizes": {
            "train": len(dataset.train),
            "labeled": len(lab_rows),
            "unlabeled": len(unl.images),
            "val": len(val_set) if val_set is not None else 0,
            "test": len(test_set) if test_set is not None else 0,
        },
        "counts_per_class": {
            "class_names": list(names),
            "labeled": _counts(y[lab_rows], k),
            "unlabeled_hidden": _counts(unl.true_labels.numpy(), k),
            "val": val_set.counts() if val_set is not None else [0] * k,
            "test": test_set.counts() if test_set is not None else [0] * k,
        },
        "labeled_rows": lab_rows.tolist(),
        "unlabeled_rows": unl.train_rows.tolist(),
        "unlabeled_extra_rows": unl.extra_rows.tolist(),
        "val_rows": val.val_rows.tolist(),
        "val_from": "train" if cfg.val == "auto" else parse_val(cfg.val)[0],
    }
    if val.val_test_rows is not None and val.test_rows is not None:
        record["val_test_rows"] = val.val_test_rows.tolist()
        record["test_rows"] = val.test_rows.tolist()
    return record


def make_splits(dataset: Dataset, cfg: SplitConfig) -> Splits:
    """Cut ``dataset`` as ``cfg`` says; the same config and seed always give the same sets."""
    train = dataset.train
    y = train.labels.cpu().numpy()
    all_rows = np.arange(len(y))
    labeled_rows = all_rows[y >= 0]
    parse_val(cfg.val)  # bad settings fail before any work
    parse_unlabeled(cfg.unlabeled)
    val = _take_validation(dataset, cfg, y, labeled_rows)
    pool = np.setdiff1d(labeled_rows, val.val_rows)
    auto = parse_val(cfg.val)[0] == "auto"
    lab_rows = _take_labeled(
        dataset, cfg, y, pool, bool(len(val.val_rows)), labeled_rows if auto else None
    )
    rest_rows = np.setdiff1d(all_rows, np.concatenate([lab_rows, val.val_rows]))
    unl = _take_unlabeled(dataset, cfg, y, rest_rows, len(lab_rows))
    labeled = train.subset(lab_rows.tolist())
    record = _record(dataset, cfg, y, val, lab_rows, unl)
    return Splits(labeled, unl.images, val.val_set, val.test_set, unl.true_labels, record)
