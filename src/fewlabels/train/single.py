"""One training run of one method end to end, in small pieces that the library's functions
(``fewlabels.train``, ``fewlabels.pretrain``) share with the CLI: data -> splits -> network
-> method -> fit -> test -> store (the store only with a run folder).

``fewlabels.train.run.run_training`` runs this, or self-training's rounds of it."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, Field

from fewlabels.core.checkpoint import atomic_write_bytes, save_checkpoint
from fewlabels.core.device import DistInfo, init_distributed, pick_device
from fewlabels.core.errors import CheckpointError, ConfigError, DataError
from fewlabels.core.precision import slow_precision_warning
from fewlabels.core.provenance import provenance
from fewlabels.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from fewlabels.data.imageset import ImageSet
from fewlabels.data.settings import SourceSettings
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.methods import build_method
from fewlabels.methods.base import Method
from fewlabels.methods.online_probe import with_online_probe
from fewlabels.models import Network
from fewlabels.models.settings import BackboneSettings, DeviceSettings
from fewlabels.train.loggers import RunLogger, TrackerCallback, close_trackers, make_loggers
from fewlabels.train.loop import FitResult, TrainConfig, Trainer, barrier, with_train_defaults
from fewlabels.train.warm_start import InitWeights, apply_init, architecture, read_init


class RunConfig(SourceSettings, BackboneSettings, DeviceSettings):
    """Everything that defines a run; saved as ``config.json`` beside its results.

    The data, label, backbone and device settings are the shared parts of
    ``fewlabels.data.settings`` and ``fewlabels.models.settings``; the file stays flat.
    """

    model_config = ConfigDict(extra="forbid")

    unlabeled: str = "rest"
    method: str = "supervised"
    method_kwargs: dict[str, Any] = Field(default_factory=dict)
    # model.pt / checkpoint.pt / run folder whose backbone weights start the network
    init: str | None = None
    # a data spec whose images (labels dropped) join the unlabeled pool, e.g. generated
    # images (folder:OUT/samples of `fewlabels generate`); the ratio takes that many times
    # the real pool (its first images), None takes them all
    extra_unlabeled: str | None = None
    extra_unlabeled_ratio: float | None = Field(default=None, ge=0)
    train: TrainConfig = Field(default_factory=TrainConfig)
    tta: bool = False
    # the run folder; None: keep everything in memory and write no file
    out: str | None = "runs/latest"

    def split_config(self) -> SplitConfig:
        return SplitConfig(
            labels_per_class=self.labels_per_class,
            labeled_fraction=self.labeled_fraction,
            unlabeled=self.unlabeled,
            val=self.val,
            seed=self.train.seed,
        )


@dataclass
class RunResult:
    """The outcome of ``run_training``: metrics, curve, and the trained network and method."""

    out_dir: Path | None
    metrics: Metrics | None
    steps: int
    train_seconds: float
    wall_seconds: float
    curve: list[dict[str, Any]]
    stopped_early: bool = False
    network: Network | None = None
    method: Method | None = None


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (on up to 10k images)."""
    x = images[: min(len(images), 10_000)].float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(v, 5) for v in mean.tolist()], [round(v, 5) for v in std.tolist()]


def prepare_data(cfg: RunConfig) -> tuple[Dataset, Splits]:
    """Load the data source(s) and cut the seeded splits."""
    if cfg.select is not None:
        raise ConfigError(
            "a select setting needs its selected splits given with the data "
            "(fewlabels.select.simulate.selected_data, then run_training(cfg, data=...))"
        )
    ds = cfg.load()
    return ds, make_splits(ds, cfg.split_config())


def data_record(cfg: RunConfig, ds: Dataset) -> tuple[RunConfig, dict[str, Any]]:
    """``cfg`` naming the data actually used, and the ``config.json`` record of it: the
    data spec ``ds`` was loaded from, or a description and fingerprint of in-memory data."""
    if ds.spec is not None:
        cfg = cfg if ds.spec == cfg.data else cfg.model_copy(update={"data": ds.spec})
        return cfg, cfg.model_dump()
    cfg = cfg.model_copy(update={"data": ds.describe(), "test": None})
    return cfg, {**cfg.model_dump(), "data_fingerprint": ds.fingerprint}


