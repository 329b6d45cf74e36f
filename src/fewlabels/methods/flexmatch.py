"""FlexMatch (Zhang et al. 2021): FixMatch with curriculum pseudo-labelling.

Each class gets its own threshold ``tau * M(beta_c)``: ``beta_c`` is how many unlabeled
images the model has already predicted confidently as class c, relative to the best-learned
class (with warm-up: relative to the number not yet predicted confidently either), and
``M(x) = x / (2 - x)``. Hard-to-learn classes thus start with low thresholds and rise as
they are learned. The memory of last confident predictions (one entry per unlabeled image)
is sized by ``setup`` and checkpointed with the method. See
``fewlabels.methods.masking.ClassWiseCurriculum``.
"""

from __future__ import annotations

from typing import ClassVar

from fewlabels.methods.fixmatch import DEFAULTS as FIXMATCH
from fewlabels.methods.fixmatch import WeakStrong
from fewlabels.methods.masking import ClassWiseCurriculum
from fewlabels.models import Network

DEFAULTS = {
    # FlexMatch section 4 / appendix: tau = 0.95, threshold warm-up on, convex mapping
    # M(x) = x / (2 - x), lambda_u = 1, other settings as FixMatch.
    "threshold": 0.95,
    "warmup": True,
    "lambda_u": FIXMATCH["lambda_u"],
}


class FlexMatch(WeakStrong):
    """FixMatch with FlexMatch's class-wise curriculum thresholds."""

    name: ClassVar[str] = "flexmatch"

    def __init__(
        self,
        network: Network,
        threshold: float = DEFAULTS["threshold"],
        warmup: bool = DEFAULTS["warmup"],
        lambda_u: float = DEFAULTS["lambda_u"],
        label_smoothing: float = FIXMATCH["label_smoothing"],
        weak: str = "weak",
        strong: str = "strong",
    ) -> None:
        masking = ClassWiseCurriculum(threshold, warmup)
        super().__init__(network, masking, lambda_u, label_smoothing, weak, strong)
