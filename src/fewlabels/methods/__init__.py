"""Training methods: one file each, registered by name."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fewlabels.errors import ConfigError
from fewlabels.methods.base import Batch, Method
from fewlabels.methods.supervised import Supervised

METHODS: dict[str, type[Method]] = {
    "supervised": Supervised,
}


def method_class(name: str) -> type[Method]:
    """The method class registered under ``name``."""
    key = name.lower()
    if key not in METHODS:
        raise ConfigError(f"unknown method {name!r}; choose from {', '.join(sorted(METHODS))}")
    return METHODS[key]


def build_method(name: str, network: Any, **kwargs: Any) -> Method:
    """Instantiate a method around ``network``; unknown options are one-line errors."""
    cls: Callable[..., Method] = method_class(name)
    try:
        return cls(network, **kwargs)
    except TypeError as e:
        raise ConfigError(f"method {name!r}: {e}") from None


__all__ = ["METHODS", "Batch", "Method", "build_method", "method_class"]
