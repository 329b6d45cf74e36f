"""Run a benchmark and keep what it printed: ``python scripts/record.py NAME -- CMD ...``.

Every JSON line the command prints is echoed and appended to
``benchmarks/results/NAME.jsonl`` with where and when it was measured (CPU model, thread
count, the precision ``auto`` picks, torch version, commit, date), so
``scripts/make_results.py`` can rebuild ``docs/results.md`` from measurements alone. Other
output passes through untouched.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"


def machine() -> dict[str, str | int]:
    """Facts that make a figure comparable: CPU, cores, torch, commit."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        # code changed since that commit (results and the page made from them aside): the
        # figure was not measured on the commit alone, and the row says so
        changed = subprocess.run(
            ["git", "status", "--porcelain", "--", ".", ":!benchmarks/results", ":!docs"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
        if commit and changed:
            commit += "+uncommitted"
    except OSError:
        commit = ""
    import torch

    from fewlabels.core.precision import resolve_precision

    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else ""
    device = torch.device("cuda" if gpu else "cpu")
    return {
        "cpu": cpu,
        "cores": os.cpu_count() or 0,
        "gpu": gpu,
        # what precision "auto" trains in here: two CPUs with the same model name can differ
        # (one with native bf16 ran the same fastnet-s steps about twice as fast)
        "auto_precision": resolve_precision("auto", device),
        "torch": torch.__version__,
        "commit": commit,
        "date": dt.date.today().isoformat(),
    }


def main() -> int:
    args = sys.argv[1:]
    if len(args) < 3 or args[1] != "--":
        print(__doc__.splitlines()[0], file=sys.stderr)
        return 2
    name, cmd = args[0], args[2:]
    RESULTS.mkdir(parents=True, exist_ok=True)
    meta = machine()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, cwd=ROOT)
    assert proc.stdout is not None
    with open(RESULTS / f"{name}.jsonl", "a") as out:
        for line in proc.stdout:
            sys.stdout.write(line)
            sys.stdout.flush()
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            if isinstance(row, dict):
                out.write(json.dumps({**row, "bench": name, **meta}) + "\n")
                out.flush()
    return proc.wait()


if __name__ == "__main__":
    sys.exit(main())
