"""Training settings: the part every trainer shares, and the classifier's ``TrainConfig``.

Each setting's range is declared once, as a pydantic constraint on its type below; a value
out of range is refused with a message naming the setting and the value
(``lr must be above 0, got -0.5``). The budget is a typed ``Budget``: text such as
``30m`` or ``500steps`` is parsed on the way in, and written back out as that same text,
so settings files and checkpoints read as they always have.
"""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, get_args, get_origin

from annotated_types import Ge, Gt, Le, Lt
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_validator,
)

from fewlabels.core.budget import Budget

__all__ = [
    "BatchSize",
    "BudgetSetting",
    "CheckpointEvery",
    "Evals",
    "LearningRate",
    "Precision",
    "Seed",
    "TrainConfig",
    "TrainingSettings",
    "with_train_defaults",
]

# Budget text at the edge (``30m``) -> a Budget; dumped back as the same text.
BudgetSetting = Annotated[
    Budget,
    BeforeValidator(lambda v: Budget.parse(v)),  # a ConfigError names the budget text
    PlainSerializer(str, return_type=str),
]
BatchSize = Annotated[int, Field(ge=1)]
LearningRate = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegative = Annotated[float, Field(ge=0, allow_inf_nan=False)]
Precision = Literal["auto", "bf16", "fp32"]
Seed = Annotated[int, Field(ge=0, lt=2**63)]
Evals = Annotated[int, Field(ge=0)]
CheckpointEvery = NonNegative

_RANGE_ERRORS = frozenset(
    {"greater_than", "greater_than_equal", "less_than", "less_than_equal", "finite_number"}
)


def _num(x: Any) -> str:
    return "2**63" if x == 2**63 else f"{x:g}"


def _bounds(annotation: Any, metadata: list[Any]) -> list[Any]:
    """A field's annotated-types bounds, also from inside ``Annotated[...] | None``."""
    found = list(metadata)
    for arg in get_args(annotation):
        if get_origin(arg) is Annotated:
            for extra in get_args(arg)[1:]:
                found += getattr(extra, "metadata", [extra])
    return found


def range_text(annotation: Any, metadata: list[Any]) -> str:
    """``above 0``, ``at least 0 and below 1``, ... from a field's annotated-types bounds."""
    low = high = ""
    for m in _bounds(annotation, metadata):
        if isinstance(m, Gt):
            low = f"above {_num(m.gt)}"
        elif isinstance(m, Ge):
            low = f"at least {_num(m.ge)}"
        elif isinstance(m, Lt):
            high = f"below {_num(m.lt)}"
        elif isinstance(m, Le):
            high = f"at most {_num(m.le)}"
    return " and ".join(p for p in (low, high) if p) or "a finite number"


def _takes_bool(annotation: Any) -> bool:
    """Whether a field's type admits ``True``/``False`` (``bool``, ``bool | None``)."""
    return annotation is bool or bool in get_args(annotation)


class TrainingSettings(BaseModel):
    """The settings every trainer takes (the classifier's loop, the GAN), declared once.

    Subclasses keep these types (and so their ranges) and may set other defaults.
    Unknown keys are refused.
    """

    model_config = ConfigDict(extra="forbid")
    # how a setting's range is said where plain "NAME must be RANGE" would read badly
    range_wording: ClassVar[dict[str, str]] = {
        "batch_size": "batch size must be at least 1",
        "unlabeled_batch_ratio": "unlabeled batch ratio must be positive",
        "ema": "ema decay must be 0 (off) or in (0, 1)",
    }

    budget: BudgetSetting = Budget.parse("10epochs")
    batch_size: BatchSize = 256
    lr: LearningRate | None = None
    ema: Annotated[float, Field(ge=0, lt=1)] = 0.0
    precision: Precision = "auto"
    seed: Seed = 0
    evals: Evals = 10
    checkpoint_every_s: CheckpointEvery = 120.0

    @field_validator("*", mode="wrap")
    @classmethod
    def _in_range(cls, v: Any, handler: ValidatorFunctionWrapHandler, info: Any) -> Any:
        """A value outside its setting's range: ``NAME must be RANGE, got VALUE``."""
        if isinstance(v, bool) and not _takes_bool(cls.model_fields[info.field_name].annotation):
            raise ValueError(f"{info.field_name} must be a number, got {v}")
        try:
            return handler(v)
        except ValidationError as e:
            if not e.errors() or e.errors()[0]["type"] not in _RANGE_ERRORS:
                raise
            name = info.field_name
            field = cls.model_fields[name]
            said = cls.range_wording.get(name)
            said = said or f"{name} must be {range_text(field.annotation, field.metadata)}"
            raise ValueError(f"{said}, got {v}") from None


