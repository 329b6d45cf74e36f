"""FixMatch (Sohn et al. 2020): the weak view's confident prediction is the label of the
strong view.

Loss: ``CE(labeled) + lambda_u * mean_i w_i * CE(strong_i, argmax weak_i)``, the mean
taken over all unlabeled images (not only the kept ones), ``w`` from a masking piece
(``fewlabels.methods.masking``): a hard threshold at 0.95 (``mask="fixed"``, the paper) or
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

from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.masking import (
    ConfidenceWeight,
    DistributionAlignment,
    FixedThreshold,
    Masking,
    check_weight,
)
from fewlabels.methods.supervised import supervised_loss
from fewlabels.models import Network

DEFAULTS = {
    # FixMatch section 3.2 and appendix B.1: tau = 0.95, lambda_u = 1, hard pseudo-labels.
    "threshold": 0.95,
    "lambda_u": 1.0,
    # FixMatch uses plain cross-entropy on the labeled batch.
    "label_smoothing": 0.0,
}


def pseudo_label_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``mean_i weights_i * CE(logits_i, targets_i)`` over all rows (in fp32)."""
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights.float()).mean()


class WeakStrong(Method):
    """Shared part of the FixMatch family: labeled CE + weighted pseudo-label CE from the
    weak view (``weak``) to the strong view (``strong``), weights from ``masking``."""

    name: ClassVar[str] = "weak_strong"
    kind: ClassVar[str] = "semi-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {
        "labeled": ("weak",),
        "unlabeled": ("weak", "strong"),
    }

    def __init__(
        self,
        network: Network,
        masking: Masking,
        lambda_u: float = DEFAULTS["lambda_u"],
        label_smoothing: float = DEFAULTS["label_smoothing"],
        weak: str = "weak",
        strong: str = "strong",
        alignment: DistributionAlignment | None = None,
    ) -> None:
        super().__init__()
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label smoothing must be in [0, 1), got {label_smoothing}")
        if getattr(network, "num_classes", 1) < 1:
            raise ConfigError(f"method {self.name!r} needs a network with a classifier head")
        self.network = network
        self.masking = masking
        self.alignment = alignment
        self.lambda_u = check_weight(lambda_u)
        self.label_smoothing = float(label_smoothing)
        self.views = {"labeled": (weak,), "unlabeled": (weak, strong)}

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
            if self.alignment is not None:
                probs = self.alignment(probs)
            weights = self.masking(probs, batch.unlabeled_index)
            targets = probs.argmax(dim=1)
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

    def __init__(
        self,
        network: Network,
        threshold: float = DEFAULTS["threshold"],
        lambda_u: float = DEFAULTS["lambda_u"],
        mask: str = "fixed",
        label_smoothing: float = DEFAULTS["label_smoothing"],
        weak: str = "weak",
        strong: str = "strong",
    ) -> None:
        pieces = {"fixed": lambda: FixedThreshold(threshold), "confidence": ConfidenceWeight}
        if mask not in pieces:
            raise ConfigError(f"mask {mask!r} is not one of {', '.join(pieces)}")
        FixedThreshold(threshold)  # validates the threshold whichever piece is used
        super().__init__(network, pieces[mask](), lambda_u, label_smoothing, weak, strong)
