"""The narrow interface between the training loop and a method, and the typed options every
method declares (``MethodConfig``)."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Self, overload

import torch
from pydantic import AfterValidator, BaseModel, ConfigDict, ValidationError
from torch import nn

from fewlabels.augment import build_policy
from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.methods.rules import Facts, Resolved


@dataclass
class Batch:
    """One training step's data, already augmented on the device.

    ``labeled`` and ``unlabeled`` hold one entry per view the method asked for (in the
    order of ``Method.views``); an entry is a tensor, or a tuple when the policy returns
    several tensors (two views, or image and rotation label).
    """

    labeled: list[Any] = field(default_factory=list)
    labels: torch.Tensor | None = None
    unlabeled: list[Any] = field(default_factory=list)
    unlabeled_index: torch.Tensor | None = None
    step: int = 0
    progress: float = 0.0


# -- options ----------------------------------------------------------------------------


def _two_view(augment: str) -> str:
    try:
        policy = build_policy(augment)
    except FewlabelsError as e:
        raise ValueError(str(e)) from None
    if policy.num_views != 2 or len(policy.outputs) != 2:
        raise ValueError(
            "needs a two-view augmentation policy (twoview, simclr); "
            f"{augment!r} gives {', '.join(policy.outputs)}"
        )
    return augment


# The joint-embedding methods unpack two views of each image; a one-view policy (``weak``)
# or an image-and-target policy (``rotation``) would fail deep in a step.
TwoViewPolicy = Annotated[str, AfterValidator(_two_view)]


def _number(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v)


@functools.cache
def _bounds(cls: type[BaseModel]) -> dict[str, str]:
    """Per option, its allowed range as words (``in (0, 1]``, ``>= 0``), from the schema."""
    out = {}
    for name, prop in cls.model_json_schema()["properties"].items():
        what = f"{prop['what']} " if "what" in prop else ""  # json_schema_extra={"what": ...}
        for p in (prop, *prop.get("anyOf", ())):
            lo = ("(", p["exclusiveMinimum"]) if "exclusiveMinimum" in p else None
            lo = ("[", p["minimum"]) if "minimum" in p else lo
            hi = (")", p["exclusiveMaximum"]) if "exclusiveMaximum" in p else None
            hi = ("]", p["maximum"]) if "maximum" in p else hi
            if lo and hi:
                out[name] = f"{what}in {lo[0]}{_number(lo[1])}, {_number(hi[1])}{hi[0]}"
            elif lo:
                out[name] = f"{what}{'>' if lo[0] == '(' else '>='} {_number(lo[1])}"
            elif hi:
                out[name] = f"{what}{'<' if hi[0] == ')' else '<='} {_number(hi[1])}"
    return out


_RANGE_ERRORS = {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}
_RANGE_ERRORS |= {"finite_number"}


def option_error(cls: type[BaseModel], method: str, error: ValidationError) -> ConfigError:
    """One line naming the method and the first bad option as ``method.<option>``."""
    e = error.errors()[0]
    loc = ".".join(str(p) for p in e["loc"])
    got = repr(e["input"])
    if e["type"] == "extra_forbidden":
        known = ", ".join(cls.model_fields)
        text = f"unknown option method.{loc} (got {got}); it takes {known or 'none'}"
    elif e["type"] == "value_error":
        text = f"method.{loc} {e['msg'].removeprefix('Value error, ')}"
    elif e["type"] in _RANGE_ERRORS and len(e["loc"]) == 1 and loc in _bounds(cls):
        text = f"method.{loc} must be {_bounds(cls)[loc]}, got {got}"
    else:
        msg = e["msg"].removeprefix("Input ")
        text = f"method.{loc} {msg[0].lower()}{msg[1:]}, got {got}"
    return ConfigError(f"method {method!r}: {text}")


class MethodConfig(BaseModel):
    """Base of the methods' options: unknown names, non-finite numbers and values outside
    each option's range are refused; a config is immutable once made."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)

    @classmethod
    def resolve(cls, facts: Facts) -> dict[str, Resolved]:
        """The method's own options derived from ``facts`` (name -> value and rule), for
        the options the user leaves out; the default: none (every option as declared)."""
        return {}

    @classmethod
    def view_side(cls, facts: Facts) -> int:
        """The side in px of the images a step puts through the backbone when ``resolve``
        chooses the views (the speed probe times steps at it): the image size by default."""
        return facts.image_size

    @classmethod
    def train_rules(cls, facts: Facts) -> dict[str, Resolved]:
        """The method's recipe for the loop's settings (``optimizer``, ``lr``, ``grad_clip``,
        ``weight_decay``), over the generic rules of ``fewlabels.train.resolve``; none by
        default. ``facts.steps`` may be unknown here; ``lr`` rules read ``batch`` below."""
        return {}

    @classmethod
    def build(cls, method: str, config: Self | None, options: Mapping[str, Any]) -> Self:
        """``config`` (default: the defaults) with ``options`` set, validated; a bad or
        unknown option is a one-line ConfigError naming ``method.<option>`` and ``method``."""
        if config is not None and not isinstance(config, cls):
            raise ConfigError(
                f"method {method!r} takes a {cls.__name__}, got {type(config).__name__}"
            )
        if config is not None and not options:
            return config
        data = {**(config.model_dump() if config is not None else {}), **options}
        try:
            return cls.model_validate(data)
        except ValidationError as e:
            raise option_error(cls, method, e) from None


