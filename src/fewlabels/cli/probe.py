"""``fewlabels probe`` and ``embed``: judge and picture a trained encoder."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import (
    BudgetOpt,
    CheckpointArg,
    DeviceOpt,
    FracOpt,
    LpcOpt,
    ProgressOpt,
    SeedOpt,
    StrictOpt,
    TestOpt,
    ValOpt,
    command,
    echo_metrics,
    guard,
)
from fewlabels.core.progress import configure_progress


@command()
def probe(
    checkpoint: CheckpointArg,
    data: Annotated[
        str | None,
        typer.Option(help="Data spec (default: the one the run folder was trained on)."),
    ] = None,
    test: TestOpt = None,
    labels_per_class: LpcOpt = None,
    labeled_fraction: FracOpt = None,
    val: ValOpt = "train:0.1",
    protocol: Annotated[
        str,
        typer.Option(
            help="linear (logistic regression on cached frozen features), knn (k=200 "
            "cosine) or finetune (supervised training from the checkpoint)."
        ),
    ] = "linear",
    finetune_blocks: Annotated[
        int | None,
        typer.Option(
            help="finetune: train the last N backbone blocks + the head (0: frozen "
            "encoder + linear layer; default: all)."
        ),
    ] = None,
    budget: BudgetOpt = "2m",
    seed: SeedOpt = 0,
    out: Annotated[
        Path | None,
        typer.Option(help="Results folder (default: probe-PROTOCOL beside the checkpoint)."),
    ] = None,
    device: DeviceOpt = "auto",
    strict: StrictOpt = False,
    flip: Annotated[
        bool,
        typer.Option(
            help="finetune: mirror images in augmentation; --no-flip where a mirrored "
            "image is not of its class (digits, text)."
        ),
    ] = True,
    progress: ProgressOpt = True,
) -> None:
    """Evaluate a checkpoint's encoder with few labels: linear probe, kNN or fine-tuning."""
    configure_progress(progress)
    with guard():
        run_spec, run_test = lib.run_data(checkpoint)
        base = checkpoint if checkpoint.is_dir() else checkpoint.parent
        cfg = lib.ProbeConfig(
            checkpoint=str(checkpoint),
            data=data or run_spec or "digits",
            test=test if test is not None or data is not None else run_test,
            labels_per_class=labels_per_class,
            labeled_fraction=labeled_fraction,
            val=val,
            protocol=protocol,  # type: ignore[arg-type]
            finetune_blocks=finetune_blocks,
            budget=budget,
            seed=seed,
            out=str(out or base / f"probe-{protocol}"),
            device=device,
            strict=strict,
            flip=flip,
        )
        res = lib.run_probe(cfg, log=typer.echo, progress=progress)
        typer.echo(f"{protocol} probe in {res.seconds:.1f}s")
        echo_metrics(res.metrics, res.out_dir)


@command()
def embed(
    source: Annotated[
        Path, typer.Argument(help="A run folder (its saved embeddings) or a checkpoint.")
    ],
    plot: Annotated[
        str, typer.Option(help="Projection: tsne, or umap (needs the umap extra: umap-learn).")
    ] = "tsne",
    data: Annotated[
        str | None,
        typer.Option(help="Data spec: compute the embedding of a checkpoint on its images."),
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="Folder for the PNGs (default: SOURCE/embeddings).")
    ] = None,
    seed: SeedOpt = 0,
    strict: StrictOpt = False,
    progress: ProgressOpt = True,
) -> None:
    """Draw t-SNE (or UMAP) pictures of embeddings, one panel per saved point of training."""
    configure_progress(progress)
    with guard():
        paths = lib.embed_pictures(
            source, plot=plot, data=data, out=out, strict=strict, seed=seed, log=typer.echo
        )
        for p in paths:
            typer.echo(f"wrote {p}")
        metrics = (source if source.is_dir() else source.parent) / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            if "accuracy" in m:
                typer.echo(f"test accuracy  {m['accuracy']:.4f}")
                if "macro_f1" in m:
                    typer.echo(f"test macro-F1  {m['macro_f1']:.4f}")