class TrainConfig(TrainingSettings):
    """Optimisation settings shared by every method (unknown keys are refused)."""

    range_wording: ClassVar[dict[str, str]] = {
        **TrainingSettings.range_wording,
        "batch_size": "batch size must be at least 2 (BatchNorm cannot train on one image)",
    }

    # BatchNorm in training mode cannot normalise a batch of one image
    batch_size: Annotated[int, Field(ge=2)] = 256
    unlabeled_batch_ratio: Annotated[float, Field(gt=0, allow_inf_nan=False)] = 7.0
    optimizer: Literal["sgd", "adamw", "lars"] = "sgd"
    weight_decay: NonNegative | None = None
    momentum: Annotated[float, Field(ge=0, lt=1, allow_inf_nan=False)] = 0.9
    nesterov: bool = True  # sgd only (LARS and AdamW take plain momentum)
    warmup: Annotated[float, Field(ge=0, le=1, allow_inf_nan=False)] = 0.05
    final_lr: NonNegative = 0.0
    eval_batch_size: Annotated[int, Field(ge=1)] = 1024
    grad_clip: NonNegative = 0.0
    # LARS trust coefficient (solo-learn's CIFAR setting; the LARS paper used 0.001)
    lars_eta: LearningRate = 0.02
    # Cap each layer's LARS rate at the global lr (solo-learn's clip_lr, on in its CIFAR
    # configs); false: the LARS paper's unclipped trust ratio times the lr.
    lars_clip: bool = True
    # Factors on the resolved lr and weight decay (a tuning trial's: `tune: N` in a study
    # searches around the values the rules give this run's data, not around fixed numbers)
    scale: dict[Literal["lr", "weight_decay"], Annotated[float, Field(gt=0)]] = Field(
        default_factory=dict
    )
    # Save the embeddings of a fixed subset of val images at each evaluation
    # (embeddings/step_*.npz, for `fewlabels embed` and the study report); None: as true.
    save_embeddings: bool | None = None

    def resolved_lr(self) -> float:
        """The learning rate: ``lr``, or the optimiser's default scaled by the batch size."""
        if self.lr is not None:
            return self.lr
        # SGD: linear scaling from 0.1 at batch 256; LARS: from 0.3 (solo-learn's CIFAR
        # Barlow Twins / VICReg configs); AdamW: a common 1e-3.
        base = {"sgd": 0.1, "lars": 0.3}.get(self.optimizer)
        return 1e-3 if base is None else base * self.batch_size / 256

    def resolved_weight_decay(self) -> float:
        """The weight decay: ``weight_decay``, or the optimiser's default."""
        if self.weight_decay is not None:
            return self.weight_decay
        return {"sgd": 5e-4, "lars": 1e-4, "adamw": 0.05}[self.optimizer]


def with_train_defaults(saved: Any) -> Any:
    """Saved training settings with the settings added since they were written filled in
    by their defaults (which keep the old behaviour), so older runs still resume."""
    if not isinstance(saved, dict):
        return saved
    filled = {**TrainConfig().model_dump(), **saved}
    if "lars_clip" not in saved:  # LARS before lars_clip existed was unclipped
        filled["lars_clip"] = saved.get("optimizer") != "lars"
    return filled
