"""Resolved settings: the rules are pure functions of the facts (made-up facts here); a
user-given value is kept; a run records what its loop used; bad input fails before
training."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import fewlabels
import fewlabels.train.facts as facts_mod
from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.methods import method_class
from fewlabels.methods.rules import Facts, Resolved
from fewlabels.train.resolve import (
    batch_rule,
    check_budget,
    check_facts,
    ema_rule,
    generic_rules,
    lr_rule,
    mu_rule,
    pow2_at_most,
    resolve_settings,
    warmup_rule,
)
from fewlabels.train.run import RunConfig, run_training


def facts(**kw: object) -> Facts:
    base = dict(
        image_size=32, channels=3, num_classes=10, labeled=250, unlabeled=45_000,
        budget=Budget.parse("10m"), kind="semi-supervised", method="fixmatch",
    )  # fmt: skip
    return Facts(**{**base, **kw})  # type: ignore[arg-type]


def test_facts_hold_no_data_set_name() -> None:
    names = {f.name for f in dataclasses.fields(Facts)}
    assert not names & {"data", "name", "dataset", "spec"}


def test_labeled_batch_never_above_the_labeled_set() -> None:
    assert batch_rule(facts(labeled=10)).value == 8
    assert batch_rule(facts(labeled=40)).value == 32
    assert batch_rule(facts(labeled=250)).value == 64  # bench_semi's FixMatch batch
    assert batch_rule(facts(labeled=250, kind="supervised")).value == 128
    assert batch_rule(facts(labeled=3, kind="supervised")).value == 2
    assert pow2_at_most(1) == 1 and pow2_at_most(100) == 64


def test_pretraining_batch_counts_unlabeled_images() -> None:
    f = facts(kind="self-supervised", method="vicreg", unlabeled=100)
    assert batch_rule(f).value == 64
    assert batch_rule(facts(kind="self-supervised", method="vicreg")).value == 256


def test_mu_is_fixmatch_7_unless_the_budget_buys_too_few_steps() -> None:
    assert mu_rule(facts(step_seconds=0.1), 64).value == 7.0  # 6,000 steps
    slow = mu_rule(facts(budget=Budget.parse("60s"), step_seconds=0.6), 64)  # 100 steps
    assert 1.0 <= slow.value < 7.0 and "lowered" in slow.rule
    assert mu_rule(facts(budget=Budget.parse("50steps")), 64).value == 7.0
    assert mu_rule(facts(budget=Budget.parse("3epochs")), 64).value == 7.0


def test_mu_is_lowered_until_the_labels_are_passed_over_often_enough() -> None:
    """5,000 labels at batch 64: 40 passes need 3,125 steps. mu = 7 buys 600 (cost 15
    batches a step); mu = 1 (cost 3) buys 3,000, the most it can."""
    many = facts(labeled=5000, budget=Budget.parse("2m"), step_seconds=0.2)
    r = mu_rule(many, 64)
    assert r.value == 1.0 and "40 passes over 5000 labels" in r.rule
    # the same budget with 250 labels: 40 passes are 157 steps, 600 is plenty
    assert mu_rule(facts(labeled=250, budget=Budget.parse("2m"), step_seconds=0.2), 64).value == 7
    # in between: 2,000 labels need 1,250 steps; mu = 3 (cost 7) buys 1,285
    assert mu_rule(facts(labeled=2000, budget=Budget.parse("2m"), step_seconds=0.2), 64).value == 3


def test_lr_follows_the_linear_scaling_rule() -> None:
    assert lr_rule("sgd", 256).value == pytest.approx(0.1)
    assert lr_rule("sgd", 64).value == pytest.approx(0.025)
    assert lr_rule("lars", 512).value == pytest.approx(0.6)
    assert "linear scaling" in lr_rule("sgd", 64).rule
    assert lr_rule("adamw", 64, backbone="fastnet").value == pytest.approx(0.001)
    assert lr_rule("adamw", 32, backbone="convnet").value == pytest.approx(0.003)
    assert lr_rule("adamw", 16).value < lr_rule("adamw", 64).value
    assert lr_rule("sgd", 256, "self-supervised").value == pytest.approx(0.06)


def test_few_steps_mean_no_ema_or_a_smaller_decay() -> None:
    assert ema_rule(facts(), 50).value == 0.0
    short, long = ema_rule(facts(), 200).value, ema_rule(facts(), 100_000).value
    assert 0.9 <= short < long == 0.999
    assert ema_rule(facts(kind="supervised"), 10_000).value == 0.0


def test_warmup_is_at_least_50_steps_and_at_most_a_fifth() -> None:
    assert warmup_rule(10_000).value == 0.05
    assert warmup_rule(500).value == pytest.approx(0.1)
    assert warmup_rule(100).value == 0.2


def test_bigger_images_get_bigger_views_and_wider_crops() -> None:
    cfg = method_class("vicreg").Config
    small = cfg.resolve(facts(image_size=32, kind="self-supervised", feature_dim=256))
    big = cfg.resolve(facts(image_size=96, kind="self-supervised", feature_dim=512))
    assert small["augment"].value == "twoview:min_scale=0.35,out_size=20"  # bench_ssl's
    assert "out_size=60" in big["augment"].value and "min_scale=0.14" in big["augment"].value
    assert small["projector"].value == (1024, 1024, 1024)
    assert big["projector"].value == (2048, 2048, 2048)


def test_step_budget_needs_no_probe_and_sets_the_schedule() -> None:
    def probe(backbone: str, n: int, side: int = 32) -> float:
        raise AssertionError("a step budget needs no speed probe")

    values, f = generic_rules(facts(budget=Budget.parse("400steps")), {}, probe)
    assert f.steps == 400 and values["schedule"].value == 400
    assert values["train.ema"].value == pytest.approx(0.975)


def test_slow_device_steps_down_the_backbone_for_a_short_budget() -> None:
    """fastnet wants 4,000 steps, fastnet-s 400; below, the next smaller backbone."""
    seconds = {"fastnet": 0.675, "fastnet-s": 0.0675, "convnet": 0.0009}

    def probe(backbone: str, n: int, side: int = 32) -> float:
        return seconds[backbone]

    def chosen(budget: str) -> Resolved:
        f = facts(budget=Budget.parse(budget), kind="supervised")
        return generic_rules(f, {}, probe)[0]["backbone"]

    # a step costs the pass / PROBE_SHARE: fastnet 0.75 s, fastnet-s 0.075 s
    assert chosen("60m").value == "fastnet"  # 4,800 steps
    mid = chosen("5m")  # fastnet 400 steps, fastnet-s 4,000
    assert mid.value == "fastnet-s" and mid.rule == "fastnet buys 400 steps (< 4000): fastnet-s"
    low = chosen("20s")  # fastnet 26 steps, fastnet-s 266
    assert low.value == "convnet"
    assert low.rule == "fastnet buys 26 steps (< 4000), fastnet-s buys 266 steps (< 400): convnet"
    given, _ = generic_rules(facts(budget=Budget.parse("20s")), {"backbone": "fastnet"}, probe)
    assert given["backbone"].value == "fastnet" and given["backbone"].given


def test_the_probe_times_the_methods_views() -> None:
    """VICReg's views are view_size(32) = 20 px: timing 32 px images guessed 517 of the 1,910
    steps a 15-minute run made; a given augment (its size unread) is timed at image size."""
    sides: list[int] = []

    def probe(backbone: str, n: int, side: int = 32) -> float:
        sides.append(side)
        return 0.01

    f = facts(kind="self-supervised", method="vicreg", budget=Budget.parse("5m"))
    for method_kwargs, want in (({}, 20), ({"augment": "twoview"}, 32)):
        sides.clear()
        cfg = RunConfig(method="vicreg", train={"budget": "5m"}, method_kwargs=method_kwargs)
        resolve_settings(cfg, f, method_class("vicreg").Config, probe=probe)
        assert sides and set(sides) == {want}
    sides.clear()
    cfg = RunConfig(method="fixmatch", train={"budget": "5m"})
    resolve_settings(cfg, facts(budget=Budget.parse("5m")), method_class("fixmatch").Config,
                     probe=probe)  # fmt: skip
    assert sides and set(sides) == {32}


def test_the_speed_probe_runs_channels_last_at_the_side_asked(monkeypatch) -> None:
    """As the loop trains: the network and images channels-last, at the views' side."""
    seen: list[tuple[tuple[int, ...], bool]] = []
    real = facts_mod.Network

    def spy(*a: object, **k: object):  # type: ignore[no-untyped-def]
        net = real(*a, **k)  # type: ignore[arg-type]
        net.register_forward_pre_hook(
            lambda _m, inp: seen.append(
                (tuple(inp[0].shape), inp[0].is_contiguous(memory_format=torch.channels_last))
            )
        )
        return net

    monkeypatch.setattr(facts_mod, "Network", spy)
    kw = dict(channels=3, image_size=32, num_classes=3, device=torch.device("cpu"), steps=1)
    probe = facts_mod.speed_probe(**kw)  # type: ignore[arg-type]
    assert probe("convnet", 4, 20) > 0 and probe("convnet", 4) > 0
    assert {s for s, _ in seen} == {(4, 3, 20, 20), (4, 3, 32, 32)}
    assert all(cl for _, cl in seen)


