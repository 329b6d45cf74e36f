"""The model settings a run and a study share, declared once (see ``data.settings``)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class BackboneSettings(BaseModel):
    """Which network: a backbone name, its stem and extra keyword arguments."""

    model_config = ConfigDict(extra="forbid")

    backbone: str = "convnet"
    stem: str = "auto"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)


class DeviceSettings(BaseModel):
    """Where to compute: auto, cpu, cuda or cuda:N."""

    model_config = ConfigDict(extra="forbid")

    device: str = "auto"
