"""MoCo v2 (He et al. 2020; Chen et al. 2020): contrast each query with its key from a
momentum encoder and with a queue of past keys (InfoNCE, ``fewlabels.losses.infonce``).

The key encoder (encoder + MLP head) is an EMA of the query one, its parameters untouched
by the optimiser. ``step`` computes the loss; ``after_step`` moves the key encoder and
enqueues this step's keys (under DDP, gathered from every rank, so all queues stay equal).
Not included: MoCo's shuffled BatchNorm (a multi-GPU trick against BN information leaks).
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
import torch.nn.functional as F
from pydantic import Field, PositiveFloat, PositiveInt

from fewlabels.losses.distributed import gather_no_grad
from fewlabels.losses.infonce import moco_loss
from fewlabels.methods.base import Batch, Method, MethodConfig, TwoViewPolicy
from fewlabels.methods.momentum import frozen_copy, momentum_update
from fewlabels.models import Network
from fewlabels.models.heads import ProjectionHead

_DEMO = "The MoCo authors' CIFAR-10 demo: momentum 0.99, queue 4096 (MoCo v2 on ImageNet: "
_DEMO += "0.999 and 65536, too slow-moving and too long for small data sets)."


class MoCoConfig(MethodConfig):
    """MoCo v2's options."""

    temperature: PositiveFloat = Field(
        0.2,
        description="MoCo v2 paper: temperature 0.2 (its ImageNet setting; the authors' "
        "CIFAR-10 demo notebook uses 0.1).",
    )
    momentum: float = Field(0.99, ge=0, le=1, description=_DEMO)
    queue_size: PositiveInt = Field(4096, description=_DEMO)
    head: tuple[PositiveInt, ...] = Field(
        (2048, 128),
        min_length=1,
        description="MoCo v2: a 2-layer MLP head (hidden 2048, ReLU, no BN) to 128-d.",
    )
    symmetric: bool = Field(
        False,
        description="MoCo v2 is asymmetric; the CIFAR-10 demo's symmetric loss uses both "
        "views both ways.",
    )
    augment: TwoViewPolicy = Field("twoview", description="Two augmented views of each image.")


class MoCo(Method):
    """MoCo v2: query encoder + MLP head, a momentum key encoder and a queue of keys."""

    name: ClassVar[str] = "moco"
    kind: ClassVar[str] = "self-supervised"
    Config: ClassVar[type[MoCoConfig]] = MoCoConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": (), "unlabeled": ("twoview",)}
    queue: torch.Tensor
    queue_ptr: torch.Tensor

    def __init__(self, network: Network, config: MoCoConfig | None = None, **options: Any) -> None:
        super().__init__()
        self.config = cfg = MoCoConfig.build(self.name, config, options)
        self.network = network
        self.temperature, self.momentum = cfg.temperature, cfg.momentum
        self.symmetric = cfg.symmetric
        self.head = ProjectionHead(network.feature_dim, cfg.head, bn=False)
        self.key_network = frozen_copy(network)
        self.key_head = frozen_copy(self.head)
        queue = F.normalize(torch.randn(cfg.queue_size, self.head.out_dim), dim=1)
        self.register_buffer("queue", queue)
        self.register_buffer("queue_ptr", torch.zeros((), dtype=torch.long))
        self.views = {"labeled": (), "unlabeled": (cfg.augment,)}
        self._new_keys: torch.Tensor | None = None

    def _keys(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return F.normalize(self.key_head(self.key_network.features(x)).float(), dim=1)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        v1, v2 = batch.unlabeled[0]
        if self.symmetric:
            q1, q2 = self.head(self.network.features(torch.cat([v1, v2]))).chunk(2)
            k1, k2 = self._keys(torch.cat([v1, v2])).chunk(2)
            loss = moco_loss(q1, k2, self.queue, self.temperature)
            loss = loss + moco_loss(q2, k1, self.queue, self.temperature)
            self._new_keys = torch.cat([k1, k2])
        else:
            q1 = self.head(self.network.features(v1))
            k2 = self._keys(v2)
            loss = moco_loss(q1, k2, self.queue, self.temperature)
            self._new_keys = k2
        with torch.no_grad():
            q = F.normalize(q1.float(), dim=1)
            acc = ((q * k2).sum(1) > (q @ self.queue.T).max(1).values).float().mean()
        return {"loss": loss, "moco_acc": acc}

    @torch.no_grad()
    def after_step(self) -> None:
        momentum_update(self.key_network, self.network, self.momentum)
        momentum_update(self.key_head, self.head, self.momentum)
        if self._new_keys is not None:
            self._enqueue(gather_no_grad(self._new_keys))
            self._new_keys = None

    def _enqueue(self, keys: torch.Tensor) -> None:
        """Write ``keys`` over the oldest entries of the ring buffer and advance the pointer."""
        size = self.queue.shape[0]
        keys = keys[-size:].to(self.queue.dtype)
        idx = (self.queue_ptr + torch.arange(len(keys), device=keys.device)) % size
        self.queue[idx] = keys
        self.queue_ptr.copy_((self.queue_ptr + len(keys)) % size)
