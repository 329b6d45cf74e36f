"""Teacher-student pseudo-labelling and iterative self-training (reports 000, 002, 003).

Round 0 trains a teacher on the labeled images with the supervised method. Round r >= 1
labels the whole unlabeled pool with round r-1's model, keeps the predictions whose
softmax confidence is at least ``threshold`` and trains a student on the labeled images
plus those pseudo-labeled ones (each round re-labels the whole pool with its newest
model). ``rounds`` students are trained; the last one is the run's model.

Each round is an ordinary run (``run_training`` with the supervised method) in
``out/round_r``, so it checkpoints and resumes on its own; a finished round leaves
``round.json`` and is skipped on a rerun. The run folder gets the final student's
``model.pt``, ``metrics.json`` and ``confusion.png``, the rounds' curves concatenated
in ``curve.jsonl`` (with a ``round`` field and cumulative time), and
``self_training.json``: per round how many pseudo-labels were kept and, where the
pool's true labels are known (hidden from training by the split), how many were right.
"""

from __future__ import annotations

import copy
import inspect
import json
import math
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.device import init_distributed, pick_device
from fewlabels.core.errors import CheckpointError, ConfigError
from fewlabels.core.precision import resolve_precision
from fewlabels.data import Dataset, Splits
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.inference import load_model
from fewlabels.evaluate.metrics import Metrics, predict_logits
from fewlabels.methods.supervised import Supervised
from fewlabels.train.loop import barrier
from fewlabels.train.single import (
    RunConfig,
    RunResult,
    data_record,
    prepare_data,
    run_single,
    write_json,
)

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
    student_options = set(inspect.signature(Supervised).parameters) - {"network"}
    unknown = sorted(set(merged) - student_options)
    if unknown:
        known = sorted({"rounds", "threshold", "student_budget", "fresh"} | student_options)
        raise ConfigError(
            f"teacher_student has no option {', '.join(unknown)}; it takes {', '.join(known)}"
        )
    return SelfTrainingSettings(rounds, float(threshold), budget, fresh), merged


@dataclass
class PseudoLabels:
    """A model's predictions on the pool, and which ones pass the confidence threshold."""

    predictions: torch.Tensor  # (N,) int64 predicted class of every pool image
    confidence: torch.Tensor  # (N,) float32 softmax probability of that class
    kept: torch.Tensor  # (K,) int64 positions in the pool with confidence >= threshold


def pseudo_label(
    network: torch.nn.Module,
    images: torch.Tensor,
    threshold: float,
    *,
    device: torch.device | None = None,
    precision: str = "fp32",
    batch_size: int = 1024,
) -> PseudoLabels:
    """Predict uint8 ``images`` in batches; keep those with confidence >= ``threshold``."""
    logits = predict_logits(
        network, images, batch_size=batch_size, device=device, precision=precision
    )
    conf, pred = logits.float().softmax(dim=1).max(dim=1)
    kept = torch.nonzero(conf >= threshold).flatten()
    return PseudoLabels(pred, conf, kept)


def accounting(pl: PseudoLabels, true_labels: torch.Tensor) -> dict[str, Any]:
    """How many pseudo-labels were kept and, where the true label is known, how many right.

    ``labeler_pool_accuracy`` is the labelling model's accuracy on every pool image with a
    known label: self-training helps when the kept labels beat it.
    """
    n = len(pl.predictions)
    known = true_labels >= 0
    kept_known = known[pl.kept]
    right = (pl.predictions == true_labels) & known
    correct = int(right[pl.kept].sum())
    n_known = int(kept_known.sum())
    pool_known = int(known.sum())
    return {
        "kept": len(pl.kept),
        "kept_fraction": round(len(pl.kept) / n, 6) if n else 0.0,
        "kept_known": n_known,
        "correct": correct if n_known else None,
        "pseudo_label_accuracy": round(correct / n_known, 6) if n_known else None,
        "labeler_pool_accuracy": round(int(right.sum()) / pool_known, 6) if pool_known else None,
    }


# the teacher's round: trained on the true labels only
TEACHER_ROW: dict[str, Any] = {
    "kept": 0,
    "kept_fraction": 0.0,
    "kept_known": 0,
    "correct": None,
    "pseudo_label_accuracy": None,
    "labeler_pool_accuracy": None,
}


