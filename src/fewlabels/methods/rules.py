"""What a run knows before its first step (``Facts``) and a value derived from it with the
rule that produced it (``Resolved``): the vocabulary of the settings' resolution rules.

Each method's config declares its own rules beside its defaults
(``MethodConfig.resolve(facts)``); the loop's generic rules live in
``fewlabels.train.resolve``. A rule reads only these facts, never which data set it is.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from fewlabels.core.budget import Budget

__all__ = ["Facts", "Resolved", "crop_scale", "lars_recipe", "projector_rule", "view_size"]


@dataclass(frozen=True)
class Facts:
    """What the run knows: the images, the classes, the split sizes, the budget, the method
    and (once chosen) the backbone, its feature size and the steps the budget buys."""

    image_size: int
    channels: int
    num_classes: int
    labeled: int
    unlabeled: int
    budget: Budget
    kind: str = "supervised"  # the method's kind: supervised, semi- or self-supervised
    method: str = "supervised"
    device: str = "cpu"
    backbone: str | None = None
    feature_dim: int | None = None
    step_seconds: float | None = None  # one training step, from the speed probe
    steps: int | None = None  # the steps the budget buys (None: unknown)
    batch: int | None = None  # the batch the loop's batch_size counts (once resolved)


@dataclass(frozen=True)
class Resolved:
    """A setting's value and the rule that gave it (``given``: the user's value, kept)."""

    value: Any
    rule: str
    given: bool = False


def view_size(image_size: int, share: float = 0.625) -> int:
    """The side of the crops a two-view method trains on: ``share`` of the image side,
    a multiple of 4 (bench_ssl.py VICReg: 20 px views of 32 px images), at least 8 px."""
    return max(8, min(image_size, 4 * round(share * image_size / 4)))


def crop_scale(image_size: int) -> float:
    """The smallest crop (share of the image area): 0.35 up to 32 px (bench_ssl.py VICReg,
    measured at 32 px), 0.2 up to 64 px (solo-learn's CIFAR configs), else 0.14."""
    if image_size <= 32:
        return 0.35
    return 0.2 if image_size <= 64 else 0.14


def lars_recipe(
    facts: Facts, lr_256: float, weight_decay: float, clip: float, source: str
) -> dict[str, Resolved]:
    """A LARS recipe from bench_ssl.py METHOD_TRAIN: peak lr ``lr_256`` x batch/256 (linear
    scaling rule), its weight decay and gradient-norm clip."""
    batch = facts.batch or 256
    return {
        "train.optimizer": Resolved("lars", f"{source}: LARS"),
        "train.lr": Resolved(round(lr_256 * batch / 256, 6), f"{lr_256} x batch/256 ({source})"),
        "train.weight_decay": Resolved(weight_decay, source),
        "train.grad_clip": Resolved(clip, f"{source}: gradient norm clipped"),
    }


def projector_rule(facts: Facts, last: int | None = None) -> dict[str, Resolved]:
    """bench_ssl.py's projectors: three layers 4x the feature wide (the last ``last`` wide
    when given); nothing before the feature size is known."""
    if not facts.feature_dim:
        return {}
    w = 4 * facts.feature_dim
    dims = (w, w, w if last is None else last)
    return {"projector": Resolved(dims, f"4 x feature {facts.feature_dim} (bench_ssl)")}
