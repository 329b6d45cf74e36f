"""Batched inference and classification metrics (accuracy, macro-F1, per class, confusion)."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np
import torch
from sklearn.metrics import confusion_matrix, f1_score, precision_recall_fscore_support
from torch import nn

from fewlabels.core.precision import autocast
from fewlabels.models import Network


@torch.no_grad()
def predict_logits(
    network: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    precision: str = "fp32",
    tta: bool = False,
) -> torch.Tensor:
    """Logits (fp32, on CPU) for uint8 NCHW ``images``, in batches, without gradients.

    With ``tta`` the logits of the image and its horizontal mirror are averaged.
    """
    device = device or next(network.parameters()).device
    was_training = network.training
    network.eval()
    out = []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            x = x.float().div_(255).contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                logits = network(x).float()
                if tta:
                    logits = 0.5 * (logits + network(torch.flip(x, dims=[3])).float())
            out.append(logits.cpu())
    finally:
        network.train(was_training)
    if not out:
        return torch.empty(0, 0)
    return torch.cat(out)


@torch.no_grad()
def features_and_logits(
    network: Network,
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    precision: str = "fp32",
) -> tuple[torch.Tensor, torch.Tensor]:
    """(features, logits), both fp32 on the CPU, of uint8 NCHW ``images`` in one pass:
    ``network.head`` on ``network.features`` batch by batch, so the logits are exactly
    ``predict_logits``'s (the same batches, the same autocast, ``forward`` is the two)."""
    device = device or next(network.parameters()).device
    was_training = network.training
    network.eval()
    feats, logits = [], []
    try:
        for start in range(0, len(images), batch_size):
            x = images[start : start + batch_size].to(device, non_blocking=True)
            x = x.float().div_(255).contiguous(memory_format=torch.channels_last)
            with autocast(precision, device):
                f = network.features(x)
                logits.append(network.head(f).float().cpu())
            feats.append(f.float().cpu())
    finally:
        network.train(was_training)
    if not feats:
        return torch.empty(0, network.feature_dim), torch.empty(0, 0)
    return torch.cat(feats), torch.cat(logits)


@dataclass
class Metrics:
    """Classification quality on one labeled set."""

    accuracy: float
    macro_f1: float
    n: int
    per_class: dict[str, dict[str, float]]
    confusion: list[list[int]]

    def to_dict(self) -> dict:
        return asdict(self)

    def summary(self) -> dict[str, float]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1}


def quick_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> tuple[float, float]:
    """(accuracy, macro-F1) only; cheap enough for periodic validation."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    if len(y_true) == 0:
        return float("nan"), float("nan")
    acc = float((y_true == y_pred).mean())
    f1 = float(f1_score(y_true, y_pred, average="macro", zero_division=0))
    return acc, f1


def classification_metrics(
    y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str]
) -> Metrics:
    """Accuracy, macro-F1, per-class precision/recall/F1/support and the confusion matrix."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    labels = list(range(len(class_names)))
    acc, f1 = quick_metrics(y_true, y_pred)
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
    per_class = {
        name: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, name in enumerate(class_names)
    }
    cm = confusion_matrix(y_true, y_pred, labels=labels).tolist()
    return Metrics(acc, f1, len(y_true), per_class, cm)
