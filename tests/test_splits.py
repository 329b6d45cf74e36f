"""Seeded, stratified splits: exact counts, reproducibility, disjointness, every error."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from fewlabels.core.errors import SplitError
from fewlabels.data import (
    UNLABELED,
    Dataset,
    ImageSet,
    SplitConfig,
    load_dataset,
    make_splits,
    parse_unlabeled,
)
from fewlabels.data.splits import UnlabeledSpec

NAMES = ["ant", "bee", "cow"]


def _set(labels: list[int], start: int = 0) -> ImageSet:
    n = len(labels)
    # each image carries its own row number (mod 256) so subsets can be checked
    images = (torch.arange(start, start + n) % 256).to(torch.uint8).view(n, 1, 1, 1)
    images = images.expand(n, 1, 2, 2).contiguous()
    ids = [f"r{start + i}" for i in range(n)]
    return ImageSet(images, torch.tensor(labels, dtype=torch.int64), list(NAMES), ids)


def _dataset(
    sizes=(30, 20, 50), test_per_class=10, extra=40, unlabeled_in_train=5, with_test=True
) -> Dataset:
    labels = [c for c, n in enumerate(sizes) for _ in range(n)] + [UNLABELED] * unlabeled_in_train
    train = _set(labels)
    test = _set([c for c in range(3) for _ in range(test_per_class)], 1000) if with_test else None
    unl = _set([UNLABELED] * extra, 2000) if extra else None
    return Dataset("toy", train, test, unl, "fp")


def _ids(s: ImageSet) -> set[str]:
    assert s.ids is not None
    return set(s.ids)


def test_labels_per_class_counts_are_exact():
    ds = _dataset()
    sp = make_splits(ds, SplitConfig(labels_per_class=7, val="train:0.1"))
    assert sp.labeled.counts() == [7, 7, 7]
    assert sp.val is not None and sp.val.counts() == [3, 2, 5]
    assert sp.test is ds.test
    # rest: every other training row (with the 5 unlabeled ones) and the 40 extra images
    assert len(sp.unlabeled) == 105 - 21 - 10 + 40
    assert (sp.unlabeled.labels == UNLABELED).all()
    rec = sp.record
    assert rec["counts_per_class"]["labeled"] == [7, 7, 7]
    assert rec["counts_per_class"]["unlabeled_hidden"] == [20, 11, 38]
    assert rec["sizes"] == {"train": 105, "labeled": 21, "unlabeled": 114, "val": 10, "test": 30}
    json.dumps(rec)  # JSON-serialisable


def test_splits_are_disjoint_and_reproducible_from_the_record():
    ds = _dataset()
    sp = make_splits(ds, SplitConfig(labels_per_class=5, unlabeled="50", seed=3))
    assert sp.val is not None
    lab, unl, val = _ids(sp.labeled), _ids(sp.unlabeled), _ids(sp.val)
    assert not (lab & unl) and not (lab & val) and not (unl & val)
    assert len(unl) == 50
    rec = json.loads(json.dumps(sp.record))
    assert torch.equal(ds.train.subset(rec["labeled_rows"]).images, sp.labeled.images)
    assert torch.equal(ds.train.subset(rec["val_rows"]).labels, sp.val.labels)
    n_train = len(rec["unlabeled_rows"])
    assert torch.equal(ds.train.subset(rec["unlabeled_rows"]).images, sp.unlabeled.images[:n_train])
    assert ds.unlabeled is not None
    extra = ds.unlabeled.subset(rec["unlabeled_extra_rows"]).images
    assert torch.equal(extra, sp.unlabeled.images[n_train:])
    # hidden labels are the true ones for training rows, -1 for the unlabeled set
    expect = ds.train.labels[rec["unlabeled_rows"]]
    assert torch.equal(sp.unlabeled_true_labels[:n_train], expect)
    assert (sp.unlabeled_true_labels[n_train:] == UNLABELED).all()
    assert rec["seed"] == 3 and rec["config"]["labels_per_class"] == 5


def test_seeds_reproduce_and_differ():
    ds = _dataset()
    a = make_splits(ds, SplitConfig(labels_per_class=4, unlabeled="1:2", seed=1)).record
    b = make_splits(ds, SplitConfig(labels_per_class=4, unlabeled="1:2", seed=1)).record
    c = make_splits(ds, SplitConfig(labels_per_class=4, unlabeled="1:2", seed=2)).record
    assert a == b
    assert a["labeled_rows"] != c["labeled_rows"] and a["val_rows"] != c["val_rows"]


def test_more_labels_contain_fewer_and_unlabeled_choice_leaves_labels_alone():
    ds = _dataset()
    cut = dict(val="train:0.1", seed=5)
    few = make_splits(ds, SplitConfig(labels_per_class=3, unlabeled="10", **cut)).record
    many = make_splits(ds, SplitConfig(labels_per_class=9, unlabeled="rest", **cut)).record
    assert set(few["labeled_rows"]) <= set(many["labeled_rows"])
    assert few["val_rows"] == many["val_rows"]
    # val auto takes as many labels as the labeled set: the labeled sets stay nested
    few = make_splits(ds, SplitConfig(labels_per_class=3, unlabeled="10", seed=5)).record
    many = make_splits(ds, SplitConfig(labels_per_class=9, unlabeled="rest", seed=5)).record
    assert set(few["labeled_rows"]) <= set(many["labeled_rows"])


def test_auto_validation_takes_no_more_labels_than_the_labeled_set():
    ds = _dataset()  # classes of 30, 20 and 50 labeled training images
    sp = make_splits(ds, SplitConfig(labels_per_class=4, seed=1))
    assert sp.val is not None and sp.val.counts() == [4, 4, 4]
    assert not set(sp.record["val_rows"]) & set(sp.record["labeled_rows"])
    # capped at half of what a class holds beyond its labels, so unlabeled images remain
    big = make_splits(ds, SplitConfig(labels_per_class=15, seed=1))
    assert big.val is not None and big.val.counts() == [7, 2, 15]
    y = ds.train.labels.numpy()
    rows = np.array(big.record["unlabeled_rows"])
    assert np.bincount(y[rows][y[rows] >= 0], minlength=3).tolist() == [8, 3, 20]
    frac = make_splits(ds, SplitConfig(labeled_fraction=0.2, seed=1))
    assert frac.val is not None and abs(len(frac.val) - len(frac.labeled)) <= 3
    assert make_splits(ds, SplitConfig(seed=1)).val.counts() == [3, 2, 5]  # all labeled: 10%


def test_labeled_fraction_and_all_labeled():
    ds = _dataset()
    sp = make_splits(ds, SplitConfig(labeled_fraction=0.5, val="none"))
    assert sp.val is None and sp.labeled.counts() == [15, 10, 25]
    sp = make_splits(ds, SplitConfig(val="none"))
    assert sp.labeled.counts() == [30, 20, 50]
    assert len(sp.unlabeled) == 5 + 40  # the train rows without labels + the extra set
    tiny = make_splits(ds, SplitConfig(labeled_fraction=0.01, val="none"))
    assert tiny.labeled.counts() == [1, 1, 1]  # at least one per class


def test_unlabeled_count_fraction_ratio():
    ds = _dataset(sizes=(200, 200, 200), extra=0, unlabeled_in_train=0)
    cfg = {"labels_per_class": 5, "val": "none"}
    assert len(make_splits(ds, SplitConfig(**cfg, unlabeled="1:20")).unlabeled) == 300
    assert len(make_splits(ds, SplitConfig(**cfg, unlabeled="1:0.4")).unlabeled) == 6
    assert len(make_splits(ds, SplitConfig(**cfg, unlabeled="0.5")).unlabeled) == 293
    assert len(make_splits(ds, SplitConfig(**cfg, unlabeled="17")).unlabeled) == 17
    none = make_splits(ds, SplitConfig(**cfg, unlabeled="none"))
    assert len(none.unlabeled) == 0 and none.unlabeled.images.shape[1:] == (1, 2, 2)
    assert len(none.unlabeled_true_labels) == 0
    rest = make_splits(ds, SplitConfig(**cfg, unlabeled="rest"))
    assert len(rest.unlabeled) == 585 and rest.unlabeled.class_names == NAMES


def test_whole_unlabeled_set_is_not_copied():
    ds = _dataset(extra=40)
    sp = make_splits(ds, SplitConfig(val="none"))  # all train rows labeled but 5
    assert len(sp.unlabeled) == 45
    ds2 = _dataset(extra=40, unlabeled_in_train=0)
    sp2 = make_splits(ds2, SplitConfig(val="none"))
    assert ds2.unlabeled is not None
    assert sp2.unlabeled.images.data_ptr() == ds2.unlabeled.images.data_ptr()


def test_val_from_test():
    ds = _dataset(test_per_class=10)
    sp = make_splits(ds, SplitConfig(labels_per_class=5, val="test:0.2"))
    assert sp.val is not None and sp.test is not None
    assert sp.val.counts() == [2, 2, 2] and sp.test.counts() == [8, 8, 8]
    assert not _ids(sp.val) & _ids(sp.test)
    assert sp.record["val_rows"] == [] and len(sp.record["val_test_rows"]) == 6
    # nothing was taken from train for validation: all other labeled rows are unlabeled
    assert len(sp.unlabeled) == 105 - 15 + 40
    no_test = _dataset(with_test=False)
    with pytest.raises(SplitError, match="needs a test set and toy has none"):
        make_splits(no_test, SplitConfig(val="test:0.2"))
    assert make_splits(no_test, SplitConfig(labels_per_class=2)).test is None


def test_digits_defaults():
    ds = load_dataset("digits")
    sp = make_splits(ds, SplitConfig(labels_per_class=10))
    assert sp.labeled.counts() == [10] * 10 and sp.labeled.images.shape[1:] == (1, 8, 8)
    assert len(sp.labeled) + len(sp.unlabeled) + len(sp.val) == len(ds.train)


def test_parse_unlabeled():
    assert parse_unlabeled("rest") == UnlabeledSpec("rest", 0.0)
    assert parse_unlabeled("500") == UnlabeledSpec("count", 500.0)
    assert parse_unlabeled(12) == UnlabeledSpec("count", 12.0)
    assert parse_unlabeled("0.25") == UnlabeledSpec("fraction", 0.25)
    assert parse_unlabeled("1.0") == UnlabeledSpec("fraction", 1.0)
    assert parse_unlabeled("1:20") == UnlabeledSpec("ratio", 20.0)
    assert parse_unlabeled(" 1 : 0.4 ") == UnlabeledSpec("ratio", 0.4)
    assert parse_unlabeled("none") == UnlabeledSpec("count", 0.0)


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("-5", "count -5 is negative"),
        ("1.5", r"fraction '1.5' is outside \(0, 1\]"),
        ("0.0", "outside"),
        ("abc", "not rest, none, a count"),
        ("1:-2", "not rest"),
        ("1:0", "must be positive"),
        ("2:5", "not rest"),
    ],
)
def test_parse_unlabeled_errors(value, needle):
    with pytest.raises(SplitError, match=needle):
        parse_unlabeled(value)


@pytest.mark.parametrize(
    ("cfg", "needle"),
    [
        ({"labels_per_class": 0}, "labels per class must be positive, got 0"),
        ({"labels_per_class": -3}, "must be positive, got -3"),
        ({"labeled_fraction": 0.0}, r"labeled fraction 0.0 is outside \(0, 1\]"),
        ({"labeled_fraction": 1.5}, "outside"),
        ({"labels_per_class": 2, "labeled_fraction": 0.5}, "not both"),
        ({"unlabeled": "lots"}, "not rest"),
        ({"val": "train:0"}, "between 0 and 1"),
        ({"val": "train:1"}, "between 0 and 1"),
        ({"val": "test:abc"}, "not a number"),
        ({"val": "holdout"}, "not train:F, test:F or none"),
        ({"seed": -1}, "non-negative"),
    ],
)
def test_config_errors(cfg, needle):
    with pytest.raises(SplitError, match=needle) as e:
        SplitConfig(**cfg)
    assert "\n" not in str(e.value)


def test_split_errors_name_the_numbers():
    ds = _dataset()
    with pytest.raises(SplitError, match=r"19 labels per class .* class 'bee' has: 18 labeled"):
        make_splits(ds, SplitConfig(labels_per_class=19, val="train:0.1"))
    with pytest.raises(SplitError, match=r"21 labels per class .* class 'bee' has: 20 labeled"):
        make_splits(ds, SplitConfig(labels_per_class=21))  # val auto leaves what it can
    with pytest.raises(SplitError, match="asks for 2400 unlabeled images but only 105 are"):
        make_splits(ds, SplitConfig(labels_per_class=10, unlabeled="1:80", val="train:0.1"))
    with pytest.raises(SplitError, match="asks for 500 unlabeled images but only 105"):
        make_splits(ds, SplitConfig(labels_per_class=10, unlabeled="500", val="train:0.1"))
    empty_class = Dataset("gap", _set([0] * 5 + [2] * 5), None, None)
    with pytest.raises(SplitError, match="class 'bee' has no labeled training images"):
        make_splits(empty_class, SplitConfig(labels_per_class=1, val="none"))
    with pytest.raises(SplitError, match="class 'bee'"):
        make_splits(empty_class, SplitConfig(labeled_fraction=0.5, val="none"))
    none_labeled = Dataset("raw", _set([UNLABELED] * 6), None, None)
    with pytest.raises(SplitError, match="no labeled training images"):
        make_splits(none_labeled, SplitConfig(val="none"))


def test_stratified_val_uses_only_labeled_rows():
    ds = _dataset(unlabeled_in_train=30)
    sp = make_splits(ds, SplitConfig(val="train:0.5", labels_per_class=1))
    assert sp.val is not None and (sp.val.labels >= 0).all()
    assert sp.val.counts() == [15, 10, 25]
    rows = np.array(sp.record["val_rows"])
    assert (ds.train.labels[rows] >= 0).all()
