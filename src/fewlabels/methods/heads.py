"""Building blocks shared by the self-supervised methods: MLP heads, frozen momentum copies,
and a decorator that runs a loss in fp32 even inside a bf16 autocast region."""

from __future__ import annotations

import copy
import functools
import itertools
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from fewlabels.core.errors import ConfigError

P = ParamSpec("P")
R = TypeVar("R")


def mlp(dims: Sequence[int], bn: bool = True, last_bn: bool = False) -> nn.Sequential:
    """Linear layers ``dims[0] -> dims[1] -> ... -> dims[-1]``.

    Every layer but the last is Linear + BatchNorm1d (when ``bn``; the Linear then has no
    bias) + ReLU. The last is a plain Linear, followed by an affine-free BatchNorm1d when
    ``last_bn``. ``mlp([512, 2048, 128])`` is SimCLR's projection head.
    """
    dims = [int(d) for d in dims]
    if len(dims) < 2 or min(dims) < 1:
        raise ConfigError(f"an MLP needs at least two positive sizes, got {dims}")
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims[:-1]):
        layers.append(nn.Linear(a, b, bias=not bn))
        if bn:
            layers.append(nn.BatchNorm1d(b))
        layers.append(nn.ReLU(inplace=True))
    layers.append(nn.Linear(dims[-2], dims[-1], bias=not last_bn))
    if last_bn:
        layers.append(nn.BatchNorm1d(dims[-1], affine=False))
    return nn.Sequential(*layers)


def frozen_copy(module: nn.Module) -> nn.Module:
    """A deep copy whose parameters have ``requires_grad=False`` (a momentum target)."""
    target = copy.deepcopy(module)
    target.requires_grad_(False)
    return target


@torch.no_grad()
def momentum_update(target: nn.Module, online: nn.Module, tau: float) -> None:
    """``target = tau * target + (1 - tau) * online``, parameter by parameter.

    Buffers (BatchNorm running statistics) are left alone: the target runs in training
    mode, so they never enter the loss.
    """
    t = list(target.parameters())
    o = [p.detach() for p in online.parameters()]
    if len(t) != len(o):
        raise ValueError("target and online modules have different parameters")
    if t:
        torch._foreach_lerp_(t, o, 1.0 - tau)


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


def two_view_policy(augment: str, method: str) -> str:
    """``augment`` when it names a policy giving two augmented views, else a ConfigError.

    The joint-embedding methods unpack two views of each image; a one-view policy
    (``weak``) or an image-and-target policy (``rotation``) would fail deep in a step.
    """
    from fewlabels.augment import build_policy

    policy = build_policy(augment)
    if policy.num_views != 2 or len(policy.outputs) != 2:
        raise ConfigError(
            f"method {method!r} needs a two-view augmentation policy (twoview, simclr); "
            f"{augment!r} gives {', '.join(policy.outputs)}"
        )
    return augment


class CosineLinear(nn.Linear):
    """Bias-free linear layer on L2-normalised inputs and L2-normalised weight rows: the
    outputs are cosine similarities to ``out_features`` prototypes (a weight-normalised
    layer with its gain fixed to 1, as DINO's last layer and Self-Classifier's classifier).

    It runs in fp32 even under bf16 autocast: its outputs are divided by temperatures as
    small as 0.04, which would magnify bf16's rounding into the logits.
    """

    def __init__(self, in_features: int, out_features: int) -> None:
        super().__init__(in_features, out_features, bias=False)

    def forward(self, x: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Cosine scores; ``frozen``: the weight gets a zero gradient (only weight decay can
        move it, and DDP still sees it used)."""
        weight = self.weight.detach() + 0.0 * self.weight if frozen else self.weight
        with torch.autocast(x.device.type, enabled=False):
            w = F.normalize(weight.float(), dim=1)
            return F.normalize(x.float(), dim=1) @ w.T


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
