"""Teacher-student pseudo-labelling and iterative self-training (reports 000, 002, 003).

Round 0 trains a teacher on the labeled images with the supervised method. Round r >= 1
labels the whole unlabeled pool with round r-1's model, keeps the predictions whose
softmax confidence is at least ``threshold`` and trains a student on the labeled images
plus those pseudo-labeled ones (each round re-labels the whole pool with its newest
model). ``rounds`` students are trained; the last one is the run's model.

Each round is an ordinary run (``run_single`` with the supervised method) in
``out/round_r``, so it checkpoints and resumes on its own; a finished round leaves
``round.json`` and is skipped on a rerun. The run folder gets the final student's
``model.pt``, ``metrics.json`` and ``confusion.png``, the rounds' curves concatenated
in ``curve.jsonl`` (with a ``round`` field and cumulative time), and
``self_training.json``: per round how many pseudo-labels were kept and, where the
pool's true labels are known (hidden from training by the split), how many were right.
"""

from __future__ import annotations

import json
import math
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.artifacts import read_curve, write_curve
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.device import DistInfo, init_distributed, pick_device
from fewlabels.core.errors import CheckpointError, ConfigError
from fewlabels.core.precision import resolve_precision
from fewlabels.data import Dataset, Splits
from fewlabels.evaluate.inference import load_model
from fewlabels.evaluate.metrics import Metrics
from fewlabels.methods.supervised import Supervised
from fewlabels.train.loop import barrier
from fewlabels.train.parts import RunConfig, RunResult, data_record, prepare_data, write_json
from fewlabels.train.pseudo_labels import (
    TEACHER_ROW,
    PseudoLabels,
    accounting,
    pseudo_label,
    student_splits,
)
from fewlabels.train.single import run_single

__all__ = [  # the pseudo-label pieces live in fewlabels.train.pseudo_labels
    "DEFAULTS",
    "TEACHER_ROW",
    "PseudoLabels",
    "SelfTrainingSettings",
    "accounting",
    "parse_settings",
    "pseudo_label",
    "run_self_training",
    "student_splits",
]

DEFAULTS: dict[str, Any] = {
    # report 002: one teacher, one student; report 003 iterates (rounds=3)
    "rounds": 1,
    # report 002: keep unlabeled predictions with confidence >= 0.99
    "threshold": 0.99,
    # None = each student trains for the run's budget, like the teacher
    "student_budget": None,
    # report 002 trains each student from scratch; False starts it from the previous model
    "fresh": True,
    # passed to the supervised rounds: no smoothing, because smoothing s on K classes
    # trains a model towards confidence 1 - s (K - 1) / K (0.82 for the supervised
    # default 0.2 on 10 classes), so a 0.99 threshold would keep almost nothing
    "label_smoothing": 0.0,
}


@dataclass(frozen=True)
class SelfTrainingSettings:
    """The validated ``method_kwargs`` of a teacher_student run."""

    rounds: int
    threshold: float
    student_budget: str | None
    fresh: bool


def parse_settings(kwargs: dict[str, Any]) -> tuple[SelfTrainingSettings, dict[str, Any]]:
    """Split ``method_kwargs`` into self-training settings and the supervised method's own
    options (e.g. ``label_smoothing``); a bad value is a one-line ConfigError."""
    merged = {**DEFAULTS, **kwargs}
    rounds, threshold = merged.pop("rounds"), merged.pop("threshold")
    budget, fresh = merged.pop("student_budget"), merged.pop("fresh")
    if isinstance(rounds, bool) or not isinstance(rounds, int) or rounds < 1:
        raise ConfigError(f"teacher_student rounds must be a whole number >= 1, got {rounds!r}")
    if isinstance(threshold, bool) or not isinstance(threshold, int | float):
        raise ConfigError(f"teacher_student threshold {threshold!r} is not a number")
    if not (0 < threshold <= 1) or not math.isfinite(threshold):
        raise ConfigError(f"teacher_student threshold {threshold} is outside (0, 1]")
    if budget is not None:
        Budget.parse(str(budget))
        budget = str(budget)
    if not isinstance(fresh, bool):
        raise ConfigError(f"teacher_student fresh must be true or false, got {fresh!r}")
    student_options = set(Supervised.Config.model_fields)
    unknown = sorted(set(merged) - student_options)
    if unknown:
        known = sorted({"rounds", "threshold", "student_budget", "fresh"} | student_options)
        raise ConfigError(
            f"teacher_student has no option {', '.join(unknown)}; it takes {', '.join(known)}"
        )
    return SelfTrainingSettings(rounds, float(threshold), budget, fresh), merged


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _metrics_from(d: dict[str, Any] | None) -> Metrics | None:
    if not d:
        return None
    return Metrics(d["accuracy"], d["macro_f1"], d["n"], d["per_class"], d["confusion"])


