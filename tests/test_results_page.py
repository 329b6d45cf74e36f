"""docs/results.md is made by scripts/make_results.py from the recorded benchmark rows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_results.py"


def _load():
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_results_page_is_in_sync_with_the_recorded_rows() -> None:
    done = subprocess.run(
        [sys.executable, str(SCRIPT), "--check"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_ssl_row_shows_every_kind_of_method_option() -> None:
    row = {
        "budget": "10m",
        "backbone": "fastnet-s",
        "auto_precision": "bf16",
        "method": "vicreg",
        "optimizer": "lars",
        "lr": 0.3,
        "grad_clip": 1.0,
        "method_kwargs": {
            "projector": [2048, 2048, 2048],
            "scale": 0.1,
            "head_bn": True,
            "augment": "twoview:min_scale=0.2",
        },
        "pretrain_steps": 1515,
        "linear_acc": 0.4817,
        "linear_macro_f1": 0.4784,
        "knn_acc": 0.4679,
        "knn_macro_f1": 0.4544,
        "date": "2026-12-03",
        "commit": "abc1234",
    }
    rand = {"fastnet-s": {"linear_acc": 0.2585}}
    line = _load()._ssl_row(row, rand)
    for part in (
        "lars (0.3), grad norm <= 1",
        "projector 2048-2048-2048",
        "scale 0.1",
        "head_bn on",
        "augment twoview:min_scale=0.2",
        "1,515",
        "+22.3 points",
    ):
        assert part in line, (part, line)


def test_budgets_compare_only_within_one_machine() -> None:
    mod = _load()
    amd = {"budget": "30m", "backbone": "fastnet-s", "auto_precision": "bf16", "cpu": "AMD EPYC"}
    intel = {**amd, "cpu": "Intel(R) Xeon(R) Processor"}
    gpu = {**amd, "gpu": "NVIDIA H200"}
    assert mod._machine(amd) == "bf16, AMD EPYC"
    assert mod._machine(intel) == "bf16, Intel Xeon"
    assert mod._machine(gpu) == "bf16, NVIDIA H200"
    assert mod._machine({"cpu": "AMD EPYC"}) is None  # precision not recorded
    groups = mod._groups([amd, intel, {**intel, "method": "other"}])
    assert sorted(len(g) for g in groups.values()) == [1, 2]
