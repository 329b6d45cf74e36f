"""``fewlabels generate`` and ``quality``: a data-efficient GAN and how good its images are."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import DATA_HELP, command, flag_table, guard
from fewlabels.cli.options import Opt, build_command, settings_of
from fewlabels.core.errors import ConfigError
from fewlabels.core.progress import configure_progress

# The options of ``generate``; ``setting``: where each goes in the GenerateConfig.
GENERATE_OPTS = [
    Opt("data", str, "digits", DATA_HELP, "data", ("--data",)),
    Opt(
        "out", str, "runs/generate",
        "Run folder: checkpoint.pt, generator.pt, curve, real_vs_generated.png; "
        "the images go to OUT/samples (use it as folder:OUT/samples).", "out", ("--out",),
    ),
    Opt(
        "budget", str, "30m",
        "How long to train the GAN: 20s, 30m, 500steps, 10epochs or 200kimg (real "
        "images shown); rerun with a larger budget to train on.", "gan.budget",
    ),
    Opt("num", int | None, None, "Images to sample (default: as many as the training pool).",
        "num"),
    Opt(
        "size", int | None, None,
        "Image size 8/16/32/64/128 (default: the source's); resizes the data.", "size",
    ),
    Opt(
        "encoder", str | None, None,
        "A checkpoint (e.g. a `fewlabels pretrain` run): report FD and precision/"
        "recall of the samples against the real test images in its feature space.", "encoder",
    ),
    Opt(
        "test", str | None, None, "Reference images for --encoder (default: --data's test set).",
        "test", ("--test",),
    ),
    Opt("batch_size", int, 64, "Real (and generated) images per step.", "gan.batch_size"),
    Opt(
        "width", int | None, None, "Network width (default: 32 on a CPU, 64 on a GPU).",
        "gan.width",
    ),
    Opt("loss", str, "hinge", "GAN loss: hinge or ns (non-saturating).", "gan.loss"),
    Opt(
        "augment", str, "color,translation,cutout",
        "Differentiable augmentations for the discriminator (DiffAugment): a "
        "comma-separated subset of color,translation,cutout, or none.", "gan.augment",
    ),
    Opt("lr", float, 2e-4, "Adam learning rate of both networks.", "gan.lr"),
    Opt("ema", float, 0.999, "EMA decay of the generator's weights.", "gan.ema"),
    Opt(
        "precision", str, "fp32", "fp32, or bf16/auto (faster, not validated for GANs).",
        "gan.precision",
    ),
    Opt("seed", int, 0, "Seed for splits, sampling and init.", "gan.seed", ("--seed",)),
    Opt("device", str, "auto", "auto, cpu, cuda or cuda:N.", "device"),
    Opt("strict", bool, False, "Refuse corrupt images.", "strict"),
    Opt("progress", bool, True, "Show a progress bar."),
]  # fmt: skip


def generate(ctx: typer.Context, values: dict[str, Any]) -> None:
    """Train a data-efficient GAN on a source's images and sample new images into a folder."""
    with guard(values["out"], flag_table(ctx)):
        cfg = lib.GenerateConfig(**settings_of(GENERATE_OPTS, values))
        configure_progress(values["progress"])
        res = lib.run_generate(cfg, progress=values["progress"], log=typer.echo)
        typer.echo(f"samples: {res.num:,} images; use them as folder:{res.samples_dir}")
        if res.quality is not None:
            echo_quality(res.quality)


build_command("generate", GENERATE_OPTS, generate, generate.__doc__ or "")


def echo_quality(q: dict[str, Any]) -> None:
    """Print a sample-quality report (``sample_quality``'s dict and its reference)."""
    typer.echo(f"reference      {q['reference']} ({q['n_real']:,} real, {q['n_fake']:,} generated)")
    typer.echo(f"Frechet dist.  {q['fd']:.4g}")
    typer.echo(f"precision      {q['precision']:.4f}  (k={q['k']})")
    typer.echo(f"recall         {q['recall']:.4f}")


@command()
def quality(
    images: Annotated[
        str, typer.Argument(help="Images to judge: a data spec (folder:PATH, ...) or any folder.")
    ],
    encoder: Annotated[
        str, typer.Option(help="Checkpoint whose features are compared (e.g. a pretrain run).")
    ],
    reference: Annotated[
        str,
        typer.Option(help="Data spec of the real images; its test set is the reference."),
    ],
    k: Annotated[int, typer.Option(help="Neighbours for precision/recall.")] = 3,
    max_images: Annotated[int, typer.Option(help="At most this many images per set.")] = 10_000,
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Frechet distance and kNN precision/recall of images vs real test images, in an encoder's
    feature space (no downloaded network)."""
    with guard():
        if max_images < 2:
            raise ConfigError("--max-images must be at least 2")
        net, _ = lib.load_encoder(encoder)
        real, where = lib.reference_images(lib.GenerateConfig(data=reference, strict=strict))
        fake = lib.load_images(images, strict=strict)
        q = lib.sample_quality(net, real, fake, k=k, max_images=max_images)
        echo_quality({**q, "reference": where})