@dataclass
class _Rounds:
    """What every round of one self-training run shares, and the running totals."""

    cfg: RunConfig
    st: SelfTrainingSettings
    student_kwargs: dict[str, Any]
    info: DistInfo
    device: torch.device
    precision: str
    data: tuple[Any, Splits]
    progress: bool
    log: Any
    stop_at_step: int | None
    curve: list[dict[str, Any]] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)
    steps: int = 0
    images: int = 0
    train_s: float = 0.0
    wall_s: float = 0.0

    def config(self, r: int) -> RunConfig:
        """Round ``r``'s run: the supervised method in ``out/round_r``, on the student
        budget (a round after the first continues the last model unless ``fresh``)."""
        cfg, st, out = self.cfg, self.st, Path(self.cfg.out)
        budget = cfg.train.budget if r == 0 else (st.student_budget or cfg.train.budget)
        continued = r > 0 and not st.fresh
        # the settings given stay given (the rest is resolved for each round)
        train = type(cfg.train).model_validate(
            {**cfg.train.model_dump(exclude_unset=True), "budget": budget}
        )
        return cfg.model_copy(
            update={
                "method": "supervised",
                "method_kwargs": dict(self.student_kwargs),
                "init": str(out / f"round_{r - 1}" / "model.pt") if continued else cfg.init,
                "out": str(out / f"round_{r}"),
                "train": train,
            }
        )

    def add_curve(self, r: int, rdir: Path, row: dict[str, Any], batch_size: int) -> None:
        """Append round ``r``'s curve with cumulative step, images and times."""
        rcurve = read_curve(rdir / "curve.jsonl")
        for c in rcurve:
            self.curve.append(
                {
                    "round": r,
                    **c,
                    "step": c["step"] + self.steps,
                    "round_step": c["step"],
                    "images_seen": c.get("images_seen", 0) + self.images,
                    "time_s": round(c["time_s"] + self.train_s, 3),
                    "round_time_s": c["time_s"],
                    "wall_s": round(c.get("wall_s", 0.0) + self.wall_s, 3),
                }
            )
        self.rows.append(row)
        self.steps += int(row["steps"])
        self.images += int(row["steps"]) * batch_size
        self.train_s += float(row["train_seconds"])
        self.wall_s += float(rcurve[-1].get("wall_s", 0.0)) if rcurve else 0.0


def _labels_for(rs: _Rounds, r: int) -> tuple[Splits, dict[str, Any]]:
    """Round ``r``'s training splits and pseudo-label accounting (the teacher: none)."""
    splits = rs.data[1]
    if r == 0:
        return splits, dict(TEACHER_ROW)
    prev = Path(rs.cfg.out) / f"round_{r - 1}" / "model.pt"
    labeler = load_model(prev, device=rs.device)
    pl = pseudo_label(
        labeler.network,
        splits.unlabeled.images,
        rs.st.threshold,
        device=rs.device,
        precision=rs.precision,
        batch_size=rs.cfg.train.eval_batch_size,
    )
    acct = accounting(pl, splits.unlabeled_true_labels)
    rsplits = student_splits(
        splits, pl, {"round": r, "labeled_by": str(prev), "threshold": rs.st.threshold}
    )
    _check_same_pseudo_labels(Path(rs.cfg.out) / f"round_{r}", rsplits)
    if rs.info.is_main:
        right = (
            f", {acct['correct']} right ({100 * acct['pseudo_label_accuracy']:.1f}%; "
            f"the labeler gets {100 * acct['labeler_pool_accuracy']:.1f}% of the pool)"
            if acct["correct"] is not None
            else ""
        )
        rs.log(
            f"round {r}: kept {acct['kept']} of {len(splits.unlabeled)} pseudo-labels{right}; "
            f"the student trains on {len(rsplits.labeled)} images"
        )
    return rsplits, acct


