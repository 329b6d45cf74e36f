"""Online pseudo-labelling (Lee 2013): the network's own confident predictions on unlabeled
images are trained on as if they were labels, recomputed at every step.

Loss: ``CE(labeled) + lambda_u * r(t) * mean_i w_i * CE(u_i, argmax u_i)`` on one weakly
augmented view, where the pseudo-labels come from the same (detached) forward, ``w`` is a
hard confidence threshold and ``r(t)`` ramps linearly from 0 to 1 over the first
``rampup`` fraction of the budget (Lee's ramp of ``alpha(t)``), so the early, poor
predictions count little. Labeled and unlabeled images share one forward.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat

from fewlabels.losses.classification import supervised_loss
from fewlabels.losses.pseudo_label import pseudo_label_loss
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.masking import FixedThreshold
from fewlabels.models import Network

_USB = "Lee 2013 section 3.2 uses every argmax with alpha ramped from 0 (up to alpha_f = 3); "
_USB += "USB's Pseudo-Label baseline keeps only predictions above 0.95 with lambda_u = 1 "
_USB += "ramped up over the first 40% of training: we take the latter"


class PseudoLabelConfig(MethodConfig):
    """Online pseudo-labelling's options."""

    threshold: float = Field(0.95, gt=0, le=1, description=f"{_USB}.")
    lambda_u: NonNegativeFloat = Field(1.0, description=f"{_USB}.")
    rampup: float = Field(
        0.4,
        ge=0,
        le=1,
        json_schema_extra={"what": "a fraction of the budget"},
        description=f"{_USB} (ramp-up as a fraction of the budget).",
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="Plain cross-entropy on labeled images, as Lee 2013."
    )
    augment: str = Field("weak", description="Policy of both streams: crop and flip.")


def linear_rampup(progress: float, length: float) -> float:
    """``min(1, progress / length)``; 1 when ``length`` is 0."""
    return 1.0 if length <= 0 else min(1.0, max(0.0, progress) / length)


class PseudoLabel(Method):
    """Online hard pseudo-labels above a confidence threshold, with a ramped-up weight."""

    name: ClassVar[str] = "pseudo_label"
    kind: ClassVar[str] = "semi-supervised"
    Config: ClassVar[type[PseudoLabelConfig]] = PseudoLabelConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ("weak",)}

    def __init__(
        self, network: Network, config: PseudoLabelConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = PseudoLabelConfig.build(self.name, config, options)
        self.network = network
        self.masking = FixedThreshold(cfg.threshold)
        self.lambda_u, self.rampup = cfg.lambda_u, cfg.rampup
        self.label_smoothing = cfg.label_smoothing
        self.views = {"labeled": (cfg.augment,), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        xl, xu = batch.labeled[0], batch.unlabeled[0]
        n = xl.shape[0]
        logits = self.network(torch.cat([xl, xu]))
        lx, lu = logits[:n], logits[n:]
        loss_x = supervised_loss(lx, batch.labels, self.label_smoothing)
        with torch.no_grad():
            probs = torch.softmax(lu.detach().float(), dim=1)
            weights = self.masking(probs)
        loss_u = pseudo_label_loss(lu, probs.argmax(dim=1), weights)
        w = self.lambda_u * linear_rampup(batch.progress, self.rampup)
        return {
            "loss": loss_x + w * loss_u,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "mask": weights.mean(),
        }
