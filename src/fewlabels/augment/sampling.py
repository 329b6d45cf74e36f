"""Per-sample random parameters and batch helpers shared by the augmentation ops.

Parameters are drawn on the generator's device and moved to the images' device, so a
generator on the data's device (fastest) or a CPU generator both work, and an op's output
is a function of the generator state alone. Private to ``fewlabels.augment``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Tensor = torch.Tensor


def _rand(shape: tuple[int, ...], gen: torch.Generator, dev: torch.device) -> Tensor:
    return torch.rand(shape, generator=gen, device=gen.device).to(dev)


def _uniform(n: int, lo: float, hi: float, gen: torch.Generator, dev: torch.device) -> Tensor:
    return lo + (hi - lo) * _rand((n,), gen, dev)


def _randint(lo: int, hi: int, n: int, gen: torch.Generator, dev: torch.device) -> Tensor:
    """Integers uniform in [lo, hi)."""
    return torch.randint(lo, hi, (n,), generator=gen, device=gen.device).to(dev)


def _mask(n: int, p: float, gen: torch.Generator, dev: torch.device) -> Tensor:
    return _rand((n,), gen, dev) < p


def _bc(v: Tensor) -> Tensor:
    """(N,) -> (N, 1, 1, 1) for broadcasting over images."""
    return v.view(-1, 1, 1, 1)


def _on_subset(x: Tensor, on: Tensor, fn: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
    """``fn(x[idx], idx)`` written back for the selected samples; the others are unchanged.

    Cheaper than computing ``fn`` on the whole batch and blending with ``torch.where``
    when only a fraction of the samples is selected.
    """
    idx = on.nonzero().squeeze(1)
    if idx.numel() == 0:
        return x
    if idx.numel() == len(x):
        return fn(x, idx)
    out = x.clone()
    out[idx] = fn(x[idx], idx).to(out.dtype)
    return out