def _train_round(rs: _Rounds, r: int, rcfg: RunConfig) -> tuple[dict[str, Any] | None, Any]:
    """Train round ``r`` and leave its ``round.json``: its table row (None when
    ``stop_at_step`` stopped it) and ``run_single``'s result."""
    rdir = Path(rcfg.out)
    rsplits, acct = _labels_for(rs, r)
    if rs.info.is_main:
        rs.log(f"round {r}: training the {'teacher' if r == 0 else 'student'} in {rdir}")
    res = run_single(
        rcfg,
        progress=rs.progress,
        log=rs.log,
        stop_at_step=rs.stop_at_step,
        data=(rs.data[0], rsplits),
        init_head=r > 0 and not rs.st.fresh,
    )
    if res.stopped_early:
        return None, res
    m = _read_json(rdir / "metrics.json")
    vals = [c["val_acc"] for c in read_curve(rdir / "curve.jsonl") if c.get("val_acc") is not None]
    row = {
        "round": r,
        "train_images": len(rsplits.labeled),
        **acct,
        "val_acc": vals[-1] if vals else None,
        "test_acc": m["accuracy"] if m else None,
        "test_macro_f1": m["macro_f1"] if m else None,
        "steps": res.steps,
        "train_seconds": round(res.train_seconds, 3),
    }
    if rs.info.is_main:
        threshold = rs.st.threshold if r else None
        marker = {"config": rcfg.model_dump(), "threshold": threshold, "record": row}
        write_json(rdir / "round.json", marker)
    barrier(rs.info)
    return row, res


def _finished_round(rs: _Rounds, r: int, rcfg: RunConfig) -> dict[str, Any] | None:
    """The table row of a round already complete in its folder (None if it is not)."""
    rdir = Path(rcfg.out)
    marker = _read_json(rdir / "round.json")
    if marker is None:
        return None
    if marker.get("config") != rcfg.model_dump() or marker.get("threshold") != (
        rs.st.threshold if r else None
    ):
        raise CheckpointError(
            f"{rdir} was trained with other settings; use a new `out` or remove it"
        )
    if rs.info.is_main:
        rs.log(f"round {r}: already complete in {rdir}, skipped")
    return dict(marker["record"])


_Parts = tuple[DistInfo, torch.device, tuple[Any, Splits]]


def _start(
    cfg: RunConfig, log: Any, data: tuple[Dataset, Splits] | None
) -> tuple[SelfTrainingSettings, dict[str, Any], _Parts]:
    """Validate the settings, join the process group, prepare the data and the folder."""
    st, student_kwargs = parse_settings(cfg.method_kwargs)
    info = init_distributed(
        torch.device("cuda")
        if cfg.device in ("auto", "cuda") and torch.cuda.is_available()
        else None
    )
    device = pick_device(cfg.device, info)
    ds, splits = data if data is not None else prepare_data(cfg)
    pool = splits.unlabeled
    if not len(pool):
        raise ConfigError(
            "method 'teacher_student' needs unlabeled images and the unlabeled pool is empty"
        )
    if info.is_main:
        out = Path(cfg.out)
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.model_dump())
        write_json(out / "split.json", splits.record)
        log(
            f"teacher_student: a teacher and {st.rounds} student(s), pseudo-labels with "
            f"confidence >= {st.threshold} from a pool of {len(pool)}, "
            f"{'fresh' if st.fresh else 'continued'} students"
        )
    return st, student_kwargs, (info, device, (ds, splits))


