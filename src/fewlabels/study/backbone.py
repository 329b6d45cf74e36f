"""One backbone for a whole study, chosen by the backbone rule (``train.resolve``) when the
study file names none: every method of a study trains the same network, so a difference in
the verdict is the method's, not the network's.

Each training run that starts from scratch is resolved as it would resolve alone (image
size, its budget, the speed probe at the workers' thread count) and the study takes the
smallest backbone any of them steps down to: the largest one every run can afford. The
choice and its rule are kept in the study folder (``backbone.json``) and the study's store,
so a resumed study, every worker and every machine train the backbone it started with.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.device import pick_device
from fewlabels.core.precision import resolve_precision
from fewlabels.data import Dataset, make_splits
from fewlabels.methods import method_class
from fewlabels.study.plan import Cell, StudyPlan
from fewlabels.study.sqlstore import SqlStore
from fewlabels.train.facts import facts_of, speed_probe
from fewlabels.train.resolve import STEP_DOWN, Probe, Resolved, resolve_settings
from fewlabels.train.run import RunConfig

__all__ = ["BACKBONE_FILE", "describe", "load_backbone", "study_backbone"]

BACKBONE_FILE = "backbone.json"
BACKBONE_KEY = "backbone"  # the store's copy, which decides between machines


def load_backbone(study_dir: Path) -> dict[str, Any] | None:
    """The study's chosen backbone and its rule (``backbone.json``), if it chose one."""
    try:
        got = json.loads((Path(study_dir) / BACKBONE_FILE).read_text())
    except (OSError, ValueError):
        return None
    return got if isinstance(got, dict) and isinstance(got.get("backbone"), str) else None


def study_backbone(
    plan: StudyPlan, study_dir: Path, threads: int, store: SqlStore | None = None
) -> dict[str, Any] | None:
    """The backbone every run of ``plan`` trains (None: the study file names one): the one
    kept in ``study_dir``, else the one in ``store``, else chosen now (the speed probe at
    ``threads`` threads, the count each worker trains with) and kept. Machines that start
    one study at once on a shared store each choose, and all keep the first choice stored
    (their devices' speeds may differ; a study trains one backbone)."""
    if plan.spec.backbone is not None:
        return None
    kept = load_backbone(study_dir)
    if kept is not None:
        return kept
    stored = store.get_meta(BACKBONE_KEY) if store is not None else None
    if stored is None:
        chosen = json.dumps(choose_backbone(plan, threads), indent=2)
        stored = store.put_meta_once(BACKBONE_KEY, chosen) if store is not None else chosen
    atomic_write_text(Path(study_dir) / BACKBONE_FILE, stored + "\n")
    return json.loads(stored)


def _rank(backbone: str) -> int:
    """How far down STEP_DOWN's chain a backbone is (fastnet 0, fastnet-s 1, convnet 2)."""
    rank, name = 0, "fastnet"
    while name != backbone and name in STEP_DOWN:
        name, rank = STEP_DOWN[name][0], rank + 1
    return rank if name == backbone else -1


def choose_backbone(plan: StudyPlan, threads: int) -> dict[str, Any]:
    """The smallest backbone the study's from-scratch training runs resolve to, with the
    rule of the run that chose it (every pipeline's first stage is such a run)."""
    spec = plan.spec
    ds = RunConfig(data=spec.data, test=spec.test, val="none", strict=spec.strict).load()
    device = pick_device(spec.device)
    probes: dict[str, Probe] = {}
    seen: dict[str, tuple[Resolved, str]] = {}
    before = torch.get_num_threads()
    torch.set_num_threads(max(1, threads))  # time what a worker's run will make
    try:
        for cell in plan.cells:
            for key in cell.job_keys:
                job = plan.jobs[key]
                cfg = job.spec.get("config")
                if job.kind != "train" or job.spec.get("init_from") or cfg is None:
                    continue
                run = RunConfig(**cfg)
                unseeded = {**cfg, "train": {k: v for k, v in cfg["train"].items() if k != "seed"}}
                sig = json.dumps([unseeded, cell.n_labeled, cell.n_unlabeled], sort_keys=True)
                if sig not in seen:  # (seeds resolve alike)
                    res = _resolve(run, ds, cell, device, probes)
                    seen[sig] = (res, f"{job.label.strip()} ({run.train.budget})")
    finally:
        torch.set_num_threads(before)
    res, who = max(seen.values(), key=lambda rw: _rank(rw[0].value))
    same = len({r.value for r, _ in seen.values()}) == 1
    rule = f"every run: {res.rule}" if same else f"the smallest any run affords; {who}: {res.rule}"
    return {"backbone": res.value, "rule": rule, "threads": threads}


def _resolve(
    run: RunConfig, ds: Dataset, cell: Cell, device: torch.device, probes: dict[str, Probe]
) -> Resolved:
    """The backbone ``run`` would resolve alone (one speed probe per precision, shared)."""
    labeled, unlabeled = cell.n_labeled, cell.n_unlabeled
    if not labeled:  # a plan not checked against its data: cut the splits
        sp = make_splits(ds, run.model_copy(update={"select": None}).split_config())
        labeled, unlabeled = len(sp.labeled), len(sp.unlabeled)
    facts = facts_of(run, ds, labeled, unlabeled, device)
    precision = resolve_precision(run.train.precision, device)
    if precision not in probes:
        probes[precision] = speed_probe(
            channels=facts.channels, image_size=facts.image_size,
            num_classes=facts.num_classes, device=device, stem=run.stem,
            backbone_kwargs=run.backbone_kwargs, precision=precision,
        )  # fmt: skip
    config_cls = method_class(run.method).Config
    _, resolution = resolve_settings(run, facts, config_cls, probe=probes[precision])
    return resolution.values["backbone"]


def describe(chosen: dict[str, Any]) -> str:
    """The log's and the report's line on the study's backbone."""
    return f"backbone: {chosen['backbone']} for every run, chosen by the rules ({chosen['rule']})"
