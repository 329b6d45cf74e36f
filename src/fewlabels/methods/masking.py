"""Which unlabeled predictions to learn from, and how much: the swappable pieces of the
FixMatch family.

Each piece turns the weak view's class probabilities ``probs`` (N, C) into per-sample
weights in [0, 1] for the pseudo-label loss on the strong view. The arithmetic is in pure
functions (tested against hand-worked numbers); the ``Masking`` modules around them keep
their running state in buffers, so it is checkpointed with the method and resumes exactly.
State is updated only in training mode. FreeMatch's and SoftMatch's running statistics
(and the alignment's class mean) are computed from the batch gathered across DDP processes,
as the reference code (USB) does, so every rank holds the same statistics.

===================  =========================================================  ==========
piece                weight of sample i (q = max_c probs[i, c], c* its argmax)   source
===================  =========================================================  ==========
FixedThreshold       1 if q >= tau else 0                                        FixMatch
ConfidenceWeight     q (no hard threshold)                                       report 001
ClassWiseCurriculum  1 if q >= tau * M(beta_c*), beta from a prediction memory   FlexMatch
SelfAdaptive         1 if q >= tau_t * p_t(c*) / max p_t, EMA global + local     FreeMatch
TruncatedGaussian    exp(-(min(q - mu_t, 0))^2 / (2 var_t / n_sigma^2))          SoftMatch
===================  =========================================================  ==========

The two adaptive thresholds (ClassWiseCurriculum, SelfAdaptive) take a ``floor``
(FlexMatch's and FreeMatch's ``min_threshold``, 0.5 by default; the papers have none): their
early thresholds are near 0 (1/C for FreeMatch), which otherwise lets a weak model's every
guess count as a label.

``DistributionAlignment`` (SoftMatch's uniform alignment) rescales ``probs`` before any of
them. FreeMatch's fairness term is a loss (``fewlabels.losses.freematch_fairness_loss``).
"""

from __future__ import annotations

import torch
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.losses.distributed import gather_no_grad

Tensor = torch.Tensor

# The pieces' own defaults, for use outside a method (the methods' Configs set them).
# FixMatch (Sohn et al. 2020), section 3.2 / appendix B: tau = 0.95. FlexMatch
# (Zhang et al. 2021) keeps 0.95 as the upper end of its class-wise thresholds.
THRESHOLD = 0.95
# FreeMatch (Wang et al. 2023), section 3.2: EMA momentum lambda = 0.999; SoftMatch
# (Chen et al. 2023), section 3.3: m = 0.999 for the mean and variance of confidence.
EMA = 0.999
# SoftMatch's official code (USB ``SoftMatchWeightingHook``): the Gaussian's width is
# the running std divided by n_sigma = 2.
N_SIGMA = 2.0


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float when it lies in (0, 1], else a one-line ConfigError."""
    t = float(threshold)
    if not 0.0 < t <= 1.0:
        raise ConfigError(f"confidence threshold must be in (0, 1], got {threshold}")
    return t


def check_weight(lambda_u: float) -> float:
    """The unlabeled loss weight as a float when it is >= 0, else a one-line ConfigError."""
    w = float(lambda_u)
    if not w >= 0:  # also refuses NaN
        raise ConfigError(f"lambda_u must be >= 0, got {lambda_u}")
    return w


def check_rampup(rampup: float) -> float:
    """A ramp-up length as a fraction of the budget in [0, 1], else a one-line ConfigError."""
    r = float(rampup)
    if not 0.0 <= r <= 1.0:
        raise ConfigError(f"rampup must be a fraction of the budget in [0, 1], got {rampup}")
    return r


def check_momentum(m: float, what: str = "EMA momentum") -> float:
    """``m`` as a float when it lies in [0, 1), else a one-line ConfigError."""
    m = float(m)
    if not 0.0 <= m < 1.0:
        raise ConfigError(f"{what} must be in [0, 1), got {m}")
    return m


def check_floor(floor: float) -> float:
    """A lower bound of adaptive thresholds in [0, 1], else a one-line ConfigError."""
    f = float(floor)
    if not 0.0 <= f <= 1.0:  # also refuses NaN
        raise ConfigError(f"min_threshold must be in [0, 1], got {floor}")
    return f


# -- pure functions ---------------------------------------------------------------------


def fixed_threshold_mask(probs: Tensor, threshold: float) -> Tensor:
    """FixMatch: 1.0 where the top probability reaches ``threshold``, else 0.0."""
    return (probs.max(dim=1).values >= threshold).to(probs.dtype)


def confidence_weights(probs: Tensor) -> Tensor:
    """Report 001's variant without a hard threshold: the top probability is the weight."""
    return probs.max(dim=1).values


