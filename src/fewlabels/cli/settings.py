"""Config dicts in layers, and ``--set KEY=VALUE`` overrides checked against a config model.

A command's config is built as defaults < ``--config`` YAML < flags given < ``--set``;
each layer is a plain nested dict merged over the one before (``merge``). ``--set`` keys
are dotted paths through the pydantic model (``train.lr``); ``method.X`` and ``backbone.X``
stand for ``method_kwargs.X`` and ``backbone_kwargs.X``. Values are YAML (``0.2``,
``true``, ``[32,64]``, ``{a: 1}``, ``null``), except that a text setting takes the text as
written (``unlabeled=1:20`` stays ``1:20``, not YAML 1.1's sexagesimal 80).
"""

from __future__ import annotations

import types
import typing
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import yaml

from fewlabels.core.errors import ConfigError

if TYPE_CHECKING:  # (pydantic's BaseModel costs ~15 ms to import: ``--help`` does not need it)
    from pydantic import BaseModel

# ``--set method.X`` is ``method_kwargs.X``: the method's own options (likewise backbone)
ALIASES = {"method": "method_kwargs", "backbone": "backbone_kwargs"}
_NULLS = ("null", "Null", "NULL", "~")


class SettingError(ConfigError):
    """A bad ``--set``: its message names settings on purpose (never turned into flags)."""


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``over`` written over it; mappings in both are merged key by key."""
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge(out[key], value)
        else:
            out[key] = value
    return out


def set_path(d: dict[str, Any], path: Sequence[str], value: Any) -> None:
    """Set ``d[path[0]][path[1]]... = value``, making the mappings on the way."""
    for part in path[:-1]:
        if not isinstance(d.get(part), Mapping):
            d[part] = {}
        d[part] = dict(d[part])
        d = d[part]
    d[path[-1]] = value


def _args(annotation: Any) -> tuple[Any, ...]:
    """The members of a union (``X | None``), or the annotation alone."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return typing.get_args(annotation)
    return (annotation,)


def _model_in(annotation: Any) -> type[BaseModel] | None:
    for a in _args(annotation):
        if isinstance(a, type) and hasattr(a, "model_fields"):  # a pydantic model
            return a
    return None


def _is_mapping(annotation: Any) -> bool:
    return any(a is dict or typing.get_origin(a) is dict for a in _args(annotation))


def _is_text(annotation: Any) -> bool:
    """Whether the setting holds text (``str``, a choice of strings, maybe ``None``)."""
    kinds = [a for a in _args(annotation) if a is not type(None)]
    return bool(kinds) and all(
        a is str
        or (typing.get_origin(a) is Literal and all(isinstance(v, str) for v in a.__args__))
        for a in kinds
    )


def resolve_key(model: type[BaseModel], key: str) -> tuple[list[str], Any]:
    """The path of ``key`` in ``model``'s config dict and the annotation of the setting it
    names (``None`` inside a free mapping such as ``method_kwargs``); an unknown key is a
    ``ConfigError`` naming it and the settings there are."""
    parts = key.split(".")
    if not all(parts):
        raise SettingError(f"--set {key}: a setting name cannot have an empty part")
    if len(parts) > 1 and parts[0] in ALIASES:
        parts[0] = ALIASES[parts[0]]
    current: type[BaseModel] | None = model
    annotation: Any = model
    for i, part in enumerate(parts):
        if current is None:
            if not _is_mapping(annotation):
                where = ".".join(parts[:i])
                raise SettingError(f"--set {key}: {where} is one value, not a group of settings")
            return parts, None  # the keys of a free mapping (method_kwargs) are the method's
        if part not in current.model_fields:
            scope = "a run" if i == 0 else ".".join(parts[:i])
            raise SettingError(
                f"--set {key}: unknown setting {'.'.join(parts[: i + 1])!r}; {scope} takes "
                f"{', '.join(current.model_fields)}"
            )
        annotation = current.model_fields[part].annotation
        current = _model_in(annotation)
    return parts, annotation


def parse_value(key: str, raw: str, annotation: Any) -> Any:
    """``raw`` as the value of a setting: text for a text setting, YAML otherwise."""
    if annotation is not None and _is_text(annotation):
        none_ok = type(None) in _args(annotation)
        return None if none_ok and raw in _NULLS else raw
    try:
        return yaml.safe_load(raw) if raw.strip() else ""
    except yaml.YAMLError as e:
        first = str(e).strip().splitlines()[0]
        raise SettingError(f"--set {key}: {raw!r} is not a YAML value ({first})") from None


def overrides(model: type[BaseModel], items: Sequence[str]) -> dict[str, Any]:
    """The config layer of ``--set KEY=VALUE`` items, each key checked against ``model``."""
    out: dict[str, Any] = {}
    for item in items:
        key, eq, raw = item.partition("=")
        key = key.strip()
        if not eq or not key:
            raise SettingError(f"--set takes KEY=VALUE (e.g. train.lr=0.05), got {item!r}")
        path, annotation = resolve_key(model, key)
        layer: dict[str, Any] = {}
        set_path(layer, path, parse_value(key, raw.strip(), annotation))
        out = merge(out, layer)  # a mapping value (train={lr: 0.1}) adds to earlier items
    return out
