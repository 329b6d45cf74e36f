"""Self-Classifier (Amrani & Bronstein 2022, "Self-Supervised Classification Network"):
a classifier over C made-up classes, trained so that two views of an image get the same
class while a uniform prior over classes rules out the trivial one-class solution.

For classifier logits ``s`` (N x C, cosine similarities) of each view, with Bayes' rule and
``p(y) = 1/C``, ``p(x) = 1/N``:

* prediction ``log p(y|x_j) = log(N/C * colnorm(softmax_row(s_j / t_r)))`` (the row
  softmax, each class column then scaled to sum to 1 over the batch);
* target ``p(y|x_i) = rownorm(softmax_col(s_i / t_c))`` (softmax over the batch per class,
  each row then scaled to sum to 1);
* ``loss = -1/2 mean_n [sum_y p(y|x_1) log p(y|x_2) + sum_y p(y|x_2) log p(y|x_1)]``.

Both sides carry gradient, as in the paper's pseudocode and the official code. The
column operations need the whole batch, so under DDP the logits are gathered and every
rank computes the same loss. Several classifiers of different sizes may be trained at
once (the official code uses 1000, 2000, 4000, 8000); their losses are averaged.
Not included: multi-crop and the official code's nearest-neighbour view pairs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.distributed import gather_with_grad
from fewlabels.methods.heads import CosineLinear, full_precision, mlp
from fewlabels.models import Network

DEFAULTS = {
    # Paper section 4 / official training scripts: row temperature 0.1, column 0.05.
    "row_tau": 0.1,
    "col_tau": 0.05,
    # Official scripts: 4 classifiers of 1000, 2000, 4000 and 8000 classes (the paper's
    # ablation: one classifier of 1000 on ImageNet already works).
    "classes": (1000, 2000, 4000, 8000),
    # Official scripts: an MLP with 2 hidden layers of 4096 (BN, ReLU) to a 128-d embedding.
    "projector": (4096, 4096, 128),
    # the official code's epsilon in the normalisations and the log
    "eps": 1e-8,
}


@full_precision
def self_classifier_loss(
    s1: torch.Tensor,
    s2: torch.Tensor,
    row_tau: float = DEFAULTS["row_tau"],
    col_tau: float = DEFAULTS["col_tau"],
    eps: float = DEFAULTS["eps"],
) -> torch.Tensor:
    """Symmetrised Self-Classifier loss of two views' logits ``(N, C)`` (see the module)."""
    n, c = s1.shape

    def log_pred(s: torch.Tensor) -> torch.Tensor:
        p = F.normalize(F.softmax(s / row_tau, dim=1), p=1, dim=0, eps=eps)
        return torch.log(n / c * p + eps)

    def target(s: torch.Tensor) -> torch.Tensor:
        return F.normalize(F.softmax(s / col_tau, dim=0), p=1, dim=1, eps=eps)

    l12 = -(target(s1) * log_pred(s2)).sum(1).mean()
    l21 = -(target(s2) * log_pred(s1)).sum(1).mean()
    return (l12 + l21) / 2


class SelfClassifier(Method):
    """Encoder + MLP + cosine classifier(s) over made-up classes, on two views."""

    name: ClassVar[str] = "self_classifier"
    kind: ClassVar[str] = "self-supervised"
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(
        self,
        network: Network,
        row_tau: float = DEFAULTS["row_tau"],
        col_tau: float = DEFAULTS["col_tau"],
        classes: int | Sequence[int] = DEFAULTS["classes"],
        projector: Sequence[int] = DEFAULTS["projector"],
        augment: str = "simclr",  # the official code: crop, flip, jitter, grey, blur
    ) -> None:
        super().__init__()
        sizes = [int(classes)] if isinstance(classes, int) else [int(c) for c in classes]
        if row_tau <= 0 or col_tau <= 0 or not sizes or min(sizes) < 2:
            raise ConfigError(
                "Self-Classifier needs row_tau > 0, col_tau > 0 and classifiers of at least "
                f"2 classes (got {row_tau}, {col_tau}, {sizes})"
            )
        self.network = network
        self.row_tau, self.col_tau = float(row_tau), float(col_tau)
        self.projector = mlp([network.feature_dim, *projector])
        dim = int(list(projector)[-1])
        self.classifiers = nn.ModuleList(CosineLinear(dim, c) for c in sizes)
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        z = self.projector(self.network.features(torch.cat([v1, v2])))
        logits = [head(z) for head in self.classifiers]
        losses = []
        for s in logits:
            s1, s2 = (gather_with_grad(t) for t in s.chunk(2))
            losses.append(self_classifier_loss(s1, s2, self.row_tau, self.col_tau))
        with torch.no_grad():  # classes the first classifier uses on this batch
            used = float(logits[0].detach().argmax(1).unique().numel())
        loss = torch.stack(losses).mean()
        return {"loss": loss, "classes_used": torch.tensor(used, device=loss.device)}
