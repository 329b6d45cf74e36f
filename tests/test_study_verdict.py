"""The study report's verdict: paired t-intervals checked by hand, the words they give,
verdict rows on fake results (too few seeds, a clear gap, an interval across 0), the
verdict first in the report, the confusion matrix summed over seeds, and seeds that share
splits across methods."""

from __future__ import annotations

import csv
import io
import math

import numpy as np
import pytest

from fewlabels.data import load_dataset, make_splits
from fewlabels.study.render import Page, render_html, render_markdown
from fewlabels.study.results import Row, group_rows, summed_confusion
from fewlabels.study.sections import Results, summary_section
from fewlabels.study.spec import parse_study
from fewlabels.study.stats import Interval, comparison, helps, paired, t_interval
from fewlabels.study.verdict import verdict_csv, verdict_section, verdicts
from fewlabels.train.run import RunConfig


# -- the statistics, by hand ---------------------------------------------------------------
def test_t_interval_of_one_to_five():
    """mean 3, sd sqrt(2.5), t(0.975, 4) = 2.776445: 3 +- 2.776445 * 1.581139 / 2.236068."""
    iv = t_interval([1, 2, 3, 4, 5])
    assert iv.n == 5 and iv.mean == pytest.approx(3.0)
    assert iv.sd == pytest.approx(math.sqrt(2.5))
    assert iv.low == pytest.approx(3 - 1.963243, abs=1e-5)
    assert iv.high == pytest.approx(3 + 1.963243, abs=1e-5)


def test_t_interval_of_two_values_and_of_one():
    """Two values: t(0.975, 1) = 12.706205, sd = 0.1 * sqrt(2): half-width 1.270620."""
    iv = t_interval([0.1, 0.3])
    assert iv.mean == pytest.approx(0.2)
    assert (iv.low, iv.high) == pytest.approx((0.2 - 1.270620, 0.2 + 1.270620), abs=1e-5)
    one = t_interval([0.4])
    assert one.mean == 0.4 and one.low == -math.inf and one.high == math.inf


def test_paired_differences_use_the_seeds_both_have():
    assert paired({0: 0.9, 1: 0.8, 2: 0.7}, {1: 0.5, 2: 0.6, 3: 0.1}) == pytest.approx([0.3, 0.1])


def _iv(mean: float, half: float, n: int = 3) -> Interval:
    return Interval(mean, mean - half, mean + half, n, 0.0)


@pytest.mark.parametrize(
    ("iv", "vs", "more"),
    [
        (_iv(0.08, 0.03), "beats", "yes"),
        (_iv(-0.05, 0.02), "below", "no"),
        (_iv(0.002, 0.006), "no clear difference", "no"),  # no further gain: within 1 point
        (_iv(0.002, 0.02), "no clear difference", "not determined"),
        (_iv(0.006, 0.004), "beats", "yes"),
        (_iv(0.08, 0.03, n=2), "not conclusive", "not conclusive"),
    ],
)
def test_what_an_interval_says(iv, vs, more):
    assert comparison(iv) == vs
    assert helps(iv) == more


# -- verdict rows on fake results --------------------------------------------------------------
def _row(method: str, seed: int, acc: float, unlabeled: str = "rest", **kw) -> Row:
    uses = method != "supervised"
    base = dict(
        cell=f"{method} {unlabeled} {seed}", method=method, base_method=method,
        pipeline="train", role="grid", labels="5/class", labels_per_class=5,
        labeled_fraction=None, unlabeled=unlabeled if uses else "0", n_labeled=50,
        n_unlabeled={"100": 100, "rest": 1500}.get(unlabeled, 0) if uses else 0,
        uses_unlabeled=uses, seed=seed, accuracy=acc, macro_f1=acc,
        run_key=f"k{method}{unlabeled}{seed}",
    )  # fmt: skip
    return Row(**{**base, **kw})


SUP = (0.60, 0.62, 0.58)


def _rows(semi: tuple[float, ...], sup: tuple[float, ...] = SUP, unl: str = "rest") -> list[Row]:
    rows = [_row("supervised", s, a) for s, a in enumerate(sup)]
    return rows + [_row("fixmatch", s, a, unl) for s, a in enumerate(semi)]


def _vs(rows: list[Row]) -> list:
    return [v for v in verdicts(group_rows(rows)) if v.kind == "vs_supervised"]


@pytest.mark.parametrize("n", [1, 2])
def test_fewer_than_three_seeds_is_not_conclusive(n):
    (v,) = _vs(_rows((0.9, 0.91, 0.92)[:n], SUP[:n]))
    assert v.verdict == "not conclusive" and v.seeds == n
    assert f"not conclusive ({n} seed" in v.text and "3 or more are needed" in v.text
    assert "beats" not in v.text


def test_three_seeds_with_a_clear_gap_beats_supervised():
    (v,) = _vs(_rows((0.70, 0.71, 0.69)))  # differences 0.10, 0.09, 0.11
    iv = t_interval([0.10, 0.09, 0.11])  # half-width 4.302653 * 0.01 / sqrt(3) = 0.024841
    assert iv.low == pytest.approx(0.10 - 0.024841, abs=1e-5)
    assert v.verdict == "beats" and v.seeds == 3
    assert v.text == (
        "5 labels per class (50 labeled images), 1,500 unlabeled images: fixmatch beats "
        "supervised by 10.0 points (95% interval 7.5 to 12.5, 3 seeds)"
    )