def student_splits(splits: Splits, pl: PseudoLabels, record_extra: dict[str, Any]) -> Splits:
    """The splits a student trains on: labeled + kept pseudo-labeled images; the rest of
    the pool stays unlabeled. Validation and test sets are unchanged."""
    pool = splits.unlabeled
    idx = pl.kept
    rest = torch.ones(len(pool), dtype=torch.bool)
    rest[idx] = False
    rest_idx = torch.nonzero(rest).flatten()
    ids = [pool.ids[i] for i in idx.tolist()] if pool.ids is not None else None
    extra = ImageSet(pool.images[idx], pl.predictions[idx], list(pool.class_names), ids)
    union = ImageSet.concat([splits.labeled, extra])
    record = copy.deepcopy(splits.record)
    sizes = record.setdefault("sizes", {})
    sizes["labeled"], sizes["unlabeled"] = len(union), len(rest_idx)
    sizes["true_labeled"], sizes["pseudo_labeled"] = len(splits.labeled), len(idx)
    record["pseudo_labels"] = {
        **record_extra,
        "pool_positions": idx.tolist(),
        "labels": pl.predictions[idx].tolist(),
    }
    return Splits(
        union,
        pool.subset(rest_idx),
        splits.val,
        splits.test,
        splits.unlabeled_true_labels[rest_idx],
        record,
    )


def _read_json(path: Path) -> Any:
    return json.loads(path.read_text()) if path.exists() else None


