"""RotNet (Gidaris, Singh & Komodakis 2018): learn features by predicting which of four
rotations (0, 90, 180, 270 degrees) was applied to an image.

The ``rotation`` policy returns ``(image rotated by k x 90 degrees, k)``. With
``all_rotations`` (the paper's choice: all four rotations of each image in the same batch
work better than one at random) the method turns each of those images further by 0..3
quarter turns, so the batch holds every rotation of every image with label ``(k + j) % 4``.
The loss is the cross-entropy of a small head on the encoder's features over the 4
rotations; it is a per-image mean, so under DDP the ranks' mean is the global loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

import torch
import torch.nn.functional as F

from fewlabels.methods.base import Batch, Method
from fewlabels.methods.heads import mlp
from fewlabels.models import Network

DEFAULTS = {
    # Gidaris et al. 2018 (implementation details): all four rotations of each image in
    # the same batch train better than one random rotation per image.
    "all_rotations": True,
    # Hidden sizes of the rotation classifier on the encoder's features; () = linear (the
    # paper's classifier is the top of its network; here the encoder must carry the signal).
    "head": (),
}


def rotation_loss(logits: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
    """Cross-entropy of ``(N, 4)`` rotation logits against the quarter-turn counts ``k``."""
    return F.cross_entropy(logits.float(), k)


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
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("rotation",)}

    def __init__(
        self,
        network: Network,
        all_rotations: bool = DEFAULTS["all_rotations"],
        head: Sequence[int] = DEFAULTS["head"],
        augment: str = "rotation",
    ) -> None:
        super().__init__()
        self.network = network
        self.all_rotations = bool(all_rotations)
        self.unlabeled_copies = 4 if self.all_rotations else 1
        self.rotation_head = mlp([network.feature_dim, *head, 4])
        self.views = {"labeled": (), "unlabeled": (augment,)}

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        x, k = batch.unlabeled[0]
        if self.all_rotations:
            x, k = all_rotations(x, k)
        logits = self.rotation_head(self.network.features(x))
        loss = rotation_loss(logits, k)
        acc = (logits.detach().argmax(1) == k).float().mean()
        return {"loss": loss, "rotation_acc": acc}
