"""Provenance: run folders, study store rows and report footers record the fewlabels version
and commit, torch, the device and processor, the thread count and the precision actually
used; a study's threads come from OMP_NUM_THREADS or the CPU affinity."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import torch

from fewlabels.core import provenance as prov_mod
from fewlabels.core.precision import resolve_precision
from fewlabels.core.provenance import provenance, provenance_line, usable_threads
from fewlabels.core.version import __version__
from fewlabels.study import load_study, open_store, run_study, write_report
from fewlabels.train.run import RunConfig, run_training

torch.set_num_threads(1)

STUDY = """\
name: prov
data: digits
budget: 5steps
train:
  batch_size: 16
  evals: 1
grid:
  labels_per_class: [2]
  unlabeled: [0]
  seeds: [0]
methods:
  - supervised
upper_bound: false
report:
  tsne_points: 60
"""


def _head() -> str | None:
    here = Path(prov_mod.__file__).parent
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True)
    return out.stdout.strip() if out.returncode == 0 else None


def test_the_record_names_version_commit_torch_device_threads_precision():
    rec = provenance("cpu", "fp32")
    assert rec["fewlabels"] == __version__ and rec["torch"] == torch.__version__
    assert rec["commit"] == _head() and rec["commit"] is not None  # the tests run in a checkout
    assert isinstance(rec["dirty"], bool)
    assert rec["device"] == "cpu" and rec["gpu"] is None and rec["processor"]
    assert rec["threads"] == torch.get_num_threads() and rec["precision"] == "fp32"
    line = provenance_line(rec)
    assert line.startswith(f"fewlabels {__version__} ({rec['commit'][:10]}")
    assert f"torch {torch.__version__}" in line and "fp32" in line


def test_no_checkout_or_no_git_gives_none_quietly(monkeypatch):
    def no_git(*args, **kwargs):
        raise FileNotFoundError("git")

    prov_mod.git_commit.cache_clear()
    monkeypatch.setattr(prov_mod.subprocess, "run", no_git)
    try:
        assert prov_mod.git_commit() == (None, False)
        rec = provenance("cpu", "bf16")
        assert rec["commit"] is None and rec["dirty"] is None
        assert "(" not in provenance_line(rec).split(",")[0]
    finally:
        prov_mod.git_commit.cache_clear()


def test_threads_from_omp_num_threads_then_affinity(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "3")
    assert usable_threads() == 3
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 2, 5, 7, 9}, raising=False)
    assert usable_threads() == 5
    monkeypatch.setenv("OMP_NUM_THREADS", "not a number")
    assert usable_threads() == 5


def test_a_run_folder_records_the_precision_actually_used(tmp_path):
    cfg = RunConfig(labels_per_class=2, out=str(tmp_path / "run"),
                    train={"budget": "3steps", "batch_size": 16, "evals": 1})  # fmt: skip
    assert cfg.train.precision == "auto"
    run_training(cfg, progress=False, log=lambda s: None)
    rec = json.loads((tmp_path / "run" / "provenance.json").read_text())
    assert rec["precision"] == resolve_precision("auto", torch.device("cpu"))
    assert rec["precision"] in ("bf16", "fp32")
    assert rec["fewlabels"] == __version__ and rec["commit"] == _head()
    assert rec["device"] == "cpu" and rec["threads"] == torch.get_num_threads()


def test_store_rows_and_report_footer_record_it_and_study_threads_follow_env(tmp_path, monkeypatch):
    spec = tmp_path / "prov.yaml"
    spec.write_text(STUDY)
    out = tmp_path / "study"
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    lines: list[str] = []
    # an in-process study runs with the threads its entry point set (the CLI sets the plan's
    # count); set them here as it does, so an earlier test's setting does not leak in
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        run_study(load_study(spec), out, log=lines.append)
    finally:
        torch.set_num_threads(before)
    assert "1 worker(s) x 1 thread(s)" in lines[0]
    store = open_store(out, None)
    try:
        (run,) = store.runs().values()
    finally:
        store.close()
    rec = run["metrics"]["provenance"]
    assert rec["fewlabels"] == __version__ and rec["commit"] == _head()
    assert rec["precision"] in ("bf16", "fp32") and rec["threads"] == 1
    rep = write_report(out)
    md = rep.markdown.read_text()
    assert f"_runs: {provenance_line(rec)}_" in md
    assert f"report: fewlabels {__version__}" in md
    assert provenance_line(rec) in rep.html.read_text()
    # the thread count: OMP_NUM_THREADS, else the CPU affinity, split over the workers
    monkeypatch.setenv("OMP_NUM_THREADS", "6")
    lines.clear()
    run_study(load_study(spec), out, workers=2, log=lines.append)  # all done: nothing runs
    assert "2 worker(s) x 3 thread(s)" in lines[0]
    monkeypatch.delenv("OMP_NUM_THREADS")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(4)), raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 64)
    lines.clear()
    run_study(load_study(spec), out, log=lines.append)
    assert "1 worker(s) x 4 thread(s)" in lines[0]


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_the_gpu_is_named_on_cuda():
    rec = provenance("cuda", "bf16")
    assert rec["gpu"] == torch.cuda.get_device_name(0)
