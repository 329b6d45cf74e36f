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
"""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fewlabels.core.budget import Budget
from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.study.yamlines import LineDict, LineList, decode_text, line_of, load_yaml_lines

PROBES = ("linear", "knn", "finetune")


class MethodEntry(BaseModel):
    """One line of the comparison: ``train: M`` or ``pretrain: X`` + ``then: ...``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    train: str | None = None
    pretrain: str | None = None
    then: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    then_kwargs: dict[str, Any] = Field(default_factory=dict)
    budget: str | None = None
    then_budget: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list) or v is None else [v]


class GridSpec(BaseModel):
    """The axes of the grid: labeled amounts, unlabeled amounts and seeds."""

    model_config = ConfigDict(extra="forbid")

    labels_per_class: list[int] | None = None
    labeled_fraction: list[float] | None = None
    # labeling budgets (labels in all) whose labeled set a selection strategy picks
    budgets: list[int] | None = None
    strategies: list[str] | None = None
    unlabeled: list[str] = Field(default_factory=lambda: ["rest"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    # generated images added to the pretraining pool, as a multiple of the real pool
    synthetic: list[float] = Field(default_factory=lambda: [0.0])

    _lists = field_validator(
        "labels_per_class",
        "labeled_fraction",
        "budgets",
        "strategies",
        "seeds",
        "synthetic",
        mode="before",
    )(_as_list)

    @field_validator("unlabeled", mode="before")
    @classmethod
    def _unl(cls, v: Any) -> Any:
        v = _as_list(v)
        if isinstance(v, list):
            return [str(x).strip() if isinstance(x, (str, int, float)) else x for x in v]
        return v


class ReportSpec(BaseModel):
    """What the report shows beyond the fixed figures."""

    model_config = ConfigDict(extra="forbid")

    accuracies: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.9])
    tsne: bool = True
    tsne_points: int = 1000


