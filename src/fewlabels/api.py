"""The Python API: objects in, objects out; files only when ``out`` is given.

```python
import fewlabels

ds = fewlabels.load("digits")
splits = fewlabels.split(ds, labels_per_class=4, seed=0)
pre = fewlabels.pretrain("simclr", splits.unlabeled, labeled=splits.labeled, budget="200steps")
res = fewlabels.probe(pre.encoder, splits.labeled, splits.test, protocol="linear")
```

Every task function runs the code the CLI runs (``run_training``, the probes, the study
runner), so a result here is the result ``fewlabels train`` gives for the same settings.
With ``out`` set, the run folder is the one the CLI writes (``config.json``,
``metrics.json``, ``model.pt``, ...); with ``out=None`` nothing is written.
"""

from __future__ import annotations

import copy
import csv
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import yaml
from pydantic import ValidationError

from fewlabels.core.device import pick_device
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.data import Dataset, SplitConfig, Splits, load_dataset, make_splits
from fewlabels.data.imageset import UNLABELED, ImageSet
from fewlabels.evaluate.features import load_encoder
from fewlabels.evaluate.metrics import Metrics
from fewlabels.methods import method_class
from fewlabels.methods.base import Method
from fewlabels.models import Network
from fewlabels.models.settings import BackboneSettings
from fewlabels.study import StudyPlan, load_study, run_study, write_report
from fewlabels.study.spec import parse_study
from fewlabels.train.loggers import RunLogger
from fewlabels.train.loop import TrainConfig
from fewlabels.train.probing import ProbeResult, Protocol, probe_encoder, write_probe
from fewlabels.train.run import RunConfig, RunResult, data_record, run_training

Log = Callable[[str], Any]
Sets = tuple[ImageSet, ImageSet | None, ImageSet | None, ImageSet | None]


def _quiet(_: str) -> None:
    pass


# -- data ------------------------------------------------------------------------------
def load(spec: str, *, strict: bool = False) -> Dataset:
    """The Dataset of a data spec (``digits``, ``cifar10:PATH``, ``folder:PATH``, ...), as
    the CLI's ``--data`` takes it; decoded once and cached on disk."""
    return load_dataset(spec, strict=strict)


def split(
    data: Dataset | ImageSet,
    *,
    labels_per_class: int | None = None,
    labeled_fraction: float | None = None,
    unlabeled: str | int = "rest",
    val: str = "auto",
    seed: int = 0,
) -> Splits:
    """Seeded labeled / unlabeled / val / test sets of ``data`` (an ImageSet is wrapped as
    a Dataset without a test set). ``unlabeled``: rest, none, a count, a fraction or a
    ratio such as ``1:20``; ``val``: ``auto`` (as many labels as the
    labeled set), ``train:0.1``, ``test:0.2`` or ``none``."""
    ds = data if isinstance(data, Dataset) else Dataset.from_sets(data)
    cfg = SplitConfig(
        labels_per_class=labels_per_class,
        labeled_fraction=labeled_fraction,
        unlabeled=str(unlabeled),
        val=val,
        seed=seed,
    )
    return make_splits(ds, cfg)


def _empty_like(images: ImageSet, class_names: list[str]) -> ImageSet:
    shape = (0, *images.images.shape[1:])
    return ImageSet(torch.empty(shape, dtype=torch.uint8), torch.empty(0, dtype=torch.int64),
                    list(class_names))  # fmt: skip


def _as_splits(sets: Sets) -> tuple[Dataset, Splits]:
    """A Dataset and Splits of in-memory sets (labeled, unlabeled, val, test); rows of the
    labeled set without a label join the unlabeled set."""
    labeled, unlabeled, val, test = sets
    mask = labeled.is_labeled
    if not bool(mask.all()):
        rows = torch.arange(len(labeled))
        loose = labeled.subset(rows[~mask])
        labeled = labeled.subset(rows[mask])
        unlabeled = ImageSet.concat([loose, unlabeled] if unlabeled is not None else [loose])
    names = list(labeled.class_names)
    for part in (unlabeled, val, test):
        if part is not None and part.images.shape[1:] != labeled.images.shape[1:]:
            raise DataError(
                f"image shapes differ: {tuple(labeled.images.shape[1:])} (labeled) vs "
                f"{tuple(part.images.shape[1:])}"
            )
    pool = unlabeled if unlabeled is not None else _empty_like(labeled, names)
    hidden = pool.labels.clone()
    pool = ImageSet(pool.images, torch.full_like(pool.labels, UNLABELED), names, pool.ids)
    ds = Dataset.from_sets(labeled, test=test, unlabeled=pool if len(pool) else None)
    record = {
        "in_memory": True,
        "fingerprint": ds.fingerprint,
        "sizes": {
            "labeled": len(labeled),
            "unlabeled": len(pool),
            "val": len(val) if val is not None else 0,
            "test": len(test) if test is not None else 0,
        },
    }
    return ds, Splits(labeled, pool, val, test, hidden, record)