def flexmatch_class_thresholds(
    memory: Tensor, num_classes: int, threshold: float, warmup: bool = True
) -> Tensor:
    """FlexMatch's class-wise thresholds ``tau * M(beta_c)`` with ``M(x) = x / (2 - x)``.

    ``memory`` (U,) holds, per unlabeled image, the class it was last confidently predicted
    as, or -1. ``sigma_c`` counts class c in it; ``beta_c = sigma_c / max_c sigma_c``, where
    with ``warmup`` the count of never-confident images (-1) joins the maximum (FlexMatch
    eq. 11), so thresholds rise only as the memory fills.
    """
    sigma = torch.bincount(memory[memory >= 0], minlength=num_classes)[:num_classes]
    denom = sigma.max()
    if warmup:
        denom = torch.maximum(denom, (memory < 0).sum())
    beta = sigma.float() / denom.clamp_min(1).float()
    return threshold * beta / (2.0 - beta)


def class_threshold_mask(probs: Tensor, class_thresholds: Tensor) -> Tensor:
    """1.0 where the top probability reaches the threshold of its predicted class."""
    q, c = probs.max(dim=1)
    return (q >= class_thresholds.to(probs.dtype)[c]).to(probs.dtype)


def freematch_class_thresholds(global_conf: Tensor, class_probs: Tensor) -> Tensor:
    """FreeMatch eq. 6-7: ``tau_t(c) = p_t(c) / max_c p_t(c) * tau_t`` (MaxNorm x global)."""
    return class_probs / class_probs.max() * global_conf


def truncated_gaussian_weights(
    probs: Tensor, mu: Tensor | float, var: Tensor | float, n_sigma: float = 2.0
) -> Tensor:
    """SoftMatch eq. 7: weight 1 at or above the mean confidence ``mu``, below it a Gaussian
    ``exp(-(q - mu)^2 / (2 var / n_sigma^2))`` of the top probability ``q``."""
    q = probs.max(dim=1).values
    d = torch.clamp(q - mu, max=0.0)
    return torch.exp(-(d * d) / (2.0 * var / (n_sigma * n_sigma)))


def uniform_alignment(probs: Tensor, class_probs: Tensor) -> Tensor:
    """SoftMatch's uniform alignment: ``SumNorm(probs * u / E[p])`` with u uniform, i.e.
    divide each class's probability by its running mean and renormalise each row."""
    p = probs / class_probs.to(probs.dtype).clamp_min(1e-12)
    return p / p.sum(dim=1, keepdim=True)


def ema_(buffer: Tensor, value: Tensor, momentum: float) -> None:
    """In place: ``buffer = momentum * buffer + (1 - momentum) * value``."""
    buffer.mul_(momentum).add_(value.to(buffer.dtype), alpha=1.0 - momentum)


# -- modules holding the state ------------------------------------------------------------


class Masking(nn.Module):
    """Base of the pieces: ``masking(probs, index) -> weights (N,)``, state in buffers."""

    def setup(self, *, num_unlabeled: int, num_classes: int) -> None:
        """Size per-sample buffers (called once, before a checkpoint is loaded)."""

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        raise NotImplementedError


class FixedThreshold(Masking):
    """FixMatch's hard mask at a fixed confidence threshold (default 0.95)."""

    def __init__(self, threshold: float = THRESHOLD) -> None:
        super().__init__()
        self.threshold = check_threshold(threshold)

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        return fixed_threshold_mask(probs, self.threshold)


class ConfidenceWeight(Masking):
    """Every pseudo-label counts, weighted by its confidence (report 001's variant)."""

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        return confidence_weights(probs)


class ClassWiseCurriculum(Masking):
    """FlexMatch's curriculum pseudo-labelling: class-wise thresholds from a memory of the
    last confident prediction of every unlabeled image (``memory``, sized by ``setup``)."""

    def __init__(
        self, threshold: float = THRESHOLD, warmup: bool = True, floor: float = 0.0
    ) -> None:
        super().__init__()
        self.threshold = check_threshold(threshold)
        self.warmup = bool(warmup)
        self.floor = min(check_floor(floor), self.threshold)  # never above the top
        self.num_classes = 0
        self.register_buffer("memory", torch.full((0,), -1, dtype=torch.long))

    def setup(self, *, num_unlabeled: int, num_classes: int) -> None:
        self.num_classes = int(num_classes)
        self.memory = torch.full(
            (int(num_unlabeled),), -1, dtype=torch.long, device=self.memory.device
        )

    def class_thresholds(self) -> Tensor:
        t = flexmatch_class_thresholds(self.memory, self.num_classes, self.threshold, self.warmup)
        return t.clamp_min(self.floor)

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        if self.training:
            if index is None or self.memory.numel() == 0:
                raise ConfigError("FlexMatch needs the unlabeled indices and a sized memory")
            q, c = probs.max(dim=1)
            sure = q >= self.threshold
            self.memory[index[sure]] = c[sure]
        return class_threshold_mask(probs, self.class_thresholds())


