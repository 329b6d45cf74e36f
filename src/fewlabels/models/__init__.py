"""Backbones and the Network that wraps them."""

from fewlabels.models.network import Network
from fewlabels.models.registry import BACKBONES, build_backbone

__all__ = ["BACKBONES", "Network", "build_backbone"]