# -- settings --------------------------------------------------------------------------
_TRAIN_KEYS = set(TrainConfig.model_fields)
_RUN_KEYS = set(BackboneSettings.model_fields) | {
    "tta", "flip", "init", "extra_unlabeled", "extra_unlabeled_ratio", "device",
}  # fmt: skip


def _settings_error(e: ValidationError, prefix: tuple[str, ...] = ()) -> ConfigError:
    """A settings object's validation error as one line naming the setting."""
    err = e.errors()[0]
    where = ".".join(str(p) for p in (*prefix, *err["loc"])) or "settings"
    return ConfigError(f"{where}: {err['msg']}")


def _run_config(method: str, out: str | Path | None, options: dict[str, Any]) -> RunConfig:
    """A RunConfig from keyword settings: training settings (``lr``, ``batch_size``, ...,
    or ``train=TrainConfig(...)``), backbone settings, and the method's options."""
    opts = dict(options)
    base = opts.pop("train", None)
    # only what a given TrainConfig sets counts as given (the rest is resolved for the data)
    train: dict[str, Any] = (
        base.model_dump(exclude_unset=True) if isinstance(base, TrainConfig) else dict(base or {})
    )
    run: dict[str, Any] = {}
    method_kwargs: dict[str, Any] = dict(opts.pop("method_kwargs", None) or {})
    for key, value in opts.items():
        if key in _TRAIN_KEYS:
            if value is None:  # the TrainConfig's (or train=...'s) own value
                continue
            train[key] = value
        elif key in _RUN_KEYS:
            if value is None and key == "backbone":  # left out: resolved for the data
                continue
            run[key] = value
        else:
            method_kwargs[key] = value
    try:
        train_cfg = TrainConfig(**train)
    except ValidationError as e:
        raise _settings_error(e, ("train",)) from None
    try:
        return RunConfig(
            method=method,
            method_kwargs=method_kwargs,
            train=train_cfg,
            out=str(out) if out is not None else None,
            **run,
        )
    except ValidationError as e:
        raise _settings_error(e) from None


# -- training --------------------------------------------------------------------------
@dataclass
class TrainResult:
    """A trained classifier: the network, its test metrics (with a test set) and curve."""

    network: Network
    method: Method
    metrics: Metrics | None
    curve: list[dict[str, Any]]
    steps: int
    seconds: float  # training time
    config: RunConfig
    out_dir: Path | None = None


@dataclass
class PretrainResult:
    """A pretrained encoder (``encoder.features(x)``), its method and curve; ``metrics``:
    the online probe's test metrics when labeled and test sets were given."""

    encoder: Network
    method: Method
    curve: list[dict[str, Any]]
    steps: int
    seconds: float
    config: RunConfig
    metrics: Metrics | None = None
    out_dir: Path | None = None


def _fit(
    method: str, sets: Sets, out: str | Path | None, progress: bool, options: dict[str, Any]
) -> tuple[RunConfig, RunResult]:
    """Run ``method`` on in-memory sets; (the config as recorded, the result)."""
    loggers = options.pop("loggers", None) or ()
    cfg = _run_config(method, out, options)
    data = _as_splits(sets)
    log = print if progress else _quiet
    res = run_training(cfg, progress=progress, log=log, data=data, loggers=loggers)
    assert isinstance(res.network, Network) and res.method is not None
    return data_record(cfg, data[0])[0], res


