"""RotNet (Gidaris, Singh & Komodakis 2018): learn features by predicting which of four
rotations (0, 90, 180, 270 degrees) was applied to an image.

The ``rotation`` policy returns ``(image rotated by k x 90 degrees, k)``. With
``all_rotations`` (the paper's choice: all four rotations of each image in the same batch
work better than one at random) the method turns each of those images further by 0..3
quarter turns, so the batch holds every rotation of every image with label ``(k + j) % 4``.
The loss is the cross-entropy of a small head on the encoder's features over the 4
rotations (``fewlabels.losses.rotation_loss``); it is a per-image mean, so under DDP the
ranks' mean is the global loss.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from pydantic import Field, PositiveInt

from fewlabels.losses.classification import rotation_loss
from fewlabels.methods.base import Batch, Method, MethodConfig
from fewlabels.models import Network
from fewlabels.models.heads import MLP


class RotNetConfig(MethodConfig):
    """RotNet's options."""

    all_rotations: bool = Field(
        True,
        description="Gidaris et al. 2018 (implementation details): all four rotations of "
        "each image in the same batch train better than one random rotation per image.",
    )
    head: tuple[PositiveInt, ...] = Field(
        (),
        description="Hidden sizes of the rotation classifier on the encoder's features; "
        "() = linear (the paper's classifier is the top of its network; here the encoder "
        "must carry the signal).",
    )
    augment: str = Field(
        "rotation", description="A policy returning (rotated image, quarter turns)."
    )


def all_rotations(x: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Images ``x`` (N, C, H, W) already turned ``k`` times, each turned j = 0..3 more
    times: ``(4N images, labels (k + j) % 4)``, in blocks of N per j, channels_last."""
    xs = torch.cat([torch.rot90(x, j, dims=(2, 3)) for j in range(4)])
    ks = torch.cat([(k + j) % 4 for j in range(4)])
    return xs.contiguous(memory_format=torch.channels_last), ks


class RotNet(Method):
    """Encoder ``network.features`` + a 4-way rotation classifier."""

    name: ClassVar[str] = "rotnet"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[RotNetConfig]] = RotNetConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("rotation",)}

    def __init__(
        self, network: Network, config: RotNetConfig | None = None, **options: Any
    ) -> None:
        super().__init__()
        self.config = cfg = RotNetConfig.build(self.name, config, options)
        self.network = network
        self.all_rotations = cfg.all_rotations
        self.unlabeled_copies = 4 if self.all_rotations else 1
        self.rotation_head = MLP(network.feature_dim, (*cfg.head, 4))
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, k = batch.unlabeled[0]
        if self.all_rotations:
            x, k = all_rotations(x, k)
        logits = self.rotation_head(self.network.features(x))
        loss = rotation_loss(logits, k)
        acc = (logits.detach().argmax(1) == k).float().mean()
        return {"loss": loss, "rotation_acc": acc}
