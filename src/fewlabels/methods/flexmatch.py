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

from typing import Any, ClassVar

from pydantic import Field

from fewlabels.methods.fixmatch import WeakStrong, WeakStrongConfig
from fewlabels.methods.masking import ClassWiseCurriculum
from fewlabels.models import Network

_PAPER = "FlexMatch section 4 / appendix: tau = 0.95, threshold warm-up on, convex mapping "
_PAPER += "M(x) = x / (2 - x), lambda_u = 1, other settings as FixMatch."


class FlexMatchConfig(WeakStrongConfig):
    """FlexMatch's options."""

    threshold: float = Field(0.95, gt=0, le=1, description=_PAPER)
    warmup: bool = Field(True, description=_PAPER)
    min_threshold: float = Field(
        0.5,
        ge=0,
        le=1,
        description="lower bound of the class-wise thresholds (the paper has none: 0). 0.5: a "
        "pseudo-label counts only when the model gives it more than half its probability. "
        "Without it the low early thresholds take a weak model's every guess (Tiny-ImageNet "
        "at 32 px, 100 and 200 classes, 2-minute runs: FlexMatch 2-7% against supervised's "
        "10-13%).",
    )


class FlexMatch(WeakStrong):
    """FixMatch with FlexMatch's class-wise curriculum thresholds."""

    name: ClassVar[str] = "flexmatch"
    Config: ClassVar[type[FlexMatchConfig]] = FlexMatchConfig

    def __init__(
        self, network: Network, config: FlexMatchConfig | None = None, **options: Any
    ) -> None:
        cfg = FlexMatchConfig.build(self.name, config, options)
        super().__init__(
            network, ClassWiseCurriculum(cfg.threshold, cfg.warmup, cfg.min_threshold), cfg
        )
