"""The loop core and its shared pieces: curve files, settings ranges, typed budgets,
callbacks, the data-in-memory environment setting, exact resume with EMA."""

from __future__ import annotations

import json

import pytest
import torch
from pydantic import ValidationError

from fewlabels.core.artifacts import append_curve, read_curve, write_curve
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.data import load_dataset
from fewlabels.generate.train import GANConfig
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.train.config import TrainingSettings
from fewlabels.train.engine import BudgetClock, Callback, LoopState, run_loop
from fewlabels.train.feed import data_in_memory_from_env
from fewlabels.train.loop import TrainConfig, Trainer, with_train_defaults


def test_curve_files_round_trip_and_a_torn_last_line_ends_the_curve(tmp_path):
    p = tmp_path / "run" / "curve.jsonl"
    assert read_curve(p) == []
    write_curve(p, [{"step": 1}])
    append_curve(p, {"step": 2, "val_acc": 0.5})
    assert read_curve(p) == [{"step": 1}, {"step": 2, "val_acc": 0.5}]
    with open(p, "a") as f:
        f.write('{"step": 3, "val')  # a crash mid-append
    assert [r["step"] for r in read_curve(p)] == [1, 2]
    write_curve(p, [])
    assert p.read_text() == ""


@pytest.mark.parametrize(
    ("setting", "value", "needle"),
    [
        ("lr", -0.5, "lr must be above 0, got -0.5"),
        ("seed", -1, "seed must be at least 0 and below 2**63, got -1"),
        ("warmup", 1.5, "warmup must be at least 0 and at most 1, got 1.5"),
        ("momentum", 1.0, "momentum must be at least 0 and below 1, got 1.0"),
        ("ema", 1.0, "ema decay must be 0 (off) or in (0, 1), got 1.0"),
        ("batch_size", 0, "batch size must be at least 1, got 0"),
        ("grad_clip", float("nan"), "grad_clip must be at least 0, got nan"),
        ("lars_eta", 0.0, "lars_eta must be above 0, got 0.0"),
    ],
)
def test_a_setting_out_of_range_names_the_setting_and_the_value(setting, value, needle):
    with pytest.raises(ValidationError) as e:
        TrainConfig(**{setting: value})
    err = e.value.errors()[0]
    assert err["loc"] == (setting,) and needle in err["msg"], err["msg"]


def test_in_range_edges_are_accepted_and_other_errors_stay_pydantics():
    cfg = TrainConfig(warmup=1.0, ema=0.0, seed=2**63 - 1, weight_decay=0.0, evals=0)
    assert cfg.warmup == 1.0 and cfg.seed == 2**63 - 1
    with pytest.raises(ValidationError, match="valid number"):
        TrainConfig(lr="fast")
    with pytest.raises(ValidationError, match="Extra inputs"):
        TrainConfig(learning_rate=0.1)


def test_the_budget_is_typed_and_written_back_as_its_text(tmp_path):
    cfg = TrainConfig(budget="30m")
    assert cfg.budget == Budget("seconds", 1800.0) and str(cfg.budget) == "30m"
    assert cfg.model_dump()["budget"] == "30m"
    assert json.loads(cfg.model_dump_json())["budget"] == "30m"
    assert TrainConfig(budget=Budget.parse("2epochs")).model_dump()["budget"] == "2epochs"
    assert TrainConfig(**cfg.model_dump()) == cfg
    # settings saved before a field existed still compare equal once filled in
    saved = {k: v for k, v in cfg.model_dump().items() if k not in ("lars_eta", "lars_clip")}
    assert with_train_defaults(saved) == cfg.model_dump()
    # a training checkpoint keeps the text (and loads with weights_only)
    ds = load_dataset("digits")
    torch.manual_seed(0)
    run = TrainConfig(budget="3steps", batch_size=16, precision="fp32", evals=1)
    Trainer(run, out_dir=tmp_path, progress=False).fit(
        Supervised(Network("convnet", 1, 8, 10)), ds.train, None, None
    )
    assert load_checkpoint(tmp_path / "checkpoint.pt")["train_config"]["budget"] == "3steps"


