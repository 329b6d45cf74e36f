"""A study's grid and pipelines -> its cells and the runs (jobs) that fill them.

Each point of the grid (labeled amount, selection strategy, unlabeled amount, seed) times
each pipeline is a cell; its runs are keyed by the hash of their spec, so a run two cells
need (a pretraining shared by a probe and a semi-supervised pipeline, a supervised run
that ignores the unlabeled amount) is registered once.
"""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from dataclasses import replace
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.study.plan import (
    PROBES,
    Cell,
    Grid,
    Job,
    Labeled,
    Pipeline,
    Point,
    StudyPlan,
    job_key,
)
from fewlabels.study.schema import StudySpec
from fewlabels.study.tuning import Trial, settings_label, trial_info, trials
from fewlabels.study.yamlines import Located


def make_job(kind: str, spec: dict[str, Any], deps: tuple[str, ...] = (), **fields: Any) -> Job:
    """A ``Job`` keyed by the hash of its kind and spec."""
    return Job(job_key(kind, spec), kind, spec, deps, **fields)


class _Registry:
    """The plan's jobs (the first of identical runs is kept) and cells (by id)."""

    def __init__(self, plan: StudyPlan) -> None:
        self.plan = plan
        self.cell_ids: set[str] = set()

    def job(self, job: Job) -> str:
        try:  # the store keeps specs as JSON: refuse dates, mixed-type keys, ...
            json.dumps(job.spec, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{self.plan.source}: {job.label}: settings must be plain values (strings, "
                f"numbers, lists, mappings with string keys): {e}"
            ) from None
        self.plan.jobs.setdefault(job.key, job)
        return job.key

    def cell(self, cell: Cell) -> None:
        if cell.id not in self.cell_ids:
            self.cell_ids.add(cell.id)
            self.plan.cells.append(cell)


def points(grid: Grid) -> Iterator[Point]:
    """The grid's points in the order their cells are listed."""
    for lab, strat in itertools.product(grid.labeled, grid.strategies):
        for unl, where in grid.unlabeled:
            for seed in grid.seeds:
                yield Point(lab, strat, unl, seed, where)


def expand(
    plan: StudyPlan,
    grid: Grid,
    pipelines: list[Pipeline],
    methods: dict[str, bool],
    doc: Located,
) -> None:
    """Fill ``plan.cells`` and ``plan.jobs`` (pretrainings first, so the runs that need
    them are unblocked early). ``methods``: method name -> trains on unlabeled images."""
    reg = _Registry(plan)
    gkey = ""
    if any(p.synthetic for p in pipelines):  # one GAN for the whole study, on its data
        gen = {"data": plan.spec.data, "device": plan.spec.device, "gan": dict(plan.spec.generate)}
        gkey = reg.job(make_job("generate", {"generate": gen}, stage="generate"))
    tuned = [trials(plan.spec, p, plan.spec.tune) for p in pipelines]
    for point in points(grid):
        for p, tried in zip(pipelines, tuned, strict=True):
            uses = methods[p.first] if p.then is None else True
            pt = point if uses else replace(point, unlabeled="0")
            keys, infos = _cell_jobs(plan.spec, p, tried, pt, gkey, reg)
            cell = Cell(p.name, p.kind, pt.labeled, pt.unlabeled, pt.seed, "grid", "", keys)
            cell.run_key = infos[0]["run_key"] if infos else keys[-1]
            cell.uses_unlabeled, cell.strategy, cell.synthetic = uses, pt.strategy, p.synthetic
            cell.pretrain, cell.then = (p.first, p.then) if p.then else (None, None)
            cell.unlabeled_at, cell.trials = pt.unlabeled_at, infos
            reg.cell(cell)
    if plan.spec.upper_bound:
        _upper_bound(plan.spec, pipelines, grid.seeds, reg, doc)
    needed = {d for j in plan.jobs.values() for d in j.deps}
    order = sorted(plan.jobs.values(), key=lambda j: j.key not in needed)
    plan.jobs = {j.key: j for j in order}


def _cell_jobs(
    spec: StudySpec, p: Pipeline, tried: list[Trial], pt: Point, gkey: str, reg: _Registry
) -> tuple[list[str], list[dict[str, Any]]]:
    """The runs of a cell (every trial's, with ``tune``) and what it keeps of each trial."""
    if not tried:
        return _pipeline_jobs(spec, p, pt, gkey, reg), []
    keys: list[str] = []
    infos = []
    for t in tried:
        label = f"{t.index}: {settings_label(t.settings)}"
        got = _pipeline_jobs(spec, t.pipeline, pt, gkey, reg, label)
        infos.append(trial_info(t, got[-1], got, p))
        keys += [k for k in got if k not in keys]
    return keys, infos


def run_config(
    spec: StudySpec,
    method: str,
    kwargs: dict[str, Any],
    budget: str,
    settings: dict[str, Any],
    pt: Point,
    strategy: str | None = None,
) -> dict[str, Any]:
    """The ``RunConfig`` settings of one training run of a cell."""
    lab: Labeled | None = pt.labeled
    value = lab.value if lab is not None else None
    axis = lab.axis if lab is not None else None
    sel = {"strategy": strategy, "budget": value, "encoder": spec.select_encoder}
    return {
        **({"select": sel} if strategy else {}),
        "data": spec.data,
        "test": spec.test,
        "labels_per_class": value if axis == "labels_per_class" else None,
        "labeled_fraction": value if axis == "labeled_fraction" else None,
        "unlabeled": pt.unlabeled,
        "val": spec.val,
        **({"backbone": spec.backbone} if spec.backbone else {}),  # none: study.backbone
        "stem": spec.stem,
        "backbone_kwargs": dict(spec.backbone_kwargs),
        "method": method,
        "method_kwargs": dict(kwargs),
        "train": {**spec.train, **settings, "budget": budget, "seed": pt.seed},
        "device": spec.device,
        **({"strict": True} if spec.strict else {}),  # (left out when off: keys unchanged)
        **({"flip": False} if not spec.flip else {}),
    }


def _pipeline_jobs(
    spec: StudySpec, p: Pipeline, pt: Point, gkey: str, reg: _Registry, trial: str = ""
) -> list[str]:
    """Register the runs of pipeline ``p`` at point ``pt``; their keys, the result's last."""
    if p.then is None:
        cfg = run_config(spec, p.first, p.kwargs, p.budget, p.settings, pt, pt.strategy)
        job = make_job("train", {"config": cfg}, name=p.name, point=pt, where=p.where)
        return [reg.job(replace(job, trial=trial))]
    syn = p.synthetic
    pre = run_config(spec, p.first, p.kwargs, p.budget, p.settings, pt)
    if syn:  # the GAN's images join the pool; the compute stays the same
        pre["extra_unlabeled_ratio"] = syn
    pspec = {"config": pre, "synthetic_from": gkey} if syn else {"config": pre}
    pkey = reg.job(
        make_job(
            "train",
            pspec,
            (gkey,) if syn else (),
            stage="pretrain",
            name=p.first,
            point=replace(pt, strategy=None),
            synthetic=syn,
            where=p.where,
            trial=trial if p.then in PROBES else "",
        )
    )
    if p.then in PROBES:
        kind, then = "probe", {"probe": _probe(spec, p, pt, pre), "checkpoint_from": pkey}
    else:
        assert p.then is not None
        settings = {**p.settings, **p.then_settings}
        cfg = run_config(spec, p.then, p.then_kwargs, p.then_budget, settings, pt, pt.strategy)
        kind, then = "train", {"config": cfg, "init_from": pkey}
    if pt.strategy and spec.select_encoder is None:  # features: the cell's pretraining
        then["select_encoder_from"] = pkey
    job = make_job(kind, then, (pkey,), stage=kind, name=p.name, point=pt, synthetic=syn)
    key = reg.job(replace(job, where=p.where, trial=trial))
    return [gkey, pkey, key] if syn else [pkey, key]


def _probe(spec: StudySpec, p: Pipeline, pt: Point, pre: dict[str, Any]) -> dict[str, Any]:
    """The ``ProbeConfig`` settings of a pipeline's probe."""
    probe = {
        "data": spec.data,
        "test": spec.test,
        "labels_per_class": pre["labels_per_class"],
        "labeled_fraction": pre["labeled_fraction"],
        "val": spec.val,
        "protocol": p.then,
        "budget": p.then_budget,
        "seed": pt.seed,
        "device": spec.device,
        **({"strict": True} if spec.strict else {}),
        **({"flip": False} if not spec.flip else {}),
        **p.then_kwargs,
    }
    if pt.strategy:
        value = pt.labeled.value if pt.labeled is not None else None
        probe["select"] = {
            "strategy": pt.strategy,
            "budget": value,
            "encoder": spec.select_encoder,
        }
    return probe


def _upper_bound(
    spec: StudySpec, pipelines: list[Pipeline], seeds: list[int], reg: _Registry, doc: Located
) -> None:
    """Supervised training on every label, one cell per seed."""
    sup = next((p for p in pipelines if p.first == "supervised" and p.then is None), None)
    where = sup.where if sup else doc.at("methods")
    for seed in seeds:
        pt = Point(None, None, "0", seed)
        kwargs, settings = (sup.kwargs, sup.settings) if sup else ({}, {})
        cfg = run_config(spec, "supervised", kwargs, spec.budget, settings, pt)
        job = make_job("train", {"config": cfg}, stage="all_labels", point=pt, where=where)
        key = reg.job(job)
        cell = Cell("supervised (all labels)", "train", None, "0", seed, "upper_bound", key, [key])
        cell.uses_unlabeled = False
        reg.cell(cell)
