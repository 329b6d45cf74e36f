"""docs/results.md and README.md's results table are made by scripts/make_results.py from the
recorded benchmark rows."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "make_results.py"


def _load():
    spec = importlib.util.spec_from_file_location("make_results", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_results_page_and_readme_are_in_sync_with_the_recorded_rows() -> None:
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
    line = _load().ssl.ssl_row(row, rand)
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
    common = _load().common
    amd = {"budget": "30m", "backbone": "fastnet-s", "auto_precision": "bf16", "cpu": "AMD EPYC"}
    intel = {**amd, "cpu": "Intel(R) Xeon(R) Processor"}
    gpu = {**amd, "gpu": "NVIDIA H200"}
    assert common.machine_of(amd) == "bf16, AMD EPYC"
    assert common.machine_of(intel) == "bf16, Intel Xeon"
    assert common.machine_of(gpu) == "bf16, NVIDIA H200"
    assert common.machine_of({"cpu": "AMD EPYC"}) is None  # precision not recorded
    groups = common.groups([amd, intel, {**intel, "method": "other"}])
    assert sorted(len(g) for g in groups.values()) == [1, 2]


def test_machines_are_named_by_processor_and_precision() -> None:
    name = _load().headline.machine_name
    assert name({"cpu": "Intel(R) Xeon(R) Processor", "auto_precision": "bf16"}) == (
        "Intel Xeon, bf16"
    )
    assert name({"cpu": "AMD EPYC", "precision": "fp32"}) == "AMD EPYC, fp32"
    assert name({"cpu": "AMD EPYC"}) == "AMD EPYC, precision not recorded"
    assert name({"cpu": "AMD EPYC", "gpu": "NVIDIA H200", "auto_precision": "bf16"}) == (
        "NVIDIA H200, bf16"
    )


def test_readme_table_is_replaced_between_its_markers_only() -> None:
    mod = _load()
    text = f"intro\n{mod.START}\n| stale | table |\n{mod.END}\noutro\n"
    new = mod.readme_text(text)
    assert new.startswith(f"intro\n{mod.START}\n") and new.endswith(f"{mod.END}\noutro\n")
    assert "| stale | table |" not in new
    assert "\n".join(mod.headline.render_headline()) in new
    with pytest.raises(SystemExit):
        mod.readme_text("a README without the markers")


def test_check_fails_when_the_readme_table_is_stale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = _load()
    readme = tmp_path / "README.md"
    monkeypatch.setattr(mod, "README", readme)
    monkeypatch.setattr(sys, "argv", ["make_results.py", "--check"])
    current = (ROOT / "README.md").read_text()
    readme.write_text(current)
    assert mod.main() == 0
    readme.write_text(current.replace(mod.END, "| an old row |\n" + mod.END))
    assert mod.main() == 1
    assert readme.read_text() != current  # --check writes nothing
