"""SoftMatch (Chen et al. 2023): FixMatch with soft, truncated-Gaussian sample weights.

Instead of a hard threshold, an unlabeled image's pseudo-label counts with weight 1 when
its confidence is at least the running mean confidence and with a Gaussian fall-off below
it (``TruncatedGaussian`` in ``fewlabels.methods.masking``), so many more pseudo-labels are
used, the doubtful ones a little. Uniform alignment divides the weak view's probabilities
by their running class mean first (``DistributionAlignment``), against a bias toward easy
classes.
"""

from __future__ import annotations

from typing import ClassVar

from fewlabels.methods.fixmatch import DEFAULTS as FIXMATCH
from fewlabels.methods.fixmatch import WeakStrong
from fewlabels.methods.masking import DistributionAlignment, TruncatedGaussian
from fewlabels.models import Network

DEFAULTS = {
    # SoftMatch section 3.3 / 4: EMA momentum m = 0.999, lambda_max = 1 (lambda_u),
    # uniform alignment on; n_sigma = 2 as in the official (USB) implementation.
    "ema": 0.999,
    "n_sigma": 2.0,
    "uniform_alignment": True,
    "lambda_u": FIXMATCH["lambda_u"],
}


class SoftMatch(WeakStrong):
    """FixMatch with SoftMatch's truncated-Gaussian weights and uniform alignment."""

    name: ClassVar[str] = "softmatch"

    def __init__(
        self,
        network: Network,
        ema: float = DEFAULTS["ema"],
        n_sigma: float = DEFAULTS["n_sigma"],
        uniform_alignment: bool = DEFAULTS["uniform_alignment"],
        lambda_u: float = DEFAULTS["lambda_u"],
        label_smoothing: float = FIXMATCH["label_smoothing"],
        weak: str = "weak",
        strong: str = "strong",
    ) -> None:
        c = network.num_classes
        masking = TruncatedGaussian(c, ema, n_sigma)
        align = DistributionAlignment(c, ema) if uniform_alignment else None
        super().__init__(network, masking, lambda_u, label_smoothing, weak, strong, align)
