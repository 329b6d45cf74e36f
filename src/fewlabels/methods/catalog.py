"""What each method is and which options it takes, read from the code itself.

``describe()`` lists every name ``--method`` accepts with its kind, the first sentence of
its module's docstring (which names the paper), the views it asks the loop for and its
options with their defaults and descriptions (where each default comes from): the fields
of its ``Config``, i.e. exactly what ``method_kwargs`` (a ``--config`` file, or a study
cell) may set. ``fewlabels methods``
prints it, and ``docs/methods.md`` is its Markdown form (a test keeps the two equal).
"""

from __future__ import annotations

import importlib
import re
from typing import Any

from fewlabels.core.errors import ConfigError
from fewlabels.methods import METHODS, RUN_METHODS
from fewlabels.methods.base import Method

KINDS = ("supervised", "self-supervised", "semi-supervised")

# run-level methods: (kind, module with the docstring and DEFAULTS)
_RUN_LEVEL = {"teacher_student": ("semi-supervised", "fewlabels.train.self_training")}


def _summary(module: Any) -> str:
    text = " ".join((module.__doc__ or "").split("\n\n")[0].split())
    m = re.match(r"(.+?(?<!\bal)(?<!e\.g)(?<!i\.e)\.)(\s|$)", text)  # not at "et al."
    return (m.group(1) if m else text).rstrip(".") + "."


def _options(cls: type[Method]) -> dict[str, Any]:
    return {k: f.default for k, f in cls.Config.model_fields.items()}


def _descriptions(cls: type[Method]) -> dict[str, str]:
    return {k: f.description or "" for k, f in cls.Config.model_fields.items()}


def describe(kind: str | None = None) -> list[dict[str, Any]]:
    """One dict per method (name, kind, summary, views, options, descriptions), in registry
    order; ``options`` maps each option to its default, ``descriptions`` to its source."""
    if kind is not None and kind not in KINDS:
        raise ConfigError(f"unknown kind {kind!r}; choose from {', '.join(KINDS)}")
    out = []
    for name, cls in METHODS.items():
        out.append(
            {
                "name": name,
                "kind": cls.kind,
                "summary": _summary(importlib.import_module(cls.__module__)),
                "views": {k: list(v) for k, v in cls.views.items() if v},
                "options": _options(cls),
                "descriptions": _descriptions(cls),
            }
        )
    for name in RUN_METHODS:
        run_kind, module_name = _RUN_LEVEL[name]
        module = importlib.import_module(module_name)
        out.append(
            {
                "name": name,
                "kind": run_kind,
                "summary": _summary(module),
                "views": {"labeled": ["weak"]},
                "options": dict(module.DEFAULTS),
                "descriptions": {},
            }
        )
    return [m for m in out if kind is None or m["kind"] == kind]


def _value(v: Any) -> str:
    if isinstance(v, tuple):
        v = list(v)
    return repr(v) if isinstance(v, str) else str(v)


def as_text(methods: list[dict[str, Any]]) -> str:
    """Plain text for the terminal: one block per method."""
    lines = []
    for m in methods:
        lines.append(f"{m['name']}  ({m['kind']})")
        lines.append(f"  {m['summary']}")
        views = "; ".join(f"{k}: {', '.join(v)}" for k, v in m["views"].items())
        lines.append(f"  views: {views}")
        opts = ", ".join(f"{k}={_value(v)}" for k, v in m["options"].items()) or "none"
        lines.append(f"  options: {opts}")
        for k, text in m["descriptions"].items():
            if text:
                lines.append(f"    {k}: {text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def as_markdown(methods: list[dict[str, Any]]) -> str:
    """``docs/methods.md``: a table per kind."""
    out = [
        "# Methods",
        "",
        "Made by `fewlabels methods --markdown` from the code: the summary is the first "
        "sentence of each method's module docstring, the options are the fields of its "
        "`Config` with their defaults (the section after the tables says where each default "
        "comes from). Set options with `method_kwargs:` in a `--config` file or a study "
        "cell; `--threshold` and `--label-smoothing` are flags of their own.",
        "",
        "Views are the augmentation policies the method asks the loop for, per labeled and "
        "unlabeled image ([augmentations.md](augmentations.md)).",
        "",
    ]
    for kind in KINDS:
        group = [m for m in methods if m["kind"] == kind]
        if not group:
            continue
        out += [f"## {kind.capitalize()}", "", "| method | what | views | options |"]
        out.append("|---|---|---|---|")
        for m in group:
            views = "<br>".join(f"{k}: {', '.join(v)}" for k, v in m["views"].items())
            opts = "<br>".join(f"`{k}={_value(v)}`" for k, v in m["options"].items()) or "-"
            summary = m["summary"].replace("|", "\\|")
            out.append(f"| `{m['name']}` | {summary} | {views} | {opts} |")
        out.append("")
    return "\n".join(out + _option_sources(methods))


def _option_sources(methods: list[dict[str, Any]]) -> list[str]:
    """A table per method: each option, its default and where the default comes from."""
    out = ["## Option defaults and their sources", ""]
    for m in methods:
        if not any(m["descriptions"].values()):
            continue
        out += [f"### `{m['name']}`", "", "| option | default | source |", "|---|---|---|"]
        for k, text in m["descriptions"].items():
            text = text.replace("|", "\\|")
            out.append(f"| `{k}` | `{_value(m['options'][k])}` | {text} |")
        out.append("")
    return out
