"""FreeMatch (Wang et al. 2023): FixMatch with self-adaptive thresholds and a fairness term.

The global threshold is the EMA of the mean top confidence on unlabeled images; each class
scales it by its EMA class probability relative to the largest (``SelfAdaptiveThreshold``
in ``fewlabels.methods.masking``). The optional self-adaptive fairness term (weight
``lambda_f``; 0 turns it off) pushes the kept strong-view predictions to spread over the
classes, normalised by the running histograms (``freematch_fairness_loss``).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from fewlabels.core.errors import ConfigError
from fewlabels.methods.fixmatch import DEFAULTS as FIXMATCH
from fewlabels.methods.fixmatch import WeakStrong
from fewlabels.methods.masking import SelfAdaptiveThreshold, freematch_fairness_loss
from fewlabels.models import Network

DEFAULTS = {
    # FreeMatch section 4.1: EMA momentum 0.999, lambda_u = 1, fairness weight 0.01 for
    # CIFAR-10 (USB's classic-CV configs use 0.001 on some data sets).
    "ema": 0.999,
    "lambda_u": FIXMATCH["lambda_u"],
    "lambda_f": 0.01,
}


class FreeMatch(WeakStrong):
    """FixMatch with FreeMatch's self-adaptive thresholds and fairness term."""

    name: ClassVar[str] = "freematch"

    def __init__(
        self,
        network: Network,
        ema: float = DEFAULTS["ema"],
        lambda_u: float = DEFAULTS["lambda_u"],
        lambda_f: float = DEFAULTS["lambda_f"],
        label_smoothing: float = FIXMATCH["label_smoothing"],
        weak: str = "weak",
        strong: str = "strong",
    ) -> None:
        if lambda_f < 0:
            raise ConfigError(f"lambda_f must be >= 0, got {lambda_f}")
        masking = SelfAdaptiveThreshold(network.num_classes, ema)
        super().__init__(network, masking, lambda_u, label_smoothing, weak, strong)
        self.lambda_f = float(lambda_f)

    def extra_loss(
        self, probs_strong: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.lambda_f == 0:
            return {}
        m = self.masking
        assert isinstance(m, SelfAdaptiveThreshold)
        fair = freematch_fairness_loss(probs_strong, weights, m.class_probs, m.hist)
        return {"loss_f": self.lambda_f * fair}
