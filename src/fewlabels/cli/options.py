"""Commands declared as tables of options, each option naming the setting it sets.

A command with many settings (``train`` has 36) is a list of ``Opt`` rows rather than a
function signature of that many parameters: the rows give Typer its parameters, give the
config dict its values (``settings_of``) and give the error guard its flag for each
setting (``common.flag_table``). ``train`` and ``pretrain`` are the same rows with a few
defaults changed (``replace_opts``).
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any

import typer

from fewlabels.cli.common import SETTINGS, command, given
from fewlabels.cli.settings import set_path


@dataclasses.dataclass(frozen=True)
class Opt:
    """One option: parameter ``name``, its type, default and help, and the ``setting``
    (a dotted path in the command's config, e.g. ``train.lr``) it sets; ``None`` for an
    option of the command itself (``--progress``). ``decls``: its flags when they are not
    ``--name-with-dashes`` (and ``--no-...`` for a bool); ``metavar``: how ``--help`` shows
    its value."""

    name: str
    type: Any
    default: Any
    help: str
    setting: str | None = None
    decls: tuple[str, ...] = ()
    metavar: str | None = None

    def but(self, **changes: Any) -> Opt:
        """This option with ``changes`` (e.g. another default or help)."""
        return dataclasses.replace(self, **changes)

    def parameter(self) -> inspect.Parameter:
        """The parameter Typer reads this option from."""
        info = typer.Option(*self.decls, help=self.help, metavar=self.metavar)
        return inspect.Parameter(
            self.name,
            inspect.Parameter.KEYWORD_ONLY,
            default=self.default,
            annotation=Annotated[self.type, info],
        )


def replace_opts(opts: Sequence[Opt], **changes: dict[str, Any]) -> list[Opt]:
    """``opts`` with the options named in ``changes`` changed (``batch_size={"help": ..}``)."""
    unknown = set(changes) - {o.name for o in opts}
    assert not unknown, unknown
    return [o.but(**changes[o.name]) if o.name in changes else o for o in opts]


def build_command(
    name: str,
    opts: Sequence[Opt],
    body: Callable[[typer.Context, dict[str, Any]], None],
    doc: str,
) -> Callable[..., None]:
    """Register command ``name`` whose options are ``opts``; ``body(ctx, values)`` runs it
    with every option's value by name."""

    def callback(ctx: typer.Context, **values: Any) -> None:
        body(ctx, values)

    ctx_param = inspect.Parameter(
        "ctx", inspect.Parameter.POSITIONAL_OR_KEYWORD, annotation=typer.Context
    )
    callback.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
        [ctx_param, *(o.parameter() for o in opts)]
    )
    callback.__annotations__ = {"ctx": typer.Context, "return": None}
    callback.__name__ = callback.__qualname__ = name.replace("-", "_")
    callback.__doc__ = doc
    SETTINGS[name] = {o.name: o.setting for o in opts if o.setting is not None}
    return command(name=name)(callback)


def settings_of(opts: Sequence[Opt], values: Mapping[str, Any]) -> dict[str, Any]:
    """The config dict of options' ``values`` (by option name): each value that is not
    ``None`` at its option's setting path (a path as text)."""
    out: dict[str, Any] = {}
    for o in opts:
        value = values.get(o.name)
        if o.setting is not None and value is not None:
            set_path(out, o.setting.split("."), str(value) if isinstance(value, Path) else value)
    return out


def defaults_of(opts: Sequence[Opt]) -> dict[str, Any]:
    """The options' defaults by name."""
    return {o.name: o.default for o in opts}


def given_values(ctx: typer.Context, values: Mapping[str, Any]) -> dict[str, Any]:
    """Those of ``values`` given on the command line (not left at their defaults)."""
    return {name: v for name, v in values.items() if given(ctx, name)}