def test_a_semi_supervised_run_wants_more_steps_of_fastnet_s() -> None:
    """fastnet-s buying 1,200 steps serves supervised, not FixMatch from scratch (2,000)."""
    seconds = {"fastnet": 0.675, "fastnet-s": 0.045, "convnet": 0.0009}

    def probe(backbone: str, n: int, side: int = 32) -> float:
        return seconds[backbone]

    def chosen(kind: str) -> Resolved:
        f = facts(budget=Budget.parse("1m"), kind=kind)
        given = {"train.unlabeled_batch_ratio": 7.0}
        return generic_rules(f, given, probe)[0]["backbone"]

    assert chosen("supervised").value == "fastnet-s"  # 1,200 steps >= 400
    semi = chosen("semi-supervised")
    assert semi.value == "convnet" and "fastnet-s buys 1200 steps (< 2000)" in semi.rule


def test_user_given_values_are_kept() -> None:
    cfg = RunConfig(
        method="fixmatch", backbone="convnet",
        train={"budget": "100steps", "batch_size": 200, "ema": 0.5},
        method_kwargs={"threshold": 0.9},
    )  # fmt: skip
    f = facts(image_size=8, channels=1, labeled=40, unlabeled=1000, budget=cfg.train.budget)
    resolved, res = resolve_settings(cfg, f, method_class("fixmatch").Config)
    assert resolved.train.batch_size == 200 and res.values["train.batch_size"].given
    assert resolved.train.ema == 0.5 and res.values["train.ema"].rule == "given"
    assert resolved.method_kwargs["threshold"] == 0.9
    assert not res.values["train.lr"].given
    assert resolved.train.lr == pytest.approx(lr_rule("adamw", 200, backbone="convnet").value)


