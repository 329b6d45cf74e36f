"""``fewlabels train``, ``pretrain``, ``evaluate`` and ``predict``.

A run's RunConfig is built in layers, defaults < ``--config`` YAML < flags given <
``--set KEY=VALUE``; the settings none of these give are resolved for the data and budget
at the run's start; ``--dry-run`` prints the RunConfig these layers make and the table of
resolved settings (loading the data and, for a wall-clock budget, running the speed probe)
and stops.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer
import yaml

from fewlabels.cli import _lib as lib
from fewlabels.cli.common import (
    DATA_HELP,
    LABELS_HELP,
    LOGGER_HELP,
    SOURCE_LABELS_HELP,
    CheckpointArg,
    DataOpt,
    StrictOpt,
    command,
    echo_metrics,
    flag_table,
    guard,
    load_config,
    tracker_specs,
)
from fewlabels.cli.options import (
    Opt,
    build_command,
    defaults_of,
    given_values,
    replace_opts,
    settings_of,
)
from fewlabels.cli.settings import merge, overrides
from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.core.progress import configure_progress

# The options of ``train``, in the order of ``--help``; ``setting``: where each goes.
TRAIN_OPTS = [
    Opt("data", str, "digits", DATA_HELP, "data", ("--data",)),
    Opt("test", str | None, None, "A separate data spec for the test set.", "test", ("--test",)),
    Opt(
        "labels_per_class", int | None, None,
        "Labeled images per class (stratified, seeded).", "labels_per_class",
        ("--labels-per-class",),
    ),
    Opt(
        "labeled_fraction", float | None, None,
        "Fraction of the training pool that is labeled.", "labeled_fraction",
        ("--labeled-fraction",),
    ),
    Opt(
        "unlabeled", str, "rest",
        "Unlabeled pool: 'rest' or 'all' (all other images), a count, a fraction, or a "
        "labeled:unlabeled ratio such as 1:20.", "unlabeled", ("--unlabeled",),
    ),
    Opt(
        "val", str, "auto",
        "Validation split (curves, time-to-accuracy): auto (as many labels per class as "
        "the labeled set), train:F (fraction of train), test:F (fraction of the test set, "
        "e.g. test:0.2 for the reports' 1:4 val:test) or none.", "val", ("--val",),
    ),
    Opt(
        "budget", str, "10epochs", "How long to train: 20s, 30m, 2h, 500steps, 10epochs.",
        "train.budget", ("--budget",),
    ),
    Opt("seed", int, 0, "Seed for splits, sampling and init.", "train.seed", ("--seed",)),
    Opt(
        "out", str, "runs/train", "Run folder: config, split, curve, checkpoint, model.",
        "out", ("--out",),
    ),
    Opt(
        "backbone", str | None, None,
        "convnet, fastnet, wrn-28-2, wrn-45-2, resnet18, resnet34, resnet50 or "
        "timm:NAME (needs the timm extra). Default: resolved from the image size and "
        "the device's speed.", "backbone",
    ),
    Opt("stem", str, "auto", "ResNet stem: cifar, imagenet or auto (from the image size).", "stem"),
    Opt(
        "method", str, "supervised",
        "Training method: supervised, a self-supervised or semi-supervised method, "
        "or teacher_student (pseudo-labelling rounds); an unknown name lists them all.",
        "method",
    ),
    Opt(
        "init", str | None, None,
        "Start the backbone from this model.pt, checkpoint.pt or run folder "
        "(e.g. a simclr run); the classifier head starts fresh.", "init",
    ),
    Opt(
        "add_unlabeled", str | None, None,
        "Data spec of extra images (labels dropped) added to the unlabeled pool, "
        "e.g. generated ones: folder:OUT/samples of `fewlabels generate`.", "extra_unlabeled",
    ),
    Opt(
        "batch_size", int | None, None,
        "Labeled images per step. Default: resolved (a power of two, at most the labeled "
        "count).", "train.batch_size",
    ),
    Opt(
        "unlabeled_batch_ratio", float | None, None,
        "Unlabeled images per labeled image in a step (FixMatch's mu; default 7 as in the "
        "paper, lowered when the budget buys too few steps).", "train.unlabeled_batch_ratio",
    ),
    Opt(
        "threshold", float | None, None,
        "Confidence threshold in (0, 1] of pseudo-labelling methods "
        "(fixmatch, flexmatch, pseudo_label, teacher_student).", "method_kwargs.threshold",
    ),
    Opt(
        "optimizer", str | None, None,
        "sgd (Nesterov), lars (layer-wise trust ratio) or adamw. Default: the method's "
        "recipe (AdamW with labels, SGD or LARS for pretraining).", "train.optimizer",
    ),
    Opt(
        "lr", float | None, None,
        "Peak learning rate (default: resolved for the optimiser and batch, e.g. SGD "
        "0.1 x batch/256 by the linear scaling rule).", "train.lr",
    ),
    Opt("weight_decay", float | None, None, "Weight decay.", "train.weight_decay"),
    Opt(
        "warmup", float | None, None,
        "Warm-up fraction of the budget (default: 5%, at least 50 steps, at most 20%).",
        "train.warmup",
    ),
    Opt(
        "label_smoothing", float | None, None, "Label smoothing.", "method_kwargs.label_smoothing"
    ),
    Opt(
        "ema", float | None, None,
        "EMA decay of the weights (0 = off; default: 1 - 10/steps for semi-supervised "
        "methods, off under 100 steps and for the others).", "train.ema",
    ),
    Opt(
        "grad_clip", float, 0.0, "Clip the gradient norm at this value (0 = off).",
        "train.grad_clip",
    ),
    Opt("precision", str, "auto", "auto, bf16 or fp32.", "train.precision"),
    Opt("evals", int, 10, "Validation evaluations over the run.", "train.evals"),
    Opt("device", str, "auto", "auto, cpu, cuda or cuda:N.", "device"),
    Opt("tta", bool, False, "Average with the mirrored image at test.", "tta"),
    Opt("strict", bool, False, "Refuse corrupt images instead of skipping them.", "strict"),
    Opt(
        "flip", bool, True,
        "Mirror images in augmentation; --no-flip where a mirrored image is not of its "
        "class (digits, text).", "flip",
    ),
    Opt("labels", Path | None, None, LABELS_HELP, "labels", ("--labels", "--labeled")),
    Opt("source_labels", bool, True, SOURCE_LABELS_HELP, "source_labels"),
    Opt(
        "config", Path | None, None,
        "YAML file of settings (RunConfig fields); flags given here win.",
    ),
    Opt(
        "set", list[str] | None, None,
        "Set any setting of the RunConfig by its dotted name, over --config and flags: "
        "train.lr=0.05, method.temperature=0.2 (method_kwargs), backbone.widths=[32,64] "
        "(backbone_kwargs), select.strategy=typiclust; values are YAML. Repeatable.",
        decls=("--set",), metavar="KEY=VALUE",
    ),
    Opt(
        "fresh", bool, False,
        "Start afresh: discard the run folder's checkpoint, curve and results (needed to "
        "rerun after the data changed; without it such a run is refused).",
        decls=("--fresh",),
    ),
    Opt(
        "dry_run", bool, False,
        "Print the RunConfig (YAML) and the settings resolved for the data, with their "
        "rules, and stop: the data is loaded (and the speed probe runs for a time "
        "budget); nothing is trained or written.",
        decls=("--dry-run",),
    ),
    Opt("progress", bool, True, "Show a progress bar."),
    Opt(
        "logger", list[str] | None, None, LOGGER_HELP, decls=("--logger",), metavar="NAME",
    ),
    Opt(
        "data_in_memory", bool | None, None,
        "Keep the training images on the device (fast), or read each batch from "
        "the decode cache on disk (for data bigger than memory). Default: in memory "
        "when they take at most half of the free memory.",
        decls=("--data-in-memory/--no-data-in-memory",),
    ),
]  # fmt: skip

PRETRAIN_OPTS = replace_opts(
    TRAIN_OPTS,
    method={"default": "simclr", "help": "Self-supervised method: simclr, byol, ..."},
    batch_size={
        "help": "Unlabeled images per step (the online probe gets 1/7 of it). Default: "
        "resolved (256, at most the image count)."
    },
    out={"default": "runs/pretrain"},
)


def beyond_model(layer: dict[str, Any], model: dict[str, Any]) -> dict[str, Any]:
    """``layer`` without the values equal to ``model``'s: a command's default that is the
    library's default stays a default (the settings' rules may derive it)."""
    out: dict[str, Any] = {}
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(model.get(key), dict):
            inner = beyond_model(value, model[key])
            if inner:
                out[key] = inner
        elif key not in model or model[key] != value:
            out[key] = value
    return out


def resolve(ctx: typer.Context, opts: list[Opt], values: dict[str, Any]) -> Any:
    """The RunConfig of a ``train``/``pretrain`` command line, validated. Only what the
    command line, ``--config`` or ``--set`` gives (or a command default that differs from
    the library's) counts as given; the rest is resolved for the data at the run's start."""
    model_defaults = lib.RunConfig().model_dump(mode="json")
    defaults = beyond_model(settings_of(opts, defaults_of(opts)), model_defaults)
    flags = settings_of(opts, given_values(ctx, values))
    if "threshold" in flags.get("method_kwargs", {}):
        lib.check_threshold(values["threshold"])
    from_file = load_config(values["config"], lib.RunConfig.model_fields)
    from_set = overrides(lib.RunConfig, values["set"] or [])
    layers = [defaults, from_file, flags, from_set]
    resolved: dict[str, Any] = {}
    for layer in layers:
        resolved = merge(resolved, layer)
    return lib.RunConfig(**resolved)


def run(cfg: Any, values: dict[str, Any]) -> None:
    """Train ``cfg`` (or print it, for ``--dry-run``) and report the outcome."""
    if values["dry_run"]:
        typer.echo(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False), nl=False)
        try:
            _, resolution = lib.resolve_preview(cfg)
        except FewlabelsError as e:  # e.g. data not there yet: the settings still print
            typer.echo(f"# resolved settings: not available ({e})")
            return
        typer.echo("# resolved settings (data loaded, speed probe run; nothing written):")
        for line in lib.resolution_table(resolution):
            typer.echo(f"# {line}")
        return
    configure_progress(values["progress"])  # the cache's and the features' bars too
    res = lib.run_training(
        cfg,
        progress=values["progress"],
        log=typer.echo,
        data_in_memory=values["data_in_memory"],
        fresh=values["fresh"],
        loggers=tracker_specs(values["logger"]),
    )
    if res.metrics is not None or res.steps:
        typer.echo(f"trained {res.steps} steps in {res.train_seconds:.1f}s")
    echo_metrics(res.metrics, res.out_dir)


def train(ctx: typer.Context, values: dict[str, Any]) -> None:
    """Train a classifier on the labeled images and report test accuracy and macro-F1."""
    with guard(values["out"], flag_table(ctx)):
        run(resolve(ctx, TRAIN_OPTS, values), values)


build_command("train", TRAIN_OPTS, train, train.__doc__ or "")


@command()
def evaluate(
    checkpoint: CheckpointArg,
    data: DataOpt = "digits",
    split: Annotated[
        str, typer.Option(help="test (the source's test set), train, or all.")
    ] = "test",
    tta: Annotated[bool, typer.Option(help="Average with the mirrored image.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Folder for metrics.json and confusion.png.")
    ] = None,
    strict: StrictOpt = False,
) -> None:
    """Evaluate a trained model: accuracy, macro-F1, per-class scores and a confusion PNG."""
    with guard():
        if split not in ("test", "train", "all"):
            raise ConfigError(f"split {split!r} is not one of test, train, all")
        if out is not None:
            lib.check_evaluation_out(out)
        model = lib.load_model(checkpoint)
        ds = lib.load_dataset(data, strict=strict)
        if split == "test":
            if ds.test is None:
                raise ConfigError(f"{data} has no test set; use --split train or all")
            images = ds.test
        elif split == "train":
            images = ds.train
        else:
            images = lib.ImageSet.concat([ds.train] + ([ds.test] if ds.test is not None else []))
        m = lib.evaluate_model(model, images, tta=tta)
        worst = sorted(m.per_class.items(), key=lambda kv: kv[1]["f1"])[:3]
        typer.echo(
            f"{m.n} images; weakest classes: "
            + ", ".join(f"{k} (F1 {v['f1']:.2f})" for k, v in worst)
        )
        if out is not None:
            written = lib.write_evaluation(out, m, images.class_names)
            typer.echo(f"wrote {written[0]} and {written[1]}")
        typer.echo(f"test accuracy  {m.accuracy:.4f}")
        typer.echo(f"test macro-F1  {m.macro_f1:.4f}")


@command()
def predict(
    checkpoint: CheckpointArg,
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    out: Annotated[Path, typer.Option(help="CSV file to write.")] = Path("predictions.csv"),
) -> None:
    """Predict classes for image files; writes a CSV with the confidence of each."""
    with guard():
        lib.check_out_file(out)
        model = lib.load_model(checkpoint)
        rows, bad = lib.predict_files(model, list(images), out)
        if not rows:
            first = f" ({len(bad)} unreadable, first: {bad[0]})" if bad else ""
            raise FewlabelsError(f"none of the images could be read{first}")
        if bad:
            shown = ", ".join(str(b) for b in bad[:3])
            typer.echo(f"warning: skipped {len(bad)} unreadable image(s): {shown}", err=True)
        for r in rows[:10]:
            typer.echo(f"{r['prediction']:>16}  {r['confidence']:.3f}  {r['path']}")
        if len(rows) > 10:
            typer.echo(f"... {len(rows) - 10} more")
        typer.echo(f"wrote {len(rows)} predictions to {out}")


def _ssl_methods() -> list[str]:
    return sorted(n for n, c in lib.METHODS.items() if getattr(c, "kind", "") == "self-supervised")


def pretrain(ctx: typer.Context, values: dict[str, Any]) -> None:
    """Pretrain an encoder with a self-supervised method on every training image.

    The labeled split (--labels-per-class ...) feeds only the online linear probe and the
    kNN monitor on the validation curve; --batch-size counts unlabeled images per step.
    """
    with guard(values["out"], flag_table(ctx)):
        cfg = resolve(ctx, PRETRAIN_OPTS, values)
        kind = lib.method_class(cfg.method).kind
        if kind != "self-supervised":
            raise ConfigError(
                f"method {cfg.method!r} is {kind}, not self-supervised; pretrain with one of "
                f"{', '.join(_ssl_methods())} (or use `fewlabels train`)"
            )
        run(cfg, values)


build_command("pretrain", PRETRAIN_OPTS, pretrain, pretrain.__doc__ or "")
