"""One training run end to end: data -> splits -> network -> method -> fit -> test -> store."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict, Field

from fewlabels.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from fewlabels.data.imageset import ImageSet
from fewlabels.errors import DataError
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.methods import build_method
from fewlabels.methods.online_probe import with_online_probe
from fewlabels.models import Network
from fewlabels.train.checkpoint import atomic_write_bytes, save_checkpoint
from fewlabels.train.distributed import DistInfo, init_distributed, pick_device
from fewlabels.train.loop import TrainConfig, Trainer, barrier
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
    return ds, make_splits(ds, cfg.split_config())


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
) -> RunResult:
    """Run one configured training and write its results to ``cfg.out``.

    ``data`` gives the dataset and splits ready-made (self-training's rounds);
    ``init_head`` also loads the classifier head from ``cfg.init``.
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
    init = read_init(cfg.init) if cfg.init else None
    ds, splits = data if data is not None else prepare_data(cfg)
    if info.is_main:
        out.mkdir(parents=True, exist_ok=True)
        write_json(out / "config.json", cfg.model_dump())
        write_json(out / "split.json", splits.record)
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
    unlabeled = splits.unlabeled
    if method.kind == "self-supervised":
        # Pretraining learns from every training image (the labeled ones with labels
        # hidden); the labels feed only the online probe and the kNN monitor.
        unlabeled = ImageSet.concat([splits.labeled.unlabel(), splits.unlabeled])
        if len(splits.labeled) and bool(splits.labeled.is_labeled.all()):
            method = with_online_probe(method)
    trainer = Trainer(cfg.train, device=device, dist_info=info, out_dir=out, progress=progress)
    if info.is_main:
        log(
            f"training {cfg.method} on {cfg.backbone} for {cfg.train.budget} "
            f"({trainer.precision}, {device.type}, {info.world_size} process(es))"
        )
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
