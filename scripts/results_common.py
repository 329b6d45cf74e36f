"""Shared helpers of scripts/make_results.py: reading the recorded rows, formatting cells,
and the keys that decide which rows compare (a row's machine, backbone and budget)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"

META = ("bench", "cpu", "cores", "gpu", "torch", "commit", "date")


def load(path: Path) -> list[dict[str, Any]]:
    """The JSON rows of one results file, in the order they were recorded."""
    rows = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line:
            rows.append(json.loads(line))
    return rows


def fmt(v: Any) -> str:
    """One table cell: 4 significant digits, JSON for lists and dicts, ``-`` for None."""
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | dict):
        return json.dumps(v)
    return str(v).replace("|", "\\|")


def table(rows: list[dict[str, Any]]) -> list[str]:
    """Every recorded row as a Markdown table, one column per key (date and commit last)."""
    cols: list[str] = []
    for r in rows:
        cols += [k for k in r if k not in META and k not in cols]
    cols += ["date", "commit"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(fmt(r.get(c)) for c in cols) + " |" for r in rows]
    return lines


def machines(rows: list[dict[str, Any]]) -> str:
    """The distinct machines (processor, cores, GPU, torch) the rows were measured on."""
    seen = []
    for r in rows:
        m = f"{r.get('cpu', '?')}, {r.get('cores', '?')} cores" + (
            f", GPU {r['gpu']}" if r.get("gpu") else ""
        )
        m += f", torch {r.get('torch', '?')}"
        if m not in seen:
            seen.append(m)
    return "; ".join(seen)


def pct(v: Any) -> str:
    """A fraction as a percentage with one decimal."""
    return "-" if v is None else f"{100 * v:.1f}%"


def secs(v: Any) -> str:
    """Seconds to reach a target, ``never`` if it was not reached."""
    return "never" if v is None else f"{v:.0f} s"


def budget_seconds(budget: str) -> float:
    """A wall-clock budget (``600s``, ``10m``, ``30min``, ``1h``) in seconds; inf for the
    other kinds (steps, epochs, images) and for text that is not a budget."""
    try:
        b = Budget.parse(budget)
    except ConfigError:
        return float("inf")
    return b.amount if b.kind == "seconds" else float("inf")


def machine_of(r: dict[str, Any]) -> str | None:
    """What a budget buys on a row's machine: the precision ``auto`` trained in and the
    processor, e.g. ``bf16, Intel Xeon`` (``None`` where the precision is not recorded).
    Two CPUs with native bf16 can differ in speed as much as bf16 and fp32 on one CPU."""
    if not r.get("auto_precision"):
        return None
    hw = r.get("gpu") or r.get("cpu") or "?"
    hw = re.sub(r"\s+", " ", re.sub(r"\((R|TM)\)|\bProcessor\b|\bCPU\b", "", hw)).strip()
    return f"{r['auto_precision']}, {hw}"


def backbone_of(r: dict[str, Any]) -> str:
    """A row's backbone with its options (``--backbone-kwargs``), e.g. ``fastnet-s
    (widths 32-128-256)``."""
    opts = [
        f"{k} {'-'.join(str(d) for d in v) if isinstance(v, list) else v}"
        for k, v in (r.get("backbone_kwargs") or {}).items()
    ]
    return r["backbone"] + (f" ({', '.join(opts)})" if opts else "")


def groups(rows: list[dict[str, Any]]) -> dict[tuple, list[dict[str, Any]]]:
    """Rows by budget, backbone and machine: the cells whose results compare."""
    out: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        out.setdefault((r["budget"], backbone_of(r), machine_of(r)), []).append(r)
    return out
