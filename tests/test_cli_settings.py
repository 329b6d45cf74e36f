"""Settings at the command line: every RunConfig field is reachable from ``fewlabels train``
(a flag or ``--set``), the layers' precedence, ``--dry-run``, bad ``--set`` keys, the
setting-name -> flag table of errors, and ``--version``."""

from __future__ import annotations

import json
import subprocess
import sys
import types
import typing
from typing import Any, Literal

import pytest
import typer
import yaml
from cli_helpers import invoke, one_line_error

import fewlabels
from fewlabels.cli import _lib, app
from fewlabels.cli.common import SETTINGS, guard, name_flags
from fewlabels.cli.settings import SettingError
from fewlabels.core.errors import ConfigError

# the library as the command line imports it
RunConfig, TrainConfig = _lib.RunConfig, _lib.TrainConfig

# settings whose values are checked beyond their type (or where a realistic value reads better)
SAMPLES = {
    "train.budget": "7steps",
    "unlabeled": "1:20",  # YAML 1.1 would read 1:20 as the number 80
    "val": "test:0.2",
    "device": "cpu",
    "stem": "cifar",
    "train.scale": ("{lr: 0.3}", {"lr": 0.3}),  # (what to write, what the config holds)
}


def _members(annotation: Any) -> list[Any]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [a for a in typing.get_args(annotation) if a is not type(None)]
    return [annotation]


def _model(annotation: Any) -> Any:
    return next((a for a in _members(annotation) if hasattr(a, "model_fields")), None)


def leaves(model: Any, prefix: str = "") -> dict[str, tuple[Any, Any]]:
    """Every setting of ``model`` and its nested models: dotted path -> (annotation, default)."""
    out = {}
    for name, field in model.model_fields.items():
        path = prefix + name
        nested = _model(field.annotation)
        if nested is not None:
            out.update(leaves(nested, path + "."))
        else:
            out[path] = (field.annotation, field.get_default(call_default_factory=True))
    return out


def sample(path: str, annotation: Any, default: Any) -> tuple[Any, Any]:
    """A valid value unlike the default: (what to write after ``=``, what the config holds)."""
    if path in SAMPLES:
        v = SAMPLES[path]
        return v if isinstance(v, tuple) else (v, v)
    [kind] = _members(annotation)  # one type besides None; a new union type needs a sample
    if typing.get_origin(kind) is typing.Annotated:  # a constrained type: its base type
        kind = typing.get_args(kind)[0]
    if typing.get_origin(kind) is Literal:
        choice = next(c for c in reversed(kind.__args__) if c != default)
        return choice, choice
    if kind is bool:
        return str(not default).lower(), not default
    if kind is int:
        value = 3 if default != 3 else 4
        return str(value), value
    if kind is float:
        value = 0.5 if default != 0.5 else 0.25
        return str(value), value
    if kind is str:
        return f"x-{path}", f"x-{path}"
    if kind is dict or typing.get_origin(kind) is dict:
        return "{k: [1, 2]}", {"k": [1, 2]}
    pytest.fail(f"no sample value for setting {path} ({annotation}): add one to SAMPLES")


def at(cfg: dict[str, Any], path: str) -> Any:
    for part in path.split("."):
        cfg = cfg[part]
    return cfg


def dry_run(*args: str, command: str = "train") -> dict[str, Any]:
    r = invoke(command, "--dry-run", *args)
    assert r.exit_code == 0, r.output
    return yaml.safe_load(r.stdout)


def test_every_runconfig_and_trainconfig_field_is_reachable_by_set():
    found = leaves(RunConfig)
    assert {f"train.{k}" for k in TrainConfig.model_fields} <= set(found)
    assert "select.strategy" in found and "method_kwargs" in found
    args, want = [], {}
    for path, (annotation, default) in found.items():
        text, value = sample(path, annotation, default)
        args += ["--set", f"{path}={text}"]
        want[path] = value
    cfg = dry_run(*args)
    for path, value in want.items():
        assert at(cfg, path) == value, path
    # and the result is exactly what RunConfig makes of those values
    assert RunConfig(**cfg).model_dump(mode="json") == cfg


# every option some method takes (method_kwargs keys)
METHOD_OPTIONS = {k for m in _lib.describe(None) for k in m["options"]}


def _train_params() -> dict[str, Any]:
    cmd = typer.main.get_command(app).commands["train"]  # type: ignore[attr-defined]
    return {p.name: p for p in cmd.params}


