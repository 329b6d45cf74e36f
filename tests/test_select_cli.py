"""Label requests end to end on digits: select -> fill labels -> add-labels -> select again
-> train on the labels file; the labels file's one-line errors; simulated selection splits;
the strategy axis of a study."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
from cli_helpers import invoke
from cli_helpers import one_line_error as _one_line_error

from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import load_dataset
from fewlabels.select.labels import Universe, apply_labels, merge_labels, parse_labels
from fewlabels.select.simulate import SelectConfig, select_splits

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def digits():
    ds = load_dataset("digits")
    return ds, Universe(ds)


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _fill(path: Path, universe: Universe, ds) -> None:
    """Play the labellers: write each row's true class into the label column."""
    rows = _rows(path)
    for r in rows:
        r["label"] = ds.class_names[int(ds.train.labels[universe.row[r["id"]]])]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_label_request_round_trip(tmp_path, digits):
    ds, uni = digits
    req = tmp_path / "to_label.csv"
    r = invoke(
        "select", "--data", "digits", "--budget", "12", "--strategy", "typiclust",
        "--no-source-labels", "--out", str(req),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert "picked 12 of 1437 unlabeled images (0 labeled) with typiclust" in r.output
    rows = _rows(req)
    assert [r["rank"] for r in rows] == [str(i) for i in range(1, 13)]
    assert all(r["label"] == "" and r["id"] in uni.row for r in rows)
    assert all(Path(r["path"]).is_file() for r in rows)  # PNGs for a source without files
    assert len({r["id"] for r in rows}) == 12
    # typiclust on pixel features of well-separated digits covers most classes at once
    assert len({int(ds.train.labels[uni.row[r["id"]]]) for r in rows}) >= 7

    _fill(req, uni, ds)
    r = invoke("data", "add-labels", str(req))
    assert r.exit_code == 0, r.output
    labels = tmp_path / "labels.csv"  # beside the request, recorded in its sidecar
    assert "added 12 labels to" in r.output and labels.is_file()
    assert len(_rows(labels)) == 12
    r = invoke("data", "add-labels", str(req))  # idempotent: the same labels again
    assert r.exit_code == 0 and "added 0 labels" in r.output and "12 were there" in r.output

    # a second request with a classifier on the 12 labels: new images only
    req2 = tmp_path / "more.csv"
    r = invoke(
        "select", "--data", "digits", "--budget", "5", "--strategy", "margin",
        "--labels", str(labels), "--no-source-labels", "--out", str(req2),
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    rows2 = _rows(req2)
    assert len(rows2) == 5 and all(r["predicted"] in ds.class_names for r in rows2)
    assert not {r["id"] for r in rows2} & {r["id"] for r in rows}
    assert [float(r["score"]) for r in rows2] == sorted(float(r["score"]) for r in rows2)

    # train on exactly the labels file's images
    out = tmp_path / "run"
    r = invoke(
        "train", "--data", "digits", "--labels", str(labels), "--no-source-labels",
        "--val", "none", "--budget", "5steps", "--batch-size", "16", "--out", str(out),
        "--no-progress", "--evals", "1",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads((out / "metrics.json").read_text())["labeled"] == 12


def test_select_errors_are_one_line(tmp_path):
    out = str(tmp_path / "x.csv")
    line = _one_line_error(
        invoke("select", "--data", "digits", "--budget", "3", "--out", out), "already labeled"
    )
    assert "pass --no-source-labels to treat" in line  # the library names source_labels=False
    _one_line_error(
        invoke("select", "--strategy", "nope", "--no-source-labels", "--out", out),
        "unknown selection strategy",
    )
    _one_line_error(
        invoke("select", "--strategy", "entropy", "--no-source-labels", "--out", out),
        "needs a classifier",
    )
    _one_line_error(
        invoke("select", "--budget", "5000", "--no-source-labels", "--out", out), "more than"
    )
    _one_line_error(
        invoke("select", "--delta", "0.1", "--no-source-labels", "--out", out), "--delta only"
    )
    _one_line_error(invoke("data", "add-labels", str(tmp_path / "none.csv")), "data spec")


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("", "is empty"),
        ("id,label\n", "no rows"),
        ("name,label\ndigits:0,0\n", "no 'id' column"),
        ("id,label\ndigits:999999,3\n", "line 2: unknown id 'digits:999999'"),
        ("id,label\ndigits:0,0\ndigits:1,cat\n", "line 3: unknown class 'cat'"),
        ("id,label\ndigits:0,0\ndigits:0,0\n", "line 3: id 'digits:0' is listed twice"),
        ("id,label\ndigits:0,\n", "holds no labels yet"),
    ],
)
def test_add_labels_refuses_bad_files(tmp_path, digits, text, needle):
    _, uni = digits
    test_ids = set(load_dataset("digits").test.ids)
    assert "digits:0" not in test_ids  # a training image, so the id is known
    bad = _write(tmp_path / "back.csv", text)
    with pytest.raises(DataError, match=needle.replace("(", r"\(")):
        merge_labels(bad, tmp_path / "labels.csv", uni)
    r = invoke("data", "add-labels", str(bad), "--data", "digits")
    _one_line_error(r, needle.split(": ")[-1])
    assert not (tmp_path / "labels.csv").exists()


def test_merge_conflicts_blanks_and_apply_labels(tmp_path, digits):
    ds, uni = digits
    labels = tmp_path / "labels.csv"
    m = merge_labels(_write(tmp_path / "a.csv", "id,label\ndigits:0,0\ndigits:1,\n"), labels, uni)
    assert (m.added, m.blank, m.total) == (1, 1, 1)
    with pytest.raises(DataError, match="already labels it '0'"):
        merge_labels(_write(tmp_path / "b.csv", "id,label\ndigits:0,5\n"), labels, uni)
    merge_labels(_write(tmp_path / "c.csv", "id,label\ndigits:2,7\n"), labels, uni)
    got, _ = parse_labels(labels, uni)
    assert got == {uni.row["digits:0"]: 0, uni.row["digits:2"]: 7}
    hidden = apply_labels(ds, labels, source_labels=False)
    assert int(hidden.train.is_labeled.sum()) == 2
    assert int(hidden.train.labels[uni.row["digits:2"]]) == 7  # the file's label wins
    kept = apply_labels(ds, labels)
    assert int(kept.train.is_labeled.sum()) == len(ds.train)


def test_select_splits_labels_exactly_the_picks(digits):
    ds, _ = digits
    cfg = SelectConfig(strategy="typiclust", budget=20)
    sp = select_splits(ds, cfg, val="train:0.1", unlabeled="1:5", seed=0)
    assert len(sp.labeled) == 20 and bool(sp.labeled.is_labeled.all())
    assert len(sp.unlabeled) == 100 and not bool(sp.unlabeled.is_labeled.any())
    picked = set(sp.record["selection"]["picked_ids"])
    assert set(sp.labeled.ids) == picked
    assert not picked & set(sp.val.ids) and not picked & set(sp.unlabeled.ids)
    assert sp.record["sizes"]["labeled"] == 20
    again = select_splits(ds, cfg, val="train:0.1", unlabeled="1:5", seed=0)
    assert again.labeled.ids == sp.labeled.ids
    with pytest.raises(ConfigError, match="needs a classifier"):
        select_splits(ds, SelectConfig(strategy="margin", budget=5))


def test_study_strategy_axis_selects_before_training(tmp_path):
    from fewlabels.study import load_study, run_study, write_report

    spec = tmp_path / "sel.yaml"
    spec.write_text(
        "name: sel\ndata: digits\nbackbone: convnet\nbudget: 3steps\nval: none\n"
        "train: {batch_size: 16, evals: 1}\nupper_bound: false\n"
        "grid:\n  budgets: [10, 20]\n  strategies: [random, typiclust]\n  unlabeled: ['0']\n"
        "methods:\n  - supervised\n"
    )
    plan = load_study(spec)
    assert sorted({c.method for c in plan.cells}) == [
        "supervised [random]",
        "supervised [typiclust]",
    ]
    assert sorted(c.n_labeled for c in plan.cells) == [10, 10, 20, 20]
    res = run_study(plan, tmp_path / "out", log=lambda s: None)
    assert res.counts["done"] == 4 and res.counts["failed"] == 0
    rep = write_report(tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "acc_vs_budget.png").is_file()
    # val: none leaves no curve: a note instead of an empty time-to-accuracy figure
    assert not (tmp_path / "out" / "figures" / "time_to_accuracy.png").exists()
    assert "no run has a validation curve" in rep.markdown.read_text()
    rows = _rows(rep.csv)
    assert {r["strategy"] for r in rows} == {"random", "typiclust"}
    # each cell trained on exactly the selected images
    for key in {r["run_key"] for r in rows}:
        split = json.loads((tmp_path / "out" / "runs" / key / "split.json").read_text())
        assert split["selection"]["budget"] == split["sizes"]["labeled"]

    bad = tmp_path / "bad.yaml"
    bad.write_text(spec.read_text().replace("[random, typiclust]", "[random, entropy]"))
    with pytest.raises(ConfigError, match=r"line \d+: strategy entropy needs a classifier"):
        load_study(bad)
