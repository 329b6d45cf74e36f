"""The ``fewlabels`` command line: a thin layer that parses, validates and calls the library.

Every user mistake surfaces as ``error: <one line>`` on stderr and exit code 2.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from pydantic import ValidationError

from fewlabels.core.errors import ConfigError, FewlabelsError
from fewlabels.core.process import keep_freed_memory

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="Train image classifiers from few labels and many unlabeled images.",
)
data_app = typer.Typer(no_args_is_help=True, help="Look at a data source before training.")
app.add_typer(data_app, name="data")


def _err(msg: str, code: int = 2) -> typer.Exit:
    typer.echo(f"error: {msg}", err=True)
    return typer.Exit(code)


@contextlib.contextmanager
def _guard(out: str | None = None) -> Iterator[None]:
    """Turn library errors into one line and exit code 2; never show a traceback."""
    try:
        yield
    except FewlabelsError as e:
        raise _err(str(e), e.exit_code) from None
    except ValidationError as e:
        first = e.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        raise _err(f"invalid setting {where}: {first.get('msg', '')}".strip()) from None
    except KeyboardInterrupt:
        saved = f"; the last checkpoint in {out} is kept, rerun to resume" if out else ""
        raise _err(f"interrupted{saved}", 130) from None
    except MemoryError:
        raise _err("out of memory: use a smaller --batch-size or fewer images") from None


# Options shared by every training command.
DataOpt = Annotated[
    str,
    typer.Option(
        "--data",
        help="Data spec: digits, cifar10:PATH, cifar100:PATH, stl10:PATH, folder:PATH, "
        "tinyimagenet:PATH or npz:FILE; options as ,key=value (e.g. folder:imgs,size=64).",
    ),
]
TestOpt = Annotated[
    str | None, typer.Option("--test", help="A separate data spec for the test set.")
]
LpcOpt = Annotated[
    int | None,
    typer.Option("--labels-per-class", help="Labeled images per class (stratified, seeded)."),
]
FracOpt = Annotated[
    float | None,
    typer.Option("--labeled-fraction", help="Fraction of the training pool that is labeled."),
]
UnlOpt = Annotated[
    str,
    typer.Option(
        "--unlabeled",
        help="Unlabeled pool: 'rest' or 'all' (all other images), a count, a fraction, or a "
        "labeled:unlabeled ratio such as 1:20.",
    ),
]
ValOpt = Annotated[
    str,
    typer.Option(
        "--val",
        help="Validation split: train:F (fraction of train), test:F (fraction of the test "
        "set, e.g. test:0.2 for the reports' 1:4 val:test) or none.",
    ),
]
BudgetOpt = Annotated[
    str, typer.Option("--budget", help="How long to train: 20s, 30m, 2h, 500steps, 10epochs.")
]
SeedOpt = Annotated[int, typer.Option("--seed", help="Seed for splits, sampling and init.")]
OutOpt = Annotated[
    str, typer.Option("--out", help="Run folder: config, split, curve, checkpoint, model.")
]

LabelsOpt = Annotated[
    Path | None,
    typer.Option(
        "--labels",
        "--labeled",
        help="Labels file (CSV with id,label columns) of images already labeled; "
        "see `fewlabels data add-labels`.",
    ),
]
SourceLabelsOpt = Annotated[
    bool,
    typer.Option(
        help="Count the labels the data source itself gives as labeled; --no-source-labels "
        "hides them, so the labels file is the whole labeled set (a simulation on a "
        "fully labeled benchmark).",
    ),
]


def _load_yaml(path: Path | None) -> dict[str, Any]:
    if path is None:
        return {}
    from fewlabels.study.yamlines import load_yaml_lines

    if not path.is_file():
        raise ConfigError(f"config file {path} does not exist")
    obj = load_yaml_lines(path.read_bytes(), f"config file {path}")  # refuses duplicate keys
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    for key in ("train", "method_kwargs", "backbone_kwargs"):
        if not isinstance(obj.get(key, {}), dict):
            raise ConfigError(f"config file {path}: {key!r} must be a mapping of settings")
    return obj  # a dict that also knows the line of each key (``obj.lines``)


def _report(metrics: Any, out: Path) -> None:
    if metrics is None:
        typer.echo(f"no test set; model saved in {out}")
        return
    typer.echo(f"test accuracy  {metrics.accuracy:.4f}")
    typer.echo(f"test macro-F1  {metrics.macro_f1:.4f}")
    typer.echo(f"results in {out}")


@app.command()
def train(
    ctx: typer.Context,
    data: DataOpt = "digits",
    test: TestOpt = None,
    labels_per_class: LpcOpt = None,
    labeled_fraction: FracOpt = None,
    unlabeled: UnlOpt = "rest",
    val: ValOpt = "train:0.1",
    budget: BudgetOpt = "10epochs",
    seed: SeedOpt = 0,
    out: OutOpt = "runs/train",
    backbone: Annotated[
        str,
        typer.Option(
            help="convnet, fastnet, wrn-28-2, wrn-45-2, resnet18, resnet34, resnet50 or "
            "timm:NAME (needs the timm extra)."
        ),
    ] = "convnet",
    stem: Annotated[
        str, typer.Option(help="ResNet stem: cifar, imagenet or auto (from the image size).")
    ] = "auto",
    method: Annotated[
        str,
        typer.Option(
            help="Training method: supervised, a self-supervised or semi-supervised method, "
            "or teacher_student (pseudo-labelling rounds); an unknown name lists them all."
        ),
    ] = "supervised",
    init: Annotated[
        str | None,
        typer.Option(
            help="Start the backbone from this model.pt, checkpoint.pt or run folder "
            "(e.g. a simclr run); the classifier head starts fresh."
        ),
    ] = None,
    add_unlabeled: Annotated[
        str | None,
        typer.Option(
            help="Data spec of extra images (labels dropped) added to the unlabeled pool, "
            "e.g. generated ones: folder:OUT/samples of `fewlabels generate`."
        ),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Labeled images per step.")] = 256,
    unlabeled_batch_ratio: Annotated[
        float,
        typer.Option(
            help="Unlabeled images per labeled image in a step (FixMatch's mu; 7 in the paper)."
        ),
    ] = 7.0,
    threshold: Annotated[
        float | None,
        typer.Option(
            help="Confidence threshold in (0, 1] of pseudo-labelling methods "
            "(fixmatch, flexmatch, pseudo_label, teacher_student)."
        ),
    ] = None,
    optimizer: Annotated[
        str, typer.Option(help="sgd (Nesterov), lars (layer-wise trust ratio) or adamw.")
    ] = "sgd",
    lr: Annotated[
        float | None,
        typer.Option(
            help="Peak learning rate (default: 0.1 x batch/256 for SGD, 0.3 x batch/256 for "
            "LARS, 0.001 for AdamW)."
        ),
    ] = None,
    weight_decay: Annotated[float | None, typer.Option(help="Weight decay.")] = None,
    warmup: Annotated[float, typer.Option(help="Warm-up fraction of the budget.")] = 0.05,
    label_smoothing: Annotated[float | None, typer.Option(help="Label smoothing.")] = None,
    ema: Annotated[float, typer.Option(help="EMA decay of the weights (0 = off).")] = 0.0,
    grad_clip: Annotated[
        float, typer.Option(help="Clip the gradient norm at this value (0 = off).")
    ] = 0.0,
    precision: Annotated[str, typer.Option(help="auto, bf16 or fp32.")] = "auto",
    evals: Annotated[int, typer.Option(help="Validation evaluations over the run.")] = 10,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    tta: Annotated[bool, typer.Option(help="Average with the mirrored image at test.")] = False,
    strict: Annotated[
        bool, typer.Option(help="Refuse corrupt images instead of skipping them.")
    ] = False,
    labels: LabelsOpt = None,
    source_labels: SourceLabelsOpt = True,
    config: Annotated[
        Path | None,
        typer.Option(help="YAML file of settings (RunConfig fields); flags given here win."),
    ] = None,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
    data_in_memory: Annotated[
        bool | None,
        typer.Option(
            "--data-in-memory/--no-data-in-memory",
            help="Keep the training images on the device (fast), or read each batch from "
            "the decode cache on disk (for data bigger than memory). Default: in memory "
            "when they take at most half of the free memory.",
        ),
    ] = None,
) -> None:
    """Train a classifier on the labeled images and report test accuracy and macro-F1."""
    from fewlabels.train.run import RunConfig, run_training

    with _guard(out):
        base = _load_yaml(config)
        unknown = [k for k in base if k not in RunConfig.model_fields]
        if unknown:
            line = getattr(base, "lines", {}).get(unknown[0])
            raise ConfigError(
                f"config file {config}{f' line {line}' if line else ''}: unknown key "
                f"{unknown[0]!r}; valid keys: {', '.join(RunConfig.model_fields)}"
            )
        given = {k for k in ctx.params if _given(ctx, k)}

        def pick(name: str, value: Any) -> Any:
            return value if name in given or name not in base else base[name]

        train_cfg = dict(base.get("train", {}))
        for key, value in {
            "budget": budget,
            "seed": seed,
            "batch_size": batch_size,
            "unlabeled_batch_ratio": unlabeled_batch_ratio,
            "optimizer": optimizer,
            "lr": lr,
            "weight_decay": weight_decay,
            "warmup": warmup,
            "ema": ema,
            "grad_clip": grad_clip,
            "precision": precision,
            "evals": evals,
        }.items():
            if key in given or key not in train_cfg:
                train_cfg[key] = value
        method_kwargs = dict(base.get("method_kwargs", {}))
        if label_smoothing is not None:
            method_kwargs["label_smoothing"] = label_smoothing
        if threshold is not None:
            from fewlabels.methods.masking import check_threshold

            method_kwargs["threshold"] = check_threshold(threshold)
        cfg = RunConfig(
            data=pick("data", data),
            test=pick("test", test),
            labels_per_class=pick("labels_per_class", labels_per_class),
            labeled_fraction=pick("labeled_fraction", labeled_fraction),
            unlabeled=pick("unlabeled", unlabeled),
            val=pick("val", val),
            backbone=pick("backbone", backbone),
            stem=pick("stem", stem),
            backbone_kwargs=base.get("backbone_kwargs", {}),
            method=pick("method", method),
            method_kwargs=method_kwargs,
            init=pick("init", init),
            extra_unlabeled=add_unlabeled
            if "add_unlabeled" in given
            else base.get("extra_unlabeled"),
            extra_unlabeled_ratio=base.get("extra_unlabeled_ratio"),
            train=train_cfg,
            device=pick("device", device),
            strict=pick("strict", strict),
            labels=pick("labels", str(labels) if labels is not None else None),
            source_labels=pick("source_labels", source_labels),
            tta=pick("tta", tta),
            out=pick("out", out),
        )
        res = run_training(cfg, progress=progress, log=typer.echo, data_in_memory=data_in_memory)
        if res.metrics is not None or res.steps:
            typer.echo(f"trained {res.steps} steps in {res.train_seconds:.1f}s")
        _report(res.metrics, res.out_dir)


def _given(ctx: typer.Context, name: str) -> bool:
    """Whether option ``name`` was set on the command line (not left at its default)."""
    source = ctx.get_parameter_source(name)
    return source is not None and source.name not in ("DEFAULT", "DEFAULT_MAP")


@app.command()
def evaluate(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt, checkpoint.pt or a run folder.")],
    data: DataOpt = "digits",
    split: Annotated[
        str, typer.Option(help="test (the source's test set), train, or all.")
    ] = "test",
    tta: Annotated[bool, typer.Option(help="Average with the mirrored image.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Folder for metrics.json and confusion.png.")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Evaluate a trained model: accuracy, macro-F1, per-class scores and a confusion PNG."""
    from fewlabels.core.atomic import atomic_write_text
    from fewlabels.data import load_dataset
    from fewlabels.data.imageset import ImageSet
    from fewlabels.evaluate.inference import evaluate_model, load_model
    from fewlabels.evaluate.plots import plot_confusion

    with _guard():
        if split not in ("test", "train", "all"):
            raise ConfigError(f"split {split!r} is not one of test, train, all")
        model = load_model(checkpoint)
        ds = load_dataset(data, strict=strict)
        if split == "test":
            if ds.test is None:
                raise ConfigError(f"{data} has no test set; use --split train or all")
            images = ds.test
        elif split == "train":
            images = ds.train
        else:
            images = ImageSet.concat([ds.train] + ([ds.test] if ds.test is not None else []))
        m = evaluate_model(model, images, tta=tta)
        worst = sorted(m.per_class.items(), key=lambda kv: kv[1]["f1"])[:3]
        typer.echo(
            f"{m.n} images; weakest classes: "
            + ", ".join(f"{k} (F1 {v['f1']:.2f})" for k, v in worst)
        )
        if out is not None:
            out.mkdir(parents=True, exist_ok=True)
            atomic_write_text(out / "metrics.json", json.dumps(m.to_dict(), indent=2) + "\n")
            plot_confusion(m.confusion, images.class_names, out / "confusion.png")
            typer.echo(f"wrote {out / 'metrics.json'} and {out / 'confusion.png'}")
        typer.echo(f"test accuracy  {m.accuracy:.4f}")
        typer.echo(f"test macro-F1  {m.macro_f1:.4f}")


