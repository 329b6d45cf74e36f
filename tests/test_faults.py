"""Fault injection: SIGKILL in the middle of checkpoint, store and report writes, and a full
disk on checkpoint and store writes. Each leaves the last good state loadable, says what
happened in one line, and the next run resumes to the same result as an uninterrupted one."""

from __future__ import annotations

import csv
import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

import fewlabels.core.atomic as atomic
from fewlabels.cli import app
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.errors import WriteError
from fewlabels.study import load_study, run_study, write_report
from fewlabels.study.store import STORE_NAME, Store

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
HERE = Path(__file__).resolve().parent
runner = CliRunner()


def inject(mode: str, name: str, nth: int, *args: str) -> subprocess.CompletedProcess:
    """Run the CLI in a subprocess that SIGKILLs itself at the chosen write, with this
    process's thread count (results are bit-identical only for the same count)."""
    cmd = [sys.executable, str(HERE / "fault_inject.py"), mode, name, str(nth), "--", *args]
    env = {**os.environ, "OMP_NUM_THREADS": str(torch.get_num_threads())}
    return subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env)


def temps(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.rglob(".*.tmp*"))


def weights(run: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(run / "model.pt")["state_dict"]


def same_weights(a: Path, b: Path) -> bool:
    wa, wb = weights(a), weights(b)
    return wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa)


def stable_metrics(run: Path) -> dict:
    m = json.loads((run / "metrics.json").read_text())
    return {k: v for k, v in m.items() if "seconds" not in k}


