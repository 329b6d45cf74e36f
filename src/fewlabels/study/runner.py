"""Work through a study's runs: one or several worker processes claiming runs from the store.

Each run trains in its own folder under ``STUDY_DIR/runs/KEY`` and resumes from its
checkpoint when it was interrupted. A run that fails (NaN loss, bad data) is recorded as
failed with its one-line error and the study carries on.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import multiprocessing
import os
import signal
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.device import pick_device
from fewlabels.core.errors import ConfigError, FewlabelsError, WriteError
from fewlabels.core.precision import slow_precision_warning
from fewlabels.core.progress import configure_progress
from fewlabels.core.provenance import provenance, usable_threads
from fewlabels.core.runlock import check_out_folder, check_owner
from fewlabels.generate.run import GenerateConfig, run_generate
from fewlabels.select.simulate import selected_data
from fewlabels.study.backbone import describe, load_backbone, study_backbone
from fewlabels.study.backend import open_store, remember
from fewlabels.study.plan import StudyPlan
from fewlabels.study.revalidate import reopen_stale_runs
from fewlabels.study.tracking import track_cell
from fewlabels.train.loggers import require_backends
from fewlabels.train.probing import ProbeConfig, run_probe
from fewlabels.train.run import RunConfig, run_training

Log = Callable[[str], None]
_KEEP = (
    "accuracy",
    "macro_f1",
    "n",
    "confusion",
    "steps",
    "train_seconds",
    "wall_seconds",
    "labeled",
    "unlabeled",
    "protocol",
    "extra_unlabeled",
    "val_acc",  # a probe's validation accuracy (what tuning chooses by)
)


def run_dir(study_dir: Path, key: str) -> Path:
    """The folder of run ``key``."""
    return Path(study_dir) / "runs" / key


def _quiet(_: str) -> None:
    pass


def execute_run(row: sqlite3.Row | dict[str, Any], study_dir: Path) -> tuple[dict, list]:
    """Run one stored run to completion (resuming its checkpoint); (metrics, curve)."""
    spec = json.loads(row["spec"]) if isinstance(row["spec"], str) else row["spec"]
    out = run_dir(study_dir, row["key"])
    if row["kind"] == "train":
        cfg = {**spec["config"], "out": str(out)}
        if spec.get("init_from"):
            if "init" not in RunConfig.model_fields:
                raise ConfigError(
                    "'pretrain X then Y' needs RunConfig.init, which this version lacks"
                )
            cfg["init"] = str(run_dir(study_dir, spec["init_from"]))
        if spec.get("select_encoder_from") and cfg.get("select"):  # the cell's pretraining
            cfg["select"] = {
                **cfg["select"],
                "encoder": str(run_dir(study_dir, spec["select_encoder_from"])),
            }
        if spec.get("synthetic_from"):  # the study's generated images
            gen_dir = run_dir(study_dir, spec["synthetic_from"])
            cfg["extra_unlabeled"] = f"folder:{gen_dir / 'samples'}"
        chosen = load_backbone(study_dir)  # the study's, where its file names none
        if chosen and "backbone" not in cfg and not spec.get("init_from"):
            cfg["backbone"] = chosen["backbone"]
        run_cfg = RunConfig(**cfg)
        data = None
        if run_cfg.select is not None:  # the cell's simulated label request
            data = selected_data(run_cfg, unlabeled=run_cfg.unlabeled, seed=run_cfg.train.seed)
        res = run_training(run_cfg, progress=False, log=_quiet, data=data)
        path = out / "metrics.json"
        m = json.loads(path.read_text()) if path.exists() else {}
        metrics = {k: m[k] for k in _KEEP if k in m}
        metrics.setdefault("steps", res.steps)
        metrics.setdefault("train_seconds", round(res.train_seconds, 2))
        curve = list(res.curve)
    elif row["kind"] == "probe":
        ckpt = run_dir(study_dir, spec["checkpoint_from"])
        probe_spec = dict(spec["probe"])
        if spec.get("select_encoder_from") and probe_spec.get("select"):
            probe_spec["select"] = {**probe_spec["select"], "encoder": str(ckpt)}
        pcfg = ProbeConfig(**probe_spec, checkpoint=str(ckpt), out=str(out))
        pdata = selected_data(pcfg, unlabeled="none", seed=pcfg.seed) if pcfg.select else None
        pres = run_probe(pcfg, log=_quiet, progress=False, data=pdata)
        m = pres.metrics.to_dict()
        metrics = {k: m[k] for k in _KEEP if k in m}
        metrics["train_seconds"] = round(float(pres.seconds), 2)
        curve = list(pres.curve)
    elif row["kind"] == "generate":
        gres = run_generate(
            GenerateConfig(**spec["generate"], out=str(out)), progress=False, log=_quiet
        )
        m = {}
        metrics = {
            "steps": gres.gan.steps,
            "train_seconds": round(gres.gan.train_seconds, 2),
            "images": gres.num,
        }
        curve = list(gres.gan.curve)
    else:
        raise ConfigError(f"unknown run kind {row['kind']!r}")
    if isinstance(m.get("per_class"), dict):
        metrics["class_names"] = list(m["per_class"])
    metrics["provenance"] = run_provenance(out)
    seen = [r.get("backbone_images") for r in curve if r.get("backbone_images")]
    if seen and metrics.get("train_seconds"):
        metrics["backbone_images"] = int(seen[-1])
        metrics["img_per_s"] = round(seen[-1] / float(metrics["train_seconds"]), 1)
    return metrics, curve


def run_provenance(out: Path) -> dict[str, Any]:
    """The run folder's ``provenance.json`` (training runs write it), else this process's."""
    path = out / "provenance.json"
    if path.exists():
        with contextlib.suppress(OSError, ValueError):
            record = json.loads(path.read_text())
            if isinstance(record, dict):
                return record
    return provenance(pick_device("auto"))


def track_finished(store: Any, key: str, study_dir: Path, loggers: Sequence[str], log: Log) -> None:
    """Log the cells whose result is run ``key`` to the trackers ``loggers``; a tracker
    that fails is reported, the study carries on."""
    cells = [c for c in store.cells() if c["run_key"] == key]
    if not cells:
        return
    run = store.runs()[key]
    study = store.get_meta("study_name") or study_dir.name
    for cell in cells:
        try:
            track_cell(loggers, study_dir, cell, run, study)
        except Exception as e:  # the results are in the store; export them later
            log(f"could not log {cell.get('id')} to {', '.join(loggers)}: {_one_line(e)}")


class _Heartbeat(threading.Thread):
    """Refreshes a claim's heartbeat from its own connection while the run trains."""

    def __init__(
        self,
        study_dir: Path,
        store_url: str | None,
        key: str,
        worker: str,
        every_s: float = 10.0,
        parent_pid: int | None = None,
    ) -> None:
        super().__init__(daemon=True)
        self.study_dir, self.store_url = study_dir, store_url
        self.key, self.worker, self.every_s = key, worker, every_s
        self.parent_pid = parent_pid
        self.stopped = threading.Event()

    def run(self) -> None:
        try:
            store = open_store(self.study_dir, self.store_url)
        except FewlabelsError:  # the worker hits the same problem when it records the run
            return
        try:
            while not self.stopped.wait(self.every_s):
                exit_if_orphaned(self.parent_pid)
                with contextlib.suppress(FewlabelsError, sqlite3.Error):
                    store.heartbeat(self.key, self.worker)
        finally:
            store.close()

    def stop(self) -> None:
        self.stopped.set()
        self.join()