def run_self_training(
    cfg: RunConfig,
    *,
    progress: bool = True,
    log: Any = print,
    stop_at_step: int | None = None,
    data: tuple[Dataset, Splits] | None = None,
) -> RunResult:
    """Teacher, then ``rounds`` students on labeled + confident pseudo-labeled images
    (``data``: the dataset and splits ready-made, as for ``run_training``)."""
    t0 = time.perf_counter()
    if cfg.out is None:
        raise ConfigError("method teacher_student keeps its rounds in a run folder; give out")
    if data is not None:
        cfg = data_record(cfg, data[0])[0]
    st, student_kwargs, (info, device, data) = _start(cfg, log, data)
    precision = resolve_precision(cfg.train.precision, device)
    rs = _Rounds(
        cfg, st, student_kwargs, info, device, precision, data, progress, log, stop_at_step
    )
    out = Path(cfg.out)
    for r in range(st.rounds + 1):
        rcfg = rs.config(r)
        row = _finished_round(rs, r, rcfg)
        if row is None:
            row, res = _train_round(rs, r, rcfg)
            if row is None:  # stop_at_step stopped this round
                return RunResult(
                    out,
                    None,
                    rs.steps + res.steps,
                    rs.train_s + res.train_seconds,
                    time.perf_counter() - t0,
                    rs.curve,
                    True,
                )
        rs.add_curve(r, Path(rcfg.out), row, rcfg.train.batch_size)
    last = out / f"round_{st.rounds}"
    final = _read_json(last / "metrics.json")
    wall = time.perf_counter() - t0
    if info.is_main:
        _write_outputs(out, last, cfg, st, rs, final, data[1], wall)
        for row in rs.rows:
            log(
                f"round {row['round']}: {row['kept']} pseudo-labels kept"
                + (
                    f" ({100 * row['pseudo_label_accuracy']:.1f}% right)"
                    if row.get("pseudo_label_accuracy") is not None
                    else ""
                )
                + (f", test accuracy {row['test_acc']:.4f}" if row["test_acc"] is not None else "")
            )
    barrier(info)
    return RunResult(out, _metrics_from(final), rs.steps, rs.train_s, wall, rs.curve)


def _check_same_pseudo_labels(rdir: Path, rsplits: Splits) -> None:
    """A round resumed from its checkpoint must train on the pseudo-labels it started with."""
    old = _read_json(rdir / "split.json")
    if not (rdir / "checkpoint.pt").exists() or old is None:
        return
    new = rsplits.record["pseudo_labels"]
    was = old.get("pseudo_labels") or {}
    if (was.get("pool_positions"), was.get("labels"), was.get("threshold")) != (
        new["pool_positions"],
        new["labels"],
        new["threshold"],
    ):
        raise CheckpointError(
            f"{rdir} was trained on other pseudo-labels; use a new `out` or remove it"
        )


def _write_outputs(
    out: Path,
    last: Path,
    cfg: RunConfig,
    st: SelfTrainingSettings,
    rs: _Rounds,
    final: dict[str, Any] | None,
    splits: Splits,
    wall: float,
) -> None:
    """The run folder of the whole self-training: the final student is the run's model."""
    summary = {
        "rounds": st.rounds,
        "threshold": st.threshold,
        "fresh": st.fresh,
        "student_budget": str(st.student_budget or cfg.train.budget),
        "teacher_budget": str(cfg.train.budget),
        "pool": len(splits.unlabeled),
        "pool_labels_known": int((splits.unlabeled_true_labels >= 0).sum()),
        "table": rs.rows,
    }
    write_json(out / "self_training.json", summary)
    write_curve(out / "curve.jsonl", rs.curve)
    if final is not None:
        write_json(
            out / "metrics.json",
            {
                **final,
                "steps": rs.steps,
                "train_seconds": round(rs.train_s, 2),
                "wall_seconds": round(wall, 2),
                "labeled": len(splits.labeled),
                "unlabeled": len(splits.unlabeled),
                "pseudo_labeled": rs.rows[-1]["kept"],
                "rounds": st.rounds,
            },
        )
    if (last / "confusion.png").exists():
        shutil.copyfile(last / "confusion.png", out / "confusion.png")
    model = load_checkpoint(last / "model.pt")
    model.update(
        {
            "method": "teacher_student",
            "init": cfg.init,
            "self_training": {k: v for k, v in summary.items() if k != "table"},
        }
    )
    save_checkpoint(model, out / "model.pt")
