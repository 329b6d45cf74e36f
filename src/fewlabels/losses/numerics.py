"""Numerical helpers of the losses: fp32 evaluation under autocast, and ``||A^T B||_F^2``
without the ``(D, D)`` product."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, ParamSpec, TypeVar

import torch

P = ParamSpec("P")
R = TypeVar("R")


def full_precision(fn: Callable[P, R]) -> Callable[P, R]:
    """Run ``fn`` with autocast off and its floating-point tensor arguments cast to fp32.

    The training loop runs methods under bf16 autocast; inside it a matmul is done in
    bf16 even on fp32 inputs, which costs the similarity and correlation matrices of these
    losses their precision.
    """

    def cast(a: Any) -> Any:
        return a.float() if isinstance(a, torch.Tensor) and a.is_floating_point() else a

    @functools.wraps(fn)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        tensors = [a for a in (*args, *kwargs.values()) if isinstance(a, torch.Tensor)]
        device = tensors[0].device.type if tensors else "cpu"
        args_32 = [cast(a) for a in args]
        kwargs_32 = {k: cast(v) for k, v in kwargs.items()}
        with torch.autocast(device, enabled=False):
            return fn(*args_32, **kwargs_32)  # type: ignore[arg-type]

    return wrapper


def sum_sq_product(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``||a.T @ b||_F^2`` of two ``(N, D)`` matrices without forming the ``(D, D)`` product
    when ``N < D``: it equals ``sum((a @ a.T) * (b @ b.T))``, ``N^2 D`` multiply-adds and
    an ``(N, N)`` matrix instead of ``N D^2`` and a ``(D, D)`` one."""
    n, d = a.shape
    if n < d:
        ga = a @ a.T
        gb = ga if b is a else b @ b.T
        return (ga * gb).sum()
    return (a.T @ b).square().sum()