def test_a_run_from_init_weights_keeps_their_backbone() -> None:
    cfg = RunConfig(method="fixmatch", train={"budget": "100steps"})
    f = facts(image_size=32, budget=cfg.train.budget)
    fixed = {"backbone": Resolved("resnet18", "the backbone of the init weights")}
    resolved, res = resolve_settings(cfg, f, method_class("fixmatch").Config, fixed=fixed)
    assert resolved.backbone == "resnet18" and "init" in res.values["backbone"].rule
    plain, _ = resolve_settings(cfg, f, method_class("fixmatch").Config)
    assert plain.backbone == "fastnet"  # the image-size rule, without init weights


def test_the_speed_probe_times_passes_in_the_runs_precision(monkeypatch) -> None:
    """The probe must time what the run does: a bf16 run's steps, not fp32 ones (on a CPU
    with bf16 instructions the fp32 probe said 296 steps where the run made 894)."""
    seen: list[str] = []
    real = facts_mod.autocast

    def spy(precision: str, device: torch.device):  # type: ignore[no-untyped-def]
        seen.append(precision)
        return real(precision, device)

    monkeypatch.setattr(facts_mod, "autocast", spy)
    kw = dict(channels=1, image_size=8, num_classes=3, device=torch.device("cpu"), steps=1)
    assert facts_mod.speed_probe(**kw, precision="bf16")("convnet", 4) > 0  # type: ignore[arg-type]
    assert seen and set(seen) == {"bf16"}
    seen.clear()
    facts_mod.speed_probe(**kw)("convnet", 4)  # type: ignore[arg-type]
    assert set(seen) == {"fp32"}
    made: list[str] = []
    monkeypatch.setattr(
        facts_mod,
        "speed_probe",
        lambda **k: made.append(k["precision"]) or (lambda b, n, side=None: 0.01),
    )
    train = SimpleNamespace(image_size=(8, 8), channels=1, num_classes=3)
    splits = SimpleNamespace(labeled=range(12), unlabeled=range(100))
    cfg = RunConfig(method="fixmatch", train={"budget": "20s", "precision": "fp32"})
    facts_mod.resolve_run(cfg, SimpleNamespace(train=train), splits, torch.device("cpu"))
    assert made == ["fp32"]


