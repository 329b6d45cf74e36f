"""The heads methods put on a backbone (``fewlabels.models.heads``), under a short name.

>>> from fewlabels.heads import ProjectionHead
>>> head = ProjectionHead(512, (2048, 128))
"""

from __future__ import annotations

from fewlabels.models.heads import (
    MLP,
    ConvDecoder,
    CosineLinear,
    DINOHead,
    PredictionHead,
    ProjectionHead,
    Prototypes,
    decoder_plan,
)

__all__ = [
    "MLP",
    "ConvDecoder",
    "CosineLinear",
    "DINOHead",
    "PredictionHead",
    "ProjectionHead",
    "Prototypes",
    "decoder_plan",
]
