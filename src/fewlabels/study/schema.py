"""The study file's settings, as pydantic models (validated before any expansion)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic_core import PydanticCustomError

from fewlabels.data.settings import DataSettings
from fewlabels.models.settings import BackboneSettings, DeviceSettings


class MethodEntry(BaseModel):
    """One line of the comparison: ``train: M`` or ``pretrain: X`` + ``then: ...``."""

    model_config = ConfigDict(extra="forbid")

    name: str | None = None
    train: str | None = None
    pretrain: str | None = None
    then: str | None = None
    kwargs: dict[str, Any] = Field(default_factory=dict)
    then_kwargs: dict[str, Any] = Field(default_factory=dict)
    budget: str | None = None
    then_budget: str | None = None
    settings: dict[str, Any] = Field(default_factory=dict)


def _as_list(v: Any) -> Any:
    return v if isinstance(v, list) or v is None else [v]


class GridSpec(BaseModel):
    """The axes of the grid: labeled amounts, unlabeled amounts and seeds."""

    model_config = ConfigDict(extra="forbid")

    labels_per_class: list[int] | None = None
    labeled_fraction: list[float] | None = None
    # labeling budgets (labels in all) whose labeled set a selection strategy picks
    budgets: list[int] | None = None
    strategies: list[str] | None = None
    unlabeled: list[str] = Field(default_factory=lambda: ["rest"])
    seeds: list[int] = Field(default_factory=lambda: [0])
    # generated images added to the pretraining pool, as a multiple of the real pool
    synthetic: list[float] = Field(default_factory=lambda: [0.0])

    _lists = field_validator("strategies", mode="before")(_as_list)

    @field_validator(
        "labels_per_class", "labeled_fraction", "budgets", "seeds", "synthetic", mode="before"
    )
    @classmethod
    def _numbers(cls, v: Any, info: Any) -> Any:
        """A list of numbers (a single one is a list of one); YAML's yes/no/true/false are
        booleans, which pydantic would take as 1 and 0: refused."""
        v = _as_list(v)
        if isinstance(v, list) and any(isinstance(x, bool) for x in v):
            raise ValueError(f"{info.field_name} takes numbers, got {v}")
        return v

    @field_validator("unlabeled", mode="before")
    @classmethod
    def _unl(cls, v: Any) -> Any:
        v = _as_list(v)
        if isinstance(v, list):
            return [str(x).strip() if isinstance(x, (str, int, float)) else x for x in v]
        return v


class ReportSpec(BaseModel):
    """What the report shows beyond the fixed figures."""

    model_config = ConfigDict(extra="forbid")

    accuracies: list[float] = Field(default_factory=lambda: [0.5, 0.7, 0.9])
    tsne: bool = True
    tsne_points: int = 1000


class StudySpec(DataSettings, BackboneSettings, DeviceSettings):
    """The whole study file. Its data (data, test, val, strict, flip), backbone (backbone, stem,
    backbone_kwargs) and device settings are the parts a run's settings are made of; every
    cell's runs take them as they are, so all methods of a study share one backbone (none
    named: the rules choose one for the whole study, ``study.backbone``)."""

    model_config = ConfigDict(extra="forbid")

    backbone: str | None = None  # type: ignore[assignment]

    name: str | None = None
    budget: str = "1m"
    train: dict[str, Any] = Field(default_factory=dict)
    grid: GridSpec
    methods: list[MethodEntry] = Field(min_length=1)
    upper_bound: bool = True
    # features for grid.strategies: this encoder; default: the cell's own pretraining, if
    # it has one, else raw pixels
    select_encoder: str | None = None
    # GAN settings (fewlabels.generate.GANConfig) for grid.synthetic
    generate: dict[str, Any] = Field(default_factory=dict)
    report: ReportSpec = Field(default_factory=ReportSpec)
    # equal tuning: this many trials of a small search around each method's resolved
    # settings (study.tuning), chosen on the validation split; 0: the resolved settings
    tune: int = 0
    # the most compute all runs together may take (every trial counted), e.g. 20000steps
    # or 3h, in the unit of the budgets; none: no cap
    max_compute: str | None = None

    @field_validator("tune", mode="before")
    @classmethod
    def _tune(cls, v: Any) -> Any:
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise PydanticCustomError(
                "tune", "must be a whole number of trials, 0 or more, got {v}", {"v": repr(v)}
            )
        return v
