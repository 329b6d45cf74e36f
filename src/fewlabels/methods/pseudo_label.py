"""Online pseudo-labelling (Lee 2013): the network's own confident predictions on unlabeled
images are trained on as if they were labels, recomputed at every step.

Loss: ``CE(labeled) + lambda_u * r(t) * mean_i w_i * CE(u_i, argmax u_i)`` on one weakly
augmented view, where the pseudo-labels come from the same (detached) forward, ``w`` is a
hard confidence threshold and ``r(t)`` ramps linearly from 0 to 1 over the first
``rampup`` fraction of the budget (Lee's ramp of ``alpha(t)``), so the early, poor
predictions count little. Labeled and unlabeled images share one forward.
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fewlabels.methods.base import Batch, Method
from fewlabels.methods.fixmatch import pseudo_label_loss
from fewlabels.methods.masking import FixedThreshold, check_rampup, check_weight
from fewlabels.methods.supervised import supervised_loss
from fewlabels.models import Network

DEFAULTS = {
    # Lee 2013 section 3.2 uses every argmax with alpha ramped from 0 (up to alpha_f = 3);
    # USB's Pseudo-Label baseline keeps only predictions above 0.95 with lambda_u = 1
    # ramped up over the first 40% of training: we take the latter.
    "threshold": 0.95,
    "lambda_u": 1.0,
    "rampup": 0.4,
}


def linear_rampup(progress: float, length: float) -> float:
    """``min(1, progress / length)``; 1 when ``length`` is 0."""
    return 1.0 if length <= 0 else min(1.0, max(0.0, progress) / length)


class PseudoLabel(Method):
    """Online hard pseudo-labels above a confidence threshold, with a ramped-up weight."""

    name: ClassVar[str] = "pseudo_label"
    kind: ClassVar[str] = "semi-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ("weak",)}

    def __init__(
        self,
        network: Network,
        threshold: float = DEFAULTS["threshold"],
        lambda_u: float = DEFAULTS["lambda_u"],
        rampup: float = DEFAULTS["rampup"],
        label_smoothing: float = 0.0,
        augment: str = "weak",
    ) -> None:
        super().__init__()
        self.network = network
        self.masking = FixedThreshold(threshold)
        self.lambda_u = check_weight(lambda_u)
        self.rampup = check_rampup(rampup)
        self.label_smoothing = float(label_smoothing)
        self.views = {"labeled": (augment,), "unlabeled": (augment,)}

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
