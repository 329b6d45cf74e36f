"""Online linear probe: train ``network.head`` on detached features during pretraining.

solo-learn's online classifier: alongside the self-supervised loss, a linear layer learns
to classify the labeled images from the encoder's features, which are computed without
gradients, so the probe can never shape the encoder. The run's ordinary validation curve
then measures linear separability as pretraining goes on, and the exported ``model.pt``
is a usable classifier.

Design choices:
- The probe's features come from the encoder in eval mode (BatchNorm running statistics,
  no dropout): the same features the head sees at evaluation, and no running statistics
  or random numbers are taken from the self-supervised step.
- The head's parameters sit in the loop's optimiser. Their gradients come only from the
  probe loss, and SGD/AdamW update each parameter independently, so this is the same as a
  separate optimiser with the run's learning-rate schedule (global gradient clipping is
  the one coupling).
- ``primary = "unlabeled"``: ``--batch-size`` stays the pretraining batch; the labeled
  batch is ``batch_size / unlabeled_batch_ratio`` (37 images for 256 and the default 7).
- ``state_dict`` / ``load_state_dict`` are the inner method's, so checkpoints hold the same
  keys (``network.*``, projector, ...) with or without the probe.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.methods.base import Batch, Method, MethodConfig

# solo-learn trains its online classifier on weakly augmented (crop + flip) images.
PROBE_AUGMENT = "weak"


def probe_loss(
    network: nn.Module, images: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy of ``network.head`` on eval-mode, gradient-free features; (loss, acc)."""
    was_training = network.training
    network.eval()
    try:
        with torch.no_grad():
            feats = network.features(images)
    finally:
        network.train(was_training)
    logits = network.head(feats.detach()).float()
    loss = F.cross_entropy(logits, labels)
    acc = (logits.detach().argmax(1) == labels).float().mean()
    return loss, acc


class OnlineProbe(Method):
    """Wraps a self-supervised method: its loss + a linear probe on labeled images."""

    primary: ClassVar[str] = "unlabeled"

    def __init__(self, inner: Method, augment: str = PROBE_AUGMENT) -> None:
        super().__init__()
        self.inner = inner
        self.name = inner.name  # type: ignore[misc]
        self.kind = inner.kind  # type: ignore[misc]
        self.views = {  # type: ignore[misc]
            "labeled": (augment,),
            "unlabeled": tuple(inner.views.get("unlabeled", ())),
        }

    @property  # type: ignore[override]
    def network(self) -> nn.Module:  # the inner method's: not registered twice
        return self.inner.network

    @property  # type: ignore[override]
    def config(self) -> MethodConfig:  # the inner method's options
        return self.inner.config

    @property  # type: ignore[override]
    def unlabeled_copies(self) -> int:
        return self.inner.unlabeled_copies

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        out = dict(self.inner.step(dataclasses.replace(batch, labeled=[], labels=None)))
        assert batch.labels is not None
        loss, acc = probe_loss(self.network, batch.labeled[0], batch.labels)
        out["loss"] = out["loss"] + loss
        out["probe_loss"], out["probe_acc"] = loss.detach(), acc
        return out

    def setup(self, *, num_labeled: int, num_unlabeled: int, num_classes: int) -> None:
        setup = getattr(self.inner, "setup", None)
        if setup is not None:
            setup(num_labeled=0, num_unlabeled=num_unlabeled, num_classes=num_classes)

    def after_step(self) -> None:
        self.inner.after_step()

    def state_dict(self, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
        return self.inner.state_dict(*args, **kwargs)

    def load_state_dict(
        self, state_dict: Mapping[str, Any], strict: bool = True, assign: bool = False
    ) -> Any:
        return self.inner.load_state_dict(state_dict, strict=strict, assign=assign)


def with_online_probe(method: Method, augment: str = PROBE_AUGMENT) -> Method:
    """``OnlineProbe(method)`` for a self-supervised method, else the method unchanged."""
    if method.kind != "self-supervised" or isinstance(method, OnlineProbe):
        return method
    return OnlineProbe(method, augment)