class StudySpec(BaseModel):
    """The whole study file."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    data: str = "digits"
    test: str | None = None
    val: str = "train:0.1"
    backbone: str = "convnet"
    stem: str = "auto"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    budget: str = "1m"
    train: dict[str, Any] = Field(default_factory=dict)
    grid: GridSpec
    methods: list[MethodEntry] = Field(min_length=1)
    upper_bound: bool = True
    device: str = "auto"
    # features for grid.strategies: this encoder; default: the cell's own pretraining, if
    # it has one, else raw pixels
    select_encoder: str | None = None
    # GAN settings (fewlabels.generate.GANConfig) for grid.synthetic
    generate: dict[str, Any] = Field(default_factory=dict)
    report: ReportSpec = Field(default_factory=ReportSpec)


@dataclass(frozen=True)
class Job:
    """One run in the store: ``kind`` train or probe, its spec, the runs it needs."""

    key: str
    kind: str
    spec: dict[str, Any]
    deps: tuple[str, ...]
    label: str


@dataclass
class Cell:
    """One point of the comparison and the runs that fill it (``run_key`` gives the result)."""

    id: str
    method: str
    pipeline: str
    labels_per_class: int | None
    labeled_fraction: float | None
    unlabeled: str
    seed: int
    role: str
    run_key: str
    job_keys: list[str]
    n_labeled: int = 0
    n_unlabeled: int = 0
    uses_unlabeled: bool = True
    strategy: str | None = None
    budget_labels: int | None = None
    synthetic: float = 0.0

    @property
    def labels(self) -> str:
        if self.budget_labels is not None:
            return f"{self.budget_labels} labels"
        if self.labels_per_class is not None:
            return f"{self.labels_per_class}/class"
        if self.labeled_fraction is not None:
            return f"{100 * self.labeled_fraction:g}%"
        return "all"

    def info(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("run_key", "job_keys")}


@dataclass
class StudyPlan:
    """A validated study: its cells and the runs (in claim order) that fill them."""

    name: str
    source: str
    text: str
    spec: StudySpec
    cells: list[Cell] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)


def known_methods() -> dict[str, bool]:
    """Registered method names -> whether the method trains on unlabeled images."""
    from fewlabels.methods import METHODS

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


def job_key(kind: str, spec: dict[str, Any]) -> str:
    """A run's identity: a hash of its kind and full spec."""
    text = json.dumps({"kind": kind, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _pydantic_error(e: ValidationError, raw: Any, source: str, prefix: tuple = ()) -> ConfigError:
    err = e.errors()[0]
    loc = (*prefix, *err.get("loc", ()))
    if err["type"] == "extra_forbidden":
        where = f" in {'.'.join(map(str, loc[:-1]))}" if len(loc) > 1 else ""
        return ConfigError(f"{source} line {line_of(raw, loc)}: unknown key {loc[-1]!r}{where}")
    if err["type"] == "missing":
        return ConfigError(f"{source} line {line_of(raw, loc[:-1])}: missing key {loc[-1]!r}")
    what = ".".join(map(str, loc)) or "study"
    return ConfigError(f"{source} line {line_of(raw, loc)}: {what}: {err.get('msg', '')}")


def _normalise(raw: Any, source: str) -> None:
    """Method shorthand: a plain string ``M`` in ``methods`` means ``{train: M}``."""
    methods = raw.get("methods") if isinstance(raw, dict) else None
    if isinstance(methods, LineList):
        for i, m in enumerate(methods):
            if isinstance(m, str):
                d = LineDict(train=m)
                d.line, d.lines = methods.lines[i], {"train": methods.lines[i]}
                methods[i] = d


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
    _normalise(raw, source)
    try:
        spec = StudySpec.model_validate(raw)
    except ValidationError as e:
        raise _pydantic_error(e, raw, source) from None
    name = spec.name or Path(source).stem
    if not name.strip() or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise ConfigError(
            f"{source} line {line_of(raw, ('name',))}: name {name[:60]!r} must be a plain "
            "folder name (no slashes)"
        )
    plan = StudyPlan(name, source, text, spec)
    _expand(plan, raw)
    if check_data:
        _check_cells(plan, raw)
    return plan


def _expand(plan: StudyPlan, raw: Any) -> None:
    spec, source = plan.spec, plan.source

    def fail(loc: tuple, msg: str) -> ConfigError:
        return ConfigError(f"{source} line {line_of(raw, loc)}: {msg}")

    def budget(text: str, loc: tuple) -> str:
        try:
            Budget.parse(text)
        except FewlabelsError as e:
            raise fail(loc, str(e)) from None
        return text

    budget(spec.budget, ("budget",))
    for key in ("budget", "seed"):
        if key in spec.train:
            raise fail(
                ("train", key), f"set {key!r} with the study's 'budget' and 'grid.seeds' keys"
            )
    methods = known_methods()
    choose = ", ".join(sorted(methods))
    g = spec.grid
    if sum(v is not None for v in (g.labels_per_class, g.labeled_fraction, g.budgets)) != 1:
        raise fail(("grid",), "grid needs one of labels_per_class, labeled_fraction or budgets")
    lab_key, lab_values = _lab_axis(g)
    strategies = _strategies(g, fail)
    if not lab_values or not g.unlabeled or not g.seeds:
        raise fail(("grid",), "every grid axis needs at least one value")
    for i, v in enumerate(lab_values):
        if not v > 0 or (lab_key == "labeled_fraction" and v > 1):
            raise fail(("grid", lab_key, i), f"{lab_key} {v} cannot exist")
    for i, s in enumerate(g.seeds):
        if s < 0 or s >= 2**63:
            raise fail(("grid", "seeds", i), f"seed {s} must be from 0 to 2**63-1")

    def check_method(name: str, loc: tuple) -> str:
        if name.lower() not in methods:
            raise fail(loc, f"unknown method {name!r}; choose from {choose}")
        return name.lower()

    entries = []
    labels_seen: dict[str, int] = {}
    for i, m in enumerate(spec.methods):
        at = ("methods", i)
        if (m.train is None) == (m.pretrain is None):
            raise fail(at, "a method entry needs 'train: METHOD' or 'pretrain: METHOD'")
        if m.train is not None and (m.then is not None or m.then_kwargs or m.then_budget):
            raise fail((*at, "then"), "'then' goes with 'pretrain', not with 'train'")
        if m.pretrain is not None and m.then is None:
            raise fail(at, f"'pretrain' needs 'then': one of {', '.join(PROBES)} or a method")
        first = check_method(m.train or m.pretrain or "", (*at, "train" if m.train else "pretrain"))
        then = None
        if m.then is not None:
            then = (
                m.then.lower() if m.then.lower() in PROBES else check_method(m.then, (*at, "then"))
            )
        b = budget(m.budget or spec.budget, (*at, "budget") if m.budget else ("budget",))
        tb = budget(
            m.then_budget or spec.budget, (*at, "then_budget") if m.then_budget else ("budget",)
        )
        label = m.name or (first if then is None else f"{first}+{then}")
        if label in labels_seen:
            raise fail(at, f"two methods are named {label!r}; give one a 'name'")
        labels_seen[label] = i
        entries.append((i, m, label, first, then, b, tb))
    synthetic_of = _synthetic_entries(entries, spec, fail)

    def run_config(
        method: str,
        kwargs: dict,
        budget_: str,
        settings: dict,
        lab: Any,
        unl: str,
        seed: int,
        strat: str | None = None,
    ) -> dict[str, Any]:
        sel = {"strategy": strat, "budget": lab, "encoder": spec.select_encoder}
        return {
            **({"select": sel} if strat else {}),
            "data": spec.data,
            "test": spec.test,
            "labels_per_class": lab if lab_key == "labels_per_class" else None,
            "labeled_fraction": lab if lab_key == "labeled_fraction" else None,
            "unlabeled": unl,
            "val": spec.val,
            "backbone": spec.backbone,
            "stem": spec.stem,
            "backbone_kwargs": dict(spec.backbone_kwargs),
            "method": method,
            "method_kwargs": dict(kwargs),
            "train": {**spec.train, **settings, "budget": budget_, "seed": seed},
            "device": spec.device,
        }

    def add(kind: str, spec_: dict[str, Any], deps: tuple[str, ...], label: str) -> str:
        try:  # the store keeps specs as JSON: refuse dates, mixed-type keys, ...
            json.dumps(spec_, sort_keys=True)
        except (TypeError, ValueError) as e:
            raise ConfigError(
                f"{source}: {label}: settings must be plain values (strings, numbers, lists, "
                f"mappings with string keys): {e}"
            ) from None
        key = job_key(kind, spec_)
        plan.jobs.setdefault(key, Job(key, kind, spec_, deps, label))
        return key

    def add_cell(cell: Cell) -> None:
        if all(c.id != cell.id for c in plan.cells):
            plan.cells.append(cell)

    gkey = ""
    if synthetic_of:  # one GAN for the whole study, trained on the study's data
        gen = {"data": spec.data, "device": spec.device, "gan": dict(spec.generate)}
        gkey = add("generate", {"generate": gen}, (), "generate images")
    for lab, strat in itertools.product(lab_values, strategies):
        for unl_text in g.unlabeled:
            for seed in g.seeds:
                for _i, m, label0, first, then, b, tb in entries:
                    label = f"{label0} [{strat}]" if strat else label0
                    syn = synthetic_of.get(label0, 0.0)
                    uses = methods[first] if then is None else True
                    unl = unl_text if uses else "0"
                    tag = f"{lab_key.split('_')[0]}={lab} unl={unl} seed={seed}"
                    lab_args = (lab, unl, seed)
                    # a strategy's features: select_encoder, else the cell's pretraining
                    enc_from = bool(strat and then is not None and spec.select_encoder is None)
                    if then is None:
                        cfg = run_config(first, m.kwargs, b, m.settings, *lab_args, strat)
                        key = add("train", {"config": cfg}, (), f"{label} {tag}")
                        keys, pipeline = [key], "train"
                    else:
                        pre = run_config(first, m.kwargs, b, m.settings, *lab_args)
                        if syn:  # the GAN's images join the pool; the compute stays the same
                            pre["extra_unlabeled_ratio"] = syn
                        pkey = add(
                            "train",
                            {"config": pre, "synthetic_from": gkey} if syn else {"config": pre},
                            (gkey,) if syn else (),
                            f"pretrain {first} {tag}" + (f" +{syn:g}x generated" if syn else ""),
                        )
                        if then in PROBES:
                            probe = {
                                "data": spec.data,
                                "test": spec.test,
                                "labels_per_class": pre["labels_per_class"],
                                "labeled_fraction": pre["labeled_fraction"],
                                "val": spec.val,
                                "protocol": then,
                                "budget": tb,
                                "seed": seed,
                                "device": spec.device,
                                **m.then_kwargs,
                            }
                            if strat:
                                probe["select"] = {
                                    "strategy": strat,
                                    "budget": lab,
                                    "encoder": spec.select_encoder,
                                }
                            spec_ = {"probe": probe, "checkpoint_from": pkey}
                            if enc_from:
                                spec_["select_encoder_from"] = pkey
                            key = add("probe", spec_, (pkey,), f"{label} {tag}")
                            pipeline = "pretrain+probe"
                        else:
                            cfg = run_config(then, m.then_kwargs, tb, m.settings, *lab_args, strat)
                            spec_ = {"config": cfg, "init_from": pkey}
                            if enc_from:
                                spec_["select_encoder_from"] = pkey
                            key = add("train", spec_, (pkey,), f"{label} {tag}")
                            pipeline = "pretrain+semi"
                        keys = [gkey, pkey, key] if syn else [pkey, key]
                    cid = f"{label} | {lab_key}={lab} | unlabeled={unl} | seed={seed}"
                    add_cell(
                        Cell(
                            cid,
                            label,
                            pipeline,
                            *_lab(lab_key, lab),
                            unl,
                            seed,
                            "grid",
                            keys[-1],
                            keys,
                            uses_unlabeled=uses,
                            strategy=strat,
                            budget_labels=int(lab) if lab_key == "budgets" else None,
                            synthetic=syn,
                        )
                    )
    if spec.upper_bound:
        sup = next((e for e in entries if e[3] == "supervised" and e[4] is None), None)
        kwargs = sup[1].kwargs if sup else {}
        settings = sup[1].settings if sup else {}
        for seed in g.seeds:
            cfg = run_config("supervised", kwargs, spec.budget, settings, None, "0", seed)
            cfg["labels_per_class"] = cfg["labeled_fraction"] = None
            key = add("train", {"config": cfg}, (), f"all labels seed={seed}")
            add_cell(
                Cell(
                    f"all labels | seed={seed}",
                    "supervised (all labels)",
                    "train",
                    None,
                    None,
                    "0",
                    seed,
                    "upper_bound",
                    key,
                    [key],
                    uses_unlabeled=False,
                )
            )
    # pretrainings first, so the runs that need them are unblocked early
    needed = {d for j in plan.jobs.values() for d in j.deps}
    order = sorted(plan.jobs.values(), key=lambda j: j.key not in needed)
    plan.jobs = {j.key: j for j in order}


def synthetic_label(label: str, ratio: float) -> str:
    """The method name of a pipeline whose pretraining pool has ``ratio`` x generated images."""
    return f"{label} +{ratio:g}x generated"


def _synthetic_entries(entries: list, spec: StudySpec, fail: Any) -> dict[str, float]:
    """Add a copy of every ``pretrain`` entry per ratio > 0 of ``grid.synthetic`` (in place);
    returns new label -> ratio. Ratio 0 is the entry itself, always kept as the baseline."""
    ratios = spec.grid.synthetic
    for i, r in enumerate(ratios):
        if not 0 <= r <= 1:
            raise fail(("grid", "synthetic", i), f"synthetic {r} must be from 0 to 1 (x the pool)")
    if not any(r > 0 for r in ratios):
        if spec.generate:
            raise fail(("generate",), "'generate' settings go with a grid.synthetic ratio > 0")
        return {}
    from fewlabels.generate.train import GANConfig

    try:
        GANConfig(**spec.generate)
    except ValidationError as e:
        err = e.errors()[0]
        where = ".".join(str(p) for p in err.get("loc", ())) or "generate"
        raise fail(("generate",), f"generate.{where}: {err.get('msg', '')}") from None
    except FewlabelsError as e:
        raise fail(("generate",), str(e)) from None
    pre = [e for e in entries if e[4] is not None]
    if not pre:
        raise fail(("grid", "synthetic"), "synthetic images need a 'pretrain:' method entry")
    out: dict[str, float] = {}
    for i, m, label, first, then, b, tb in pre:
        if Budget.parse(b).kind == "epochs":
            raise fail(
                ("methods", i),
                f"{label}: synthetic images at fixed compute need a budget in steps, images "
                "(e.g. 200kimg) or time, not epochs (more images would mean more steps)",
            )
        for r in sorted({r for r in ratios if r > 0}):
            new = synthetic_label(label, r)
            out[new] = r
            entries.append((i, m, new, first, then, b, tb))
    return out


def _lab(lab_key: str, lab: Any) -> tuple[int | None, float | None]:
    if lab_key == "budgets":
        return None, None
    return (int(lab), None) if lab_key == "labels_per_class" else (None, float(lab))


def _lab_axis(g: GridSpec) -> tuple[str, list[Any]]:
    """The labeled-amount axis: its key and values."""
    for key in ("labels_per_class", "labeled_fraction", "budgets"):
        if getattr(g, key) is not None:
            return key, list(getattr(g, key))
    return "labels_per_class", []


def _strategies(g: GridSpec, fail: Any) -> list[str | None]:
    """The selection strategies of a ``budgets`` grid (default random); [None] otherwise."""
    from fewlabels.select.simulate import SelectConfig, check_select

    if g.budgets is None:
        if g.strategies is not None:
            raise fail(("grid", "strategies"), "strategies go with a 'budgets' axis")
        return [None]
    out: list[str | None] = []
    for i, name in enumerate(g.strategies or ["random"]):
        try:
            cfg = SelectConfig(strategy=str(name), budget=1)
            check_select(cfg)
            from fewlabels.select import strategy

            out.append(strategy(cfg.strategy).name)
        except FewlabelsError as e:
            raise fail(("grid", "strategies", i), str(e)) from None
    return out


def _check_cells(plan: StudyPlan, raw: Any) -> None:
    """Build every cell's splits and every method once, so no run fails on bad input."""
    from fewlabels.data import SplitConfig, make_splits
    from fewlabels.methods import METHODS, build_method
    from fewlabels.train.run import RunConfig, build_network, prepare_data

    spec, source = plan.spec, plan.source
    g = spec.grid
    lab_key, lab_values = _lab_axis(g)
    configs: list[RunConfig] = []
    for job in plan.jobs.values():
        cfg = job.spec.get("config")
        if cfg is None:
            continue
        try:
            configs.append(RunConfig(**cfg))
        except ValidationError as e:
            raise _pydantic_error(e, raw, source) from None
    try:
        ds, _ = prepare_data(RunConfig(data=spec.data, test=spec.test, val="none"))
    except FewlabelsError as e:
        raise ConfigError(f"{source} line {line_of(raw, ('data',))}: {e}") from None
    if any(j.kind == "generate" for j in plan.jobs.values()):  # images the GAN can learn
        from fewlabels.generate.gan import check_size

        h, w = ds.train.image_size
        try:
            check_size(h if h == w else 0)
        except FewlabelsError as e:
            loc = ("grid", "synthetic")
            raise ConfigError(f"{source} line {line_of(raw, loc)}: {w}x{h} images: {e}") from None
    sizes: dict[tuple, tuple[int, int]] = {}
    for cell in plan.cells:
        key = (
            cell.labels_per_class,
            cell.labeled_fraction,
            cell.budget_labels,
            cell.unlabeled,
            cell.seed,
        )
        if key not in sizes:
            try:
                sp = make_splits(
                    ds,
                    SplitConfig(
                        labels_per_class=cell.labels_per_class,
                        labeled_fraction=cell.labeled_fraction,
                        unlabeled="rest" if cell.budget_labels else cell.unlabeled,
                        val=spec.val,
                        seed=cell.seed,
                    ),
                )
                if cell.budget_labels:  # a selected labeled set: sizes without selecting
                    from fewlabels.select.simulate import selected_sizes

                    n = selected_sizes(sp, cell.budget_labels, cell.unlabeled)
                    sizes[key] = n
            except FewlabelsError as e:
                if "unlabeled" in str(e) and cell.unlabeled in g.unlabeled:
                    loc: tuple = ("grid", "unlabeled", g.unlabeled.index(cell.unlabeled))
                elif "val" in str(e).split()[:1]:
                    loc = ("val",)
                else:
                    value = cell.labels_per_class or cell.labeled_fraction or cell.budget_labels
                    idx = lab_values.index(value) if value in lab_values else None
                    loc = ("grid", lab_key) + ((idx,) if idx is not None else ())
                raise ConfigError(
                    f"{source} line {line_of(raw, loc)}: cell {cell.id!r} cannot exist: {e}"
                ) from None
            sizes.setdefault(key, (len(sp.labeled), len(sp.unlabeled)))
            if len(sizes) == 1:
                first_labeled = sp.labeled
        cell.n_labeled, cell.n_unlabeled = sizes[key]
        if cell.uses_unlabeled and cell.n_unlabeled == 0:
            loc = ("grid", "unlabeled", g.unlabeled.index(cell.unlabeled))
            raise ConfigError(
                f"{source} line {line_of(raw, loc)}: cell {cell.id!r} cannot exist: "
                f"{cell.method} trains on unlabeled images and this cell has none"
            )
    # every method with its options, once, on a network for this data
    built: set[str] = set()
    for cfg in configs:
        sig = json.dumps([cfg.method, cfg.method_kwargs], sort_keys=True, default=str)
        if sig in built or cfg.method not in METHODS:
            continue
        built.add(sig)
        try:
            net = build_network(cfg, first_labeled, ds.train.num_classes)
            build_method(cfg.method, net, **cfg.method_kwargs)
        except FewlabelsError as e:
            idx = next(
                (
                    i
                    for i, m in enumerate(spec.methods)
                    if cfg.method in (m.train, m.pretrain, m.then)
                ),
                None,
            )
            loc = ("methods", idx) if idx is not None else ("methods",)
            raise ConfigError(f"{source} line {line_of(raw, loc)}: {e}") from None
