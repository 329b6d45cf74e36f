"""One training run end to end: data -> splits -> network -> method -> fit -> test -> store."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from fewlabels.core.checkpoint import atomic_write_bytes, save_checkpoint
from fewlabels.core.device import DistInfo, init_distributed, pick_device
from fewlabels.core.errors import CheckpointError, ConfigError, DataError
from fewlabels.core.precision import slow_precision_warning
from fewlabels.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.methods import build_method
from fewlabels.methods.online_probe import with_online_probe
from fewlabels.models import Network
from fewlabels.select.labels import apply_labels
from fewlabels.select.simulate import SelectConfig, select_splits
from fewlabels.train.loop import TrainConfig, Trainer, barrier, with_train_defaults
from fewlabels.train.warm_start import apply_init, architecture, read_init


class RunConfig(BaseModel):
    """Everything that defines a run; saved as ``config.json`` beside its results."""

    model_config = ConfigDict(extra="forbid")

    data: str = "digits"
    test: str | None = None
    labels_per_class: int | None = None
    labeled_fraction: float | None = None
    unlabeled: str = "rest"
    val: str = "train:0.1"
    backbone: str = "convnet"
    stem: str = "auto"
    backbone_kwargs: dict[str, Any] = Field(default_factory=dict)
    method: str = "supervised"
    method_kwargs: dict[str, Any] = Field(default_factory=dict)
    # model.pt / checkpoint.pt / run folder whose backbone weights start the network
    init: str | None = None
    # a data spec whose images (labels dropped) join the unlabeled pool, e.g. generated
    # images (folder:OUT/samples of `fewlabels generate`); the ratio takes that many times
    # the real pool (its first images), None takes them all
    extra_unlabeled: str | None = None
    extra_unlabeled_ratio: float | None = Field(default=None, ge=0)
    # labels file (id,label CSV) whose images join the labeled set; source_labels=False
    # hides the source's own labels first (see fewlabels.select.labels)
    labels: str | None = None
    source_labels: bool = True
    # a simulated label request: the labeled set is picked by a strategy (study cells)
    select: SelectConfig | None = None
    train: TrainConfig = Field(default_factory=TrainConfig)
    device: str = "auto"
    strict: bool = False
    tta: bool = False
    out: str = "runs/latest"

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
    """The outcome of ``run_training``."""

    out_dir: Path
    metrics: Metrics | None
    steps: int
    train_seconds: float
    wall_seconds: float
    curve: list[dict[str, Any]]
    stopped_early: bool = False


def channel_stats(images: torch.Tensor) -> tuple[list[float], list[float]]:
    """Per-channel mean and std of uint8 images, in [0, 1] units (on up to 10k images)."""
    x = images[: min(len(images), 10_000)].float().div_(255)
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-3)
    return [round(v, 5) for v in mean.tolist()], [round(v, 5) for v in std.tolist()]


def prepare_data(cfg: RunConfig) -> tuple[Dataset, Splits]:
    """Load the data source(s) and cut the seeded splits."""
    ds = load_dataset(cfg.data, strict=cfg.strict)
    if cfg.test is not None:
        test_ds = load_dataset(cfg.test, strict=cfg.strict)
        test = test_ds.test if test_ds.test is not None else test_ds.train
        if test.class_names != ds.class_names:
            raise DataError(
                f"the test source's classes ({', '.join(test.class_names[:5])}...) differ "
                f"from the training source's ({', '.join(ds.class_names[:5])}...)"
            )
        if test.images.shape[1:] != ds.train.images.shape[1:]:
            raise DataError(
                f"test images are {tuple(test.images.shape[1:])}, training images are "
                f"{tuple(ds.train.images.shape[1:])}"
            )
        ds = Dataset(ds.name, ds.train, test, ds.unlabeled, ds.fingerprint)
    if cfg.labels is not None or not cfg.source_labels:
        ds = apply_labels(ds, cfg.labels, source_labels=cfg.source_labels)
    if cfg.select is not None:
        if cfg.labels_per_class is not None or cfg.labeled_fraction is not None:
            raise ConfigError("a selected labeled set takes no labels per class or fraction")
        sel = select_splits(
            ds, cfg.select, val=cfg.val, unlabeled=cfg.unlabeled, seed=cfg.train.seed
        )
        return ds, sel
    return ds, make_splits(ds, cfg.split_config())


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
    "select", "train",
)  # fmt: skip


def check_resumable(cfg: RunConfig) -> None:
    """Refuse to resume ``cfg.out``'s checkpoint with other settings, before writing anything."""
    out = Path(cfg.out)
    if not (out / "checkpoint.pt").exists():
        return
    try:
        old = json.loads((out / "config.json").read_text())
    except (OSError, ValueError):
        return  # no readable config: the checkpoint's own check decides
    if not isinstance(old, dict):
        return
    new = json.loads(json.dumps(cfg.model_dump(), default=str))
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


