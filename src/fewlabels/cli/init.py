"""``fewlabels init``: an example study file, shipped with the package, into the working folder.

The examples live in ``fewlabels/examples/*.yaml`` (package data; ``examples/`` at the
repository root points there). ``fewlabels study NAME`` also runs an example by its name
when no file ``NAME`` exists.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Annotated

import typer

from fewlabels.cli.common import command, guard
from fewlabels.core.errors import ConfigError


def examples() -> dict[str, Path]:
    """Example name (``digits``) -> its YAML file inside the installed package."""
    folder = Path(str(resources.files("fewlabels") / "examples"))
    return {p.stem: p for p in sorted(folder.glob("*.yaml"))}


def summary(path: Path) -> str:
    """An example's first comment line (what it studies)."""
    for line in path.read_text().splitlines():
        if line.startswith("#"):
            return line.lstrip("# ").strip()
    return ""


def study_file(spec: Path) -> Path:
    """``spec`` itself, or the shipped example it names when no such file exists."""
    if spec.exists():
        return spec
    found = examples().get(spec.name.removesuffix(".yaml"))
    return found if found is not None and spec.parent == Path(".") else spec


def _example_text(example: str, target: Path) -> str:
    """The example's YAML, named after ``target`` and its run line pointing at it."""
    text = examples()[example].read_text()
    text = text.replace(f"examples/{example}.yaml", target.name)
    return re.sub(r"(?m)^name: .*$", f"name: {target.stem}", text, count=1)


@command()
def init(
    name: Annotated[
        str | None, typer.Argument(help="The study's name; writes NAME.yaml here.")
    ] = None,
    example: Annotated[str, typer.Option(help="Which example to start from.")] = "digits",
    list_: Annotated[bool, typer.Option("--list", help="List the examples and exit.")] = False,
) -> None:
    """Write an example study file (data, grid, methods, budget) into the working folder,
    to edit and run with fewlabels study NAME.yaml. Never overwrites a file."""
    with guard():
        found = examples()
        if list_:
            for ex, path in found.items():
                typer.echo(f"{ex:<20} {summary(path)}")
            return
        if name is None:
            raise ConfigError("init needs a study NAME (or --list to see the examples)")
        if example not in found:
            raise ConfigError(f"unknown example {example!r}; choose from {', '.join(found)}")
        stem = name.removesuffix(".yaml")
        if not re.fullmatch(r"[\w.\-]{1,100}", stem):
            raise ConfigError(
                f"study name {name!r}: expected letters, digits, '_', '-' or '.' (no folders)"
            )
        target = Path(f"{stem}.yaml")
        try:
            with target.open("x", encoding="utf-8") as f:  # "x": never overwrite
                f.write(_example_text(example, target))
        except FileExistsError:
            raise ConfigError(
                f"{target} already exists; choose another name or remove it"
            ) from None
        except OSError as e:
            raise ConfigError(f"cannot write {target}: {e.strerror}") from None
        typer.echo(f"wrote {target} (from the {example} example); run: fewlabels study {target}")
