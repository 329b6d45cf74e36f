"""The settings of a run and its data-side pieces: ``RunConfig``, the data it trains on
(``prepare_data``, ``data_record``, extra unlabeled images), the network it builds, the
model file it exports and the check that a checkpoint may be resumed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from pydantic import ConfigDict, Field

from fewlabels.core.checkpoint import atomic_write_bytes, save_checkpoint
from fewlabels.core.device import DistInfo, init_distributed, pick_device
from fewlabels.core.errors import CheckpointError, ConfigError, DataError
from fewlabels.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from fewlabels.data.imageset import ImageSet
from fewlabels.data.settings import SourceSettings
from fewlabels.evaluate.metrics import Metrics
from fewlabels.methods.base import Method
from fewlabels.models import Network
from fewlabels.models.settings import BackboneSettings, DeviceSettings
from fewlabels.train.loop import TrainConfig, with_train_defaults


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

    @classmethod
    def read(cls, folder: str | Path) -> RunConfig:
        """The settings a run folder's ``config.json`` records, as resolved (its data
        fingerprint, a record of the data rather than a setting, aside)."""
        record = json.loads((Path(folder) / "config.json").read_text())
        record.pop("data_fingerprint", None)
        return cls.model_validate(record)

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
            "are there; lower extra_unlabeled_ratio, or sample more with generate (a larger `num`)"
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
# (the data's fingerprint is compared by ``runcheck.check_same_data``, once it is loaded)


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
                f"{str(b)[:40]!r} now); rerun with its settings to resume, or use a new `out`"
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
