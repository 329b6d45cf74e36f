"""A study spec (YAML) -> validated models -> a grid of cells -> the runs that fill them.

A cell is one point of the comparison (method, labeled amount, unlabeled amount, seed)
and is filled by a small pipeline of runs:

- ``train: M``: one training run of method M;
- ``pretrain: X, then: linear|knn|finetune``: X trained on the cell's data, then probed;
- ``pretrain: X, then: Y``: X, then method Y starting from X's weights (``RunConfig.init``).

A run is keyed by a hash of everything that defines it, so identical runs (a pretraining
shared by a probe and a semi-supervised cell, a supervised run that ignores the
unlabeled amount) are done once, and a changed spec is a new run, never an overwrite.
Every cell is checked before any training: names, budgets, and the splits themselves.

``tune: N`` gives every method, the supervised baseline included, the same N trials of a
small search around its resolved settings (``study.tuning``), each a full run with the
study's budget, chosen per cell on the validation split; ``max_compute`` caps the
compute of all runs together (every trial counted), in the unit of the budgets.

This module reads the file into typed objects (``Grid``, ``Pipeline``), each carrying
where it was written; ``study.expand`` makes the cells and runs, ``study.check`` checks
them against the data.
"""

from __future__ import annotations

import importlib.util
from dataclasses import replace
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.generate.train import GANConfig
from fewlabels.methods import METHODS
from fewlabels.select import strategy as find_strategy
from fewlabels.select.simulate import SelectConfig, check_select
from fewlabels.study.check import check_plan
from fewlabels.study.expand import expand
from fewlabels.study.plan import PROBES, Cell, Grid, Job, Labeled, Pipeline, StudyPlan, job_key
from fewlabels.study.schema import GridSpec, MethodEntry, ReportSpec, StudySpec
from fewlabels.study.tuning import check_compute, check_tuning
from fewlabels.study.yamlines import (
    LineDict,
    LineList,
    Located,
    Where,
    decode_text,
    load_yaml_lines,
    pydantic_error,
)

__all__ = [
    "PROBES",
    "Cell",
    "Grid",
    "GridSpec",
    "Job",
    "MethodEntry",
    "Pipeline",
    "ReportSpec",
    "StudyPlan",
    "StudySpec",
    "job_key",
    "known_methods",
    "load_study",
    "parse_study",
]

LAB_AXES = ("labels_per_class", "labeled_fraction", "budgets")


def known_methods() -> dict[str, bool]:
    """Registered method names -> whether the method trains on unlabeled images."""
    out: dict[str, bool] = {}
    for name, cls in METHODS.items():
        kind = getattr(cls, "kind", None)
        if isinstance(kind, str):
            out[name] = kind != "supervised"
        else:
            out[name] = bool(getattr(cls, "views", {}).get("unlabeled"))
    if importlib.util.find_spec("fewlabels.train.self_training") is not None:
        out.setdefault("teacher_student", True)  # dispatched inside run_training
    return out


def load_study(path: str | Path, *, check_data: bool = True) -> StudyPlan:
    """Read, validate and expand a study file; every error is one line naming file and line."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"study file {p} does not exist")
    try:
        data = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"study file {p} cannot be read ({e.strerror})") from None
    return parse_study(data, str(path), check_data=check_data)


def parse_study(data: bytes | str, source: str, *, check_data: bool = False) -> StudyPlan:
    """Validate and expand a study file's text (``source`` names it in errors).

    ``check_data`` also loads the data and builds every cell's splits and methods.
    """
    text = decode_text(data, source)
    raw = load_yaml_lines(text, source)
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: a study file must hold a mapping of settings")
    _normalise(raw)
    doc = Located(source, raw)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise pydantic_error(e, doc) from None
    plan = StudyPlan(_study_name(spec, doc), source, text, spec)
    _check_budget(spec.budget, doc.at("budget"))
    for key in ("budget", "seed"):
        if key in spec.train:
            raise doc.at("train", key).error(
                f"set {key!r} with the study's 'budget' and 'grid.seeds' keys"
            )
    methods = known_methods()
    grid = read_grid(spec.grid, doc)
    pipelines = read_pipelines(spec, doc, methods)
    check_tuning(spec, pipelines, doc)
    expand(plan, grid, pipelines, methods, doc)
    check_compute(plan, doc)
    if check_data:
        check_plan(plan, doc)
    return plan


def _normalise(raw: Any) -> None:
    """Method shorthand: a plain string ``M`` in ``methods`` means ``{train: M}``."""
    methods = raw.get("methods") if isinstance(raw, dict) else None
    if isinstance(methods, LineList):
        for i, m in enumerate(methods):
            if isinstance(m, str):
                d = LineDict(train=m)
                d.line, d.lines = methods.lines[i], {"train": methods.lines[i]}
                methods[i] = d


def _study_name(spec: StudySpec, doc: Located) -> str:
    name = spec.name or Path(doc.source).stem
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise doc.at("name").error(f"name {name[:60]!r} must be a plain folder name (no slashes)")
    return name


def _check_budget(text: str, where: Where) -> str:
    try:
        Budget.parse(text)
    except FewlabelsError as e:
        raise where.error(str(e)) from None
    return text


# -- the grid ------------------------------------------------------------------------------
def read_grid(g: GridSpec, doc: Located) -> Grid:
    """The grid's axes, checked: one labeled-amount axis, values that can exist."""
    if sum(getattr(g, k) is not None for k in LAB_AXES) != 1:
        raise doc.at("grid").error(
            "grid needs one of labels_per_class, labeled_fraction or budgets"
        )
    axis = next(k for k in LAB_AXES if getattr(g, k) is not None)
    strategies = _strategies(g, doc)
    values = list(getattr(g, axis))
    if not values or not g.unlabeled or not g.seeds:
        raise doc.at("grid").error("every grid axis needs at least one value")
    for i, v in enumerate(values):
        if not v > 0 or (axis == "labeled_fraction" and v > 1):
            raise doc.at("grid", axis, i).error(f"{axis} {v} cannot exist")
    for i, s in enumerate(g.seeds):
        if s < 0 or s >= 2**63:
            raise doc.at("grid", "seeds", i).error(f"seed {s} must be from 0 to 2**63-1")
    return Grid(
        labeled=[Labeled(axis, v, doc.at("grid", axis, i)) for i, v in enumerate(values)],
        strategies=strategies,
        unlabeled=[(u, doc.at("grid", "unlabeled", i)) for i, u in enumerate(g.unlabeled)],
        seeds=list(g.seeds),
    )


