"""FixMatch (Sohn et al. 2020): the weak view's confident prediction is the label of the
strong view.

Loss: ``CE(labeled) + lambda_u * mean_i w_i * CE(strong_i, argmax weak_i)``, the mean
taken over all unlabeled images (not only the kept ones), ``w`` from a masking piece
(``fewlabels.methods.masking``; the loss:
``fewlabels.losses.pseudo_label_loss``): a hard threshold at 0.95 (``mask="fixed"``, the paper) or
the confidence itself with no threshold (``mask="confidence"``, report 001's variant).
Pseudo-labels carry no gradient. The labeled images and both unlabeled views go through
the network in one forward, so BatchNorm sees the whole batch once.

FlexMatch, FreeMatch and SoftMatch are this method with another masking piece
(``WeakStrong`` is the shared part).

Paper settings the loop holds (not hard-wired here): the unlabeled batch is
``mu = 7`` times the labeled one (``TrainConfig.unlabeled_batch_ratio``, 7 by default) and
the model evaluated is an EMA of the weights with decay 0.999 (``--ema 0.999``; on short
runs of a few hundred steps a smaller decay, or none, is better); SGD with Nesterov
momentum 0.9, lr 0.03, weight decay 5e-4, cosine schedule.

>>> from fewlabels.models import Network
>>> m = FixMatch(Network("convnet", 1, 8, 10), threshold=0.95)
>>> m.views
{'labeled': ('weak',), 'unlabeled': ('weak', 'strong')}
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

import torch
from pydantic import Field, NonNegativeFloat

from fewlabels.core.errors import ConfigError
from fewlabels.losses.classification import supervised_loss
from fewlabels.losses.pseudo_label import pseudo_label_loss
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.methods.masking import (
    ConfidenceWeight,
    DistributionAlignment,
    FixedThreshold,
    Masking,
)
from fewlabels.models import Network

__all__ = ["FixMatch", "FixMatchConfig", "WeakStrong", "WeakStrongConfig", "pseudo_label_loss"]


class WeakStrongConfig(MethodConfig):
    """The options every method of the FixMatch family takes."""

    lambda_u: NonNegativeFloat = Field(
        1.0, description="FixMatch section 3.2 and appendix B.1: lambda_u = 1."
    )
    label_smoothing: float = Field(
        0.0, ge=0, lt=1, description="FixMatch uses plain cross-entropy on the labeled batch."
    )
    weak: str = Field(
        "weak",
        description="FixMatch's weak augmentation (flip and shift): labeled images and "
        "the pseudo-labelled view.",
    )
    strong: str = Field(
        "strong",
        description="FixMatch's strong augmentation (RandAugment and Cutout): the "
        "view trained on the pseudo-labels.",
    )


class FixMatchConfig(WeakStrongConfig):
    """FixMatch's options."""

    threshold: float = Field(
        0.95, gt=0, le=1, description="FixMatch section 3.2 and appendix B.1: tau = 0.95."
    )
    mask: Literal["fixed", "confidence"] = Field(
        "fixed",
        description="fixed: the paper's hard threshold; confidence: report 001's variant, "
        "every pseudo-label weighted by its confidence.",
    )


class WeakStrong(Method):
    """Shared part of the FixMatch family: labeled CE + weighted pseudo-label CE from the
    weak view (``weak``) to the strong view (``strong``), weights from ``masking``."""

    name: ClassVar[str] = "weak_strong"
    kind: ClassVar[str] = "semi-supervised"
    Config: ClassVar[type[WeakStrongConfig]] = WeakStrongConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {
        "labeled": ("weak",),
        "unlabeled": ("weak", "strong"),
    }

    def __init__(
        self,
        network: Network,
        masking: Masking,
        config: WeakStrongConfig,
        alignment: DistributionAlignment | None = None,
    ) -> None:
        super().__init__()
        if getattr(network, "num_classes", 1) < 1:
            raise ConfigError(f"method {self.name!r} needs a network with a classifier head")
        self.config = config
        self.network = network
        self.masking = masking
        self.alignment = alignment
        self.lambda_u = config.lambda_u
        self.label_smoothing = config.label_smoothing
        self.views = {"labeled": (config.weak,), "unlabeled": (config.weak, config.strong)}

    def setup(self, *, num_labeled: int, num_unlabeled: int, num_classes: int) -> None:
        super().setup(num_labeled=num_labeled, num_unlabeled=num_unlabeled, num_classes=num_classes)
        self.masking.setup(num_unlabeled=num_unlabeled, num_classes=num_classes)

    def extra_loss(
        self, probs_strong: torch.Tensor, weights: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """Further weighted loss terms (FreeMatch's fairness); none here."""
        return {}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        xl = batch.labeled[0]
        uw, us = batch.unlabeled[0], batch.unlabeled[1]
        n, m = xl.shape[0], uw.shape[0]
        logits = self.network(torch.cat([xl, uw, us]))
        lx, lw, ls = logits[:n], logits[n : n + m], logits[n + m :]
        loss_x = supervised_loss(lx, batch.labels, self.label_smoothing)
        with torch.no_grad():
            probs = torch.softmax(lw.detach().float(), dim=1)
            # SoftMatch (USB): the alignment feeds only the weights; the pseudo-labels are
            # the raw predictions' argmax
            targets = probs.argmax(dim=1)
            if self.alignment is not None:
                probs = self.alignment(probs)
            weights = self.masking(probs, batch.unlabeled_index)
        loss_u = pseudo_label_loss(ls, targets, weights)
        loss = loss_x + self.lambda_u * loss_u
        extra = self.extra_loss(torch.softmax(ls.float(), dim=1), weights)
        for term in extra.values():
            loss = loss + term
        return {
            "loss": loss,
            "loss_x": loss_x.detach(),
            "loss_u": loss_u.detach(),
            "mask": weights.mean(),
            **{k: v.detach() for k, v in extra.items()},
        }


class FixMatch(WeakStrong):
    """FixMatch with a fixed threshold (``mask="fixed"``) or, with ``mask="confidence"``,
    report 001's FixMatch-like variant weighted by confidence without a hard threshold."""

    name: ClassVar[str] = "fixmatch"
    Config: ClassVar[type[FixMatchConfig]] = FixMatchConfig

    def __init__(
        self, network: Network, config: FixMatchConfig | None = None, **options: Any
    ) -> None:
        cfg = FixMatchConfig.build(self.name, config, options)
        masking = FixedThreshold(cfg.threshold) if cfg.mask == "fixed" else ConfidenceWeight()
        super().__init__(network, masking, cfg)
