"""The typed objects of a study plan: pipelines, labeled amounts, runs (jobs) and cells.

Every setting a report or a message needs (method, selection strategy, generated-image
ratio, labeled amount, unlabeled amount, seed) is a field; display texts such as a cell's
id or a run's label are built from the fields and never read back. Objects made from the
study file carry the ``Where`` of what they came from, so a check that fails later (when
the data is loaded) still names the file and line.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from fewlabels.study.schema import StudySpec
from fewlabels.study.yamlines import Where

PROBES = ("linear", "knn", "finetune")


def job_key(kind: str, spec: dict[str, Any]) -> str:
    """A run's identity: a hash of its kind and full spec."""
    text = json.dumps({"kind": kind, "spec": spec}, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def method_name(name: str, synthetic: float = 0.0, strategy: str | None = None) -> str:
    """A cell's method as the report shows it: the entry's name, its generated-image ratio
    and its selection strategy (``simclr+linear +0.5x generated [typiclust]``)."""
    text = f"{name} +{synthetic:g}x generated" if synthetic else name
    return f"{text} [{strategy}]" if strategy else text


@dataclass(frozen=True)
class Labeled:
    """A labeled amount of the grid: ``axis`` (labels_per_class, labeled_fraction or
    budgets: labels in all, picked by a selection strategy) and its value."""

    axis: str
    value: Any
    where: Where | None = field(default=None, compare=False, repr=False)

    @property
    def labels_per_class(self) -> int | None:
        return int(self.value) if self.axis == "labels_per_class" else None

    @property
    def labeled_fraction(self) -> float | None:
        return float(self.value) if self.axis == "labeled_fraction" else None

    @property
    def budget(self) -> int | None:
        return int(self.value) if self.axis == "budgets" else None

    @property
    def text(self) -> str:
        """``4/class``, ``10%`` or ``40 labels``."""
        if self.axis == "budgets":
            return f"{self.budget} labels"
        if self.axis == "labels_per_class":
            return f"{self.labels_per_class}/class"
        return f"{100 * float(self.value):g}%"


@dataclass(frozen=True)
class Pipeline:
    """A validated method entry: ``first`` trained on a cell's data, then ``then`` (a probe
    protocol, a method started from ``first``'s weights, or nothing)."""

    name: str
    first: str
    then: str | None
    budget: str
    then_budget: str
    kwargs: dict[str, Any]
    then_kwargs: dict[str, Any]
    settings: dict[str, Any]
    where: Where
    synthetic: float = 0.0  # generated images added to the pretraining pool (x the pool)
    # training settings of ``then``'s run only, over ``settings`` (a tuning trial's)
    then_settings: dict[str, Any] = field(default_factory=dict)

    @property
    def kind(self) -> str:
        """train, pretrain+probe or pretrain+semi."""
        if self.then is None:
            return "train"
        return "pretrain+probe" if self.then in PROBES else "pretrain+semi"


@dataclass(frozen=True)
class Point:
    """A point of the grid: labeled amount (None: all labels), selection strategy,
    unlabeled amount and seed."""

    labeled: Labeled | None
    strategy: str | None
    unlabeled: str
    seed: int
    unlabeled_at: Where | None = field(default=None, compare=False, repr=False)

    @property
    def tag(self) -> str:
        lab = f"{self.labeled.axis.split('_')[0]}={self.labeled.value}" if self.labeled else ""
        return f"{lab} unl={self.unlabeled} seed={self.seed}"


@dataclass(frozen=True)
class Grid:
    """The grid's axes, validated, each value with where it was written."""

    labeled: list[Labeled]
    strategies: list[str | None]
    unlabeled: list[tuple[str, Where]]
    seeds: list[int]


@dataclass(frozen=True)
class Job:
    """One run in the store: ``kind`` train, probe or generate, its spec, the runs it needs.

    ``stage`` (generate, pretrain, train, probe, all_labels), ``name`` (the pipeline's
    name, or the pretrained method), ``point`` and ``synthetic`` say what it is;
    ``where`` is the method entry it comes from.
    """

    key: str
    kind: str
    spec: dict[str, Any]
    deps: tuple[str, ...] = ()
    stage: str = "train"
    name: str = ""
    point: Point | None = None
    synthetic: float = 0.0
    where: Where | None = field(default=None, compare=False, repr=False)
    trial: str = ""  # a tuning trial's settings, for progress lines

    @property
    def strategy(self) -> str | None:
        return self.point.strategy if self.point else None

    @property
    def label(self) -> str:
        """How progress lines name the run."""
        if self.stage == "generate":
            return "generate images"
        seed = self.point.seed if self.point else 0
        if self.stage == "all_labels":
            return f"all labels seed={seed}"
        tag = self.point.tag if self.point else ""
        trial = f" [trial {self.trial}]" if self.trial else ""
        if self.stage == "pretrain":
            syn = f" +{self.synthetic:g}x generated" if self.synthetic else ""
            return f"pretrain {self.name} {tag}{syn}{trial}"
        return f"{method_name(self.name, self.synthetic, self.strategy)} {tag}{trial}"


@dataclass
class Cell:
    """One point of the comparison and the runs that fill it (``run_key`` gives the result).

    ``name`` is the method entry's name; ``method`` adds the generated-image ratio and the
    selection strategy for display. ``pretrain``/``then`` are set for pretrain pipelines.
    """

    name: str
    pipeline: str
    labeled: Labeled | None
    unlabeled: str
    seed: int
    role: str
    run_key: str
    job_keys: list[str]
    n_labeled: int = 0
    n_unlabeled: int = 0
    uses_unlabeled: bool = True
    strategy: str | None = None
    synthetic: float = 0.0
    pretrain: str | None = None
    then: str | None = None
    unlabeled_at: Where | None = field(default=None, compare=False, repr=False)
    # with ``tune``: each trial's settings, result run and runs (``tuning.trial_info``)
    trials: list[dict[str, Any]] = field(default_factory=list)

    @property
    def method(self) -> str:
        return method_name(self.name, self.synthetic, self.strategy)

    @property
    def id(self) -> str:
        if self.labeled is None:
            return f"all labels | seed={self.seed}"
        lab = f"{self.labeled.axis}={self.labeled.value}"
        return f"{self.method} | {lab} | unlabeled={self.unlabeled} | seed={self.seed}"

    @property
    def labels_per_class(self) -> int | None:
        return self.labeled.labels_per_class if self.labeled else None

    @property
    def labeled_fraction(self) -> float | None:
        return self.labeled.labeled_fraction if self.labeled else None

    @property
    def budget_labels(self) -> int | None:
        return self.labeled.budget if self.labeled else None

    @property
    def labels(self) -> str:
        return self.labeled.text if self.labeled else "all"

    def info(self) -> dict[str, Any]:
        """What the store keeps of the cell (besides its id, run and runs)."""
        return {
            "id": self.id,
            "method": self.method,
            "base_method": self.name,
            "pipeline": self.pipeline,
            "labels_per_class": self.labels_per_class,
            "labeled_fraction": self.labeled_fraction,
            "budget_labels": self.budget_labels,
            "labels": self.labels,
            "unlabeled": self.unlabeled,
            "seed": self.seed,
            "role": self.role,
            "n_labeled": self.n_labeled,
            "n_unlabeled": self.n_unlabeled,
            "uses_unlabeled": self.uses_unlabeled,
            "strategy": self.strategy,
            "synthetic": self.synthetic,
            "pretrain": self.pretrain,
            "then": self.then,
            **({"trials": self.trials} if self.trials else {}),
        }


@dataclass
class StudyPlan:
    """A validated study: its cells and the runs (in claim order) that fill them."""

    name: str
    source: str
    text: str
    spec: StudySpec
    cells: list[Cell] = field(default_factory=list)
    jobs: dict[str, Job] = field(default_factory=dict)