def train(
    method: str,
    labeled: ImageSet,
    *,
    unlabeled: ImageSet | None = None,
    val: ImageSet | None = None,
    test: ImageSet | None = None,
    budget: str | None = None,
    backbone: str | None = None,
    device: str = "auto",
    seed: int | None = None,
    progress: bool = False,
    out: str | Path | None = None,
    loggers: Sequence[str | RunLogger] = (),
    **options: Any,
) -> TrainResult:
    """Train a classifier with ``method`` (supervised, fixmatch, mean_teacher, ...) on
    ``labeled`` (+ ``unlabeled`` images for semi-supervised methods).

    ``budget``: ``500steps``, ``10epochs``, ``30s``, ``2m`` or ``100000images``; training
    settings (``lr``, ``batch_size``, ``optimizer``, ``ema``, ... or ``train=TrainConfig``)
    and the method's options (``threshold=0.95``) are keywords. ``val`` drives the curve,
    ``test`` the returned metrics; ``out``: also write the CLI's run folder there. What is
    left out (``backbone`` too) is resolved for the data as in the CLI
    (``fewlabels.train.resolve``). ``flip=False``: a mirrored image is not of its class
    (digits, text), so no augmentation mirrors. ``loggers``: trackers (``"tensorboard"``,
    ``"mlflow"``, ``"wandb"``, ``"csv"``, or ``fewlabels.train.loggers.RunLogger`` objects)
    fed with the curve and final metrics.
    """
    opts = dict(options, budget=budget, backbone=backbone, device=device, seed=seed)
    opts["loggers"] = loggers
    cfg, res = _fit(method, (labeled, unlabeled, val, test), out, progress, opts)
    assert isinstance(res.network, Network) and res.method is not None
    return TrainResult(res.network, res.method, res.metrics, res.curve, res.steps,
                       res.train_seconds, cfg, res.out_dir)  # fmt: skip


def pretrain(
    method: str,
    unlabeled: ImageSet,
    *,
    labeled: ImageSet | None = None,
    val: ImageSet | None = None,
    test: ImageSet | None = None,
    budget: str | None = None,
    backbone: str | None = None,
    device: str = "auto",
    seed: int | None = None,
    progress: bool = False,
    out: str | Path | None = None,
    loggers: Sequence[str | RunLogger] = (),
    **options: Any,
) -> PretrainResult:
    """Pretrain an encoder with a self-supervised ``method`` (simclr, byol, vicreg, ...) on
    every image of ``unlabeled`` and ``labeled`` (its labels hidden from the method).

    ``labeled`` feeds only an online linear probe and the kNN monitor on the ``val`` curve,
    as in ``fewlabels pretrain``; ``batch_size`` counts unlabeled images per step.
    Settings and ``loggers`` as for ``train``.
    """
    kind = method_class(method).kind
    if kind != "self-supervised":
        raise ConfigError(
            f"method {method!r} is {kind}, not self-supervised; use fewlabels.train for it"
        )
    names = (labeled.class_names if labeled is not None else unlabeled.class_names) or ["0"]
    lab = labeled if labeled is not None else _empty_like(unlabeled, names)
    pool = unlabeled.unlabel()
    pool = ImageSet(pool.images, pool.labels, list(names), pool.ids)
    opts = dict(options, budget=budget, backbone=backbone, device=device, seed=seed)
    opts["loggers"] = loggers
    cfg, res = _fit(method, (lab, pool, val, test), out, progress, opts)
    assert isinstance(res.network, Network) and res.method is not None
    return PretrainResult(res.network, res.method, res.curve, res.steps, res.train_seconds,
                          cfg, res.metrics, res.out_dir)  # fmt: skip


# -- probing ---------------------------------------------------------------------------
def probe(
    encoder: Network | PretrainResult | TrainResult | str | Path,
    labeled: ImageSet,
    test: ImageSet,
    *,
    val: ImageSet | None = None,
    protocol: Literal["linear", "knn", "finetune"] = "linear",
    budget: str = "2m",
    finetune_blocks: int | None = None,
    flip: bool = True,
    device: str = "auto",
    seed: int = 0,
    progress: bool = False,
    out: str | Path | None = None,
) -> ProbeResult:
    """Evaluate an encoder with few labels: ``linear`` (logistic regression on frozen
    features, weight decay picked on ``val``), ``knn`` (k=200 cosine) or ``finetune``
    (``budget`` of supervised training, all but the last ``finetune_blocks`` blocks frozen;
    ``flip=False``: its augmentation does not mirror, for data such as digits).

    ``encoder``: a Network, a pretrain/train result, or a model.pt / run folder. The
    encoder itself is left untouched. ``res.metrics`` holds the test accuracy and F1.
    """
    if finetune_blocks is not None and protocol != "finetune":
        raise ConfigError("finetune_blocks only applies to the finetune protocol")
    if isinstance(encoder, PretrainResult):
        net = encoder.encoder
    elif isinstance(encoder, TrainResult):
        net = encoder.network
    elif isinstance(encoder, str | Path):
        net = load_encoder(encoder)[0]
    else:
        net = encoder
    net = copy.deepcopy(net).cpu().eval()
    how = Protocol(protocol, seed, budget, finetune_blocks, use_cache=False, flip=flip)
    folder = Path(out) if out is not None else None
    log = print if progress else None
    res = probe_encoder(net, labeled, test, val, how, device=pick_device(device), out=folder,
                        progress=progress, log=log)  # fmt: skip
    if folder is not None:
        write_probe(folder, res, list(labeled.class_names), protocol=protocol,
                    checkpoint=str(encoder) if isinstance(encoder, str | Path) else None,
                    labeled=len(labeled))  # fmt: skip
    return res


