"""Supervised training on the labeled images only: cross-entropy with label smoothing.

The baseline every label-efficient method must beat (reports 000-004 all start here).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field

from fewlabels.losses.classification import supervised_loss
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.models import Network

__all__ = ["Supervised", "SupervisedConfig", "supervised_loss"]


class SupervisedConfig(MethodConfig):
    """Supervised training's options."""

    label_smoothing: float = Field(
        0.2,
        ge=0,
        lt=1,
        description="airbench94 uses label smoothing 0.2 for its fast CIFAR-10 runs.",
    )
    augment: str = Field("weak", description="Policy of the labeled images: crop and flip.")


class Supervised(Method):
    """Cross-entropy on augmented labeled images (policy ``augment``, ``weak`` by default)."""

    name: ClassVar[str] = "supervised"
    Config: ClassVar[type[SupervisedConfig]] = SupervisedConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ()}

    def __init__(
        self, network: Network, config: SupervisedConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = SupervisedConfig.build(self.name, config, options)
        self.network = network
        self.label_smoothing = cfg.label_smoothing
        self.views = {"labeled": (cfg.augment,), "unlabeled": ()}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        logits = self.network(batch.labeled[0])
        loss = supervised_loss(logits, batch.labels, self.label_smoothing)
        with torch.no_grad():
            acc = (logits.argmax(1) == batch.labels).float().mean()
        return {"loss": loss, "train_acc": acc}
