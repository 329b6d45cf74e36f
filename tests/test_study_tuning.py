"""Equal tuning in studies (``tune: N``): the same trials for every method, the supervised
baseline included; trials are runs in the store keyed by their settings; each cell's chosen
trial is its best on validation, and the report says how each method was tuned. A tuning
budget larger than ``max_compute`` and a bad ``tune`` are one-line errors."""

from __future__ import annotations

import csv
import subprocess
import sys

import pytest
import torch

from fewlabels.core.errors import ConfigError
from fewlabels.methods import METHODS
from fewlabels.study import Store, parse_study, run_study, write_report
from fewlabels.study.plan import Pipeline
from fewlabels.study.store import STORE_NAME
from fewlabels.study.tuning import LR, WEIGHT_DECAY, points, space
from fewlabels.study.yamlines import Where

STUDY = """\
name: tuned
data: digits
budget: 5steps
train: {batch_size: 16, unlabeled_batch_ratio: 2, evals: 2, precision: fp32}
grid:
  labels_per_class: [2]
  unlabeled: [60]
  seeds: [0]
methods:
  - supervised
  - fixmatch
  - {name: ssl, pretrain: simclr, then: linear}
upper_bound: false
tune: 2
report: {tsne: false}
"""


@pytest.fixture(autouse=True, scope="module")
def _keep_torch_threads():
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def test_trials_move_one_setting_at_a_time_first():
    assert points((LR, WEIGHT_DECAY))[:5] == [(0, 0), (1, 0), (2, 0), (0, 1), (0, 2)]
    assert len(points((LR, WEIGHT_DECAY))) == 9


def test_every_method_gets_the_same_trials_and_trial_0_is_the_untuned_run():
    plan = parse_study(STUDY, "s.yaml")
    untuned = parse_study(STUDY.replace("tune: 2", "tune: 0"), "s.yaml")
    by_name = {c.name: c for c in plan.cells}
    assert {n: len(c.trials) for n, c in by_name.items()} == {
        "supervised": 2,
        "fixmatch": 2,
        "ssl": 2,
    }
    for cell in untuned.cells:
        assert by_name[cell.name].run_key == cell.run_key  # the resolved settings: same run
        assert by_name[cell.name].trials[0]["settings"] == {}
    sup = by_name["supervised"].trials[1]
    # training settings move as factors on what the run's rules give its data
    assert sup["settings"] == {"train.lr": 0.3}
    cfg = plan.jobs[sup["run_key"]].spec["config"]
    assert cfg["train"]["scale"] == {"lr": 0.3}  # the key holds the setting
    assert "lr" not in cfg["train"]
    ssl = by_name["ssl"].trials[1]
    pre = plan.jobs[ssl["job_keys"][0]]
    assert pre.stage == "pretrain" and pre.spec["config"]["train"]["scale"] == {"lr": 0.3}
    assert "trial 1: train.lr x0.3" in pre.label


def test_a_semi_supervised_method_searches_its_own_settings():
    plan = parse_study(STUDY.replace("tune: 2", "tune: 4"), "s.yaml")
    semi = next(c for c in plan.cells if c.name == "fixmatch")
    assert [t["settings"] for t in semi.trials][3] == {"method.lambda_u": 0.5}
    assert plan.jobs[semi.trials[3]["run_key"]].spec["config"]["method_kwargs"] == {"lambda_u": 0.5}
    assert "method.threshold (1 - value) x{1, 2, 0.5}" in semi.trials[0]["space"]
    assert [t["settings"] for t in semi.trials][:3] == [
        {},
        {"train.lr": 0.3},
        {"train.lr": 3.0},
    ]


def _final_val(run: dict) -> float:
    if run["metrics"].get("val_acc") is not None:
        return run["metrics"]["val_acc"]
    return [r["val_acc"] for r in run["curve"] if r.get("val_acc") is not None][-1]


