"""Self-Classifier (Amrani & Bronstein 2022, "Self-Supervised Classification Network"):
a classifier over C made-up classes, trained so that two views of an image get the same
class while a uniform prior over classes rules out the trivial one-class solution.

For classifier logits ``s`` (N x C, cosine similarities) of each view, with Bayes' rule and
``p(y) = 1/C``, ``p(x) = 1/N``:

* prediction ``log p(y|x_j) = log(N/C * colnorm(softmax_row(s_j / t_r)))`` (the row
  softmax, each class column then scaled to sum to 1 over the batch);
* target ``p(y|x_i) = rownorm(softmax_col(s_i / t_c))`` (softmax over the batch per class,
  each row then scaled to sum to 1);
* ``loss = -1/2 mean_n [sum_y p(y|x_1) log p(y|x_2) + sum_y p(y|x_2) log p(y|x_1)]``
  (``fewlabels.losses.self_classifier``).

Both sides carry gradient, as in the paper's pseudocode and the official code. The
column operations need the whole batch, so under DDP the logits are gathered and every
rank computes the same loss. Several classifiers of different sizes may be trained at
once (the official code uses 1000, 2000, 4000, 8000); their losses are averaged.
Not included: multi-crop and the official code's nearest-neighbour view pairs.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

import torch
from pydantic import Field, PositiveFloat, PositiveInt, field_validator
from torch import nn

from fewlabels.losses.distributed import gather_with_grad
from fewlabels.losses.self_classifier import self_classifier_loss
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.rules import Facts, Resolved, projector_rule
from fewlabels.models import Network
from fewlabels.models.heads import CosineLinear, ProjectionHead


class SelfClassifierConfig(MethodConfig):
    """Self-Classifier's options."""

    row_tau: PositiveFloat = Field(
        0.1, description="Paper section 4 / official training scripts: row temperature 0.1."
    )
    col_tau: PositiveFloat = Field(
        0.05, description="Paper section 4 / official training scripts: column temperature 0.05."
    )
    classes: tuple[Annotated[int, Field(ge=2)], ...] = Field(
        (1000, 2000, 4000, 8000),
        min_length=1,
        description="Official scripts: 4 classifiers of 1000, 2000, 4000 and 8000 classes "
        "(the paper's ablation: one classifier of 1000 on ImageNet already works); "
        "one number: one classifier.",
    )
    projector: tuple[PositiveInt, ...] = Field(
        (4096, 4096, 128),
        min_length=1,
        description="Official scripts: an MLP with 2 hidden layers of 4096 (BN, ReLU) to a "
        "128-d embedding.",
    )
    augment: TwoViewPolicy = Field(
        "simclr", description="The official code: crop, flip, jitter, grey, blur."
    )

    @classmethod
    def resolve(cls, facts: Facts) -> dict[str, Resolved]:
        """bench_ssl.py METHOD_KWARGS: an MLP 4x the feature wide, one classifier of 1,000."""
        classes = Resolved((1000,), "one classifier of 1,000 (bench_ssl; the paper)")
        return {"classes": classes, **projector_rule(facts, last=128)}

    @field_validator("classes", mode="before")
    @classmethod
    def _one_classifier(cls, v: Any) -> Any:
        return (v,) if isinstance(v, int) else v


class SelfClassifier(Method):
    """Encoder + MLP + cosine classifier(s) over made-up classes, on two views."""

    name: ClassVar[str] = "self_classifier"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[SelfClassifierConfig]] = SelfClassifierConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("simclr",)}

    def __init__(
        self, network: Network, config: SelfClassifierConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = SelfClassifierConfig.build(self.name, config, options)
        self.network = network
        self.row_tau, self.col_tau = cfg.row_tau, cfg.col_tau
        self.projector = ProjectionHead(network.feature_dim, cfg.projector)
        dim = self.projector.out_dim
        self.classifiers = nn.ModuleList(CosineLinear(dim, c) for c in cfg.classes)
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

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
        return {"loss": loss, "classes_used": torch.tensor(float(used), device=loss.device)}