def test_train_scale_moves_the_resolved_lr_and_weight_decay_by_a_factor() -> None:
    """A tuning trial's factors apply to what the rules give this data, so a trial of
    AdamW's resolved lr stays near it (not around SGD's 0.1)."""
    f = facts(budget=Budget.parse("400steps"))
    plain, _ = resolve_settings(RunConfig(method="fixmatch", train={"budget": "400steps"}), f,
                                  method_class("fixmatch").Config)  # fmt: skip
    cfg = RunConfig(
        method="fixmatch", train={"budget": "400steps", "scale": {"lr": 0.3, "weight_decay": 2}}
    )
    trial, tres = resolve_settings(cfg, f, method_class("fixmatch").Config)
    assert plain.train.optimizer == trial.train.optimizer == "adamw"
    assert trial.train.lr == pytest.approx(0.3 * plain.train.lr, rel=1e-5)
    assert trial.train.weight_decay == pytest.approx(2 * plain.train.resolved_weight_decay())
    assert "x 0.3 (train.scale)" in tres.values["train.lr"].rule
    assert not tres.values["train.lr"].given
    given = RunConfig(
        method="fixmatch", train={"budget": "400steps", "lr": 0.01, "scale": {"lr": 0.5}}
    )
    assert resolve_settings(given, f, method_class("fixmatch").Config)[0].train.lr == 0.005
    # a resumed run reuses its first start's (already scaled) value
    again, _ = resolve_settings(cfg, f, method_class("fixmatch").Config,
                                reuse={"train.lr": trial.train.lr})  # fmt: skip
    assert again.train.lr == trial.train.lr
    with pytest.raises(ValueError):
        RunConfig(method="fixmatch", train={"scale": {"momentum": 2}})


def test_fewer_labels_than_classes_and_a_budget_under_one_step_are_refused() -> None:
    with pytest.raises(DataError, match="5 labels for 10 classes"):
        check_facts(facts(labeled=5))
    check_facts(facts(labeled=0, kind="self-supervised"))
    with pytest.raises(ConfigError, match="less than one training step"):
        check_budget(facts(budget=Budget.parse("1s"), step_seconds=3.0))


def test_a_run_records_what_its_loop_used(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = RunConfig(
        method="fixmatch", labels_per_class=4, out=str(out),
        train={"budget": "40steps", "evals": 4, "seed": 1},
    )  # fmt: skip
    res = run_training(cfg, progress=False, log=lambda s: None)
    rows = {r["setting"]: r for r in json.loads((out / "resolved.json").read_text())["settings"]}
    assert rows["train.budget"]["given"] and not rows["train.batch_size"]["given"]
    batch, mu = rows["train.batch_size"]["value"], rows["train.unlabeled_batch_ratio"]["value"]
    assert batch <= 40  # 4 labels x 10 classes
    last = res.curve[-1]
    assert last["backbone_images"] / last["step"] == batch + 2 * round(batch * mu)
    lr, warmup = rows["train.lr"]["value"], rows["train.warmup"]["value"]
    lrs = [r["lr"] for r in res.curve if "lr" in r]
    assert lrs and max(lrs) <= lr * (1 + 1e-6)
    peak = max(lrs)
    assert peak >= lr * 0.5 * (1 + math.cos(math.pi * (1 - warmup)))  # one eval past warm-up
    saved = json.loads((out / "config.json").read_text())
    assert saved["train"]["batch_size"] == batch and saved["train"]["lr"] == lr


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    cmd = [str(Path(sys.executable).with_name("fewlabels")), *args]
    src = str(Path(fewlabels.__file__).resolve().parents[1])  # this checkout's package
    env = {**os.environ, "PYTHONPATH": src, "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=300, env=env)


def test_dry_run_prints_the_table_and_writes_nothing(tmp_path: Path) -> None:
    out = tmp_path / "run"
    r = _cli(
        "train", "--method", "fixmatch", "--labels-per-class", "2", "--budget", "3s",
        "--out", str(out), "--dry-run", cwd=tmp_path,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    assert "# derived:" in r.stdout and "batch_size=16" in r.stdout and "# given:" in r.stdout
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--budget", "0steps"), "must be positive"),
        (("--budget", "0.001s", "--method", "fixmatch"), "less than one training step"),
        (("--labels", "LABELS", "--no-source-labels"), "2 labels for 10 classes"),
    ],
)
def test_bad_input_is_one_line_before_training(
    tmp_path: Path, args: tuple[str, ...], needle: str
) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("id,label\ndigits:0,0\ndigits:1,1\n")
    out = tmp_path / "run"
    args = tuple(str(labels) if a == "LABELS" else a for a in args)
    r = _cli("train", *args, "--out", str(out), "--no-progress", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = [ln for ln in (r.stdout + r.stderr).strip().splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("error: ")]
    assert len(errors) == 1 and needle in errors[0], lines
    assert "Traceback" not in r.stderr
    assert not out.exists()
