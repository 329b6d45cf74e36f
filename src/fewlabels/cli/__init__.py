"""The ``fewlabels`` command line: a thin layer that parses, validates and calls the library.

One module per group of commands (``train``: train, pretrain, evaluate, predict; ``probe``:
probe, embed; ``study``: study, report; ``generate``: generate, quality; ``info``: methods;
``export``: export; ``init``: init (example studies);
``data``: data inspect, select, data add-labels); ``common`` holds the error guard (every
user mistake is ``error: <one line>`` on stderr and exit code 2), config files and output;
``_lib`` is where the library is imported from.
"""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

import fewlabels
from fewlabels.cli import data, export, generate, info, init, probe, study, train
from fewlabels.cli.common import app, install_warning_format
from fewlabels.core.errors import FewlabelsError
from fewlabels.core.process import keep_freed_memory

__all__ = [
    "app", "data", "export", "generate", "info", "init", "main", "probe", "study", "train"
]  # fmt: skip

# ``fewlabels --help`` lists the commands in the order of a session's work
ORDER = [
    "init", "train", "evaluate", "predict", "export", "pretrain", "probe", "embed", "study",
    "report", "generate", "quality", "methods", "select",
]  # fmt: skip
app.registered_commands.sort(key=lambda c: ORDER.index(c.name or ""))


def _version(value: bool) -> None:
    if value:
        typer.echo(f"fewlabels {fewlabels.__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
) -> None:
    pass


def main() -> None:
    """Console-script entry point."""
    # OpenMP threads that sleep instead of spinning: on a machine with as few cores as
    # torch threads, spinning collapses throughput whenever anything else runs (measured
    # 20-100x on 2 cores). Set before torch is imported; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()  # freed activations stay mapped: no page faults every step
    install_warning_format()  # library warnings as one "warning: ..." line each
    try:
        app()
    except FewlabelsError as e:  # raised outside a command (should not happen)
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)