# -- checkpoints ---------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["write", "replace"])
def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, mode):
    path = tmp_path / "checkpoint.pt"
    code = (
        "import sys, torch\n"
        f"sys.path.insert(0, {str(HERE)!r})\n"
        "from fault_inject import plant\n"
        "from fewlabels.core.checkpoint import save_checkpoint\n"
        f"path = {str(path)!r}\n"
        "save_checkpoint({'step': 1, 'w': torch.zeros(200_000)}, path)\n"
        f"plant({mode!r}, 'checkpoint.pt', 1)\n"
        "save_checkpoint({'step': 2, 'w': torch.ones(200_000)}, path)\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=120)
    assert p.returncode == -signal.SIGKILL, p.stderr
    assert load_checkpoint(path)["step"] == 1  # the last good state, whole
    assert len(temps(tmp_path)) == 1  # the dead writer's temp file
    save_checkpoint({"step": 3}, path)  # the next write cleans it up
    assert load_checkpoint(path)["step"] == 3 and temps(tmp_path) == []


def _train_args(out: Path, cfg: Path) -> list[str]:
    return [
        "train", "--data", "digits", "--labels-per-class", "5", "--budget", "10steps",
        "--batch-size", "16", "--evals", "2", "--precision", "fp32", "--config", str(cfg),
        "--out", str(out), "--no-progress", "--seed", "3",
    ]  # fmt: skip


@pytest.fixture(scope="module")
def clean_run(tmp_path_factory) -> tuple[Path, Path]:
    """An uninterrupted training run (checkpoint after every step) to compare with."""
    d = tmp_path_factory.mktemp("clean")
    cfg = d / "cfg.yaml"
    cfg.write_text("train:\n  checkpoint_every_s: 0\n")
    r = runner.invoke(app, _train_args(d / "run", cfg), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    return d / "run", cfg


@pytest.mark.parametrize(("mode", "nth"), [("write", 4), ("replace", 7)])
def test_sigkill_in_a_training_checkpoint_then_rerun_resumes_exactly(
    clean_run, tmp_path, mode, nth
):
    ref, cfg = clean_run
    out = tmp_path / "run"
    p = inject(mode, "checkpoint.pt", nth, *_train_args(out, cfg))
    assert p.returncode == -signal.SIGKILL, p.stderr
    state = load_checkpoint(out / "checkpoint.pt")
    assert 1 <= state["step"] < 10  # an earlier checkpoint, whole
    assert not (out / "model.pt").exists()
    r = runner.invoke(app, _train_args(out, cfg), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert f"at step {state['step']}" in r.output  # resumed, not restarted
    assert stable_metrics(out) == stable_metrics(ref)
    assert same_weights(out, ref)
    assert temps(out) == []


def _failing_writes(monkeypatch, name: str, after: int) -> list[int]:
    """Make writes into temp files of ``name`` fail with ENOSPC after ``after`` good files."""
    real_write, real_open = os.write, os.open
    opened: list[int] = []

    def fake_open(path, flags, *a, **kw):  # type: ignore[no-untyped-def]
        fd = real_open(path, flags, *a, **kw)
        if os.path.basename(os.fspath(path)).startswith(f".{name}.tmp"):
            opened.append(fd)
        return fd

    def fake_write(fd, data):  # type: ignore[no-untyped-def]
        if opened and fd == opened[-1] and len(opened) > after:
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(fd, data)

    monkeypatch.setattr(atomic.os, "open", fake_open)
    monkeypatch.setattr(atomic.os, "write", fake_write)
    return opened


def test_disk_full_on_a_checkpoint_is_one_line_and_the_rerun_resumes(
    clean_run, tmp_path, monkeypatch
):
    ref, cfg = clean_run
    out = tmp_path / "run"
    with monkeypatch.context() as m:
        _failing_writes(m, "checkpoint.pt", after=3)
        r = runner.invoke(app, _train_args(out, cfg), catch_exceptions=False)
    assert r.exit_code == 2, r.output
    err = r.stderr.strip()
    assert err == (
        f"error: could not write {out / 'checkpoint.pt'}: disk full (No space left on "
        "device); the previous version is kept"
    )
    assert load_checkpoint(out / "checkpoint.pt")["step"] == 3
    assert temps(out) == []  # the half-written temp file is gone
    r = runner.invoke(app, _train_args(out, cfg), catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert "at step 3" in r.output
    assert stable_metrics(out) == stable_metrics(ref) and same_weights(out, ref)


def test_atomic_write_keeps_the_old_file_when_the_folder_is_read_only(tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root ignores folder permissions")
    d = tmp_path / "ro"
    d.mkdir()
    atomic.atomic_write_text(d / "a.json", "old")
    d.chmod(0o555)
    try:
        with pytest.raises(WriteError, match=r"could not write .*a.json: not allowed"):
            atomic.atomic_write_text(d / "a.json", "new")
    finally:
        d.chmod(0o755)
    assert (d / "a.json").read_text() == "old"


# -- the study store and the report --------------------------------------------------------
STUDY = """\
name: faults
data: digits
budget: 6steps
train:
  batch_size: 16
  evals: 1
  precision: fp32
grid:
  labels_per_class: [2]
  unlabeled: [20]
  seeds: [0, 1, 2]
methods:
  - supervised
upper_bound: false
report:
  tsne: false
"""


def study_args(spec: Path, out: Path) -> list[str]:
    return ["study", str(spec), "--out", str(out), "--threads", "1"]  # as the clean study


@pytest.fixture(autouse=True, scope="module")
def _keep_torch_threads():
    """Studies set torch's thread count for the whole process; put it back afterwards."""
    n = torch.get_num_threads()
    yield
    torch.set_num_threads(n)


def rows(study_dir: Path) -> list[dict[str, str]]:
    keep = ("cell", "status", "accuracy", "macro_f1", "steps", "run_key", "n_labeled")
    with open(study_dir / "results.csv") as f:
        return [{k: r[k] for k in keep} for r in csv.DictReader(f)]


@pytest.fixture(scope="module")
def clean_study(tmp_path_factory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("study")
    spec = d / "faults.yaml"
    spec.write_text(STUDY)
    run_study(load_study(spec), d / "out", threads=1, log=lambda s: None)
    write_report(d / "out")
    return spec, d / "out"


def check_store(study_dir: Path) -> dict[str, dict]:
    con = sqlite3.connect(study_dir / STORE_NAME)
    assert con.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    con.close()
    store = Store(study_dir / STORE_NAME)
    try:
        return store.runs()
    finally:
        store.close()


def test_sigkill_inside_a_store_transaction_then_the_study_resumes(clean_study, tmp_path):
    spec, ref = clean_study
    out = tmp_path / "out"
    p = inject("commit", "-", 2, *study_args(spec, out))
    assert p.returncode == -signal.SIGKILL, p.stderr
    runs = check_store(out)
    status = sorted(r["status"] for r in runs.values())
    assert status == ["done", "pending", "running"]  # the killed UPDATE was never committed
    r = runner.invoke(app, [*study_args(spec, out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert rows(out) == rows(ref)
    runs = check_store(out)
    assert all(r["status"] == "done" for r in runs.values()) and len(runs) == 3


def _full_store(monkeypatch, after: int) -> None:
    """The store's disk fills up when the ``after``+1-th run is recorded (SQLITE_FULL)."""
    real_finish = Store.finish
    seen = [0]

    def finish(self, key, worker, **kw):  # type: ignore[no-untyped-def]
        seen[0] += 1
        if seen[0] > after:
            pages = self.conn.execute("PRAGMA page_count").fetchone()[0]
            self.conn.execute(f"PRAGMA max_page_count = {pages}")
            kw["curve"] = [*(kw.get("curve") or []), {"pad": "x" * 200_000}]
        return real_finish(self, key, worker, **kw)

    monkeypatch.setattr(Store, "finish", finish)


def test_disk_full_on_a_store_write_is_one_line_and_the_study_resumes(clean_study, tmp_path):
    spec, ref = clean_study
    out = tmp_path / "out"
    with pytest.MonkeyPatch.context() as m:
        _full_store(m, after=1)
        r = runner.invoke(app, study_args(spec, out), catch_exceptions=False)
    assert r.exit_code == 2, r.output
    assert r.stderr.strip().startswith(
        f"error: could not write the study store {out / STORE_NAME}: disk full"
    )
    assert "\n" not in r.stderr.strip()
    runs = check_store(out)
    assert sorted(r["status"] for r in runs.values()) == ["done", "pending", "running"]
    r = runner.invoke(app, [*study_args(spec, out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert rows(out) == rows(ref)


@pytest.mark.parametrize(("mode", "name"), [("write", "report.html"), ("replace", "report.md")])
def test_sigkill_while_writing_the_report_leaves_whole_files(clean_study, tmp_path, mode, name):
    _spec, ref = clean_study
    out = tmp_path / "out"
    out.mkdir()
    (out / STORE_NAME).write_bytes((ref / STORE_NAME).read_bytes())
    write_report(out)
    before = {n: (out / n).read_bytes() for n in ("report.html", "report.md", "results.csv")}
    p = inject(mode, name, 1, "report", str(out))
    assert p.returncode == -signal.SIGKILL, p.stderr
    for n, data in before.items():
        assert (out / n).read_bytes() == data  # whole: the old file (or the identical new one)
    assert len(temps(out)) == 1
    r = runner.invoke(app, ["report", str(out)], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert temps(out) == [] and rows(out) == rows(ref)