def _read_curve(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break
    return rows


def _metrics_from(d: dict[str, Any] | None) -> Metrics | None:
    if not d:
        return None
    return Metrics(d["accuracy"], d["macro_f1"], d["n"], d["per_class"], d["confusion"])


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
    st, student_kwargs = parse_settings(cfg.method_kwargs)
    info = init_distributed(
        torch.device("cuda")
        if cfg.device in ("auto", "cuda") and torch.cuda.is_available()
        else None
    )
    device = pick_device(cfg.device, info)
    precision = resolve_precision(cfg.train.precision, device)
    if cfg.out is None:
        raise ConfigError("method teacher_student keeps its rounds in a run folder; give out")
    out = Path(cfg.out)
    if data is not None:
        cfg = data_record(cfg, data[0])[0]
    ds, splits = data if data is not None else prepare_data(cfg)
    pool, true = splits.unlabeled, splits.unlabeled_true_labels
    if not len(pool):
        raise ConfigError(
            "method 'teacher_student' needs unlabeled images and the unlabeled pool is empty"
        )
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.model_dump())
        write_json(out / "split.json", splits.record)
        log(
            f"teacher_student: a teacher and {st.rounds} student(s), pseudo-labels with "
            f"confidence >= {st.threshold} from a pool of {len(pool)}, "
            f"{'fresh' if st.fresh else 'continued'} students"
        )

    rows: list[dict[str, Any]] = []
    curve: list[dict[str, Any]] = []
    steps = img_off = 0
    time_off = wall_off = 0.0
    for r in range(st.rounds + 1):
        rdir = out / f"round_{r}"
        prev = out / f"round_{r - 1}" / "model.pt"
        budget = cfg.train.budget if r == 0 else (st.student_budget or cfg.train.budget)
        continued = r > 0 and not st.fresh
        rcfg = cfg.model_copy(
            update={
                "method": "supervised",
                "method_kwargs": dict(student_kwargs),
                "init": str(prev) if continued else cfg.init,
                "out": str(rdir),
                "train": cfg.train.model_copy(update={"budget": budget}),
            }
        )
        marker = _read_json(rdir / "round.json")
        if marker is not None:
            if marker.get("config") != rcfg.model_dump() or marker.get("threshold") != (
                st.threshold if r else None
            ):
                raise CheckpointError(
                    f"{rdir} was trained with other settings; use a new --out or remove it"
                )
            if info.is_main:
                log(f"round {r}: already complete in {rdir}, skipped")
            row = marker["record"]
        else:
            if r == 0:
                rsplits, acct = splits, dict(TEACHER_ROW)
            else:
                labeler = load_model(prev, device=device)
                pl = pseudo_label(
                    labeler.network,
                    pool.images,
                    st.threshold,
                    device=device,
                    precision=precision,
                    batch_size=cfg.train.eval_batch_size,
                )
                acct = accounting(pl, true)
                rsplits = student_splits(
                    splits, pl, {"round": r, "labeled_by": str(prev), "threshold": st.threshold}
                )
                _check_same_pseudo_labels(rdir, rsplits)
                if info.is_main:
                    right = (
                        f", {acct['correct']} right ({100 * acct['pseudo_label_accuracy']:.1f}%; "
                        f"the labeler gets {100 * acct['labeler_pool_accuracy']:.1f}% of the pool)"
                        if acct["correct"] is not None
                        else ""
                    )
                    log(
                        f"round {r}: kept {acct['kept']} of {len(pool)} pseudo-labels{right}; "
                        f"the student trains on {len(rsplits.labeled)} images"
                    )
            if info.is_main:
                log(f"round {r}: training the {'teacher' if r == 0 else 'student'} in {rdir}")
            res = run_single(
                rcfg,
                progress=progress,
                log=log,
                stop_at_step=stop_at_step,
                data=(ds, rsplits),
                init_head=continued,
            )
            if res.stopped_early:
                return RunResult(
                    out,
                    None,
                    steps + res.steps,
                    time_off + res.train_seconds,
                    time.perf_counter() - t0,
                    curve,
                    True,
                )
            rcurve = _read_curve(rdir / "curve.jsonl")
            m = _read_json(rdir / "metrics.json")
            vals = [c["val_acc"] for c in rcurve if c.get("val_acc") is not None]
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
            if info.is_main:
                write_json(
                    rdir / "round.json",
                    {
                        "config": rcfg.model_dump(),
                        "threshold": st.threshold if r else None,
                        "record": row,
                    },
                )
            barrier(info)
        rows.append(row)
        rcurve = _read_curve(rdir / "curve.jsonl")
        for c in rcurve:
            curve.append(
                {
                    "round": r,
                    **c,
                    "step": c["step"] + steps,
                    "round_step": c["step"],
                    "images_seen": c.get("images_seen", 0) + img_off,
                    "time_s": round(c["time_s"] + time_off, 3),
                    "round_time_s": c["time_s"],
                    "wall_s": round(c.get("wall_s", 0.0) + wall_off, 3),
                }
            )
        steps += int(row["steps"])
        img_off += int(row["steps"]) * rcfg.train.batch_size
        time_off += float(row["train_seconds"])
        wall_off += float(rcurve[-1].get("wall_s", 0.0)) if rcurve else 0.0

    last = out / f"round_{st.rounds}"
    final = _read_json(last / "metrics.json")
    wall = time.perf_counter() - t0
    if info.is_main:
        _write_outputs(out, last, cfg, st, rows, curve, final, splits, steps, time_off, wall)
        for row in rows:
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
    return RunResult(out, _metrics_from(final), steps, time_off, wall, curve)


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
            f"{rdir} was trained on other pseudo-labels; use a new --out or remove it"
        )


def _write_outputs(
    out: Path,
    last: Path,
    cfg: RunConfig,
    st: SelfTrainingSettings,
    rows: list[dict[str, Any]],
    curve: list[dict[str, Any]],
    final: dict[str, Any] | None,
    splits: Splits,
    steps: int,
    train_s: float,
    wall: float,
) -> None:
    """The run folder of the whole self-training: the final student is the run's model."""
    summary = {
        "rounds": st.rounds,
        "threshold": st.threshold,
        "fresh": st.fresh,
        "student_budget": st.student_budget or cfg.train.budget,
        "teacher_budget": cfg.train.budget,
        "pool": len(splits.unlabeled),
        "pool_labels_known": int((splits.unlabeled_true_labels >= 0).sum()),
        "table": rows,
    }
    write_json(out / "self_training.json", summary)
    atomic_write_text(out / "curve.jsonl", "".join(json.dumps(c) + "\n" for c in curve))
    if final is not None:
        write_json(
            out / "metrics.json",
            {
                **final,
                "steps": steps,
                "train_seconds": round(train_s, 2),
                "wall_seconds": round(wall, 2),
                "labeled": len(splits.labeled),
                "unlabeled": len(splits.unlabeled),
                "pseudo_labeled": rows[-1]["kept"],
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