# -- configs and studies ---------------------------------------------------------------
def run(config: RunConfig | Mapping[str, Any], *, progress: bool = False) -> RunResult:
    """One run from its settings (a RunConfig, or a dict of its fields as in a config
    file): what ``fewlabels train`` does, with ``config.out`` the run folder (None: no
    files)."""
    try:
        cfg = config if isinstance(config, RunConfig) else RunConfig(**dict(config))
    except ValidationError as e:
        raise _settings_error(e) from None
    return run_training(cfg, progress=progress, log=print if progress else _quiet)


@dataclass
class StudyRow:
    """One cell of a study: its settings, status and final test metrics."""

    cell: str
    method: str
    labels: str
    unlabeled: str
    n_labeled: int | None
    n_unlabeled: int | None
    seed: int | None
    status: str
    accuracy: float | None
    macro_f1: float | None
    train_seconds: float | None
    error: str
    values: dict[str, str] = field(default_factory=dict)  # every results.csv column


@dataclass
class StudyResult:
    """A study's table (one row per cell) and the folder of its report (None without out)."""

    rows: list[StudyRow]
    report_dir: Path | None
    counts: dict[str, int]
    seconds: float


def _num(v: str, kind: type) -> Any:
    return kind(float(v)) if v not in ("", None) else None


def _read_rows(csv_path: Path) -> list[StudyRow]:
    with csv_path.open(newline="") as f:
        rows = list(csv.DictReader(f))
    return [
        StudyRow(
            cell=r["cell"],
            method=r["method"],
            labels=r["labels"],
            unlabeled=r["unlabeled"],
            n_labeled=_num(r["n_labeled"], int),
            n_unlabeled=_num(r["n_unlabeled"], int),
            seed=_num(r["seed"], int),
            status=r["status"],
            accuracy=_num(r["accuracy"], float),
            macro_f1=_num(r["macro_f1"], float),
            train_seconds=_num(r["train_seconds"], float),
            error=r["error"],
            values=dict(r),
        )
        for r in rows
    ]


class Study:
    """A study (a grid of cells: methods x labels x unlabeled amounts x seeds), checked
    against its data when made; ``run`` works through it and writes the report."""

    def __init__(self, plan: StudyPlan) -> None:
        self.plan = plan

    @classmethod
    def from_yaml(cls, path: str | Path) -> Study:
        """The study of a YAML file (as ``fewlabels study`` takes)."""
        return cls(load_study(path))

    @classmethod
    def from_dict(cls, spec: Mapping[str, Any], *, name: str = "study") -> Study:
        """The study of a mapping with a study file's keys."""
        text = yaml.safe_dump(dict(spec), sort_keys=False)
        return cls(parse_study(text, f"{name}.yaml", check_data=True))

    @property
    def name(self) -> str:
        return self.plan.name

    def run(
        self,
        out: str | Path | None = None,
        *,
        workers: int = 1,
        threads: int | None = None,
        store: str | None = None,
        progress: bool = False,
    ) -> StudyResult:
        """Run every cell (resuming a folder's finished ones), then write the report.

        ``out``: the study folder (runs, store, report.html, results.csv); None runs it in
        a temporary folder that is removed afterwards (the rows stay). ``workers``
        processes share the runs, ``threads`` torch threads each (one worker runs in this
        process, on its own setting: ``torch.set_num_threads`` is the caller's);
        ``store``: a ``postgresql://`` results store."""
        log = print if progress else _quiet
        if threads is None and workers == 1:  # leave this process's torch threads as they are
            threads = torch.get_num_threads()
        if out is None:
            with tempfile.TemporaryDirectory(prefix="fewlabels-study-") as tmp:
                res = self._run(Path(tmp), workers, threads, store, log)
                return StudyResult(res.rows, None, res.counts, res.seconds)
        return self._run(Path(out), workers, threads, store, log)

    def _run(
        self, out: Path, workers: int, threads: int | None, store: str | None, log: Log
    ) -> StudyResult:
        outcome = run_study(
            self.plan, out, workers=workers, threads=threads, log=log, store_url=store
        )
        rep = write_report(out, store)
        return StudyResult(_read_rows(rep.csv), out, outcome.counts, outcome.seconds)
