"""Check a study's cells against its data before any training: every run's settings, every
cell's splits (their sizes go into the cells) and every method built once.

An error names the place in the study file of the setting at fault, which each object
carries (a cell its labeled and unlabeled amounts, a run its method entry).
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from fewlabels.core.errors import FewlabelsError
from fewlabels.data import Dataset, ImageSet, SplitConfig, Splits, make_splits
from fewlabels.generate.gan import check_size
from fewlabels.methods import METHODS, build_method
from fewlabels.select.simulate import selected_sizes
from fewlabels.study.plan import Cell, Job, Labeled, StudyPlan
from fewlabels.study.yamlines import Located, Where, pydantic_error
from fewlabels.train.run import RunConfig, build_network, prepare_data


def check_plan(plan: StudyPlan, doc: Located) -> None:
    """Build every cell's splits and every method once, so no run fails on bad input;
    sets each cell's ``n_labeled`` and ``n_unlabeled``."""
    configs = _run_configs(plan, doc)
    try:
        ds, _ = prepare_data(
            RunConfig(data=plan.spec.data, test=plan.spec.test, val="none", strict=plan.spec.strict)
        )
    except FewlabelsError as e:
        raise doc.at("data").error(str(e)) from None
    if any(j.kind == "generate" for j in plan.jobs.values()):  # images the GAN can learn
        h, w = ds.train.image_size
        try:
            check_size(h if h == w else 0)
        except FewlabelsError as e:
            raise doc.at("grid", "synthetic").error(f"{w}x{h} images: {e}") from None
    sample = _size_cells(plan, ds, doc)
    _build_methods(configs, ds, sample, doc)


def _run_configs(plan: StudyPlan, doc: Located) -> list[tuple[Job, RunConfig]]:
    out = []
    for job in plan.jobs.values():
        cfg = job.spec.get("config")
        if cfg is None:
            continue
        try:
            out.append((job, RunConfig(**cfg)))
        except ValidationError as e:
            raise pydantic_error(e, doc) from None
    return out


def _splits(
    ds: Dataset, val: str, labeled: Labeled | None, unlabeled: str, seed: int
) -> tuple[Splits, tuple[int, int]]:
    """A cell's splits and its (labeled, unlabeled) sizes; a selected labeled set's sizes
    come without selecting."""
    budget = labeled.budget if labeled is not None else None
    cfg = SplitConfig(
        labels_per_class=labeled.labels_per_class if labeled is not None else None,
        labeled_fraction=labeled.labeled_fraction if labeled is not None else None,
        unlabeled="rest" if budget else unlabeled,
        val=val,
        seed=seed,
    )
    sp = make_splits(ds, cfg)
    if budget:
        return sp, selected_sizes(sp, budget, unlabeled)
    return sp, (len(sp.labeled), len(sp.unlabeled))


def _blame(ds: Dataset, val: str, cell: Cell, doc: Located) -> Where:
    """The setting that makes a cell's splits impossible: the validation set if it fails
    alone, else the labeled amount if it fails with every unlabeled image, else the
    unlabeled amount."""
    labeled_at = cell.labeled.where if cell.labeled is not None else None
    stages = ((None, doc.at("val")), (cell.labeled, labeled_at or doc.at("upper_bound")))
    for labeled, where in stages:
        try:
            _splits(ds, val, labeled, "rest", cell.seed)
        except FewlabelsError:
            return where
    return cell.unlabeled_at or labeled_at or doc.at("grid")


def _size_cells(plan: StudyPlan, ds: Dataset, doc: Located) -> ImageSet | None:
    """Set every cell's sizes; the first cell's labeled set (to build networks on)."""
    sizes: dict[tuple, tuple[int, int]] = {}
    sample = None
    for cell in plan.cells:
        key = (cell.labeled, cell.unlabeled, cell.seed)
        if key not in sizes:
            try:
                sp, sizes[key] = _splits(ds, plan.spec.val, *key)
            except FewlabelsError as e:
                where = _blame(ds, plan.spec.val, cell, doc)
                raise where.error(f"cell {cell.id!r} cannot exist: {e}") from None
            sample = sp.labeled if sample is None else sample
        cell.n_labeled, cell.n_unlabeled = sizes[key]
        if cell.uses_unlabeled and cell.n_unlabeled == 0:
            where = cell.unlabeled_at or doc.at("grid", "unlabeled")
            raise where.error(
                f"cell {cell.id!r} cannot exist: {cell.method} trains on unlabeled images "
                "and this cell has none"
            )
    return sample


def _build_methods(
    configs: list[tuple[Job, RunConfig]], ds: Dataset, sample: Any, doc: Located
) -> None:
    """Every method with its options, once, on a network for this data."""
    built: set[str] = set()
    for job, cfg in configs:
        sig = json.dumps([cfg.method, cfg.method_kwargs], sort_keys=True, default=str)
        if sig in built or cfg.method not in METHODS:
            continue
        built.add(sig)
        try:
            net = build_network(cfg, sample, ds.train.num_classes)
            build_method(cfg.method, net, **cfg.method_kwargs)
        except FewlabelsError as e:
            raise (job.where or doc.at("methods")).error(str(e)) from None