def load_extra_unlabeled(cfg: RunConfig, like: ImageSet) -> ImageSet | None:
    """The images of ``cfg.extra_unlabeled`` (training + unlabeled parts, labels dropped),
    checked to have the shape of ``like``'s images; None when the setting is off."""
    if cfg.extra_unlabeled is None:
        if cfg.extra_unlabeled_ratio:
            raise ConfigError("extra_unlabeled_ratio needs extra_unlabeled (a data spec)")
        return None
    ds = load_dataset(cfg.extra_unlabeled, strict=cfg.strict)
    parts = [p.images for p in (ds.train, ds.unlabeled) if p is not None and len(p)]
    if not parts:
        raise DataError(f"{cfg.extra_unlabeled} holds no images to add to the unlabeled pool")
    images = torch.cat(parts)
    if images.shape[1:] != like.images.shape[1:]:
        raise DataError(
            f"the extra unlabeled images of {cfg.extra_unlabeled} are "
            f"{tuple(images.shape[1:])}, the training images {tuple(like.images.shape[1:])}; "
            "generate them at the training images' size"
        )
    labels = torch.full((len(images),), -1, dtype=torch.int64)
    return ImageSet(images, labels, list(like.class_names))


def add_extra_unlabeled(pool: ImageSet, extra: ImageSet, ratio: float | None) -> ImageSet:
    """``pool`` followed by the first ``round(ratio * len(pool))`` of ``extra`` (all: None)."""
    n = len(extra) if ratio is None else round(ratio * len(pool))
    if n > len(extra):
        raise DataError(
            f"{ratio:g}x the unlabeled pool is {n:,} extra images but only {len(extra):,} "
            "are there; sample more (fewlabels generate --num)"
        )
    if n == 0:
        return pool
    part = extra.subset(range(n)) if n < len(extra) else extra
    return ImageSet.concat([pool, ImageSet(part.images, part.labels, list(pool.class_names))])


def build_network(
    cfg: RunConfig,
    labeled: ImageSet,
    num_classes: int,
    mean_std: tuple[list[float], list[float]] | None = None,
) -> Network:
    """A Network for these images, normalised by the labeled pool's channel statistics
    (or by ``mean_std``, e.g. those a pretrained backbone was trained with)."""
    mean, std = mean_std if mean_std is not None else channel_stats(labeled.images)
    return Network(
        cfg.backbone,
        in_channels=labeled.channels,
        image_size=labeled.image_size[0],
        num_classes=num_classes,
        mean=mean,
        std=std,
        stem=cfg.stem,
        backbone_kwargs=dict(cfg.backbone_kwargs),
    )


def export_model(
    path: Path, network: Network, class_names: list[str], extra: dict[str, Any]
) -> None:
    """Write the deployable model file: architecture config + weights + class names."""
    state = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    save_checkpoint(
        {
            "kind": "model",
            "network_config": network.config,
            "state_dict": state,
            "class_names": list(class_names),
            **extra,
        },
        path,
    )


# what a resumed run must share with the run that wrote the checkpoint
_RESUME_KEYS = (
    "data", "test", "labels_per_class", "labeled_fraction", "unlabeled", "val", "backbone",
    "stem", "backbone_kwargs", "method", "method_kwargs", "init", "labels", "source_labels",
    "select", "train", "data_fingerprint",
)  # fmt: skip


def check_resumable(cfg: RunConfig, record: dict[str, Any] | None = None) -> None:
    """Refuse to resume ``cfg.out``'s checkpoint with other settings, before writing anything.

    ``record``: the ``config.json`` this run would write (default: ``cfg``'s settings)."""
    if cfg.out is None:
        return
    out = Path(cfg.out)
    if not (out / "checkpoint.pt").exists():
        return
    try:
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return  # no readable config: the checkpoint's own check decides
    if not isinstance(old, dict):
        return
    new = json.loads(json.dumps(record or cfg.model_dump(), default=str))
    if isinstance(old.get("train"), dict):
        old["train"] = json.loads(json.dumps(with_train_defaults(old["train"]), default=str))
    for key in _RESUME_KEYS:
        a, b = old.get(key), new.get(key)
        if key in old and a != b:
            if isinstance(a, dict) and isinstance(b, dict):
                sub = next(k for k in sorted({*a, *b}, key=str) if a.get(k) != b.get(k))
                key, a, b = f"{key}.{sub}", a.get(sub), b.get(sub)
            raise CheckpointError(
                f"{out} holds a run with other settings ({key}: {str(a)[:40]!r} there, "
                f"{str(b)[:40]!r} now); rerun with its settings to resume, or use a new --out"
            )


def write_json(path: Path, obj: Any) -> None:
    atomic_write_bytes(path, (json.dumps(obj, indent=2, default=str) + "\n").encode())


def start_distributed(device: str) -> tuple[DistInfo, torch.device]:
    """The process group (under torchrun) and the device a run computes on."""
    info = init_distributed(
        torch.device("cuda") if device in ("auto", "cuda") and torch.cuda.is_available() else None
    )
    return info, pick_device(device, info)


