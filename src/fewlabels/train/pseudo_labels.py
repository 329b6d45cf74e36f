"""Pseudo-labels: a model's confident predictions on the unlabeled pool, how many were
right (where the pool's true labels are known), and the splits a student trains on."""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch

from fewlabels.data import Splits
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import predict_logits

__all__ = ["TEACHER_ROW", "PseudoLabels", "accounting", "pseudo_label", "student_splits"]


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
