"""Run by tests/test_reliability_round2b.py under torchrun (2 gloo processes).

Each rank feeds its half of two fixed batches of class probabilities to FreeMatch's,
SoftMatch's and the alignment's running statistics; rank 0 saves the statistics, which
must equal those of one process fed the whole batches (USB gathers across ranks).
"""

from __future__ import annotations

import sys

import torch
import torch.distributed as dist

from fewlabels.methods.masking import (
    DistributionAlignment,
    SelfAdaptiveThreshold,
    TruncatedGaussian,
)

N, C, MOMENTUM = 8, 3, 0.5


def batches() -> list[torch.Tensor]:
    """Two global batches of probabilities (N, C)."""
    g = torch.Generator().manual_seed(7)
    return [torch.softmax(3 * torch.randn(N, C, generator=g), dim=1) for _ in range(2)]


def main(out: str) -> None:
    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    torch.set_num_threads(1)
    n = N // world
    free, soft = SelfAdaptiveThreshold(C, MOMENTUM), TruncatedGaussian(C, MOMENTUM)
    align = DistributionAlignment(C, MOMENTUM)
    for probs in batches():
        local = probs[rank * n : (rank + 1) * n]
        free(local)
        soft(local)
        align(local)
    state = {
        "tau": free.tau,
        "class_probs": free.class_probs,
        "hist": free.hist,
        "mu": soft.mu,
        "var": soft.var,
        "align": align.class_probs,
    }
    if rank == 0:
        torch.save(state, out)
    dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
