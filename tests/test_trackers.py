"""Experiment trackers: a run logged to TensorBoard, MLflow, W&B (offline) and CSV gets the
same rows as its curve, its settings, its final metrics and its confusion figure; a study
logs each cell as a tagged run, and ``fewlabels report --export`` logs a finished study."""

from __future__ import annotations

import csv
import glob
import json
import struct
import sys
import time
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fewlabels
from fewlabels.cli import app
from fewlabels.core.errors import ConfigError
from fewlabels.study import load_study, run_study
from fewlabels.study.tracking import export_study
from fewlabels.train.loggers import (
    CSVLogger,
    RunLogger,
    make_loggers,
    parse_logger_specs,
    require_backends,
    row_values,
)
from fewlabels.train.run import RunConfig, run_training

torch.set_num_threads(1)

STUDY = """\
name: tracked
data: digits
budget: 6steps
train:
  batch_size: 16
  evals: 2
  precision: fp32
grid:
  labels_per_class: [2]
  unlabeled: [60]
  seeds: [0, 1]
methods:
  - supervised
upper_bound: false
report:
  tsne_points: 60
"""


@pytest.fixture(scope="module")
def splits():
    return fewlabels.split(fewlabels.load("digits"), labels_per_class=5, seed=0)


def _train(splits, out: Path, loggers) -> fewlabels.TrainResult:
    return fewlabels.train(
        "supervised", splits.labeled, unlabeled=splits.unlabeled, val=splits.val,
        test=splits.test, budget="12steps", batch_size=16, evals=3, out=out, loggers=loggers,
    )  # fmt: skip


def _curve_values(fit, name: str) -> list[tuple[int, float]]:
    return [(r["step"], float(r[name])) for r in fit.curve if r.get(name) is not None]


# -- specs and extras --------------------------------------------------------------------
def test_specs_split_commas_and_refuse_unknown_names():
    assert parse_logger_specs(["tensorboard,csv", "mlflow:file:/x"]) == [
        "tensorboard",
        "csv",
        "mlflow:file:/x",
    ]
    assert parse_logger_specs(None) == []
    with pytest.raises(ConfigError, match=r"logger 'comet' is not one of tensorboard"):
        parse_logger_specs("csv,comet")


