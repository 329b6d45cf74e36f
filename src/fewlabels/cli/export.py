"""``fewlabels export``: a trained model as TorchScript, ONNX or safetensors for other tools."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import command, guard
from fewlabels.core.errors import ConfigError

FORMATS = ("torchscript", "onnx", "safetensors")


def default_out(run: Path, fmt: str) -> Path:
    """Where an export goes by default: ``RUN/export-FORMAT`` (beside a model file: its
    folder), a folder no other command writes."""
    folder = run if run.is_dir() else run.parent
    return folder / f"export-{fmt}"


def _check_out(out: Path, fmt: str) -> None:
    """Refuse a folder holding another export's ``preprocess.json`` or any non-export one:
    an export replaces only its own files (a re-export of the same format)."""
    pre = out / "preprocess.json"
    if not pre.exists():
        return
    try:
        was = json.loads(pre.read_text()).get("format")
    except (OSError, ValueError, AttributeError):
        was = None
    if was != fmt:
        what = f"the {was} export" if was in FORMATS else "a preprocess.json of something else"
        raise ConfigError(f"{out} already holds {what}; choose another output folder")


@command()
def export(
    run: Annotated[
        Path, typer.Argument(help="A run folder (holding model.pt) or a model.pt file.")
    ],
    fmt: Annotated[
        str, typer.Option("--format", "-f", help="torchscript, onnx or safetensors.")
    ] = "torchscript",
    out: Annotated[
        Path | None, typer.Option(help="Output folder (default: RUN/export-FORMAT).")
    ] = None,
) -> None:
    """Export a trained model with a preprocess.json saying what it takes (size, channels,
    range, normalisation) and gives (one logit per class name). TorchScript and ONNX files
    run without fewlabels; ONNX and safetensors need the export extra."""
    with guard():
        if fmt.lower() not in FORMATS:
            raise ConfigError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
        if not run.exists():
            raise ConfigError(f"no such run folder or model file: {run}")
        fmt = fmt.lower()
        folder = out if out is not None else default_out(run, fmt)
        _check_out(folder, fmt)
        done = lib.export_model(run, folder, fmt)
        typer.echo(f"wrote {done.model} and {done.preprocess}")