def test_every_flag_with_a_setting_lands_on_that_setting():
    found = leaves(RunConfig)
    params = _train_params()
    args, want = [], {}
    for name, setting in SETTINGS["train"].items():
        head = setting.split(".")[0]
        if setting in found:
            annotation, default = found[setting]
        else:  # a method's option (method_kwargs.threshold): a number in [0, 1]
            assert head == "method_kwargs", setting
            assert setting.split(".", 1)[1] in METHOD_OPTIONS, setting
            annotation, default = float, None
        text, value = sample(setting, annotation, default)
        p = params[name]
        if p.is_flag:
            args.append(p.opts[0] if value else p.secondary_opts[0])
        else:
            args += [p.opts[0], text]
        want[setting] = value
    cfg = dry_run(*args)
    for setting, value in want.items():
        assert at(cfg, setting) == value, setting
    # the flags cover the everyday settings; the rest are --set's
    assert {"train.lr", "train.batch_size", "labels_per_class", "method", "data"} <= set(want)


def test_precedence_defaults_config_flags_set(tmp_path):
    conf = tmp_path / "c.yaml"
    conf.write_text(
        "train:\n  lr: 0.2\n  batch_size: 32\nmethod: fixmatch\n"
        "method_kwargs:\n  threshold: 0.9\n  lambda_u: 2\nbackbone_kwargs:\n  widths: [8, 16]\n"
    )
    cfg = dry_run()
    assert cfg["train"]["lr"] is None and cfg["train"]["batch_size"] == 256
    assert cfg["out"] == "runs/train" and cfg["method"] == "supervised"
    cfg = dry_run("--config", str(conf))  # the file beats the flags' defaults
    assert (cfg["train"]["lr"], cfg["train"]["batch_size"], cfg["method"]) == (0.2, 32, "fixmatch")
    cfg = dry_run("--config", str(conf), "--lr", "0.1", "--threshold", "0.8")  # flags beat it
    assert (cfg["train"]["lr"], cfg["train"]["batch_size"]) == (0.1, 32)
    assert cfg["method_kwargs"] == {"threshold": 0.8, "lambda_u": 2}
    cfg = dry_run(
        "--config", str(conf), "--lr", "0.1", "--set", "train.lr=0.05", "--threshold", "0.8",
        "--set", "method.threshold=0.7", "--set", "backbone.widths=[32,64,128]",
        "--set", "data=folder:x", "--set", "train={ema: 0.5}",
    )  # fmt: skip
    assert (cfg["train"]["lr"], cfg["train"]["ema"], cfg["train"]["batch_size"]) == (0.05, 0.5, 32)
    assert cfg["method_kwargs"] == {"threshold": 0.7, "lambda_u": 2}
    assert cfg["backbone_kwargs"] == {"widths": [32, 64, 128]}
    assert cfg["data"] == "folder:x"
    # a later --set of the same key wins; null clears an optional setting
    cfg = dry_run("--lr", "0.1", "--set", "train.lr=0.3", "--set", "train.lr=null")
    assert cfg["train"]["lr"] is None
    # pretrain: its own defaults, the same layers
    cfg = dry_run("--set", "method.temperature=0.2", command="pretrain")
    assert (cfg["method"], cfg["out"]) == ("simclr", "runs/pretrain")
    assert cfg["method_kwargs"] == {"temperature": 0.2}


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--set", "train.lrr=0.1"], "unknown setting 'train.lrr'; train takes budget"),
        (["--set", "lables_per_class=3"], "unknown setting 'lables_per_class'"),
        (["--set", "select.strat=random"], "unknown setting 'select.strat'"),
        (["--set", "train.lr.x=1"], "train.lr is one value, not a group of settings"),
        (["--set", "train.lr"], "--set takes KEY=VALUE (e.g. train.lr=0.05), got 'train.lr'"),
        (["--set", "=3"], "--set takes KEY=VALUE"),
        (["--set", "train..lr=3"], "empty part"),
        (["--set", "method.projector=[64, 32"], "--set method.projector: '[64, 32' is not"),
        (["--set", "train.lr=fast"], "invalid setting train.lr"),
        (["--set", "train.optimizer=adam"], "invalid setting train.optimizer"),
    ],
)
def test_bad_set_is_a_one_line_error_naming_the_key(args, needle, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for command in ("train", "pretrain"):
        line = one_line_error(invoke(command, *args, "--out", str(tmp_path / "o")), "")
        assert needle in line, line
    assert list(tmp_path.iterdir()) == []


def test_dry_run_writes_nothing_and_trains_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)

    def no_training(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("--dry-run trained")

    monkeypatch.setattr(_lib, "run_training", no_training)
    for command in ("train", "pretrain"):
        r = invoke(command, "--dry-run", "--budget", "2steps", "--out", str(tmp_path / "run"))
        assert r.exit_code == 0, r.output
        cfg = yaml.safe_load(r.stdout)
        assert cfg["out"] == str(tmp_path / "run") and cfg["train"]["budget"] == "2steps"
        assert "trained" not in r.output and "test accuracy" not in r.output
    r = invoke("train", "--dry-run")  # the default run folder (runs/train) is not made either
    assert r.exit_code == 0, r.output
    assert list(tmp_path.iterdir()) == []
    # a config that does not validate is still an error under --dry-run
    one_line_error(invoke("train", "--dry-run", "--budget", "forever"), "budget")


def test_library_errors_name_the_flags_of_their_settings(monkeypatch, tmp_path):
    def bad_run(*args: Any, **kwargs: Any) -> None:
        raise ConfigError(
            "train.lr 5 is too high for train.batch_size 4; labels_per_class and "
            "extra_unlabeled too; train.lr_decay, method_kwargs.threshold, the data and "
            "train.precision."
        )

    monkeypatch.setattr(_lib, "run_training", bad_run)
    line = one_line_error(invoke("train", "--out", str(tmp_path)), "--lr")
    assert line == (
        "error: --lr 5 is too high for --batch-size 4; --labels-per-class and "
        "--add-unlabeled too; train.lr_decay, --threshold, the data and --precision."
    )
    line = one_line_error(invoke("pretrain", "--out", str(tmp_path)), "--batch-size")
    assert line.startswith("error: --lr 5 is too high for --batch-size 4;")


def test_generate_names_its_own_flags(monkeypatch, tmp_path):
    def bad_generate(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("gan.lr and gan.batch_size do not suit train.lr")

    monkeypatch.setattr(_lib, "run_generate", bad_generate)
    line = one_line_error(invoke("generate", "--out", str(tmp_path)), "--lr")
    assert line == "error: --lr and --batch-size do not suit train.lr"


def test_name_flags_replaces_whole_setting_names_only():
    flags = {"train.lr": "--lr", "labels": "--labels", "train.lr_min": "--lr-min"}
    assert name_flags("train.lr=0.1, train.lr_min, xtrain.lr, train.lr.", flags) == (
        "--lr=0.1, --lr-min, xtrain.lr, --lr."
    )
    assert name_flags("the labels file", flags) == "the labels file"  # a plain word stays


def test_on_off_settings_become_their_on_or_off_flag(monkeypatch, tmp_path):
    """``NAME=False`` in a library message is the option's off flag, ``NAME=True`` its on
    flag, quoted or not; the bare name stays the option's flag."""
    flags = {
        "source_labels": "--source-labels",
        "source_labels=False": "--no-source-labels",
        "strict=True": "--strict",
    }
    msg = "pass `source_labels=False`, source_labels=False or `strict=True`; source_labels"
    assert name_flags(msg, flags) == (
        "pass --no-source-labels, --no-source-labels or --strict; --source-labels"
    )

    def bad_run(*args: Any, **kwargs: Any) -> None:
        raise ConfigError("set `source_labels=False` or `data_in_memory=True`")

    monkeypatch.setattr(_lib, "run_training", bad_run)
    line = one_line_error(invoke("train", "--out", str(tmp_path)), "--no-source-labels")
    assert line == "error: set --no-source-labels or --data-in-memory"


def test_setting_error_keeps_setting_names(capsys):
    with pytest.raises(typer.Exit), guard(flags={"train.lr": "--lr"}):
        raise SettingError("--set train.lr.x: train.lr is one value")
    assert capsys.readouterr().err == "error: --set train.lr.x: train.lr is one value\n"
    with pytest.raises(typer.Exit), guard(flags={"train.lr": "--lr"}):
        raise ConfigError("train.lr is bad")
    assert capsys.readouterr().err == "error: --lr is bad\n"


def test_version():
    r = invoke("--version")
    assert r.exit_code == 0 and r.output == f"fewlabels {fewlabels.__version__}\n"
    proc = subprocess.run(
        [sys.executable, "-m", "fewlabels.cli", "--version"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout == f"fewlabels {fewlabels.__version__}\n"


def test_set_reaches_the_run_that_trains(tmp_path):
    out = tmp_path / "run"
    r = invoke(
        "train", "--budget", "2steps", "--labels-per-class", "2", "--batch-size", "8",
        "--out", str(out), "--no-progress", "--set", "train.evals=0",
        "--set", "method.label_smoothing=0.05", "--set", "train.momentum=0.8",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = json.loads((out / "config.json").read_text())
    assert (cfg["train"]["evals"], cfg["train"]["momentum"]) == (0, 0.8)
    assert cfg["method_kwargs"] == {"label_smoothing": 0.05}


def test_quoted_plain_settings_become_the_commands_flags():
    """Library messages quote a setting that is a plain word (`out`); the CLI shows the
    flag of the command at hand, and drops the quotes where the command has no such flag."""
    flags = {"out": "--out", "finetune_blocks": "--finetune-blocks", "protocol": "--protocol"}
    msg = "`finetune_blocks` only applies to `protocol` finetune; use a new `out` or `store`"
    assert name_flags(msg, flags) == (
        "--finetune-blocks only applies to --protocol finetune; use a new --out or store"
    )
