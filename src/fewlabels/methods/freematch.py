"""FreeMatch (Wang et al. 2023): FixMatch with self-adaptive thresholds and a fairness term.

The global threshold is the EMA of the mean top confidence on unlabeled images; each class
scales it by its EMA class probability relative to the largest (``SelfAdaptiveThreshold``
in ``fewlabels.methods.masking``). The optional self-adaptive fairness term (weight
``lambda_f``; 0 turns it off) pushes the kept strong-view predictions to spread over the
classes, normalised by the running histograms (``fewlabels.losses.freematch_fairness_loss``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, NonNegativeFloat

from fewlabels.losses.pseudo_label import freematch_fairness_loss
from fewlabels.methods.fixmatch import WeakStrong, WeakStrongConfig
from fewlabels.methods.masking import SelfAdaptiveThreshold
from fewlabels.models import Network


class FreeMatchConfig(WeakStrongConfig):
    """FreeMatch's options."""

    ema: float = Field(
        0.999, ge=0, lt=1, description="FreeMatch section 4.1: EMA momentum lambda = 0.999."
    )
    min_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="lower bound of the self-adaptive thresholds (the paper has none: 0). 0.5: a "
        "pseudo-label counts only when the model gives it more than half its probability. "
        "Without it the low early thresholds take a weak model's every guess (Tiny-ImageNet "
        "at 32 px, 100 and 200 classes, 2-minute runs: FlexMatch 2-7% against supervised's "
        "10-13%).",
    )
    lambda_f: NonNegativeFloat = Field(
        0.01,
        description="FreeMatch section 4.1: fairness weight 0.01 for CIFAR-10 (USB's "
        "classic-CV configs use 0.001 on some data sets); 0 turns the term off.",
    )


class FreeMatch(WeakStrong):
    """FixMatch with FreeMatch's self-adaptive thresholds and fairness term."""

    name: ClassVar[str] = "freematch"
    Config: ClassVar[type[FreeMatchConfig]] = FreeMatchConfig

    def __init__(
        self, network: Network, config: FreeMatchConfig | None = None, **options: Any
    ) -> None:
        cfg = FreeMatchConfig.build(self.name, config, options)
        masking = SelfAdaptiveThreshold(network.num_classes, cfg.ema, cfg.min_threshold)
        super().__init__(network, masking, cfg)
        self.lambda_f = cfg.lambda_f

    def extra_loss(
        self, probs_strong: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        if self.lambda_f == 0:
            return {}
        m = self.masking
        assert isinstance(m, SelfAdaptiveThreshold)
        fair = freematch_fairness_loss(probs_strong, weights, m.class_probs, m.hist)
        return {"loss_f": self.lambda_f * fair}