def run_training(
    cfg: RunConfig,
    *,
    progress: bool = True,
    log: Any = print,
    stop_at_step: int | None = None,
    data: tuple[Dataset, Splits] | None = None,
    init_head: bool = False,
    data_in_memory: bool | None = None,
) -> RunResult:
    """Run one configured training and write its results to ``cfg.out``.

    ``data`` gives the dataset and splits ready-made (self-training's rounds);
    ``init_head`` also loads the classifier head from ``cfg.init``; ``data_in_memory``
    (see ``Trainer``) does not change the results, only where the images live.
    """
    if cfg.method.lower() == "teacher_student":
        from fewlabels.train.self_training import run_self_training

        return run_self_training(cfg, progress=progress, log=log, stop_at_step=stop_at_step)
    t0 = time.perf_counter()
    info: DistInfo = init_distributed(
        torch.device("cuda")
        if cfg.device in ("auto", "cuda") and torch.cuda.is_available()
        else None
    )
    device = pick_device(cfg.device, info)
    out = Path(cfg.out)
    if info.is_main:
        check_resumable(cfg)
    init = read_init(cfg.init) if cfg.init else None
    ds, splits = data if data is not None else prepare_data(cfg)
    if info.is_main:
        log(
            f"data {ds.name}: {len(splits.labeled)} labeled, {len(splits.unlabeled)} unlabeled, "
            f"{len(splits.val) if splits.val is not None else 0} val, "
            f"{len(splits.test) if splits.test is not None else 0} test; "
            f"{ds.train.num_classes} classes, {ds.train.channels}x"
            f"{ds.train.image_size[0]}x{ds.train.image_size[1]}"
        )
    torch.manual_seed(cfg.train.seed)
    norm = (init.mean, init.std) if init and len(init.mean) == ds.train.channels else None
    network = build_network(cfg, splits.labeled, ds.train.num_classes, norm)
    if init is not None:
        apply_init(network, init, head=init_head)
        if info.is_main:
            log(
                f"initialised the {'network' if init_head else 'backbone'} from {cfg.init} "
                f"({init.method or 'unknown method'}, {architecture(init.network_config)})"
            )
    method = build_method(cfg.method, network, **cfg.method_kwargs)
    extra = load_extra_unlabeled(cfg, splits.labeled if len(splits.labeled) else splits.unlabeled)
    if info.is_main:  # only once every input has been checked: a refused run writes nothing
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.model_dump())
        write_json(out / "split.json", splits.record)
    unlabeled = splits.unlabeled
    if method.kind == "self-supervised":
        # Pretraining learns from every training image (the labeled ones with labels
        # hidden); the labels feed only the online probe and the kNN monitor.
        unlabeled = ImageSet.concat([splits.labeled.unlabel(), splits.unlabeled])
        if len(splits.labeled) and bool(splits.labeled.is_labeled.all()):
            method = with_online_probe(method)
    n_extra = 0
    if extra is not None:
        n_real = len(unlabeled)
        unlabeled = add_extra_unlabeled(unlabeled, extra, cfg.extra_unlabeled_ratio)
        n_extra = len(unlabeled) - n_real
        if info.is_main:
            log(f"added {n_extra:,} images from {cfg.extra_unlabeled} to {n_real:,} unlabeled")
    trainer = Trainer(
        cfg.train,
        device=device,
        dist_info=info,
        out_dir=out,
        progress=progress,
        log=log if info.is_main else None,  # e.g. "resumed from ... at step N"
        data_in_memory=data_in_memory,
    )
    if info.is_main:
        log(
            f"training {cfg.method} on {cfg.backbone} for {cfg.train.budget} "
            f"({trainer.precision}, {device.type}, {info.world_size} process(es))"
        )
        slow = slow_precision_warning(trainer.precision, device)
        if slow:
            log(slow)
    fit = trainer.fit(method, splits.labeled, unlabeled, splits.val, stop_at_step=stop_at_step)
    metrics = None
    if info.is_main and not fit.stopped_early:
        net = method.network
        if splits.test is not None and len(splits.test):
            logits = predict_logits(
                net, splits.test.images, device=device, precision=trainer.precision, tta=cfg.tta
            )
            metrics = classification_metrics(
                splits.test.labels.numpy(), logits.argmax(1).numpy(), ds.class_names
            )
            write_json(
                out / "metrics.json",
                {
                    **metrics.to_dict(),
                    "steps": fit.steps,
                    "train_seconds": round(fit.train_seconds, 2),
                    "wall_seconds": round(time.perf_counter() - t0, 2),
                    "labeled": len(splits.labeled),
                    "unlabeled": len(splits.unlabeled),
                    "extra_unlabeled": n_extra,
                },
            )
            plot_confusion(
                metrics.confusion,
                ds.class_names,
                out / "confusion.png",
                title=f"{cfg.method} / {cfg.backbone}: accuracy {100 * metrics.accuracy:.1f}%",
            )
        export_model(
            out / "model.pt",
            net,
            ds.class_names,
            {
                "method": cfg.method,
                "metrics": metrics.summary() if metrics else None,
                "init": cfg.init,
            },
        )
    barrier(info)
    return RunResult(
        out,
        metrics,
        fit.steps,
        fit.train_seconds,
        time.perf_counter() - t0,
        fit.curve,
        fit.stopped_early,
    )