@app.command()
def predict(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt, checkpoint.pt or a run folder.")],
    images: Annotated[list[Path], typer.Argument(help="Image files and/or folders.")],
    out: Annotated[Path, typer.Option(help="CSV file to write.")] = Path("predictions.csv"),
) -> None:
    """Predict classes for image files; writes a CSV with the confidence of each."""
    from fewlabels.evaluate.inference import load_model, predict_files

    with _guard():
        model = load_model(checkpoint)
        rows, bad = predict_files(model, list(images), out)
        if bad:
            shown = ", ".join(str(b) for b in bad[:3])
            typer.echo(f"warning: skipped {len(bad)} unreadable image(s): {shown}", err=True)
        if not rows:
            raise FewlabelsError("none of the images could be read")
        for r in rows[:10]:
            typer.echo(f"{r['prediction']:>16}  {r['confidence']:.3f}  {r['path']}")
        if len(rows) > 10:
            typer.echo(f"... {len(rows) - 10} more")
        typer.echo(f"wrote {len(rows)} predictions to {out}")


def _ssl_methods() -> list[str]:
    from fewlabels.methods import METHODS

    return sorted(n for n, c in METHODS.items() if getattr(c, "kind", "") == "self-supervised")


def pretrain(ctx: typer.Context, **kwargs: Any) -> None:
    """Pretrain an encoder with a self-supervised method on every training image.

    The labeled split (--labels-per-class ...) feeds only the online linear probe and the
    kNN monitor on the validation curve; --batch-size counts unlabeled images per step.
    """
    from fewlabels.methods import method_class

    with _guard():
        name = kwargs["method"]
        if not _given(ctx, "method"):
            name = _load_yaml(kwargs.get("config")).get("method", name)
        kind = method_class(name).kind
        if kind != "self-supervised":
            raise ConfigError(
                f"method {name!r} is {kind}, not self-supervised; pretrain with one of "
                f"{', '.join(_ssl_methods())} (or use `fewlabels train`)"
            )
    train(ctx, **kwargs)


