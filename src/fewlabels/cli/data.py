"""``fewlabels data inspect``, ``select`` and ``data add-labels``: the data and its labels."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import (
    DataOpt,
    LabelsOpt,
    ProgressOpt,
    SourceLabelsOpt,
    StrictOpt,
    command,
    data_app,
    guard,
    slug,
)
from fewlabels.core.errors import ConfigError
from fewlabels.core.progress import configure_progress


def _count_table(ds: Any) -> Table:
    """Images per class of each part of ``ds``, and the unlabeled ones. User strings (the
    data's name, class names) go in as ``Text``, so rich shows them literally: no markup
    (``[bold]``), no emoji codes (``:train:``)."""
    c, (h, w) = ds.train.channels, ds.train.image_size
    title = f"{ds.name}: {c}x{h}x{w} images, {ds.train.num_classes} classes"
    table = Table(title=Text(title))
    table.add_column("class")
    parts = [(n, p) for n, p in (("train", ds.train), ("test", ds.test)) if p is not None]
    for name, _ in parts:
        table.add_column(name, justify="right")
    counts = {n: p.counts() for n, p in parts}
    for k, cname in enumerate(ds.class_names):
        table.add_row(Text(cname), *[str(counts[n][k]) for n, _ in parts])
    unl = int((~ds.train.is_labeled).sum()) + (len(ds.unlabeled) if ds.unlabeled else 0)
    table.add_row("(unlabeled)", str(unl), *(["0"] if ds.test is not None else []))
    return table


@command(data_app, "inspect")
def data_inspect(
    spec: Annotated[str, typer.Argument(help="Data spec, e.g. cifar10:PATH or folder:PATH.")],
    sheet: Annotated[
        Path | None, typer.Option(help="Contact sheet PNG (default: runs/inspect/NAME.png).")
    ] = None,
    strict: StrictOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Counts per class, image size and a contact sheet of a data source."""
    configure_progress(progress)  # decoding a source into the cache shows a bar
    with guard():
        if sheet is not None:
            lib.check_figure_path(sheet, "sheet")
        ds = lib.load_dataset(spec, strict=strict)
        Console().print(_count_table(ds))
        path = sheet or Path("runs/inspect") / f"{slug(ds.name)}.png"
        imgs, labels = ds.train.images, ds.train.labels
        if ds.unlabeled is not None and len(ds.unlabeled):
            imgs = lib.torch.cat([imgs, ds.unlabeled.images[:16]])
            labels = lib.torch.cat([labels, ds.unlabeled.labels[:16]])
        lib.plot_contact_sheet(imgs, labels, ds.class_names, path, title=ds.name)
        typer.echo(f"fingerprint {ds.fingerprint or '-'}")
        typer.echo(f"contact sheet: {path}")


def _echo_request(req: Any, encoder: Path | None, out: Path) -> None:
    """The first picks of a label request and a summary of it."""
    for r in req.rows[:10]:
        extra = f"  {r['predicted']}" if r["predicted"] else ""
        typer.echo(f"{r['rank']:>5}  {r['id']}  {r['score'] or '-'}{extra}")
    if len(req.rows) > 10:
        typer.echo(f"  ... {len(req.rows) - 10} more")
    feats = "pixels" if encoder is None else str(encoder)
    typer.echo(
        f"picked {len(req.rows)} of {req.candidates} unlabeled images ({req.labeled} "
        f"labeled) with {req.rows[0]['strategy']} on {feats} features in {req.seconds:.1f}s"
    )
    typer.echo(f"wrote {req.out}; fill its label column, then: fewlabels data add-labels {out}")


@command(name="select")
def select_cmd(
    data: DataOpt = "digits",
    budget: Annotated[int, typer.Option(help="How many images to send for labelling.")] = 100,
    strategy: Annotated[
        str,
        typer.Option(
            help="random, class_balanced, representative, typiclust, probcover, entropy, "
            "margin or coreset (see docs/selection.md)."
        ),
    ] = "typiclust",
    encoder: Annotated[
        Path | None,
        typer.Option(
            help="Self-supervised encoder (model.pt, checkpoint.pt or run folder, e.g. from "
            "`fewlabels pretrain`) whose features the strategy uses; default: raw pixels."
        ),
    ] = None,
    labels: LabelsOpt = None,
    source_labels: SourceLabelsOpt = True,
    delta: Annotated[
        float | None, typer.Option(help="probcover: ball radius (default: estimated).")
    ] = None,
    seed: Annotated[
        int, typer.Option(help="Seed of the strategy (random draws, k-means, the probe).")
    ] = 0,
    out: Annotated[Path, typer.Option(help="Request CSV to write.")] = Path("to_label.csv"),
    strict: StrictOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Pick unlabeled images to send for labelling; writes their ids and paths to a CSV."""
    configure_progress(progress)
    with guard():
        options = {"delta": delta} if delta is not None else {}
        if options and strategy.lower() != "probcover":
            raise ConfigError("--delta only applies to --strategy probcover")
        req = lib.request_labels(
            data,
            budget,
            strategy,
            out,
            encoder=encoder,
            labels_file=labels,
            source_labels=source_labels,
            seed=seed,
            strict=strict,
            options=options,
        )
        _echo_request(req, encoder, out)


@command(data_app, "add-labels")
def data_add_labels(
    returned: Annotated[
        Path, typer.Argument(help="The request CSV from `fewlabels select`, labels filled in.")
    ],
    data: Annotated[
        str | None, typer.Option(help="Data spec (default: the one the request was made on).")
    ] = None,
    labels: Annotated[
        Path | None,
        typer.Option(
            "--labels",
            "--into",
            help="Labels file to add to, created if missing (default: the request's, else "
            "labels.csv beside it).",
        ),
    ] = None,
    strict: StrictOpt = False,
) -> None:
    """Check returned labels (ids, class names, duplicates) and add them to the labels file."""
    with guard():
        meta = lib.read_sidecar(returned)
        spec = data or meta.get("data")
        if spec is None:
            raise ConfigError(f"no record of the data spec of {returned}: give --data")
        target = labels or Path(meta.get("labels") or returned.parent / "labels.csv")
        uni = lib.Universe(lib.load_dataset(spec, strict=strict))
        m = lib.merge_labels(returned, target, uni)
        counts = ", ".join(f"{n} {c}" for c, n in zip(uni.class_names, m.counts, strict=True))
        typer.echo(
            f"added {m.added} labels to {target} ({m.total} in all: {counts})"
            + (f"; {m.already} were there already" if m.already else "")
        )
        if m.blank:
            typer.echo(f"left out {m.blank} row(s) without a label")
