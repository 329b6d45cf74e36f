"""Where a result came from: the fewlabels version and commit, torch, the device and processor,
the thread count and the precision actually used. Recorded in every run folder
(``provenance.json``), every study store row and every report footer."""

from __future__ import annotations

import os
import platform
import subprocess
from functools import lru_cache
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.version import __version__

__all__ = ["cpu_name", "git_commit", "provenance", "provenance_line", "usable_threads"]


@lru_cache(maxsize=1)
def git_commit() -> tuple[str | None, bool]:
    """The checkout's ``HEAD`` commit and whether its tree has uncommitted changes; (None,
    False) when fewlabels does not run from a git checkout (or git is not there)."""
    here = Path(__file__).resolve().parent
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5
        )
        if head.returncode != 0:
            return None, False
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=here,
            capture_output=True,
            text=True,
            timeout=5,
        )
    except (OSError, subprocess.SubprocessError):
        return None, False
    return head.stdout.strip() or None, bool(status.stdout.strip())


@lru_cache(maxsize=1)
def cpu_name() -> str:
    """The processor's model name (``/proc/cpuinfo``, else ``platform.processor()``)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith(("model name", "hardware", "cpu model")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def usable_threads() -> int:
    """The threads this process should use: ``OMP_NUM_THREADS`` when set, else the CPUs
    its affinity allows (cgroups, SLURM, taskset), else ``os.cpu_count()``."""
    env = os.environ.get("OMP_NUM_THREADS", "").strip()
    if env.isdigit() and int(env) > 0:
        return int(env)
    if hasattr(os, "sched_getaffinity"):
        try:
            return max(1, len(os.sched_getaffinity(0)))
        except OSError:
            pass
    return max(1, os.cpu_count() or 1)


def provenance(device: torch.device | str | None = None, precision: str | None = None) -> dict:
    """The record of what produced a result. ``device``: the device the run computed on;
    ``precision``: the precision actually used (``bf16`` / ``fp32``, not ``auto``)."""
    commit, dirty = git_commit()
    dev = torch.device(device) if device is not None else torch.device("cpu")
    record: dict[str, Any] = {
        "fewlabels": __version__,
        "commit": commit,
        "dirty": dirty if commit else None,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "device": str(dev),
        "processor": cpu_name(),
        "gpu": None,
        "threads": torch.get_num_threads(),
        "precision": precision,
    }
    if dev.type == "cuda" and torch.cuda.is_available():
        record["gpu"] = torch.cuda.get_device_name(dev)
    return record


def provenance_line(record: dict[str, Any]) -> str:
    """One line for a report's footer."""
    commit = record.get("commit")
    rev = f" ({commit[:10]}{'+dirty' if record.get('dirty') else ''})" if commit else ""
    dev = record.get("gpu") or record.get("processor") or "?"
    prec = f", {record['precision']}" if record.get("precision") else ""
    return (
        f"fewlabels {record.get('fewlabels', '?')}{rev}, torch {record.get('torch', '?')}, "
        f"{record.get('device', '?')}: {dev}, {record.get('threads', '?')} thread(s){prec}"
    )
