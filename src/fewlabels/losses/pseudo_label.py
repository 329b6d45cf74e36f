"""Semi-supervised losses on unlabeled images: the weighted pseudo-label cross-entropy of
the FixMatch family (Sohn et al. 2020) and online pseudo-labelling (Lee 2013), and FreeMatch's
self-adaptive fairness term (Wang et al. 2023, eq. 8-9)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def pseudo_label_loss(
    logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """``mean_i weights_i * CE(logits_i, targets_i)`` over all rows (in fp32)."""
    ce = F.cross_entropy(logits.float(), targets, reduction="none")
    return (ce * weights.float()).mean()


def freematch_fairness_loss(
    probs_strong: torch.Tensor, mask: torch.Tensor, class_probs: torch.Tensor, hist: torch.Tensor
) -> torch.Tensor:
    """FreeMatch's self-adaptive fairness term (eq. 8-9), to be minimised.

    ``L_f = -H(SumNorm(p_t / h_t), SumNorm(p_bar / h_bar))`` with ``H(a, b) = -sum a log b``:
    ``p_t``/``h_t`` are the running class probabilities and pseudo-label histogram,
    ``p_bar``/``h_bar`` the mean strong-view probabilities and their argmax histogram over
    the masked-in samples. Classes absent from a histogram get weight 0 (not 1/0). The
    gradient flows through ``p_bar`` only. No sample kept: 0.
    """
    keep = mask > 0
    if not bool(keep.any()):
        return probs_strong.sum() * 0.0
    p = probs_strong[keep]
    h_bar = torch.bincount(p.detach().argmax(1), minlength=p.shape[1]).to(p.dtype)
    h_bar = h_bar / h_bar.sum()

    def inverse(h: torch.Tensor) -> torch.Tensor:
        return torch.where(h > 0, 1.0 / h.clamp_min(1e-12), torch.zeros_like(h))

    target = class_probs.to(p.dtype) * inverse(hist.to(p.dtype))
    target = target / target.sum()
    ours = p.mean(dim=0) * inverse(h_bar)
    ours = ours / ours.sum()
    return (target * torch.log(ours + 1e-12)).sum()


class PseudoLabelLoss(nn.Module):
    """Weighted cross-entropy of logits against pseudo-labels (weights from a confidence
    mask), averaged over all rows, kept or not.

    >>> logits, targets, weights = torch.randn(8, 10), torch.randint(0, 10, (8,)), torch.ones(8)
    >>> loss = PseudoLabelLoss()(logits, targets, weights)
    """

    def forward(
        self, logits: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor
    ) -> torch.Tensor:
        return pseudo_label_loss(logits, targets, weights)


class FairnessLoss(nn.Module):
    """FreeMatch's self-adaptive fairness term of the strong view's probabilities, given
    the sample mask and the running class probabilities and pseudo-label histogram.

    >>> probs = torch.softmax(torch.randn(8, 10), dim=1)
    >>> running = torch.full((10,), 0.1)
    >>> loss = FairnessLoss()(probs, torch.ones(8), running, running)
    """

    def forward(
        self,
        probs_strong: torch.Tensor,
        mask: torch.Tensor,
        class_probs: torch.Tensor,
        hist: torch.Tensor,
    ) -> torch.Tensor:
        return freematch_fairness_loss(probs_strong, mask, class_probs, hist)