def _pretrain_signature() -> inspect.Signature:
    """``train``'s options, with pretraining defaults and help where they differ."""
    sig = inspect.signature(train, eval_str=True)
    changed = {
        "method": (
            "simclr",
            Annotated[str, typer.Option(help="Self-supervised method: simclr, byol, ...")],
        ),
        "batch_size": (
            256,
            Annotated[
                int,
                typer.Option(help="Unlabeled images per step (the online probe gets 1/7 of it)."),
            ],
        ),
        "out": ("runs/pretrain", None),
    }
    params = []
    for p in sig.parameters.values():
        if p.name in changed:
            default, annotation = changed[p.name]
            p = p.replace(default=default, annotation=annotation or p.annotation)
        params.append(p)
    return sig.replace(parameters=params)


pretrain.__signature__ = _pretrain_signature()  # type: ignore[attr-defined]
app.command()(pretrain)


@app.command()
def probe(
    checkpoint: Annotated[Path, typer.Argument(help="model.pt, checkpoint.pt or a run folder.")],
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
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Evaluate a checkpoint's encoder with few labels: linear probe, kNN or fine-tuning."""
    from fewlabels.train.probing import ProbeConfig, run_data, run_probe

    with _guard():
        run_spec, run_test = run_data(checkpoint)
        base = checkpoint if checkpoint.is_dir() else checkpoint.parent
        cfg = ProbeConfig(
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
        )
        res = run_probe(cfg, log=typer.echo, progress=progress)
        typer.echo(f"{protocol} probe in {res.seconds:.1f}s")
        _report(res.metrics, res.out_dir)


@app.command()
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
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Draw t-SNE (or UMAP) pictures of embeddings, one panel per saved point of training."""
    from fewlabels.evaluate.embedding import embed_pictures

    with _guard():
        paths = embed_pictures(
            source, plot=plot, data=data, out=out, strict=strict, seed=seed, log=typer.echo
        )
        for p in paths:
            typer.echo(f"wrote {p}")
        metrics = (source if source.is_dir() else source.parent) / "metrics.json"
        if metrics.is_file():
            m = json.loads(metrics.read_text())
            if "accuracy" in m:
                typer.echo(f"test accuracy  {m['accuracy']:.4f}")
                typer.echo(f"test macro-F1  {m['macro_f1']:.4f}")


@app.command()
def study(
    spec: Annotated[Path, typer.Argument(help="Study file (YAML): data, grid, methods, budget.")],
    out: Annotated[
        Path | None, typer.Option(help="Study folder (default: runs/STUDY_NAME).")
    ] = None,
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per worker (default: cores / workers).")
    ] = None,
    store: Annotated[
        str | None,
        typer.Option(
            help="Results store: a postgresql://USER@HOST/DATABASE URL, so that workers on "
            "several machines sharing --out can run this same command (needs the postgres "
            "extra). Default: the SQLite file OUT/study.sqlite, for one machine."
        ),
    ] = None,
) -> None:
    """Run every cell of a study (resumable), then write report.html, report.md, results.csv."""
    from fewlabels.study import load_study, run_study, write_report

    with _guard():
        plan = load_study(spec)
        folder = out or Path("runs") / plan.name
        res = run_study(
            plan, folder, workers=workers, threads=threads, log=typer.echo, store_url=store
        )
        rep = write_report(folder, store)
        typer.echo(
            f"{res.counts['done']} runs done, {res.counts['failed']} failed in {res.seconds:.0f}s"
        )
        typer.echo(f"report: {rep.html}")


@app.command()
def report(
    study_dir: Annotated[Path, typer.Argument(help="A study folder (holding study.sqlite).")],
    store: Annotated[
        str | None,
        typer.Option(
            help="Read the results from this postgresql:// URL (default: the study folder's "
            "study.sqlite, or the database the study was run with, noted in store.json)."
        ),
    ] = None,
) -> None:
    """Regenerate a study's report.html, report.md, results.csv and PNGs from its store."""
    from fewlabels.study import write_report

    with _guard():
        rep = write_report(study_dir, store)
        typer.echo(f"report: {rep.html}")


@app.command()
def generate(
    data: DataOpt = "digits",
    out: Annotated[
        str,
        typer.Option(
            "--out",
            help="Run folder: checkpoint.pt, generator.pt, curve, real_vs_generated.png; "
            "the images go to OUT/samples (use it as folder:OUT/samples).",
        ),
    ] = "runs/generate",
    budget: Annotated[
        str,
        typer.Option(
            help="How long to train the GAN: 20s, 30m, 500steps, 10epochs or 200kimg (real "
            "images shown); rerun with a larger budget to train on."
        ),
    ] = "30m",
    num: Annotated[
        int | None,
        typer.Option(help="Images to sample (default: as many as the training pool)."),
    ] = None,
    size: Annotated[
        int | None,
        typer.Option(help="Image size 8/16/32/64/128 (default: the source's); resizes the data."),
    ] = None,
    encoder: Annotated[
        str | None,
        typer.Option(
            help="A checkpoint (e.g. a `fewlabels pretrain` run): report FD and precision/"
            "recall of the samples against the real test images in its feature space."
        ),
    ] = None,
    test: Annotated[
        str | None,
        typer.Option("--test", help="Reference images for --encoder (default: --data's test set)."),
    ] = None,
    batch_size: Annotated[int, typer.Option(help="Real (and generated) images per step.")] = 64,
    width: Annotated[
        int | None,
        typer.Option(help="Network width (default: 32 on a CPU, 64 on a GPU)."),
    ] = None,
    loss: Annotated[str, typer.Option(help="GAN loss: hinge or ns (non-saturating).")] = "hinge",
    augment: Annotated[
        str,
        typer.Option(
            help="Differentiable augmentations for the discriminator (DiffAugment): a "
            "comma-separated subset of color,translation,cutout, or none."
        ),
    ] = "color,translation,cutout",
    lr: Annotated[float, typer.Option(help="Adam learning rate of both networks.")] = 2e-4,
    ema: Annotated[float, typer.Option(help="EMA decay of the generator's weights.")] = 0.999,
    precision: Annotated[
        str, typer.Option(help="fp32, or bf16/auto (faster, not validated for GANs).")
    ] = "fp32",
    seed: SeedOpt = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or cuda:N.")] = "auto",
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
    progress: Annotated[bool, typer.Option(help="Show a progress bar.")] = True,
) -> None:
    """Train a data-efficient GAN on a source's images and sample new images into a folder."""
    from fewlabels.generate import GenerateConfig, run_generate

    with _guard(out):
        cfg = GenerateConfig(
            data=data,
            test=test,
            out=out,
            num=num,
            size=size,
            encoder=encoder,
            device=device,
            strict=strict,
            gan={
                "budget": budget,
                "batch_size": batch_size,
                "width": width,
                "loss": loss,
                "augment": augment,
                "lr": lr,
                "ema": ema,
                "precision": precision,
                "seed": seed,
            },
        )
        res = run_generate(cfg, progress=progress, log=typer.echo)
        typer.echo(f"samples: {res.num:,} images; use them as folder:{res.samples_dir}")
        if res.quality is not None:
            _echo_quality(res.quality)


def _echo_quality(q: dict[str, Any]) -> None:
    typer.echo(f"reference      {q['reference']} ({q['n_real']:,} real, {q['n_fake']:,} generated)")
    typer.echo(f"Frechet dist.  {q['fd']:.4g}")
    typer.echo(f"precision      {q['precision']:.4f}  (k={q['k']})")
    typer.echo(f"recall         {q['recall']:.4f}")


@app.command()
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
    from fewlabels.evaluate.features import load_encoder
    from fewlabels.generate.quality import load_images, sample_quality
    from fewlabels.generate.run import GenerateConfig, reference_images

    with _guard():
        if max_images < 2:
            raise ConfigError("--max-images must be at least 2")
        net, _ = load_encoder(encoder)
        real, where = reference_images(GenerateConfig(data=reference, strict=strict))
        fake = load_images(images, strict=strict)
        q = sample_quality(net, real, fake, k=k, max_images=max_images)
        _echo_quality({**q, "reference": where})


@app.command()
def methods(
    kind: Annotated[
        str | None,
        typer.Option(help="Only this kind: supervised, self-supervised or semi-supervised."),
    ] = None,
    markdown: Annotated[bool, typer.Option(help="Print docs/methods.md's Markdown.")] = False,
) -> None:
    """List every method with its paper, views and options (method_kwargs) with defaults."""
    from fewlabels.methods.catalog import as_markdown, as_text, describe

    with _guard():
        found = describe(kind)
        typer.echo(as_markdown(found) if markdown else as_text(found), nl=False)


@data_app.command("inspect")
def data_inspect(
    spec: Annotated[str, typer.Argument(help="Data spec, e.g. cifar10:PATH or folder:PATH.")],
    sheet: Annotated[
        Path | None, typer.Option(help="Contact sheet PNG (default: runs/inspect/NAME.png).")
    ] = None,
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Counts per class, image size and a contact sheet of a data source."""
    from rich.console import Console
    from rich.table import Table

    from fewlabels.data import load_dataset
    from fewlabels.evaluate.plots import plot_contact_sheet

    with _guard():
        ds = load_dataset(spec, strict=strict)
        c, (h, w) = ds.train.channels, ds.train.image_size
        table = Table(title=f"{ds.name}: {c}x{h}x{w} images, {ds.train.num_classes} classes")
        table.add_column("class")
        parts = [("train", ds.train), ("test", ds.test)]
        for name, part in parts:
            if part is not None:
                table.add_column(name, justify="right")
        counts = {n: p.counts() for n, p in parts if p is not None}
        for k, cname in enumerate(ds.class_names):
            table.add_row(cname, *[str(counts[n][k]) for n, p in parts if p is not None])
        unl = int((~ds.train.is_labeled).sum()) + (len(ds.unlabeled) if ds.unlabeled else 0)
        table.add_row("(unlabeled)", str(unl), *(["0"] if ds.test is not None else []))
        Console().print(table)
        path = sheet or Path("runs/inspect") / f"{_slug(ds.name)}.png"
        imgs, labels = ds.train.images, ds.train.labels
        if ds.unlabeled is not None and len(ds.unlabeled):
            import torch

            imgs = torch.cat([imgs, ds.unlabeled.images[:16]])
            labels = torch.cat([labels, ds.unlabeled.labels[:16]])
        plot_contact_sheet(imgs, labels, ds.class_names, path, title=ds.name)
        typer.echo(f"fingerprint {ds.fingerprint or '-'}")
        typer.echo(f"contact sheet: {path}")


@app.command("select")
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
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Pick unlabeled images to send for labelling; writes their ids and paths to a CSV."""
    from fewlabels.select.request import request_labels

    with _guard():
        options = {"delta": delta} if delta is not None else {}
        if options and strategy.lower() != "probcover":
            raise ConfigError("--delta only applies to --strategy probcover")
        req = request_labels(
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


@data_app.command("add-labels")
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
    strict: Annotated[bool, typer.Option(help="Refuse corrupt images.")] = False,
) -> None:
    """Check returned labels (ids, class names, duplicates) and add them to the labels file."""
    from fewlabels.data import load_dataset
    from fewlabels.select.labels import Universe, merge_labels
    from fewlabels.select.request import read_sidecar

    with _guard():
        meta = read_sidecar(returned)
        spec = data or meta.get("data")
        if spec is None:
            raise ConfigError(f"no record of the data spec of {returned}: give --data")
        target = labels or Path(meta.get("labels") or returned.parent / "labels.csv")
        uni = Universe(load_dataset(spec, strict=strict))
        m = merge_labels(returned, target, uni)
        counts = ", ".join(f"{n} {c}" for c, n in zip(uni.class_names, m.counts, strict=True))
        typer.echo(
            f"added {m.added} labels to {target} ({m.total} in all: {counts})"
            + (f"; {m.already} were there already" if m.already else "")
        )
        if m.blank:
            typer.echo(f"left out {m.blank} row(s) without a label")


def _slug(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)[:60] or "data"


def _reflow(doc: str) -> str:
    """A docstring as ``--help`` text: paragraphs kept, each on one line (Typer keeps a
    docstring's line breaks, which break lines a second time at the terminal's width)."""
    paras = inspect.cleandoc(doc).split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paras)


for _typer in (app, data_app):
    for _cmd in _typer.registered_commands:
        if _cmd.help is None and _cmd.callback is not None and _cmd.callback.__doc__:
            _cmd.help = _reflow(_cmd.callback.__doc__)


def main() -> None:
    """Console-script entry point."""
    # OpenMP threads that sleep instead of spinning: on a machine with as few cores as
    # torch threads, spinning collapses throughput whenever anything else runs (measured
    # 20-100x on 2 cores). Set before torch is imported; a user's value wins.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    keep_freed_memory()  # freed activations stay mapped: no page faults every step
    try:
        app()
    except FewlabelsError as e:  # raised outside a command (should not happen)
        typer.echo(f"error: {e}", err=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
