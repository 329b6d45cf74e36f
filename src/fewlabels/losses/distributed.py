"""Gathering embeddings across DDP processes for losses that need the whole batch.

Every process must pass a tensor of the same shape (the loop gives each rank
``batch_size // world_size`` rows). With one process both helpers return ``t`` itself.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.distributed as dist


def rank_and_world() -> tuple[int, int]:
    """``(rank, world_size)`` of the default process group; ``(0, 1)`` without one."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


class _GatherWithGrad(torch.autograd.Function):
    """all_gather whose backward sends each rank the sum over ranks of its rows' gradients."""

    @staticmethod
    def forward(ctx: Any, t: torch.Tensor) -> torch.Tensor:
        t = t.contiguous()
        parts = [torch.empty_like(t) for _ in range(dist.get_world_size())]
        dist.all_gather(parts, t)
        return torch.cat(parts)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad)  # every rank's loss depends on every rank's rows
        return grad.chunk(dist.get_world_size())[dist.get_rank()]


def gather_with_grad(t: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` from all processes, concatenated in rank order, differentiable.

    Rank ``r``'s own rows sit at ``r * len(t) : (r + 1) * len(t)``. When every rank computes
    the same loss ``L`` on the gathered tensor, the backward hands each rank ``world * dL/dt``
    for its rows, and DDP's gradient averaging turns that into exactly ``dL/dθ`` of the
    whole batch. This is what ``torch.distributed.nn.functional.all_gather`` does; it is
    written out here because that function is deprecated (it warns on every call).
    """
    if rank_and_world()[1] == 1:
        return t
    return _GatherWithGrad.apply(t)


@torch.no_grad()
def gather_no_grad(t: torch.Tensor) -> torch.Tensor:
    """Rows of ``t`` from all processes in rank order, without gradient (MoCo's keys)."""
    _, world = rank_and_world()
    if world == 1:
        return t
    parts = [torch.empty_like(t.contiguous()) for _ in range(world)]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts)


@torch.no_grad()
def all_reduce_(t: torch.Tensor, op: str = "sum") -> torch.Tensor:
    """Reduce ``t`` in place over all processes (``"sum"`` or ``"max"``) and return it;
    with one process ``t`` is returned unchanged. No gradient flows through it."""
    if rank_and_world()[1] > 1:
        dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return t
