"""``fewlabels methods``: what each method is and takes."""

from __future__ import annotations

from typing import Annotated

import typer

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import command, guard


@command()
def methods(
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: supervised, self-supervised or semi-supervised."),
    ] = None,
    markdown: Annotated[bool, typer.Option(help="Print docs/methods.md's Markdown.")] = False,
) -> None:
    """List every method with its paper, views and options (method_kwargs) with defaults."""
    with guard():
        found = lib.describe(kind)
        typer.echo(lib.as_markdown(found) if markdown else lib.as_text(found), nl=False)