# -- the method -------------------------------------------------------------------------


class Encoder(nn.Module):
    """A network's ``features`` as a module: images in [0, 1] -> ``(N, feature_dim)``.
    It holds the network itself, so it shares (and trains) the same parameters."""

    def __init__(self, network: nn.Module) -> None:
        super().__init__()
        self.network = network

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network.features(x)  # type: ignore[operator]


class Method(nn.Module):
    """Base class: a method owns its networks and heads and turns a Batch into a loss.

    Subclasses set ``views`` (policy names per stream), ``Config`` (their options),
    implement ``step`` and keep the classifier they train in ``self.network`` (a
    ``fewlabels.models.Network``), which the loop evaluates and checkpoints. ``forward``
    runs ``step`` on a ``Batch`` (so DDP can wrap the method) and returns features for an
    image tensor, as ``encoder`` does.
    """

    name: ClassVar[str] = "base"
    Config: ClassVar[type[MethodConfig]] = MethodConfig
    views: ClassVar[dict[str, tuple[str, ...]]] = {"labeled": ("weak",), "unlabeled": ()}
    # "supervised", "self-supervised" or "semi-supervised": what evaluation applies
    # (self-supervised runs get the online probe and a kNN monitor).
    kind: ClassVar[str] = "supervised"
    # The stream ``--batch-size`` counts when a method uses both: "labeled" (semi-supervised:
    # labeled batch B, unlabeled B x unlabeled_batch_ratio) or "unlabeled" (pretraining
    # with an online probe: unlabeled batch B, labeled B / unlabeled_batch_ratio).
    primary: ClassVar[str] = "labeled"
    # Backbone passes per unlabeled view image (RotNet's four rotations of each: 4); the
    # loop counts images through the backbone (image budgets, ``backbone_images``) with it.
    unlabeled_copies: int = 1
    network: nn.Module
    config: MethodConfig  # the validated options (set by each subclass's constructor)

    @property
    def uses_unlabeled(self) -> bool:
        return bool(self.views.get("unlabeled"))

    @property
    def encoder(self) -> nn.Module:
        """The trained encoder as a module: ``method.encoder(x)`` is
        ``method.network.features(x)``, with the same parameters."""
        return Encoder(self.network)

    def step(self, batch: Batch) -> dict[str, torch.Tensor]:
        raise NotImplementedError

    @overload
    def forward(self, x: Batch) -> dict[str, torch.Tensor]: ...

    @overload
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...

    def forward(self, x: Batch | torch.Tensor) -> dict[str, torch.Tensor] | torch.Tensor:
        """``step(x)`` for a Batch; the encoder's features ``(N, D)`` for images in [0, 1]."""
        if isinstance(x, torch.Tensor):
            return self.network.features(x)  # type: ignore[operator]
        return self.step(x)

    def setup(self, *, num_labeled: int, num_unlabeled: int, num_classes: int) -> None:
        """Called once by the loop before any checkpoint is loaded: size per-sample buffers
        (FlexMatch's prediction memory) here so ``load_state_dict`` can restore them. The
        default refuses an empty unlabeled pool when the method has unlabeled views."""
        if self.views.get("unlabeled") and num_unlabeled < 1:
            raise ConfigError(
                f"method {self.name!r} needs unlabeled images and the unlabeled pool is empty"
            )

    def after_step(self) -> None:
        """Hook after each optimiser step (momentum encoders, queues); default nothing."""