@pytest.mark.parametrize("name", ["tensorboard", "mlflow", "wandb"])
def test_a_missing_extra_is_one_line_naming_it(name, monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as if not installed
    with pytest.raises(ConfigError, match=rf"pip install 'fewlabels\[{name}\]'"):
        require_backends([name])
    with pytest.raises(ConfigError, match=rf"the {name} logger needs the {name} package"):
        make_loggers([name], folder=tmp_path, name="r")


def test_row_values_keep_numbers_only():
    row = {"step": 4, "loss": 1.5, "val_acc": None, "lr": 0.1, "flag": True, "name": "x"}
    assert row_values(row) == {"loss": 1.5, "lr": 0.1}


class _Recorder:
    """A RunLogger of one's own that fails at the first row it is given."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    def log_config(self, config):
        self.calls.append("config")

    def log_dict(self, values, step):
        raise RuntimeError("tracker down")

    def log_summary(self, values, step):
        self.calls.append("summary")

    def log_figure(self, name, path, step):
        self.calls.append("figure")

    def close(self):
        self.calls.append("close")


def test_a_failing_run_closes_its_trackers(splits, tmp_path):
    rec = _Recorder()
    assert isinstance(rec, RunLogger)
    with pytest.raises(RuntimeError, match="tracker down"):
        _train(splits, None, [rec, "csv:" + str(tmp_path / "csv")])
    assert rec.calls == ["config", "close"]
    assert (tmp_path / "csv" / "supervised" / "config.json").exists()


# -- the backends, through the library's train ---------------------------------------------
def test_csv_logger_gets_the_curve_rows_settings_metrics_and_figure(splits, tmp_path):
    fit = _train(splits, tmp_path / "run", ["csv"])
    folder = tmp_path / "run" / "csv" / "run"
    with open(folder / "scalars.csv") as f:
        rows = list(csv.DictReader(f))
    got = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == "val_acc"]
    assert got == _curve_values(fit, "val_acc") and len(got) == 3
    names = {r["name"] for r in rows}
    assert {"loss", "lr", "images_seen", "time_s", "wall_s", "val_f1"} <= names
    config = json.loads((folder / "config.json").read_text())
    assert config["method"] == "supervised" and config["train.batch_size"] == 16
    summary = json.loads((folder / "summary.json").read_text())
    assert fit.metrics is not None and summary["accuracy"] == pytest.approx(fit.metrics.accuracy)
    assert (folder / "confusion.png").read_bytes()[:4] == b"\x89PNG"
    assert isinstance(CSVLogger(tmp_path / "x"), RunLogger)


def test_tensorboard_event_files_read_back(splits, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    fit = _train(splits, tmp_path / "run", ["tensorboard"])
    acc = EventAccumulator(str(tmp_path / "run" / "tensorboard" / "run"), size_guidance={})
    acc.Reload()
    tags = acc.Tags()
    got = [(e.step, e.value) for e in acc.Scalars("val_acc")]
    assert [s for s, _ in got] == [s for s, _ in _curve_values(fit, "val_acc")]
    assert [v for _, v in got] == pytest.approx([v for _, v in _curve_values(fit, "val_acc")])
    assert {"loss", "lr", "wall_s", "final/accuracy"} <= set(tags["scalars"])
    final = acc.Scalars("final/accuracy")[-1].value
    assert fit.metrics is not None and final == pytest.approx(fit.metrics.accuracy)
    assert "confusion" in tags["images"]
    assert "config/text_summary" in tags["tensors"]
    # the settings in the HParams plugin
    plugins = acc.PluginTagToContent("hparams")
    assert "_hparams_/session_start_info" in plugins


def test_mlflow_file_store_reads_back(splits, tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for the opt-in
    uri = (tmp_path / "mlruns").as_uri()
    fit = _train(splits, tmp_path / "run", [f"mlflow:{uri}"])
    client = MlflowClient(tracking_uri=uri)
    exp = client.get_experiment_by_name("fewlabels")
    (run,) = client.search_runs([exp.experiment_id])
    history = client.get_metric_history(run.info.run_id, "val_acc")
    got = sorted((m.step, m.value) for m in history)
    assert [s for s, _ in got] == [s for s, _ in _curve_values(fit, "val_acc")]
    assert run.data.params["train.batch_size"] == "16" and run.data.params["method"] == "supervised"
    assert run.data.tags["method"] == "supervised" and run.info.status == "FINISHED"
    assert fit.metrics is not None
    assert run.data.metrics["final/accuracy"] == pytest.approx(fit.metrics.accuracy)
    assert [a.path for a in client.list_artifacts(run.info.run_id)] == ["confusion.png"]


def test_cli_logger_option_with_the_default_mlflow_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # the command allows it
    out = tmp_path / "run"
    args = ["train", "--budget", "6steps", "--batch-size", "16", "--evals", "2", "--out",
            str(out), "--logger", "mlflow,csv", "--no-progress"]  # fmt: skip
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    (run,) = client.search_runs([client.get_experiment_by_name("fewlabels").experiment_id])
    assert [m.step for m in client.get_metric_history(run.info.run_id, "val_acc")] == [3, 6]
    assert (out / "csv" / "run" / "scalars.csv").exists()
    curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
    assert [r["step"] for r in curve] == [3, 6]


def test_mlflow_file_store_refusal_is_one_line(tmp_path, monkeypatch):
    pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "false")
    with pytest.raises(ConfigError) as e:
        make_loggers([f"mlflow:{(tmp_path / 'm').as_uri()}"], folder=tmp_path, name="r")
    assert "\n" not in str(e.value) and "MLFLOW_ALLOW_FILE_STORE=true" in str(e.value)


def _wandb_records(run_file: str) -> list:
    """The records of an offline W&B run file (a LevelDB-style log of protobufs)."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(run_file).read_bytes()
    pos, block, records, buf = 7, 32768, [], b""  # 7: the file header (W&B magic, version)
    while pos + 7 <= len(data):
        if block - pos % block < 7:
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        pos += 7
        if kind == 0 and length == 0:
            break
        chunk, pos = data[pos : pos + length], pos + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = pb.Record()
            rec.ParseFromString(buf)
            records.append(rec)
    return records


def test_wandb_offline_run_reads_back(splits, tmp_path, monkeypatch):
    pytest.importorskip("wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path / "wandb_home"))
    monkeypatch.setenv("WANDB_CACHE_DIR", str(tmp_path / "wandb_cache"))
    monkeypatch.setenv("WANDB_CONFIG_DIR", str(tmp_path / "wandb_config"))
    fit = _train(splits, tmp_path / "run", ["wandb:fewlabels-test"])
    (run_file,) = glob.glob(str(tmp_path / "run" / "wandb" / "offline-run-*" / "run-*.wandb"))
    for _ in range(100):  # W&B's service process may still be writing the file
        records = _wandb_records(run_file)
        if any(r.WhichOneof("record_type") == "exit" for r in records):
            break
        time.sleep(0.2)
    history = [
        {
            (i.nested_key[0] if i.nested_key else i.key): json.loads(i.value_json)
            for i in r.history.item
        }
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    got = [(h["_step"], h["val_acc"]) for h in history if "val_acc" in h]
    want = _curve_values(fit, "val_acc")
    assert [s for s, _ in got] == [s for s, _ in want] and len(got) == 3
    assert [v for _, v in got] == pytest.approx([v for _, v in want])
    assert any("confusion" in h for h in history)
    (run,) = [r.run for r in records if r.WhichOneof("record_type") == "run"]
    assert run.project == "fewlabels-test" and "method=supervised" in list(run.tags)
    config = {
        u.key: json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") in ("config", "run")
        for u in (r.config.update if r.HasField("config") else r.run.config.update)
    }
    assert config["train.batch_size"] == 16
    summary = {
        u.key: json.loads(u.value_json)
        for r in records
        if r.WhichOneof("record_type") == "summary"
        for u in r.summary.update
    }
    assert fit.metrics is not None
    assert summary["final/accuracy"] == pytest.approx(fit.metrics.accuracy)


def test_self_training_is_logged_once_its_rounds_are_done(tmp_path):
    cfg = RunConfig(
        labels_per_class=5, method="teacher_student", out=str(tmp_path / "st"),
        method_kwargs={"rounds": 1, "threshold": 0.9},
        train={"budget": "6steps", "batch_size": 32, "evals": 2, "precision": "fp32"},
    )  # fmt: skip
    res = run_training(cfg, progress=False, log=lambda s: None, loggers=["csv"])
    folder = tmp_path / "st" / "csv" / "st"
    with open(folder / "scalars.csv") as f:
        rows = list(csv.DictReader(f))
    got = [(int(r["step"]), float(r["value"])) for r in rows if r["name"] == "val_acc"]
    assert got == _curve_values(res, "val_acc") and got
    assert json.loads((folder / "config.json").read_text())["method"] == "teacher_student"
    assert res.metrics is not None
    summary = json.loads((folder / "summary.json").read_text())
    assert summary["accuracy"] == pytest.approx(res.metrics.accuracy)


# -- studies -------------------------------------------------------------------------------
def test_a_study_logs_each_cell_and_report_exports_it(tmp_path, monkeypatch):
    pytest.importorskip("tensorboard")
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    spec = tmp_path / "tracked.yaml"
    spec.write_text(STUDY)
    out = tmp_path / "study"
    run_study(load_study(spec), out, log=lambda s: None, loggers=["csv"])
    cells = sorted(p.name for p in (out / "csv").iterdir())
    assert cells == [
        "supervised_labels_per_class=2_unlabeled=0_seed=0",
        "supervised_labels_per_class=2_unlabeled=0_seed=1",
    ]
    with open(out / "csv" / cells[1] / "scalars.csv") as f:
        rows = list(csv.DictReader(f))
    assert {int(r["step"]) for r in rows if r["name"] == "val_acc"} == {3, 6}
    # a finished study, exported from its store
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    res = CliRunner().invoke(app, ["report", str(out), "--export", "tensorboard,mlflow"])
    assert res.exit_code == 0, res.output
    assert "logged 2 cell(s) to tensorboard, mlflow" in res.output
    acc = EventAccumulator(str(out / "tensorboard" / cells[0]), size_guidance={})
    acc.Reload()
    assert [e.step for e in acc.Scalars("val_acc")] == [3, 6]
    client = MlflowClient(tracking_uri=(out / "mlruns").as_uri())
    exp = client.get_experiment_by_name("tracked")
    runs = client.search_runs([exp.experiment_id])
    tags = sorted((r.data.tags["method"], r.data.tags["labels"], r.data.tags["unlabeled"],
                   r.data.tags["seed"]) for r in runs)  # fmt: skip
    assert tags == [("supervised", "2/class", "0", "0"), ("supervised", "2/class", "0", "1")]
    assert export_study(out, ["csv:" + str(tmp_path / "again")]) == 2