def test_an_interval_across_zero_is_no_clear_difference():
    (v,) = _vs(_rows((0.65, 0.58, 0.60)))  # differences +0.05, -0.04, +0.02
    assert v.verdict == "no clear difference"
    assert v.text.startswith("5 labels per class (50 labeled images), 1,500 unlabeled images: ")
    assert (
        "no clear difference between fixmatch and supervised (+1.0 points, 95% interval" in v.text
    )


def test_below_supervised_says_so():
    (v,) = _vs(_rows((0.50, 0.53, 0.47)))
    assert v.verdict == "below" and "fixmatch is below supervised by 10.0 points" in v.text


def test_more_unlabeled_data_helps_yes_no_and_not_determined():
    def more(small: tuple[float, ...], large: tuple[float, ...]):
        rows = _rows(small, unl="100") + [_row("fixmatch", s, a) for s, a in enumerate(large)]
        (v,) = [v for v in verdicts(group_rows(rows)) if v.kind == "more_unlabeled"]
        return v

    yes = more((0.60, 0.62, 0.61), (0.70, 0.71, 0.72))
    assert (yes.verdict, yes.unlabeled, yes.unlabeled_to) == ("yes", "100", "rest")
    assert (
        "more unlabeled data helps (100 -> 1,500 unlabeled images): yes (+10.0 points" in yes.text
    )
    flat = more((0.700, 0.710, 0.720), (0.701, 0.709, 0.722))
    assert flat.verdict == "no" and "no further gain" in flat.text
    assert more((0.60, 0.70, 0.65), (0.70, 0.62, 0.66)).verdict == "not determined"
    assert more((0.6, 0.7), (0.7, 0.8)).verdict == "not conclusive"


def test_the_verdict_comes_first_in_markdown_html_and_csv(tmp_path):
    rows = _rows((0.70, 0.71, 0.69))
    res = Results(rows, group_rows(rows), {}, tmp_path, tmp_path, {})
    sections = [verdict_section(res), summary_section(res)]
    page = Page("demo", "demo.yaml", len(rows), len(rows), sections, tmp_path)
    md = render_markdown(page)
    assert md.index("## Verdict") < md.index("## Summary")
    assert "- 5 labels per class (50 labeled images), 1,500 unlabeled images: fixmatch beats" in md
    assert "| 5/class | fixmatch | rest | 3 | +10.0 | 7.5 to 12.5 | beats |" in md
    page_html = render_html(page)
    assert page_html.index("<h2>Verdict</h2>") < page_html.index("<h2>Summary</h2>")
    assert "fixmatch beats supervised by 10.0 points" in page_html
    got = list(csv.DictReader(io.StringIO(verdict_csv(verdicts(res.groups)))))
    assert [(r["kind"], r["method"], r["verdict"], r["seeds"]) for r in got] == [
        ("vs_supervised", "fixmatch", "beats", "3")
    ]
    assert float(got[0]["low"]) == pytest.approx(0.075159, abs=1e-5)


def test_the_summary_no_longer_ranks_methods_it_cannot_separate(tmp_path):
    rows = _rows((0.70, 0.71), SUP[:2])
    res = Results(rows, group_rows(rows), {}, tmp_path, tmp_path, {})
    (line,) = summary_section(res).summary
    assert line.startswith("At 5/class labeled (50 images), mean test accuracy over 2 seed(s): ")
    assert "wins" not in line and "supervised 61.0 ± 1.4%" in line


def test_the_confusion_matrix_is_summed_over_seeds():
    a, b = [[3, 1], [0, 4]], [[2, 2], [1, 3]]
    rows = [
        _row("fixmatch", 0, 0.8, confusion=a, class_names=["x", "y"]),
        _row("fixmatch", 1, 0.6, confusion=b, class_names=["x", "y"]),
    ]
    (g,) = group_rows(rows)
    mat, names, n = summed_confusion(g)
    assert mat == (np.asarray(a) + np.asarray(b)).tolist() and names == ["x", "y"] and n == 2


# -- seeds share splits ----------------------------------------------------------------------
STUDY = """\
name: pairs
data: digits
budget: 2steps
grid:
  labels_per_class: [2]
  unlabeled: [60, rest]
  seeds: [0, 1]
methods:
  - supervised
  - fixmatch
  - {pretrain: simclr, then: linear}
upper_bound: false
"""


def test_the_same_seed_gives_every_method_the_same_splits():
    """Every run of a seed (supervised, which ignores the unlabeled amount; FixMatch and a
    pretraining at each unlabeled amount) gets the same labeled, validation and test sets,
    and another seed gets other ones: the verdict's pairing holds."""
    plan = parse_study(STUDY, "s.yaml")
    ds = load_dataset("digits")
    cuts: dict[int, set] = {0: set(), 1: set()}
    for job in plan.jobs.values():
        if job.kind != "train":
            continue
        sp = make_splits(ds, RunConfig(**job.spec["config"]).split_config())
        rec = sp.record
        cuts[job.spec["config"]["train"]["seed"]].add(
            (tuple(rec["labeled_rows"]), tuple(rec["val_rows"]), rec["sizes"]["test"])
        )
    assert len(cuts[0]) == 1 and len(cuts[1]) == 1
    assert cuts[0] != cuts[1]
    probes = [j.spec["probe"] for j in plan.jobs.values() if j.kind == "probe"]
    assert {(p["seed"], p["labels_per_class"], p["val"]) for p in probes} == {
        (0, 2, "auto"),  # the study's default validation split, as a run's
        (1, 2, "auto"),
    }