def die_with_parent(parent_pid: int) -> None:
    """Have the kernel send this process SIGTERM when its parent dies (Linux
    ``PR_SET_PDEATHSIG``); then exit at once if the parent is already gone."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(OSError, AttributeError):
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(1, int(signal.SIGTERM), 0, 0, 0)  # 1: PR_SET_PDEATHSIG
    exit_if_orphaned(parent_pid)


def exit_if_orphaned(parent_pid: int | None) -> None:
    """End this worker process when the study process that started it is gone (the
    portable check, made at every heartbeat and while waiting for a run)."""
    if parent_pid is not None and os.getppid() != parent_pid:
        os._exit(3)  # its claim goes back to pending at the next start (dead pid)


def _fmt_s(s: float | None) -> str:
    if s is None:
        return "?"
    s = round(s)
    return f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s"


def _one_line(e: BaseException) -> str:
    text = str(e) if isinstance(e, FewlabelsError) else f"{type(e).__name__}: {e}"
    text = " ".join(text.split())
    return text[:300] or type(e).__name__


def work(
    study_dir: str | Path,
    *,
    worker: str = "w0",
    t_start: float | None = None,
    finished_at_start: int = 0,
    stale_s: float = 120.0,
    log: Log = print,
    store_url: str | None = None,
    loggers: Sequence[str] = (),
    parent_pid: int | None = None,
) -> int:
    """Claim and run runs until none is left; returns how many this worker ran.

    ``store_url``: a PostgreSQL store (``postgresql://...``) instead of the folder's SQLite.
    ``parent_pid``: a worker process ends when its study process (this pid) is gone.
    ``loggers``: trackers each finished cell is logged to (``tensorboard``, ``mlflow``, ...).
    """
    study_dir = Path(study_dir)
    t_start = t_start or time.time()
    store = open_store(study_dir, store_url, stale_s=stale_s)
    ran = 0
    try:
        while True:
            exit_if_orphaned(parent_pid)
            row = store.claim(worker)
            if row is None:
                c = store.counts()
                if c["pending"] == 0 and c["running"] == 0:
                    return ran
                time.sleep(0.3)
                continue
            beat = _Heartbeat(
                study_dir, store_url, row["key"], worker, every_s=min(10.0, stale_s / 4),
                parent_pid=parent_pid,
            )  # fmt: skip
            beat.start()
            t0 = time.time()
            metrics: dict[str, Any] = {}
            curve: list[dict[str, Any]] = []
            error = None
            try:
                metrics, curve = execute_run(row, study_dir)
            except (KeyboardInterrupt, SystemExit):
                raise
            except WriteError:  # disk full: stop the study, the run is redone on resume
                beat.stop()
                store.release(row["key"], worker)
                raise
            except Exception as e:  # a failing run is recorded and the study carries on
                error = _one_line(e)
            finally:
                beat.stop()
            seconds = time.time() - t0
            store.finish(
                row["key"], worker, metrics=metrics, curve=curve, seconds=seconds, error=error
            )
            if loggers and error is None:
                track_finished(store, row["key"], study_dir, loggers, log)
            ran += 1
            c = store.counts()
            total = sum(c.values())
            fin = c["done"] + c["failed"]
            elapsed = time.time() - t_start
            rate = (fin - finished_at_start) / max(elapsed, 1e-9)
            eta = (total - fin) / rate if rate > 0 else None
            res = f"acc {100 * metrics['accuracy']:.1f}%" if "accuracy" in metrics else ""
            status = "failed" if error else "done"
            tail = f"  error: {error}" if error else ""
            log(
                f"[{fin}/{total}] {status:<6} {row['label']}  {res}  {seconds:.1f}s | "
                f"study {_fmt_s(elapsed)} elapsed, ETA {_fmt_s(eta)}{tail}"
            )
    finally:
        store.close()


def _worker_entry(
    study_dir: str,
    worker: str,
    threads: int,
    t_start: float,
    fin0: int,
    stale_s: float,
    store_url: str | None = None,
    loggers: Sequence[str] = (),
    parent_pid: int | None = None,
) -> None:
    def log(s: str) -> None:
        print(s, flush=True)

    if parent_pid is not None:
        die_with_parent(parent_pid)
    torch.set_num_threads(threads)  # this worker process's entry point: its share of CPUs
    configure_progress(False)  # a worker's runs work quietly beside the study's log lines

    try:
        work(
            study_dir,
            worker=worker,
            t_start=t_start,
            finished_at_start=fin0,
            stale_s=stale_s,
            log=log,
            store_url=store_url,
            parent_pid=parent_pid,
            loggers=loggers,
        )
    except KeyboardInterrupt:
        pass
    except FewlabelsError as e:  # one line, like the CLI; the parent reports what is left
        print(f"error: {e}", file=sys.stderr, flush=True)
        sys.exit(2)


@dataclass
class StudyOutcome:
    """Counts of the study's runs after working through it."""

    out_dir: Path
    counts: dict[str, int]
    seconds: float


def _precision_warning(plan: StudyPlan) -> str | None:
    """The bf16-without-native-bf16 warning if a training run of ``plan`` would log it
    (``run_training`` does, but study cells run with a quiet log)."""
    for job in plan.jobs.values():
        if job.kind == "train":
            cfg = job.spec["config"]
            device = pick_device(cfg.get("device", "auto"))
            warning = slow_precision_warning(cfg["train"].get("precision", "auto"), device)
            if warning:
                return warning
    return None


def _spawn_workers(out: Path, workers: int, args: tuple[Any, ...]) -> None:
    """Run ``workers`` worker processes (``args``: threads, t_start, fin0, stale_s,
    store_url, loggers) until they end; each ends too when this process dies."""
    ctx = multiprocessing.get_context("spawn")
    me = os.getpid()
    procs = [
        ctx.Process(target=_worker_entry, args=(str(out), f"w{i}-{me}", *args, me))
        for i in range(workers)
    ]
    for p in procs:
        p.start()
    try:
        for p in procs:
            p.join()
    except KeyboardInterrupt:
        for p in procs:
            p.join(timeout=10)
        raise


def run_study(
    plan: StudyPlan,
    out_dir: str | Path,
    *,
    workers: int = 1,
    threads: int | None = None,
    stale_s: float = 120.0,
    log: Log = print,
    store_url: str | None = None,
    loggers: Sequence[str] = (),
) -> StudyOutcome:
    """Register ``plan`` in ``out_dir``'s store and work through its runs.

    ``store_url`` (``postgresql://...``) keeps the store in PostgreSQL, so workers on other
    machines that share ``out_dir`` can run the same command and take their share.
    ``threads`` per worker default to the usable CPUs (``OMP_NUM_THREADS``, else the CPU
    affinity) split over the workers; each worker process sets them at its start. With one
    worker the runs work in this process, on the threads its entry point set (the CLI sets
    ``threads``; the library changes no process-wide setting). ``loggers``: trackers each
    cell is logged to.
    """
    loggers = tuple(loggers)
    require_backends(loggers)
    if workers < 1:
        raise ConfigError(f"`workers` must be at least 1, got {workers}")
    out = check_out_folder(out_dir)
    check_owner(out, "study")
    warning = _precision_warning(plan)  # checks each run's device before anything is written
    if store_url is not None:  # reach the database before creating anything
        store = open_store(out, store_url, stale_s=stale_s)
        out.mkdir(parents=True, exist_ok=True)
    else:
        out.mkdir(parents=True, exist_ok=True)
        store = open_store(out, store_url, stale_s=stale_s)
    threads = threads or max(1, usable_threads() // workers)
    try:
        store.register(plan)
        reopen_stale_runs(store, out, run_dir, log)
        c = store.counts()
        probe_threads = threads if workers > 1 else torch.get_num_threads()
        chosen = study_backbone(plan, out, probe_threads, store)
    finally:
        store.close()
    atomic_write_text(out / "study.yaml", plan.text)
    remember(out, store_url)
    fin0 = c["done"] + c["failed"]
    log(
        f"study {plan.name}: {len(plan.cells)} cells, {sum(c.values())} runs "
        f"({c['done']} already done), {workers} worker(s) x {threads} thread(s) -> {out}"
    )
    if chosen:
        log(describe(chosen))
    if warning:
        log(warning)
    t0 = time.time()
    if workers == 1:
        work(
            out,
            worker=f"w0-{os.getpid()}",
            t_start=t0,
            finished_at_start=fin0,
            stale_s=stale_s,
            log=log,
            store_url=store_url,
            loggers=loggers,
        )
    else:
        _spawn_workers(out, workers, (threads, t0, fin0, stale_s, store_url, loggers))
    store = open_store(out, store_url, stale_s=stale_s)
    try:
        c = store.counts()
    finally:
        store.close()
    if c["pending"] or c["running"]:
        raise FewlabelsError(
            f"the workers stopped with {c['pending'] + c['running']} run(s) left; rerun to resume"
        )
    return StudyOutcome(out, c, time.time() - t0)