def describe_splits(ds: Dataset, splits: Splits) -> str:
    """One line: the sizes of the splits and the images' classes and shape."""
    return (
        f"data {ds.name}: {len(splits.labeled)} labeled, {len(splits.unlabeled)} unlabeled, "
        f"{len(splits.val) if splits.val is not None else 0} val, "
        f"{len(splits.test) if splits.test is not None else 0} test; "
        f"{ds.train.num_classes} classes, {ds.train.channels}x"
        f"{ds.train.image_size[0]}x{ds.train.image_size[1]}"
    )


@dataclass
class Setup:
    """What a run trains: its method (network inside) and the images it learns from."""

    method: Method
    labeled: ImageSet
    unlabeled: ImageSet
    extra: ImageSet | None = None  # cfg.extra_unlabeled's images, not yet in the pool
    n_extra: int = 0


def build_setup(
    cfg: RunConfig,
    ds: Dataset,
    splits: Splits,
    *,
    init: InitWeights | None = None,
    init_head: bool = False,
    log: Callable[[str], Any] | None = None,
) -> Setup:
    """Seed, build the network (from ``init`` when given) and the method, and gather the
    unlabeled images: every training image for a self-supervised method (with an online
    probe on the labels), plus ``cfg.extra_unlabeled``. Refuses bad input before any
    file is written."""
    torch.manual_seed(cfg.train.seed)
    norm = (init.mean, init.std) if init and len(init.mean) == ds.train.channels else None
    # normalised by the labeled images' statistics (the unlabeled ones' when there are none)
    seen = splits.labeled if len(splits.labeled) else splits.unlabeled
    network = build_network(cfg, seen, ds.train.num_classes, norm)
    if init is not None:
        apply_init(network, init, head=init_head)
        if log:
            log(
                f"initialised the {'network' if init_head else 'backbone'} from {cfg.init} "
                f"({init.method or 'unknown method'}, {architecture(init.network_config)})"
            )
    method = build_method(cfg.method, network, **cfg.method_kwargs)
    extra = load_extra_unlabeled(cfg, splits.labeled if len(splits.labeled) else splits.unlabeled)
    return Setup(method, splits.labeled, splits.unlabeled, extra)


def pool_unlabeled(setup: Setup, cfg: RunConfig, log: Callable[[str], Any] | None = None) -> Setup:
    """Self-supervised methods learn from every training image (the labeled ones with
    labels hidden; the labels feed only the online probe and the kNN monitor); then the
    extra unlabeled images join the pool."""
    method, unlabeled = setup.method, setup.unlabeled
    if method.kind == "self-supervised":
        unlabeled = ImageSet.concat([setup.labeled.unlabel(), unlabeled])
        if len(setup.labeled) and bool(setup.labeled.is_labeled.all()):
            method = with_online_probe(method)
    n_extra = 0
    if setup.extra is not None:
        n_real = len(unlabeled)
        unlabeled = add_extra_unlabeled(unlabeled, setup.extra, cfg.extra_unlabeled_ratio)
        n_extra = len(unlabeled) - n_real
        if log:
            log(f"added {n_extra:,} images from {cfg.extra_unlabeled} to {n_real:,} unlabeled")
    return Setup(method, setup.labeled, unlabeled, None, n_extra)


def test_metrics(
    network: Network,
    test: ImageSet | None,
    class_names: list[str],
    *,
    device: torch.device,
    precision: str,
    tta: bool = False,
) -> Metrics | None:
    """Accuracy, macro-F1 and per-class scores on ``test`` (None without a test set)."""
    if test is None or not len(test):
        return None
    logits = predict_logits(network, test.images, device=device, precision=precision, tta=tta)
    return classification_metrics(test.labels.numpy(), logits.argmax(1).numpy(), class_names)


def write_outputs(
    out: Path,
    cfg: RunConfig,
    class_names: list[str],
    network: Network,
    metrics: Metrics | None,
    counts: dict[str, Any],
) -> None:
    """``metrics.json`` and ``confusion.png`` (with a test set) and ``model.pt`` in ``out``;
    ``counts``: steps, seconds and set sizes recorded beside the metrics."""
    if metrics is not None:
        write_json(out / "metrics.json", {**metrics.to_dict(), **counts})
        plot_confusion(
            metrics.confusion,
            class_names,
            out / "confusion.png",
            title=f"{cfg.method} / {cfg.backbone}: accuracy {100 * metrics.accuracy:.1f}%",
        )
    export_model(
        out / "model.pt",
        network,
        class_names,
        {
            "method": cfg.method,
            "metrics": metrics.summary() if metrics else None,
            "init": cfg.init,
        },
    )