def _strategies(g: GridSpec, doc: Located) -> list[str | None]:
    """The selection strategies of a ``budgets`` grid (default random); [None] otherwise."""
    if g.budgets is None:
        if g.strategies is not None:
            raise doc.at("grid", "strategies").error("strategies go with a 'budgets' axis")
        return [None]
    out: list[str | None] = []
    for i, name in enumerate(g.strategies or ["random"]):
        try:
            cfg = SelectConfig(strategy=str(name), budget=1)
            check_select(cfg)
            out.append(find_strategy(cfg.strategy).name)
        except FewlabelsError as e:
            raise doc.at("grid", "strategies", i).error(str(e)) from None
    return out


# -- the method entries --------------------------------------------------------------------
def read_pipelines(spec: StudySpec, doc: Located, methods: dict[str, bool]) -> list[Pipeline]:
    """Every method entry as a checked ``Pipeline``, plus one copy of each pretraining
    entry per generated-image ratio of ``grid.synthetic``."""
    out: list[Pipeline] = []
    seen: set[str] = set()
    for i, m in enumerate(spec.methods):
        p = _pipeline(m, doc, ("methods", i), spec.budget, methods)
        if p.name in seen:
            raise p.where.error(f"two methods are named {p.name!r}; give one a 'name'")
        seen.add(p.name)
        out.append(p)
    return out + _synthetic_pipelines(out, spec, doc)


def _pipeline(
    m: MethodEntry, doc: Located, at: tuple, budget: str, methods: dict[str, bool]
) -> Pipeline:
    where = doc.at(*at)
    if (m.train is None) == (m.pretrain is None):
        raise where.error("a method entry needs 'train: METHOD' or 'pretrain: METHOD'")
    if m.train is not None and (m.then is not None or m.then_kwargs or m.then_budget):
        raise doc.at(*at, "then").error("'then' goes with 'pretrain', not with 'train'")
    if m.pretrain is not None and m.then is None:
        raise where.error(f"'pretrain' needs 'then': one of {', '.join(PROBES)} or a method")

    def method(name: str, key: str) -> str:
        if name.lower() not in methods:
            choose = ", ".join(sorted(methods))
            raise doc.at(*at, key).error(f"unknown method {name!r}; choose from {choose}")
        return name.lower()

    first = method(m.train or m.pretrain or "", "train" if m.train else "pretrain")
    then = None
    if m.then is not None:
        then = m.then.lower() if m.then.lower() in PROBES else method(m.then, "then")
    b = _check_budget(m.budget or budget, doc.at(*at, "budget") if m.budget else doc.at("budget"))
    tb = _check_budget(
        m.then_budget or budget, doc.at(*at, "then_budget") if m.then_budget else doc.at("budget")
    )
    name = m.name or (first if then is None else f"{first}+{then}")
    return Pipeline(
        name, first, then, b, tb, dict(m.kwargs), dict(m.then_kwargs), dict(m.settings), where
    )


def _synthetic_pipelines(
    pipelines: list[Pipeline], spec: StudySpec, doc: Located
) -> list[Pipeline]:
    """A copy of every ``pretrain`` pipeline per ratio > 0 of ``grid.synthetic``. Ratio 0
    is the pipeline itself, always kept as the baseline."""
    ratios = spec.grid.synthetic
    for i, r in enumerate(ratios):
        if not 0 <= r <= 1:
            raise doc.at("grid", "synthetic", i).error(
                f"synthetic {r} must be from 0 to 1 (x the pool)"
            )
    if not any(r > 0 for r in ratios):
        if spec.generate:
            raise doc.at("generate").error("'generate' settings go with a grid.synthetic ratio > 0")
        return []
    _check_gan(spec.generate, doc.at("generate"))
    pre = [p for p in pipelines if p.then is not None]
    if not pre:
        raise doc.at("grid", "synthetic").error("synthetic images need a 'pretrain:' method entry")
    out = []
    for p in pre:
        if Budget.parse(p.budget).kind == "epochs":
            raise p.where.error(
                f"{p.name}: synthetic images at fixed compute need a budget in steps, images "
                "(e.g. 200kimg) or time, not epochs (more images would mean more steps)"
            )
        for r in sorted({r for r in ratios if r > 0}):
            out.append(replace(p, synthetic=r))
    return out


def _check_gan(settings: dict[str, Any], where: Where) -> None:
    try:
        GANConfig(**settings)
    except ValidationError as e:
        err = e.errors()[0]
        at = ".".join(str(p) for p in err.get("loc", ())) or "generate"
        raise where.error(f"generate.{at}: {err.get('msg', '')}") from None
    except FewlabelsError as e:
        raise where.error(str(e)) from None
