"""Supervised training on the labeled images only: cross-entropy with label smoothing.

The baseline every label-efficient method must beat (reports 000-004 all start here).
"""

from __future__ import annotations

from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.models import Network

DEFAULTS = {
    # airbench94 uses label smoothing 0.2 for its fast CIFAR-10 runs.
    "label_smoothing": 0.2,
}


def supervised_loss(
    logits: torch.Tensor, labels: torch.Tensor, label_smoothing: float = 0.0
) -> torch.Tensor:
    """Mean cross-entropy of ``logits`` against integer ``labels`` (computed in fp32)."""
    return F.cross_entropy(logits.float(), labels, label_smoothing=label_smoothing)


class Supervised(Method):
    """Cross-entropy on augmented labeled images (policy ``augment``, ``weak`` by default)."""

    name: ClassVar[str] = "supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ()}

    def __init__(
        self,
        network: Network,
        label_smoothing: float = DEFAULTS["label_smoothing"],
        augment: str = "weak",
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        self.network = network
        self.label_smoothing = label_smoothing
        self.views = {"labeled": (augment,), "unlabeled": ()}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.network(batch.labeled[0])
        loss = supervised_loss(logits, batch.labels, self.label_smoothing)
        with torch.no_grad():
            acc = (logits.argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "train_acc": acc}
