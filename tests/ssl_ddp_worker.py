"""Run by tests/test_ssl_ddp.py under torchrun (2 gloo processes), and imported by it.

Each rank runs a method's real ``step`` on its half of a fixed batch of embeddings (the
network and projector are identities, so the loss is a function of the embeddings), then
rank 0 saves what DDP would see: the mean of the ranks' losses, every rank's input
gradient divided by the world size (DDP averages gradients), the ranks' mean parameter
gradients, and DINO's batch centre.
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist
from torch import nn

from fewlabels.methods import Batch, Method, build_method

N, D = 8, 6  # global batch, embedding width

CASES: dict[str, dict] = {
    "simclr": {"temperature": 0.5, "projector": (16, D)},
    "barlow_twins": {"lambd": 0.01, "projector": (16, D)},
    "vicreg": {"projector": (16, D)},
    "swav": {"num_prototypes": 5, "projector": (16, D)},
    "self_classifier": {"classes": (5, 7), "projector": (16, D)},
    "dino": {"num_prototypes": 5, "head": (16, D)},
}


class Flat(nn.Module):
    """A stand-in network whose features are its inputs."""

    feature_dim = D

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return x


def build(name: str) -> Method:
    """The method with identity network and projector (same weights on every rank)."""
    torch.manual_seed(0)
    m = build_method(name, Flat(), **CASES[name])
    if name == "dino":
        m.head[0] = nn.Identity()
        m.teacher_head[0] = nn.Identity()
    else:
        m.projector = nn.Identity()
    return m


def embeddings() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(123)
    return torch.randn(N, D, generator=g), torch.randn(N, D, generator=g)


def run(name: str, z1: torch.Tensor, z2: torch.Tensor) -> dict[str, torch.Tensor]:
    """Loss, input gradients and parameter gradients of one step on ``(z1, z2)``."""
    m = build(name)
    z1, z2 = z1.clone().requires_grad_(), z2.clone().requires_grad_()
    out = m(Batch(unlabeled=[(z1, z2)]))
    out["loss"].backward()
    res = {"loss": out["loss"].detach(), "g1": z1.grad, "g2": z2.grad}
    for k, p in m.named_parameters():
        if p.grad is not None:
            res[f"param:{k}"] = p.grad
    if name == "dino":
        res["center"] = m._batch_center
    return res


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    n = N // world
    z1, z2 = embeddings()
    results = {}
    for name in CASES:
        r = run(name, z1[rank * n : (rank + 1) * n], z2[rank * n : (rank + 1) * n])
        row = {}
        for k, v in r.items():
            if k in ("g1", "g2"):
                parts = [torch.empty_like(v) for _ in range(world)]
                dist.all_gather(parts, (v / world).contiguous())
                row[k] = torch.cat(parts)
            else:
                v = v.clone()
                dist.all_reduce(v)
                row[k] = v / world
        results[name] = row
    if rank == 0:
        torch.save(results, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
