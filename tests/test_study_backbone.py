"""A study that names no backbone trains the one the rules choose, once, for every run."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import save_image
from test_study import BASE, write

from fewlabels.study import backbone as study_bb
from fewlabels.study import load_study, parse_study, run_study, write_report
from fewlabels.study.backend import open_store

# per image through the backbone, seconds of a pass (the stub speed probe)
PER_IMAGE = {"fastnet": 1e-3, "fastnet-s": 1e-4, "convnet": 1e-6}


def stub_probe(**_: object):
    def probe(backbone: str, n: int, side: int = 32) -> float:
        return PER_IMAGE[backbone] * n

    return probe


@pytest.fixture
def folder32(tmp_path: Path) -> Path:
    """Two classes of 32 px images, 30 each (a test folder beside them)."""
    rng = np.random.default_rng(0)
    for part, n in (("train", 30), ("test", 4)):
        for c in ("a", "b"):
            for k in range(n):
                img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
                save_image(tmp_path / "img" / part / c / f"{k}.png", img)
    return tmp_path / "img"


def spec32(root: Path, methods: str, budget: str = "2m") -> str:
    return f"""\
name: bb
data: folder:{root / "train"}
test: folder:{root / "test"}
budget: {budget}
grid:
  labels_per_class: [10]
  seeds: [0, 1]
methods:
{methods}upper_bound: false
"""


def test_the_study_takes_the_smallest_backbone_any_run_affords(folder32, monkeypatch):
    """Supervised alone affords fastnet for 2 minutes; FixMatch's 15x larger step does not,
    so the whole study (supervised too) trains fastnet-s, and the rule names the run."""
    monkeypatch.setattr(study_bb, "speed_probe", stub_probe)
    threads = torch.get_num_threads()
    alone = parse_study(spec32(folder32, "  - supervised\n"), "s.yaml")
    got = study_bb.choose_backbone(alone, threads=1)
    assert got["backbone"] == "fastnet"
    assert got["rule"].startswith("every run: images > 16 px")
    both = parse_study(spec32(folder32, "  - supervised\n  - fixmatch\n"), "s.yaml")
    got = study_bb.choose_backbone(both, threads=1)
    assert got["backbone"] == "fastnet-s"
    assert got["rule"].startswith("the smallest any run affords; fixmatch ")
    assert "(2m): fastnet buys " in got["rule"] and "(< 4000): fastnet-s" in got["rule"]
    assert torch.get_num_threads() == threads  # the probe's thread count is put back
    # a step budget buys a known number of steps: no probe, no step down
    steps = parse_study(spec32(folder32, "  - fixmatch\n", "50steps"), "s.yaml")
    assert study_bb.choose_backbone(steps, threads=1)["backbone"] == "fastnet"


def test_the_choice_is_kept_and_a_named_backbone_wins(folder32, tmp_path, monkeypatch):
    plan = parse_study(spec32(folder32, "  - supervised\n"), "s.yaml")
    out = tmp_path / "out"
    out.mkdir()
    kept = {"backbone": "convnet", "rule": "chosen before", "threads": 1}
    (out / study_bb.BACKBONE_FILE).write_text(json.dumps(kept))

    def never(*_: object, **__: object) -> None:
        raise AssertionError("a kept choice is not made again")

    monkeypatch.setattr(study_bb, "choose_backbone", never)
    assert study_bb.study_backbone(plan, out, threads=1) == kept
    named = parse_study(spec32(folder32, "  - supervised\n") + "backbone: resnet18\n", "s.yaml")
    assert study_bb.study_backbone(named, out, threads=1) is None
    assert all(j.spec["config"]["backbone"] == "resnet18" for j in named.jobs.values())
    assert all("backbone" not in j.spec["config"] for j in plan.jobs.values())


def test_machines_starting_at_once_keep_the_first_choice_stored(folder32, tmp_path, monkeypatch):
    """Two machines on one store, both before either wrote backbone.json: each chooses (a
    faster device may afford more), and both keep the choice the store took first."""
    plan = parse_study(spec32(folder32, "  - supervised\n"), "s.yaml")
    out = tmp_path / "out"
    out.mkdir()
    store = open_store(out)
    try:
        store.register(plan)
        for machine in ("fastnet-s", "fastnet"):
            (out / study_bb.BACKBONE_FILE).unlink(missing_ok=True)  # not written yet
            choice = {"backbone": machine, "rule": f"{machine}'s probe", "threads": 1}
            monkeypatch.setattr(study_bb, "choose_backbone", lambda *_a, c=choice: dict(c))
            got = study_bb.study_backbone(plan, out, threads=1, store=store)
            assert got is not None and got["backbone"] == "fastnet-s"
            assert study_bb.load_backbone(out) == got  # the file every worker reads
        assert json.loads(store.get_meta(study_bb.BACKBONE_KEY) or "{}")["rule"] == (
            "fastnet-s's probe"
        )
    finally:
        store.close()


def test_a_study_run_trains_the_chosen_backbone_and_the_report_says_why(tmp_path):
    """digits (8 px): the convnet by the image-size rule, no probe; every run's config and
    the report's footer say so."""
    spec = BASE.replace("labels_per_class: [2, 4]", "labels_per_class: [2]")
    spec = spec.replace("seeds: [0, 1]", "seeds: [0]").replace("upper_bound: true", "")
    plan = load_study(write(tmp_path / "s.yaml", spec))
    lines: list[str] = []
    run_study(plan, tmp_path / "out", workers=1, threads=1, log=lines.append)
    kept = json.loads((tmp_path / "out" / study_bb.BACKBONE_FILE).read_text())
    assert kept["backbone"] == "convnet" and "images <= 16 px" in kept["rule"]
    assert any(ln.startswith("backbone: convnet for every run") for ln in lines)
    for key in plan.jobs:
        cfg = json.loads((tmp_path / "out" / "runs" / key / "config.json").read_text())
        assert cfg["backbone"] == "convnet"
    md = write_report(tmp_path / "out").markdown.read_text()
    assert "backbone: convnet for every run, chosen by the rules (every run: images" in md