def test_gan_settings_share_the_common_part_with_their_own_defaults():
    gan, train = GANConfig(), TrainConfig()
    assert isinstance(gan, TrainingSettings) and isinstance(train, TrainingSettings)
    assert (gan.batch_size, gan.lr, gan.ema, gan.precision) == (64, 2e-4, 0.999, "fp32")
    assert (train.batch_size, train.lr, train.ema, train.precision) == (256, None, 0.0, "auto")
    assert str(gan.budget) == "30m" and gan.model_dump()["budget"] == "30m"
    with pytest.raises(ValidationError, match="lr must be above 0, got -1"):
        GANConfig(lr=-1)
    with pytest.raises(ValidationError, match=r"ema decay must be in \(0, 1\), got 0"):
        GANConfig(ema=0)


class _Record(Callback):
    def __init__(self) -> None:
        self.calls: list[str] = []

    def on_start(self, loop):
        self.calls.append("start")

    def on_after_step(self, loop):
        self.calls.append(f"after{loop.clock.step}")

    def on_step_end(self, loop):
        self.calls.append(f"end{loop.clock.step}")
        if loop.clock.step % 2 == 0:
            loop.record({"step": loop.clock.step})

    def on_eval(self, loop, row):
        self.calls.append(f"eval{row['step']}")

    def on_end(self, loop):
        self.calls.append("stop")


def test_run_loop_calls_the_hooks_in_order_and_stops_at_the_budget_or_a_step():
    seen: list[int] = []
    rec = _Record()
    clock = BudgetClock(Budget.parse("4steps"), 4, calibrate=False)
    loop = run_loop(LoopState(clock), lambda lp: seen.append(lp.clock.step), [clock, rec])
    assert seen == [0, 1, 2, 3] and loop.progress == 1.0 and not loop.stopped_early
    assert rec.calls == ["start", "after0", "end1", "after1", "end2", "eval2",
                         "after2", "end3", "after3", "end4", "eval4", "stop"]  # fmt: skip
    assert [r["step"] for r in loop.curve] == [2, 4] and len(loop.step_seconds) == 4
    clock = BudgetClock(Budget.parse("4steps"), 4, calibrate=False)
    clock.step = 1  # resumed
    loop = run_loop(LoopState(clock, stop_at_step=3), lambda lp: None, [clock])
    assert loop.stopped_early and clock.step == 3 and len(loop.step_seconds) == 2


def test_a_seconds_budget_without_calibration_runs_on_the_clock():
    clock = BudgetClock(Budget.parse("0.2s"), None, calibrate=False)
    loop = run_loop(LoopState(clock), lambda lp: torch.ones(64, 64).sum(), [clock])
    assert clock.total_steps is None and clock.train_s >= 0.2 and loop.progress == 1.0


def test_data_in_memory_is_read_from_the_environment_in_one_place(monkeypatch):
    cfg = TrainConfig(batch_size=8)
    monkeypatch.delenv("FEWLABELS_DATA_IN_MEMORY", raising=False)
    assert data_in_memory_from_env() is None and Trainer(cfg).data_in_memory is None
    for value, want in (("0", False), ("no", False), ("1", True), ("yes", True)):
        monkeypatch.setenv("FEWLABELS_DATA_IN_MEMORY", value)
        assert data_in_memory_from_env() is want and Trainer(cfg).data_in_memory is want
    assert Trainer(cfg, data_in_memory=True).data_in_memory is True  # the argument wins


def test_resume_with_ema_and_an_images_budget_is_exact(tmp_path):
    ds = load_dataset("digits")
    cfg = TrainConfig(
        budget="192img", batch_size=16, precision="fp32", evals=2, ema=0.9, grad_clip=1.0
    )

    def method(seed=0):
        torch.manual_seed(seed)
        return Supervised(Network("convnet", 1, 8, 10))

    whole = method()
    r0 = Trainer(cfg, out_dir=tmp_path / "a", progress=False).fit(whole, ds.train, None, ds.test)
    assert r0.steps == 12
    part = method()
    r1 = Trainer(cfg, out_dir=tmp_path / "b", progress=False).fit(
        part, ds.train, None, ds.test, stop_at_step=5
    )
    assert r1.stopped_early and r1.steps == 5
    fresh = method(seed=9)
    r2 = Trainer(cfg, out_dir=tmp_path / "b", progress=False).fit(fresh, ds.train, None, ds.test)
    assert r2.steps == 12
    a, b = whole.state_dict(), fresh.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    # (the running loss average is not checkpointed: it restarts with the resumed run)
    drop = ("time_s", "wall_s", "loss")
    timeless = lambda rows: [{k: v for k, v in r.items() if k not in drop} for r in rows]  # noqa: E731
    assert timeless(read_curve(tmp_path / "a/curve.jsonl")) == timeless(
        read_curve(tmp_path / "b/curve.jsonl")
    )