def test_a_tuned_study_runs_its_trials_and_reports_the_chosen_ones(tmp_path):
    plan = parse_study(STUDY, "tuned.yaml")
    run_study(plan, tmp_path / "out", workers=1, threads=1, log=lambda s: None)
    rep = write_report(tmp_path / "out")
    store = Store(tmp_path / "out" / STORE_NAME)
    runs = store.runs()
    store.close()
    trial_keys = {k for c in plan.cells for t in c.trials for k in t["job_keys"]}
    assert trial_keys <= set(runs) and all(runs[k]["status"] == "done" for k in trial_keys)
    assert len(trial_keys) == 2 + 2 + 4  # supervised, fixmatch, ssl's pretrain + probe
    with open(rep.csv) as f:
        rows = {r["method"]: r for r in csv.DictReader(f)}
    md = rep.markdown.read_text()
    assert "How each method was tuned (2 trials per cell" in md
    for cell in plan.cells:
        vals = [_final_val(runs[t["run_key"]]) for t in cell.trials]
        best = max(range(len(vals)), key=lambda i: (vals[i], -i))
        row = rows[cell.name]
        assert int(row["trial"]) == best
        chosen = runs[cell.trials[best]["run_key"]]
        assert float(row["accuracy"]) == chosen["metrics"]["accuracy"]
        assert float(row["val_acc"]) == vals[best]
        said = row["trial_settings"] or "the resolved settings"
        assert f"{best}: {said}" in md
        assert f"{cell.name} was tuned with 2 trials per cell" in md
    # tuning.csv: per tuned cell, the chosen trial beside the resolved settings (trial 0)
    assert rep.tuning is not None
    with open(rep.tuning) as f:
        tuned = {r["method"]: r for r in csv.DictReader(f)}
    assert set(tuned) == {c.name for c in plan.cells}
    for cell in plan.cells:
        t, first = tuned[cell.name], runs[cell.trials[0]["run_key"]]
        assert int(t["chosen_trial"]) == int(rows[cell.name]["trial"])
        assert float(t["test_acc_chosen"]) == float(rows[cell.name]["accuracy"])
        assert float(t["test_acc_resolved"]) == first["metrics"]["accuracy"]
        assert float(t["val_acc_resolved"]) == _final_val(first)
        assert t["trials_done"] == "2/2"


@pytest.mark.parametrize(
    ("tune", "words"),
    [
        ("-1", "tune: must be a whole number of trials, 0 or more, got -1"),
        ("2.5", "tune: must be a whole number of trials, 0 or more, got 2.5"),
        ("two", "tune: must be a whole number of trials, 0 or more, got 'two'"),
        ("true", "tune: must be a whole number of trials, 0 or more, got True"),
        ("10", "tune: 10 is more trials than supervised's search space has (9: train.lr"),
    ],
)
def test_a_bad_tune_is_one_line_naming_its_line(tune, words):
    with pytest.raises(ConfigError) as e:
        parse_study(STUDY.replace("tune: 2", f"tune: {tune}"), "s.yaml")
    assert str(e.value).startswith("s.yaml line 14: " + words), str(e.value)
    assert "\n" not in str(e.value)


def test_tuning_needs_a_validation_split():
    text = STUDY.replace("budget: 5steps\n", "budget: 5steps\nval: none\n")
    with pytest.raises(ConfigError, match=r"^s\.yaml line 15: tune: 2 chooses .* val is none"):
        parse_study(text, "s.yaml")


def test_a_tuning_budget_over_max_compute_is_refused_before_training():
    """3 cells, 4 runs each with 2 trials (ssl: a pretraining and a probe, which spends no
    budget): 2 x 5 steps x 3 = 30 steps."""
    fits = STUDY + "max_compute: 30steps\n"
    parse_study(fits, "s.yaml")
    with pytest.raises(ConfigError) as e:
        parse_study(STUDY + "max_compute: 29steps\n", "s.yaml")
    msg = str(e.value)
    assert msg.startswith("s.yaml line 14: tune: 2 trials of each run, 3 cells: the study")
    assert "needs 30steps of compute in all, more than max_compute 29steps" in msg
    untuned = STUDY.replace("tune: 2", "tune: 0") + "max_compute: 10steps\n"
    with pytest.raises(ConfigError, match=r"^s\.yaml line 16: 3 cells: the study needs 15steps"):
        parse_study(untuned, "s.yaml")
    with pytest.raises(
        ConfigError, match=r"line 16: max_compute 1h counts seconds, but .* budget 5steps \(steps\)"
    ):
        parse_study(STUDY + "max_compute: 1h\n", "s.yaml")


def test_every_method_has_room_for_nine_trials():
    plan = parse_study(STUDY.replace("tune: 2", "tune: 9"), "s.yaml")
    assert {len(c.trials) for c in plan.cells} == {9}
    for name in METHODS:
        p = Pipeline(name, name, None, "5steps", "5steps", {}, {}, {}, Where("s.yaml", 1))
        assert len(points(space(p))) >= 9, name


def test_the_cli_refuses_a_tuning_budget_over_max_compute_before_training(tmp_path):
    spec = tmp_path / "tuned.yaml"
    spec.write_text(STUDY.replace("tune: 2", "tune: 3") + "max_compute: 40steps\n")
    out = tmp_path / "out"
    p = subprocess.run(
        [sys.executable, "-m", "fewlabels.cli", "study", str(spec), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 2
    assert len(p.stderr.strip().splitlines()) == 1
    assert "line 14: tune: 3 trials of each run, 3 cells: the study needs 45steps" in p.stderr
    assert not out.exists()  # refused before anything was created
