"""``fewlabels study`` and ``report``: a grid of runs and its report."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import LoggerOpt, ProgressOpt, command, guard, tracker_specs
from fewlabels.cli.init import study_file
from fewlabels.core.progress import configure_progress


@command()
def study(
    spec: Annotated[
        Path,
        typer.Argument(
            help="Study file (YAML): data, grid, methods, budget; or the name of a shipped "
            "example (fewlabels init --list)."
        ),
    ],
    out: Annotated[  # a str: typer would read "" as Path("."), the working folder
        str | None, typer.Option(help="Study folder (default: runs/STUDY_NAME).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    threads: Annotated[
        int | None,
        typer.Option(
            help="Torch threads per worker (default: OMP_NUM_THREADS, else the CPUs this "
            "process may use, divided by the workers)."
        ),
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Results store: a postgresql://USER@HOST/DATABASE URL, so that workers on "
            "several machines sharing --out can run this same command (needs the postgres "
            "extra). Default: the SQLite file OUT/study.sqlite, for one machine."
        ),
    ] = None,
    logger: LoggerOpt = None,
    progress: ProgressOpt = True,
) -> None:
    """Run every cell of a study (resumable), then write report.html, report.md, results.csv.

    With --logger, each finished cell is logged to the tracker as a run tagged with its
    method, labels, unlabeled amount and seed."""
    configure_progress(progress)  # checking the study decodes its data: a bar for that
    with guard():
        loggers = tracker_specs(logger)
        plan = lib.load_study(study_file(spec))  # a file, or a shipped example's name
        configure_progress(False)  # the runs work quietly beside the study's own log lines
        folder = Path("runs") / plan.name if out is None else out  # run_study refuses ""
        if workers == 1:  # the runs work in this process: its threads, set here
            lib.torch.set_num_threads(threads or lib.usable_threads())
        res = lib.run_study(
            plan,
            folder,
            workers=workers,
            threads=threads,
            log=typer.echo,
            store_url=store,
            loggers=loggers,
        )
        rep = lib.write_report(Path(folder), store)
        typer.echo(
            f"{res.counts['done']} runs done, {res.counts['failed']} failed in {res.seconds:.0f}s"
        )
        typer.echo(f"report: {rep.html}")


@command()
def report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (holding study.sqlite).")],
    store: Annotated[
        str | None,
        typer.Option(
            help="Read the results from this postgresql:// URL (default: the study folder's "
            "study.sqlite, or the database the study was run with, noted in store.json)."
        ),
    ] = None,
    export: Annotated[
        list[str] | None,
        typer.Option(
            help="Also log every finished cell to a tracker: tensorboard, mlflow, wandb or "
            "csv (files under the study folder; NAME:WHERE as for --logger). Repeatable.",
            metavar="NAME",
        ),
    ] = None,
) -> None:
    """Regenerate a study's report.html, report.md, results.csv and PNGs from its store."""
    with guard():
        specs = tracker_specs(export)
        rep = lib.write_report(study_dir, store)
        typer.echo(f"report: {rep.html}")
        if specs:
            n = lib.export_study(study_dir, specs, store)
            typer.echo(f"logged {n} cell(s) to {', '.join(specs)} under {study_dir}")