def open_trackers(
    loggers: Sequence[str | RunLogger],
    cfg: RunConfig,
    record: dict[str, Any],
    tags: dict[str, Any] | None = None,
) -> TrackerCallback | None:
    """The loop callback feeding ``loggers`` (specs such as ``tensorboard`` or ready
    loggers), with ``record`` (the resolved settings) as hyperparameters; None without any.
    Trackers keep their files in the run folder (the working folder without one)."""
    if not loggers:
        return None
    folder = Path(cfg.out) if cfg.out is not None else Path.cwd()
    name = folder.name if cfg.out is not None else cfg.method
    default_tags = {"method": cfg.method, "labels": cfg.labels_per_class, "seed": cfg.train.seed}
    opened = make_loggers(loggers, folder=folder, name=name, tags={**default_tags, **(tags or {})})
    return TrackerCallback(opened, json.loads(json.dumps(record, default=str)))


def fit_tracked(
    trainer: Trainer,
    setup: Setup,
    val: ImageSet | None,
    stop_at_step: int | None,
    tracker: TrackerCallback | None,
) -> FitResult:
    """``trainer.fit`` of the setup's method and images; a run that fails closes its
    trackers (its rows so far stay logged) before the error goes on."""
    try:
        return trainer.fit(
            setup.method, setup.labeled, setup.unlabeled, val, stop_at_step=stop_at_step
        )
    except BaseException:
        if tracker is not None:
            tracker.finish(None)
        raise


def announce(
    say: Callable[[str], Any], cfg: RunConfig, precision: str, device: torch.device, world: int
) -> None:
    """Say what trains on what, and warn about an emulated precision."""
    say(
        f"training {cfg.method} on {cfg.backbone} for {cfg.train.budget} "
        f"({precision}, {device.type}, {world} process(es))"
    )
    slow = slow_precision_warning(precision, device)
    if slow:
        say(slow)


def run_single(
    cfg: RunConfig,
    *,
    progress: bool = True,
    log: Any = print,
    stop_at_step: int | None = None,
    data: tuple[Dataset, Splits] | None = None,
    init_head: bool = False,
    data_in_memory: bool | None = None,
    loggers: Sequence[str | RunLogger] = (),
) -> RunResult:
    """Train one method as configured; results in ``cfg.out`` (no file when it is None).
    ``loggers``: trackers fed with the curve, settings, final metrics and figure.

    ``data`` gives the dataset and splits ready-made (in-memory data, a study's selected
    splits, self-training's rounds); ``init_head`` also loads the classifier head from
    ``cfg.init``; ``data_in_memory`` (see ``Trainer``) does not change the results, only
    where the images live.
    """
    t0 = time.perf_counter()
    info, device = start_distributed(cfg.device)
    say = log if info.is_main else None
    cfg, record = data_record(cfg, data[0]) if data is not None else (cfg, cfg.model_dump())
    if info.is_main:
        check_resumable(cfg, record)
    init = read_init(cfg.init) if cfg.init else None
    ds, splits = data if data is not None else prepare_data(cfg)
    if say:
        say(describe_splits(ds, splits))
    setup = build_setup(cfg, ds, splits, init=init, init_head=init_head, log=say)
    tracker = open_trackers(loggers, cfg, record) if info.is_main else None
    out = Path(cfg.out) if cfg.out is not None else None
    if info.is_main and out is not None:  # every input checked: a refused run writes nothing
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", record)
        write_json(out / "split.json", splits.record)
    setup = pool_unlabeled(setup, cfg, say)
    trainer = Trainer(
        cfg.train,
        device=device,
        dist_info=info,
        out_dir=out,
        progress=progress,
        log=say,  # e.g. "resumed from ... at step N"
        data_in_memory=data_in_memory,
        callbacks=[tracker] if tracker is not None else (),
    )
    if info.is_main and out is not None:
        write_json(out / "provenance.json", provenance(device, trainer.precision))
    if say:
        announce(say, cfg, trainer.precision, device, info.world_size)
    method = setup.method
    fit = fit_tracked(trainer, setup, splits.val, stop_at_step, tracker)
    metrics = None
    if info.is_main and not fit.stopped_early:
        net = method.network
        assert isinstance(net, Network)
        metrics = test_metrics(
            net, splits.test, ds.class_names, device=device, precision=trainer.precision,
            tta=cfg.tta,
        )  # fmt: skip
        if out is not None:
            counts = {
                "steps": fit.steps,
                "train_seconds": round(fit.train_seconds, 2),
                "wall_seconds": round(time.perf_counter() - t0, 2),
                "labeled": len(splits.labeled),
                "unlabeled": len(splits.unlabeled),
                "extra_unlabeled": setup.n_extra,
            }
            write_outputs(out, cfg, ds.class_names, net, metrics, counts)
    title = f"{cfg.method} / {cfg.backbone}"
    close_trackers(tracker, metrics, out, title, ds.class_names)
    barrier(info)
    wall = time.perf_counter() - t0
    return RunResult(
        out, metrics, fit.steps, fit.train_seconds, wall, fit.curve, fit.stopped_early,
        method.network, method,
    )  # fmt: skip
