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

from fewlabels.augment import unmirrored
from fewlabels.core.device import DistInfo, pick_device
from fewlabels.core.errors import ConfigError
from fewlabels.core.precision import slow_precision_warning
from fewlabels.core.provenance import provenance
from fewlabels.core.runlock import RunLock
from fewlabels.data import Dataset, Splits
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.methods import build_method
from fewlabels.methods.base import Method
from fewlabels.methods.online_probe import with_online_probe
from fewlabels.models import Network
from fewlabels.train.facts import resolve_run
from fewlabels.train.loggers import RunLogger, TrackerCallback, close_trackers, make_loggers
from fewlabels.train.loop import FitResult, Trainer, barrier
from fewlabels.train.parts import (
    RunConfig,
    RunResult,
    add_extra_unlabeled,
    build_network,
    check_resumable,
    data_record,
    describe_splits,
    export_model,
    load_extra_unlabeled,
    prepare_data,
    start_distributed,
    write_json,
)
from fewlabels.train.resolve import Resolution, resolution_table
from fewlabels.train.runcheck import (
    check_run_folder,
    check_same_data,
    data_fingerprint,
    fresh_start,
)
from fewlabels.train.warm_start import InitWeights, apply_init, architecture, read_init


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
    extra unlabeled images join the pool. With ``flip: false`` no view mirrors."""
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
    if not cfg.flip:  # a mirrored image is not of its class here: no view mirrors
        method.views = {k: tuple(map(unmirrored, v)) for k, v in method.views.items()}
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


def resolve_step(
    cfg: RunConfig,
    record: dict[str, Any],
    data: tuple[Dataset, Splits],
    device: torch.device,
    out: Path | None,
    say: Callable[[str], Any] | None,
    info: DistInfo,
    init: InitWeights | None = None,
) -> tuple[RunConfig, Resolution, dict[str, Any]]:
    """The run's settings resolved for its data (``resolve_run``), their table said, and
    the ``config.json`` record updated to the values the run trains with. Under several
    processes no speed probe runs (every process must derive the same values)."""
    start = init.network_config.get("backbone") if init is not None else None
    cfg, resolution = resolve_run(
        cfg, *data, device, out, probe=info.world_size == 1, init_backbone=start
    )
    if say:
        for line in resolution_table(resolution):
            say(line)
    return cfg, resolution, {**record, **cfg.model_dump()}


def resolve_preview(cfg: RunConfig) -> tuple[RunConfig, Resolution]:
    """The settings ``cfg`` would train with and the rule behind each, without training or
    writing anything (the data is loaded; a wall-clock budget runs the speed probe)."""
    if cfg.method.lower() == "teacher_student":  # its rounds train the supervised method
        cfg = cfg.model_copy(update={"method": "supervised"})
    device = pick_device(cfg.device, DistInfo())
    ds, splits = prepare_data(cfg)
    out = Path(cfg.out) if cfg.out is not None else None
    init = read_init(cfg.init).network_config.get("backbone") if cfg.init else None
    return resolve_run(cfg, ds, splits, device, out, init_backbone=init)


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
    extra_state: dict[str, Any] | None = None,
) -> FitResult:
    """``trainer.fit`` of the setup's method and images (``extra_state`` goes into the
    checkpoint); a run that fails closes its trackers (its rows so far stay logged) before
    the error goes on."""
    try:
        return trainer.fit(
            setup.method,
            setup.labeled,
            setup.unlabeled,
            val,
            stop_at_step=stop_at_step,
            extra_state=extra_state,
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
    fresh: bool = False,
    loggers: Sequence[str | RunLogger] = (),
) -> RunResult:
    """Train one method as configured; results in ``cfg.out`` (no file when it is None).
    ``loggers``: trackers fed with the curve, settings, final metrics and figure.

    ``data`` gives the dataset and splits ready-made (in-memory data, a study's selected
    splits, self-training's rounds); ``init_head`` also loads the classifier head from
    ``cfg.init``; ``data_in_memory`` (see ``Trainer``) does not change the results, only
    where the images live. A checkpoint in ``cfg.out`` is resumed only with the same
    settings and data; ``fresh`` discards it and starts afresh. The run folder is locked
    against other writers while the run writes into it.
    """
    lock = RunLock(cfg.out, "train")
    try:
        return _run_single(
            cfg, progress=progress, log=log, stop_at_step=stop_at_step, data=data,
            init_head=init_head, data_in_memory=data_in_memory, fresh=fresh, lock=lock,
            loggers=loggers,
        )  # fmt: skip
    finally:
        lock.release()


def _prepared(
    cfg: RunConfig, data: tuple[Dataset, Splits] | None, fresh: bool, info: DistInfo, say: Any
) -> tuple[RunConfig, dict[str, Any], Dataset, Splits, InitWeights | None]:
    """The run's data, checked against the run folder: the folder can take this run, and
    a checkpoint there was trained on the same data (unless the run starts afresh)."""
    if cfg.tta and not cfg.flip:
        raise ConfigError(
            "tta averages each test image with its mirror image, and flip: false says a "
            "mirrored image is not of its class; leave one of them out"
        )
    cfg, record = data_record(cfg, data[0]) if data is not None else (cfg, cfg.model_dump())
    if info.is_main:
        check_run_folder(cfg.out)
    init = read_init(cfg.init) if cfg.init else None
    ds, splits = data if data is not None else prepare_data(cfg)
    record = {**record, "data_fingerprint": data_fingerprint(ds)}
    if info.is_main and not fresh:
        check_same_data(cfg.out, record["data_fingerprint"], len(splits.labeled))
    if say:
        say(describe_splits(ds, splits))
    return cfg, record, ds, splits, init


def _run_single(
    cfg: RunConfig,
    *,
    progress: bool,
    log: Any,
    stop_at_step: int | None,
    data: tuple[Dataset, Splits] | None,
    init_head: bool,
    data_in_memory: bool | None,
    fresh: bool,
    lock: RunLock,
    loggers: Sequence[str | RunLogger],
) -> RunResult:
    t0 = time.perf_counter()
    info, device = start_distributed(cfg.device)
    say = log if info.is_main else None
    cfg, record, ds, splits, init = _prepared(cfg, data, fresh, info, say)
    out = Path(cfg.out) if cfg.out is not None else None
    # -- resolve: every setting the user left out, derived for this data, budget and device
    cfg, resolution, record = resolve_step(cfg, record, (ds, splits), device, out, say, info, init)
    if info.is_main and not fresh:  # compared as resolved: resolved.json's values resume
        check_resumable(cfg, record)
    setup = build_setup(cfg, ds, splits, init=init, init_head=init_head, log=say)
    tracker = open_trackers(loggers, cfg, record) if info.is_main else None
    if info.is_main and out is not None:  # every input checked: a refused run writes nothing
        lock.acquire()  # creates the folder; refuses a second writer
        if fresh:
            fresh_start(out)
        write_json(out / "config.json", record)
        write_json(out / "resolved.json", {"settings": resolution.record()})
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
    fit = fit_tracked(
        trainer, setup, splits.val, stop_at_step, tracker,
        extra_state={"data_fingerprint": record["data_fingerprint"]},
    )  # fmt: skip
    metrics = _finish(cfg, (ds, splits), setup, fit, trainer, out, t0) if info.is_main else None
    close_trackers(tracker, metrics, out, f"{cfg.method} / {cfg.backbone}", ds.class_names)
    barrier(info)
    wall = time.perf_counter() - t0
    net = setup.method.network
    return RunResult(
        out, metrics, fit.steps, fit.train_seconds, wall, fit.curve, fit.stopped_early,
        net, setup.method,
    )  # fmt: skip


def _finish(
    cfg: RunConfig,
    data: tuple[Dataset, Splits],
    setup: Setup,
    fit: FitResult,
    trainer: Trainer,
    out: Path | None,
    t0: float,
) -> Metrics | None:
    """The finished run's test metrics and, with a run folder, its outputs (none for a run
    stopped early)."""
    if fit.stopped_early:
        return None
    ds, splits = data
    net = setup.method.network
    assert isinstance(net, Network)
    metrics = test_metrics(
        net, splits.test, ds.class_names, device=trainer.device, precision=trainer.precision,
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
    return metrics
