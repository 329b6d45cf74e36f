"""Reliability round two, items 3, 5, 6, 8, 9 and 17: a run resumes only on its own data,
one writer per run folder, no command overwrites another's files, output paths and devices
are checked before anything is written, and a study's workers die with their parent."""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from cli_helpers import invoke, one_line_error
from PIL import Image

import fewlabels
from fewlabels.train.run import RunConfig, run_training

SRC = Path(fewlabels.__file__).resolve().parents[1]  # the fewlabels these tests import
QUIET = {"progress": False, "log": lambda s: None}


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` -> (size, mtime_ns)."""
    out = {}
    for d, _, files in os.walk(root):
        for name in files:
            st = (Path(d) / name).stat()
            out[str(Path(d, name).relative_to(root))] = (st.st_size, st.st_mtime_ns)
    return out


def images(folder: Path, n: int, start: int = 0) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(start, start + n):
        rng = np.random.RandomState(i + 1000 * len(folder.name))
        Image.fromarray(rng.randint(0, 255, (12, 12), dtype=np.uint8)).save(folder / f"{i}.png")


def two_class_folder(root: Path, n: int = 20) -> Path:
    d = root / "imgs"
    for c in ("train/a", "train/b", "test/a", "test/b"):
        images(d / c, n if c.startswith("train") else 4)
    return d


def small_run(root: Path, out: Path, **train) -> RunConfig:
    return RunConfig(
        data=f"folder:{two_class_folder(root) if not (root / 'imgs').exists() else root / 'imgs'}",
        labeled_fraction=0.5,
        val="none",
        train={"budget": "12steps", "batch_size": 4, "precision": "fp32", **train},
        out=str(out),
    )


# -- 3: the data's fingerprint belongs to the run ------------------------------------------
def test_resume_after_the_data_changed_is_refused_and_fresh_starts_afresh(tmp_path):
    out = tmp_path / "run"
    cfg = small_run(tmp_path, out)
    run_training(cfg, stop_at_step=4, **QUIET)
    recorded = json.loads((out / "config.json").read_text())["data_fingerprint"]
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert ckpt["data_fingerprint"] == recorded and len(recorded) == 64
    images(tmp_path / "imgs" / "train" / "a", 14, start=20)  # images added under the run
    before = snapshot(out)
    args = ["train", "--data", cfg.data, "--labeled-fraction", "0.5", "--val", "none",
            "--budget", "12steps", "--batch-size", "4", "--precision", "fp32",
            "--out", str(out), "--no-progress"]  # fmt: skip
    line = one_line_error(invoke(*args), "the data changed since the checkpoint")
    assert f"data_fingerprint {recorded[:12]} there" in line
    assert "20 labeled there, 27 now" in line and "fresh" in line
    assert snapshot(out) == before  # the checkpoint and everything else untouched
    r = invoke(*args, "--fresh")
    assert r.exit_code == 0, r.output
    assert "resumed" not in r.output
    cfg_now = json.loads((out / "config.json").read_text())
    assert cfg_now["data_fingerprint"] != recorded
    assert json.loads((out / "split.json").read_text())["sizes"]["labeled"] == 27
    assert len([json.loads(x) for x in (out / "curve.jsonl").read_text().splitlines()]) >= 1


def test_touching_the_files_keeps_the_fingerprint(tmp_path):
    out = tmp_path / "run"
    cfg = small_run(tmp_path, out)
    run_training(cfg, stop_at_step=4, **QUIET)
    for p in (tmp_path / "imgs").rglob("*.png"):
        os.utime(p, (1, 1))  # same content, other times: the run still resumes
    res = run_training(cfg, **QUIET)
    assert res.steps == 12


STUDY = """\
name: grow
data: folder:{data}
budget: 4steps
train:
  batch_size: 4
  precision: fp32
grid:
  labels_per_class: [3]
  seeds: [0]
methods:
  - supervised
upper_bound: false
"""


def test_a_study_reruns_a_cell_whose_test_set_grew(tmp_path):
    data = two_class_folder(tmp_path)
    spec = tmp_path / "s.yaml"
    spec.write_text(STUDY.format(data=data))
    out = tmp_path / "s"
    r = invoke("study", str(spec), "--out", str(out))
    assert r.exit_code == 0, r.output
    (key,) = [p.name for p in (out / "runs").iterdir()]
    n_test = json.loads((out / "runs" / key / "metrics.json").read_text())["n"]
    assert n_test == 8
    images(data / "test" / "a", 6, start=4)  # the test set grew
    r = invoke("study", str(spec), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert "the data changed since it ran" in r.output
    assert json.loads((out / "runs" / key / "metrics.json").read_text())["n"] == 14
    r = invoke("study", str(spec), "--out", str(out))  # nothing changed: nothing reruns
    assert "the data changed" not in r.output and "(1 already done)" in r.output


# -- 5: a command never overwrites another command's files ---------------------------------
def test_probe_and_evaluate_refuse_a_training_run_folder(tmp_path):
    out = tmp_path / "run"
    run_training(small_run(tmp_path, out), **QUIET)
    before = snapshot(out)
    data = f"folder:{tmp_path / 'imgs'}"
    r = invoke("probe", str(out), "--budget", "2steps", "--no-progress", "--out", str(out))
    one_line_error(r, f"{out} holds a train run; probe would overwrite its files")
    r = invoke("evaluate", str(out), "--data", data, "--out", str(out))
    one_line_error(r, f"{out} holds a train run; evaluate would overwrite its files")
    assert snapshot(out) == before
    r = invoke("evaluate", str(out), "--data", data, "--out", str(tmp_path / "ev"))
    assert r.exit_code == 0, r.output
    r = invoke("train", "--data", data, "--out", str(tmp_path / "ev"), "--no-progress")
    one_line_error(r, "holds a evaluate run; train would overwrite its files")


# -- 6: one writer per run folder ----------------------------------------------------------
HOLD = """
import sys, time
from fewlabels.core.runlock import RunLock
lock = RunLock(sys.argv[1], "train")
lock.acquire()
print("held", flush=True)
time.sleep(60)
"""


def test_a_second_writer_is_refused_and_the_lock_dies_with_its_holder(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True, env=env
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        args = ["train", "--budget", "2steps", "--batch-size", "8", "--out", str(out),
                "--no-progress"]  # fmt: skip
        r = invoke(*args)
        one_line_error(r, f"{out} is in use by another fewlabels process (pid {holder.pid})")
        assert sorted(os.listdir(out)) == [".lock"]  # the second writer wrote nothing
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(10)
    r = invoke(*args)  # the holder was killed: its lock went with it
    assert r.exit_code == 0, r.output
    assert (out / "model.pt").exists()


def test_an_empty_out_is_refused_and_nothing_is_written(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = invoke("train", "--budget", "1steps", "--out", "", "--no-progress")
    one_line_error(r, "out is empty")
    assert os.listdir(tmp_path) == []


# -- 8: output paths that cannot be written ------------------------------------------------
def _read_only(monkeypatch, folder: Path) -> None:
    """Make ``folder`` look like a read-only mount to fewlabels' checks (tests run as root,
    for whom permission bits do not stop a write)."""
    import fewlabels.core.runlock as runlock

    real = os.statvfs

    class _Ro:
        def __init__(self, st):
            self.st = st

        def __getattr__(self, name):
            return getattr(self.st, name)

        @property
        def f_flag(self):
            return self.st.f_flag | os.ST_RDONLY

    def fake(path):
        st = real(path)
        return _Ro(st) if Path(path).resolve() == folder.resolve() else st

    monkeypatch.setattr(runlock.os, "statvfs", fake)


@pytest.fixture
def model(tmp_path_factory):
    out = tmp_path_factory.mktemp("m") / "run"
    r = invoke("train", "--budget", "2steps", "--batch-size", "8", "--out", str(out),
               "--no-progress")  # fmt: skip
    assert r.exit_code == 0, r.output
    return out / "model.pt"


def test_out_on_a_read_only_file_system_is_refused_before_any_work(tmp_path, monkeypatch, model):
    ro = tmp_path / "ro"
    ro.mkdir()
    _read_only(monkeypatch, ro)
    m = str(model)
    for args in (
        ["train", "--budget", "1steps", "--out", str(ro / "x"), "--no-progress"],
        ["evaluate", m, "--out", str(ro / "x")],
        ["probe", m, "--labels-per-class", "2", "--out", str(ro / "x"), "--no-progress"],
        ["embed", m, "--data", "digits", "--out", str(ro / "x")],
        ["select", "--budget", "5", "--out", str(ro / "x.csv")],
        ["predict", m, str(model.parent), "--out", str(ro / "x.csv")],
        ["data", "inspect", "digits", "--sheet", str(ro / "s.png")],
    ):
        line = one_line_error(invoke(*args), "read-only file system")
        assert str(ro) in line, (args, line)
    spec = tmp_path / "s.yaml"
    spec.write_text(STUDY.format(data=two_class_folder(tmp_path)))
    one_line_error(invoke("study", str(spec), "--out", str(ro / "s")), "read-only file system")
    assert os.listdir(ro) == []


def test_a_full_disk_at_a_curve_append_is_one_line_and_keeps_the_checkpoint(tmp_path, monkeypatch):
    import fewlabels.core.artifacts as artifacts

    out = tmp_path / "run"
    cfg = small_run(tmp_path, out, evals=6)
    run_training(cfg, stop_at_step=4, **QUIET)
    kept = (out / "checkpoint.pt").read_bytes()

    def full(path, mode="r", *a, **k):
        if "a" in mode:
            raise OSError(errno.ENOSPC, "No space left on device")
        return open(path, mode, *a, **k)

    monkeypatch.setattr(artifacts, "open", full, raising=False)
    args = ["train", "--data", cfg.data, "--labeled-fraction", "0.5", "--val", "none",
            "--budget", "12steps", "--batch-size", "4", "--precision", "fp32", "--evals", "6",
            "--out", str(out), "--no-progress"]  # fmt: skip
    line = one_line_error(invoke(*args), f"could not write {out / 'curve.jsonl'}: disk full")
    assert (out / "checkpoint.pt").read_bytes() == kept
    monkeypatch.undo()
    assert run_training(cfg, **QUIET).steps == 12  # and the rerun resumes
    assert line


# -- 9: batch size and device --------------------------------------------------------------
@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--batch-size", "1"], "train.batch_size"),
        (["--set", "train.batch_size=true"], "batch_size must be a number, got True"),
        (["--device", "tpu"], "device 'tpu' is not a device"),
        (["--device", "cuda:99"], "device 'cuda:99'"),
    ]
    + ([] if torch.cuda.is_available() else [(["--device", "cuda"], "has no CUDA GPU")]),
)
def test_bad_batch_sizes_and_devices_write_nothing(tmp_path, monkeypatch, args, needle):
    monkeypatch.chdir(tmp_path)
    r = invoke("train", "--budget", "1steps", "--out", str(tmp_path / "o"), "--no-progress", *args)
    one_line_error(r, needle)
    assert os.listdir(tmp_path) == []


def test_a_boolean_batch_size_in_a_config_file_is_refused(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  batch_size: true\n")
    r = invoke("train", "--config", str(tmp_path / "c.yaml"), "--out", str(tmp_path / "o"))
    line = one_line_error(r, "train.batch_size")
    assert "must be a number" in line and not (tmp_path / "o").exists()


# -- 17: workers die with their parent; a missing finished run runs again -------------------
def _children(pid: int) -> set[int]:
    out = subprocess.run(["ps", "-o", "pid=", "--ppid", str(pid)], capture_output=True, text=True)
    return {int(x) for x in out.stdout.split()}


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_study_workers_exit_when_the_parent_is_killed(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: long\ndata: digits\nbudget: 100000steps\ntrain:\n  batch_size: 8\n"
        "grid:\n  labels_per_class: [2]\n  seeds: [0, 1]\nmethods:\n  - supervised\n"
        "upper_bound: false\n"
    )
    env = {**os.environ, "PYTHONPATH": str(SRC), "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "fewlabels.cli", "study", str(spec), "--out", str(tmp_path / "o"),
           "--workers", "2", "--threads", "1"]  # fmt: skip
    parent = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers: set[int] = set()
    try:
        deadline = time.time() + 60
        while time.time() < deadline:  # both workers started and claimed a run
            workers = _children(parent.pid)
            running = (tmp_path / "o" / "runs").exists() and len(
                list((tmp_path / "o" / "runs").iterdir())
            ) >= 2
            if len(workers) >= 2 and running:
                break
            time.sleep(0.2)
        assert len(workers) >= 2 and running, workers
        parent.send_signal(signal.SIGKILL)
        parent.wait(10)
        deadline = time.time() + 15
        while time.time() < deadline and any(_alive(p) for p in workers):
            time.sleep(0.2)
        assert not [p for p in workers if _alive(p)]
    finally:
        for p in workers:
            if _alive(p):
                os.kill(p, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
            parent.wait(10)


def test_a_deleted_finished_run_runs_again_before_its_dependents(tmp_path):
    spec = tmp_path / "s.yaml"
    spec.write_text(
        "name: pre\ndata: digits\nbudget: 3steps\ntrain:\n  batch_size: 16\n"
        "  precision: fp32\ngrid:\n  labels_per_class: [2]\n  seeds: [0]\nmethods:\n"
        "  - pretrain: simclr\n    then: linear\nupper_bound: false\n"
    )
    out = tmp_path / "s"
    r = invoke("study", str(spec), "--out", str(out))
    assert r.exit_code == 0, r.output
    pre = [p for p in (out / "runs").iterdir() if (p / "checkpoint.pt").exists()]
    assert len(pre) == 1
    import shutil

    shutil.rmtree(pre[0])
    r = invoke("study", str(spec), "--out", str(out))
    assert r.exit_code == 0, r.output
    assert f"{pre[0] / 'model.pt'} is missing; it runs again" in r.output
    assert (pre[0] / "model.pt").exists()
    assert "0 failed" in r.output


def test_the_portable_orphan_check_ends_a_worker_whose_parent_is_gone():
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    code = "import sys; from fewlabels.study.runner import exit_if_orphaned; "
    code += "exit_if_orphaned(int(sys.argv[1])); print('alive')"
    mine = subprocess.run(
        [sys.executable, "-c", code, str(os.getpid())], capture_output=True, text=True, env=env
    )
    assert mine.returncode == 0 and mine.stdout.strip() == "alive"
    gone = subprocess.run(
        [sys.executable, "-c", code, str(os.getpid() + 10**6)],
        capture_output=True,
        text=True,
        env=env,
    )
    assert gone.returncode == 3 and gone.stdout == ""
