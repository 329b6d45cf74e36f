"""Equal tuning (``tune: N``): every method of a study, the supervised baseline included,
gets the same N trials of a small search around its resolved settings.

A trial is a full run (or pipeline) with the study's budget, a job in the store like any
other (its key holds its settings, so trials resume and run in parallel). Trial 0 is the
resolved settings themselves, spelled as the untuned study spells them (same runs, shared
with a study without ``tune``); the others move one setting at a time first, then two.
The report uses, for each cell, the trial with the best validation accuracy at the end of
its run (``results.chosen_trial``): the test set chooses nothing.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import Any

from fewlabels.core.budget import Budget
from fewlabels.core.errors import FewlabelsError
from fewlabels.data.splits import parse_val
from fewlabels.methods import METHODS
from fewlabels.study.plan import PROBES, Job, Pipeline, StudyPlan
from fewlabels.study.results import settings_text
from fewlabels.study.schema import StudySpec
from fewlabels.study.yamlines import Located


@dataclass(frozen=True)
class Knob:
    """A setting searched around its resolved value ``v``: ``v * f`` for each factor
    (``mode="x"``), or ``1 - (1 - v) * f`` (``mode="1-x"``: a confidence threshold moves its
    distance to 1, so it stays in (0, 1]). The first factor, 1, is the resolved value."""

    name: str  # train.NAME or method.NAME
    factors: tuple[float, ...]
    mode: str = "x"

    def value(self, resolved: float, f: float) -> float:
        v = resolved * f if self.mode == "x" else 1 - (1 - resolved) * f
        return float(f"{v:.6g}")

    def text(self) -> str:
        what = "x" if self.mode == "x" else "(1 - value) x"
        return f"{self.name} {what}{{{', '.join(f'{f:g}' for f in self.factors)}}}"


LR = Knob("train.lr", (1, 0.3, 3))
WEIGHT_DECAY = Knob("train.weight_decay", (1, 0.3, 3))
LAMBDA_U = Knob("method.lambda_u", (1, 0.5, 2))
THRESHOLD = Knob("method.threshold", (1, 2, 0.5), "1-x")
TEMPERATURE = Knob("method.temperature", (1, 0.5, 2))

# The search space of each kind of method: the settings a practitioner of that kind turns
# first, each a factor of about 3 (or 2) either side of its resolved value.
# - lr, for every kind: the setting most often wrong on new data; x{0.3, 1, 3} spans a decade.
# - weight_decay (supervised; self-supervised methods without a temperature): with few
#   labels, the regulariser that matters most.
# - lambda_u and threshold (semi-supervised): how much the method trusts its own
#   pseudo-labels, the two settings its papers tune.
# - temperature (contrastive self-supervised): how hard the negatives weigh.
# A knob the method does not have is left out. Every kind keeps at least 9 points, so all
# methods of a study can take the same number of trials.
SPACE: dict[str, tuple[Knob, ...]] = {
    "supervised": (LR, WEIGHT_DECAY),
    "semi-supervised": (LR, LAMBDA_U, THRESHOLD),
    "self-supervised": (LR, TEMPERATURE, WEIGHT_DECAY),
}


@dataclass(frozen=True)
class Trial:
    """Trial ``index`` of a pipeline: the values it sets (none for trial 0, the resolved
    settings) and the pipeline that runs them."""

    index: int
    settings: dict[str, float]
    pipeline: Pipeline


def tuned_method(p: Pipeline) -> str:
    """The method a pipeline's trials search around: the trained one, the pretraining
    before a probe, or the method trained after a pretraining."""
    return p.first if p.then is None or p.then in PROBES else p.then


def space(p: Pipeline) -> tuple[Knob, ...]:
    """The knobs of ``p``'s tuned method: its kind's row of ``SPACE``, less the method
    options it does not have."""
    cls = METHODS.get(tuned_method(p))
    kind = getattr(cls, "kind", "supervised") if cls is not None else "supervised"
    fields = cls.Config.model_fields if cls is not None else {}
    knobs = SPACE.get(kind, SPACE["supervised"])
    return tuple(k for k in knobs if k.name.startswith("train.") or k.name[7:] in fields)


def space_text(p: Pipeline) -> str:
    """``train.lr x{1, 0.3, 3}, train.weight_decay x{1, 0.3, 3}``."""
    return ", ".join(k.text() for k in space(p))


def points(knobs: tuple[Knob, ...]) -> list[tuple[int, ...]]:
    """Every point of the grid of factors (as indices), fewest settings moved first."""
    grid = itertools.product(*(range(len(k.factors)) for k in knobs))

    def order(idx: tuple[int, ...]) -> tuple:  # fewest moved, then earlier knobs first
        moved = tuple(j for j, i in enumerate(idx) if i)
        return (len(moved), moved, tuple(i for i in idx if i))

    return sorted(grid, key=order)


def _resolved(p: Pipeline, knobs: tuple[Knob, ...]) -> dict[str, float]:
    """The value each knob searches around: 1 for a training setting (its trials are factors
    on the value the run's rules give its data, ``train.scale``), the option's value for a
    method's option."""
    first = tuned_method(p) == p.first
    kwargs = p.kwargs if first else p.then_kwargs
    cls = METHODS.get(tuned_method(p))
    try:
        options = cls.Config.build(tuned_method(p), None, kwargs) if cls is not None else None
    except FewlabelsError as e:
        raise p.where.error(str(e)) from None
    return {
        k.name: 1.0 if k.name.startswith("train.") else float(getattr(options, k.name[7:]))
        for k in knobs
    }


def _apply(p: Pipeline, values: dict[str, float]) -> Pipeline:
    """``p`` with a trial's values set on its tuned method (training settings as factors
    in ``train.scale``)."""
    scale = {k[6:]: v for k, v in values.items() if k.startswith("train.")}
    method = {k[7:]: v for k, v in values.items() if k.startswith("method.")}
    first = tuned_method(p) == p.first
    settings = p.settings if first else p.then_settings
    if scale:
        settings = {**settings, "scale": {**settings.get("scale", {}), **scale}}
    if first:
        return replace(p, settings=settings, kwargs={**p.kwargs, **method})
    return replace(p, then_settings=settings, then_kwargs={**p.then_kwargs, **method})


def trials(spec: StudySpec, p: Pipeline, n: int) -> list[Trial]:
    """The first ``n`` trials of ``p`` (``n`` <= the size of its space; 0 means none)."""
    if n <= 0:
        return []
    knobs = space(p)
    base = _resolved(p, knobs)
    out = []
    for i, idx in enumerate(points(knobs)[:n]):
        values = {
            k.name: k.value(base[k.name], k.factors[j]) for k, j in zip(knobs, idx, strict=True)
        }
        moved = {name: v for (name, v), j in zip(values.items(), idx, strict=True) if j}
        out.append(Trial(i, moved, p if i == 0 else _apply(p, moved)))
    return out


def check_tuning(spec: StudySpec, pipelines: list[Pipeline], doc: Located) -> None:
    """``tune`` needs a validation split and no more trials than any method's space has."""
    if not spec.tune:
        return
    if parse_val(spec.val)[0] == "none":
        raise doc.at("tune").error(
            f"tune: {spec.tune} chooses each method's settings on the validation split, "
            "and val is none; give val (e.g. train:0.1)"
        )
    for p in pipelines:
        size = len(points(space(p)))
        if spec.tune > size:
            raise doc.at("tune").error(
                f"tune: {spec.tune} is more trials than {p.name}'s search space has "
                f"({size}: {space_text(p)})"
            )


def _budgets(job: Job) -> list[str]:
    """The compute budgets a run spends: a training's, a fine-tuning probe's."""
    if job.kind == "train":
        return [str(job.spec["config"]["train"]["budget"])]
    probe = job.spec.get("probe") or {}
    if job.kind == "probe" and probe.get("protocol") == "finetune" and probe.get("budget"):
        return [str(probe["budget"])]
    return []


def check_compute(plan: StudyPlan, doc: Located) -> None:
    """The study's runs (every trial counted) must fit ``max_compute``, if it is given:
    ``tune`` x the runs' budgets x the cells, in the unit of ``max_compute``."""
    spec = plan.spec
    if spec.max_compute is None:
        return
    where = doc.at("max_compute")
    try:
        cap = Budget.parse(spec.max_compute)
    except FewlabelsError as e:
        raise where.error(str(e)) from None
    total = 0.0
    for job in plan.jobs.values():
        for text in _budgets(job):
            b = Budget.parse(text)
            if b.kind != cap.kind:
                raise where.error(
                    f"max_compute {cap} counts {cap.kind}, but {job.label.strip()} has budget "
                    f"{b} ({b.kind}); give max_compute in the unit of the budgets"
                )
            total += b.amount
    if total > cap.amount:
        need = Budget(cap.kind, total)
        trials = f"tune: {spec.tune} trials of each run, " if spec.tune else ""
        raise (doc.at("tune") if spec.tune else where).error(
            f"{trials}{len(plan.cells)} cells: the study needs {need} of compute in all, more "
            f"than max_compute {cap}; lower tune, the budgets or the grid"
        )


def settings_label(settings: dict[str, float]) -> str:
    """A trial's values as ``train.lr x0.3 method.lambda_u=0.5`` (``resolved settings`` for
    trial 0)."""
    return settings_text(settings) or "resolved settings"


def trial_info(t: Trial, run_key: str, job_keys: list[str], p: Pipeline) -> dict[str, Any]:
    """What a cell keeps of one trial."""
    return {
        "index": t.index,
        "settings": dict(t.settings),
        "run_key": run_key,
        "job_keys": list(job_keys),
        "space": space_text(p),
    }