class SelfAdaptiveThreshold(Masking):
    """FreeMatch's self-adaptive thresholds: an EMA of the mean top confidence (global
    ``tau``) scaled per class by the EMA of the class probabilities (``class_probs``).
    ``hist``, the EMA histogram of pseudo-labels, feeds the optional fairness term."""

    def __init__(self, num_classes: int, momentum: float = EMA, floor: float = 0.0) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError("FreeMatch needs a classifier with at least one class")
        self.momentum = check_momentum(momentum)
        self.floor = check_floor(floor)
        c = int(num_classes)
        self.register_buffer("tau", torch.tensor(1.0 / c))
        self.register_buffer("class_probs", torch.full((c,), 1.0 / c))
        self.register_buffer("hist", torch.full((c,), 1.0 / c))

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        probs = gather_no_grad(probs.float())  # USB: concat_all_gather under DDP
        q, c = probs.max(dim=1)
        m = self.momentum
        ema_(self.tau, q.mean(), m)
        ema_(self.class_probs, probs.mean(dim=0), m)
        n = self.hist.numel()
        ema_(self.hist, torch.bincount(c, minlength=n)[:n].float() / len(c), m)

    def class_thresholds(self) -> Tensor:
        return freematch_class_thresholds(self.tau, self.class_probs).clamp_min(self.floor)

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        if self.training:
            self.update(probs)
        return class_threshold_mask(probs, self.class_thresholds())


class TruncatedGaussian(Masking):
    """SoftMatch's soft weights: a Gaussian below the running mean confidence ``mu`` (EMA,
    starts at 1/C) with the running variance ``var`` (EMA of the unbiased batch variance,
    starts at 1); weight 1 above the mean."""

    def __init__(
        self,
        num_classes: int,
        momentum: float = EMA,
        n_sigma: float = N_SIGMA,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ConfigError("SoftMatch needs a classifier with at least one class")
        if n_sigma <= 0:
            raise ConfigError(f"n_sigma must be positive, got {n_sigma}")
        self.momentum = check_momentum(momentum)
        self.n_sigma = float(n_sigma)
        self.register_buffer("mu", torch.tensor(1.0 / num_classes))
        self.register_buffer("var", torch.tensor(1.0))

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        q = gather_no_grad(probs.float()).max(dim=1).values  # USB: gathered under DDP
        ema_(self.mu, q.mean(), self.momentum)
        if len(q) > 1:
            ema_(self.var, q.var(unbiased=True), self.momentum)

    def forward(self, probs: Tensor, index: Tensor | None = None) -> Tensor:
        if self.training:
            self.update(probs)
        return truncated_gaussian_weights(probs, self.mu, self.var, self.n_sigma)


class DistributionAlignment(nn.Module):
    """SoftMatch's uniform alignment: keeps the EMA of the unlabeled class probabilities
    (``class_probs``) and divides predictions by it.

    As in USB's ``DistAlignEMAHook`` the running mean starts from the first training batch's
    mean (gathered across DDP processes), not from uniform: with momentum 0.999 a uniform
    start would still make up 90% of it after 100 steps. Until that first batch
    ``class_probs`` is all zeros (a mean of probabilities sums to 1, so zeros mean "not
    started") and the alignment leaves predictions unchanged.
    """

    def __init__(self, num_classes: int, momentum: float = EMA) -> None:
        super().__init__()
        self.momentum = check_momentum(momentum)
        self.register_buffer("class_probs", torch.zeros(num_classes))

    @torch.no_grad()
    def update(self, probs: Tensor) -> None:
        """Fold the batch mean of ``probs`` (gathered across processes) into the EMA."""
        mean = gather_no_grad(probs.float()).mean(dim=0)
        if bool((self.class_probs == 0).all()):
            self.class_probs.copy_(mean)
        else:
            ema_(self.class_probs, mean, self.momentum)

    def forward(self, probs: Tensor) -> Tensor:
        if self.training:
            self.update(probs)
        if bool((self.class_probs == 0).all()):
            return probs
        return uniform_alignment(probs, self.class_probs)
