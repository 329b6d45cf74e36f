"""SoftMatch (Chen et al. 2023): FixMatch with soft, truncated-Gaussian sample weights.

Instead of a hard threshold, an unlabeled image's pseudo-label counts with weight 1 when
its confidence is at least the running mean confidence and with a Gaussian fall-off below
it (``TruncatedGaussian`` in ``fewlabels.methods.masking``), so many more pseudo-labels are
used, the doubtful ones a little. Uniform alignment divides the weak view's probabilities
by their running class mean (``DistributionAlignment``), against a bias toward easy
classes; as in the authors' code (USB), the aligned probabilities set only the weights,
and the pseudo-labels are the argmax of the raw predictions.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, PositiveFloat

from fewlabels.methods.fixmatch import WeakStrong, WeakStrongConfig
from fewlabels.methods.masking import DistributionAlignment, TruncatedGaussian
from fewlabels.models import Network

_PAPER = "SoftMatch section 3.3 / 4: EMA momentum m = 0.999, lambda_max = 1 (lambda_u), "
_PAPER += "uniform alignment on"


class SoftMatchConfig(WeakStrongConfig):
    """SoftMatch's options."""

    ema: float = Field(0.999, ge=0, lt=1, description=f"{_PAPER}.")
    n_sigma: PositiveFloat = Field(
        2.0, description="n_sigma = 2 as in the official (USB) implementation."
    )
    uniform_alignment: bool = Field(True, description=f"{_PAPER}.")


class SoftMatch(WeakStrong):
    """FixMatch with SoftMatch's truncated-Gaussian weights and uniform alignment."""

    name: ClassVar[str] = "softmatch"
    Config: ClassVar[type[SoftMatchConfig]] = SoftMatchConfig

    def __init__(
        self, network: Network, config: SoftMatchConfig | None = None, **options: Any
    ) -> None:
        cfg = SoftMatchConfig.build(self.name, config, options)
        c = network.num_classes
        masking = TruncatedGaussian(c, cfg.ema, cfg.n_sigma)
        align = DistributionAlignment(c, cfg.ema) if cfg.uniform_alignment else None
        super().__init__(network, masking, cfg, align)
