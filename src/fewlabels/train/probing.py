"""Evaluate any encoder (pretrained, supervised or random) with few labels: a checkpoint
and a data spec in, a results folder out (``fewlabels probe``, a study's probe cells).

- ``linear`` and ``knn``: the frozen-feature probes of ``fewlabels.evaluate.probe``.
- ``finetune``: an ordinary supervised run (``Trainer``, weak augmentation) from the
  checkpoint's weights with a fresh head; all but the last ``finetune_blocks`` backbone
  blocks frozen (``None``: full fine-tune; ``0``: frozen encoder + linear layer).

Every protocol writes ``metrics.json`` (the keys of a training run's, plus protocol,
train_seconds and labeled) and ``confusion.png`` in ``out``; ``linear`` and ``finetune``
also write a ``model.pt`` classifier (the linear probe's standardisation folded in).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import ConfigDict

from fewlabels.augment import unmirrored
from fewlabels.core.budget import Budget
from fewlabels.core.device import pick_device
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.core.provenance import provenance
from fewlabels.core.runlock import RunLock
from fewlabels.data import Dataset, SplitConfig, Splits, make_splits
from fewlabels.data.imageset import ImageSet
from fewlabels.data.settings import SourceSettings
from fewlabels.evaluate.features import load_encoder
from fewlabels.evaluate.metrics import Metrics, classification_metrics, predict_logits
from fewlabels.evaluate.plots import plot_confusion
from fewlabels.evaluate.probe import check_shapes, classifier_network, feature_probe
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.models.freeze import backbone_blocks, freeze_backbone
from fewlabels.models.settings import DeviceSettings
from fewlabels.train.loop import TrainConfig, Trainer
from fewlabels.train.parts import export_model, write_json
from fewlabels.train.runcheck import check_run_folder, data_fingerprint

Log = Callable[[str], Any]


class ProbeConfig(SourceSettings, DeviceSettings):
    """One evaluation of a checkpoint's encoder (unknown keys are refused); the data,
    label and device settings are the shared parts a ``RunConfig`` has too."""

    model_config = ConfigDict(extra="forbid")

    checkpoint: str
    data: str  # required here (no default data)
    protocol: Literal["linear", "knn", "finetune"] = "linear"
    finetune_blocks: int | None = None
    budget: str = "2m"
    seed: int = 0
    out: str


@dataclass
class ProbeResult:
    """What ``run_probe`` produced."""

    out_dir: Path | None
    metrics: Metrics
    seconds: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    classifier: Network | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def probe_data(cfg: ProbeConfig) -> tuple[Dataset, Splits]:
    """The probe's dataset and its labeled, val and test splits (no unlabeled set)."""
    if cfg.select is not None:
        raise ConfigError(
            "a select setting needs its selected splits given with the data "
            "(fewlabels.select.simulate.selected_data, then run_probe(cfg, data=...))"
        )
    ds = cfg.load()
    split = SplitConfig(
        labels_per_class=cfg.labels_per_class,
        labeled_fraction=cfg.labeled_fraction,
        unlabeled="none",
        val=cfg.val,
        seed=cfg.seed,
    )
    return ds, make_splits(ds, split)


@dataclass
class Protocol:
    """How to probe: the protocol and what it needs besides the sets."""

    name: Literal["linear", "knn", "finetune"] = "linear"
    seed: int = 0
    budget: str = "2m"
    finetune_blocks: int | None = None
    use_cache: bool = True  # the on-disk feature cache (linear, knn)
    flip: bool = True  # false: fine-tuning's augmentation does not mirror (DataSettings.flip)


def probe_encoder(
    encoder: Network,
    labeled: ImageSet,
    test: ImageSet,
    val: ImageSet | None,
    protocol: Protocol,
    *,
    device: torch.device,
    out: Path | None = None,
    progress: bool = False,
    log: Log | None = None,
) -> ProbeResult:
    """Probe ``encoder`` on in-memory sets; ``out`` (fine-tuning's curve) may be None.
    Writes nothing else: ``write_probe`` stores the result."""
    t0 = time.perf_counter()
    for what, part in (("training", labeled), ("test", test)):
        check_shapes(encoder, part, what)
    precision = resolve_precision("auto", device)
    has_val = val is not None and len(val) > 0
    if protocol.name in ("linear", "knn"):
        fp = feature_probe(
            encoder,
            labeled,
            test,
            val if has_val else None,
            protocol=protocol.name,  # type: ignore[arg-type]
            device=device,
            precision=precision,
            seed=protocol.seed,
            use_cache=protocol.use_cache,
        )
        pred, curve, classifier, train_s, extra = (
            fp.pred, fp.curve, fp.classifier, fp.train_seconds, fp.extra,
        )  # fmt: skip
    else:
        classifier, curve, train_s, extra = finetune(
            encoder, labeled, val if has_val else None, protocol, device, out, progress, log
        )
        logits = predict_logits(classifier, test.images, device=device, precision=precision)
        pred = logits.argmax(1)
    names = labeled.class_names
    metrics = classification_metrics(test.labels.numpy(), pred.cpu().numpy(), names)
    extra = {"train_seconds": round(train_s, 3), **extra}
    return ProbeResult(out, metrics, time.perf_counter() - t0, curve, classifier, extra)


def finetune(
    encoder: Network,
    labeled: ImageSet,
    val: ImageSet | None,
    protocol: Protocol,
    device: torch.device,
    out: Path | None,
    progress: bool,
    log: Log | None,
) -> tuple[Network, list[dict[str, Any]], float, dict[str, Any]]:
    """Supervised training of a copy of ``encoder`` with a fresh head, all but the last
    ``protocol.finetune_blocks`` backbone blocks frozen; (network, curve, seconds, info)."""
    net = classifier_network(encoder, labeled.num_classes)
    frozen = freeze_backbone(net.backbone, protocol.finetune_blocks)
    n_blocks = len(backbone_blocks(net.backbone))
    trainable = sum(p.numel() for p in net.parameters() if p.requires_grad)
    if log:
        log(
            f"fine-tuning {n_blocks - len(frozen)} of {n_blocks} backbone blocks + a new head "
            f"({trainable:,} trainable parameters) for {protocol.budget}"
        )
    train_cfg = TrainConfig(
        budget=protocol.budget,
        # the supervised CIFAR-250 setting of benchmarks/bench_supervised.py
        batch_size=min(128, max(8, len(labeled))),
        optimizer="adamw",
        lr=1e-3,
        weight_decay=0.05,
        evals=5,
        seed=protocol.seed,
    )
    torch.manual_seed(protocol.seed)
    method = Supervised(net, augment="weak" if protocol.flip else unmirrored("weak"))
    out_dir = out / "finetune" if out is not None else None
    trainer = Trainer(train_cfg, device=device, out_dir=out_dir, progress=progress)
    fit = trainer.fit(method, labeled, None, val, resume=False)
    info = {
        "finetune_blocks": protocol.finetune_blocks,
        "backbone_blocks": n_blocks,
        "trainable_parameters": trainable,
        "steps": fit.steps,
    }
    network = method.network
    assert isinstance(network, Network)
    return network, fit.curve, fit.train_seconds, info


def write_probe(
    out: Path,
    res: ProbeResult,
    class_names: list[str],
    *,
    protocol: str,
    checkpoint: str | None,
    labeled: int,
    fingerprint: str | None = None,
) -> None:
    """``metrics.json``, ``confusion.png`` and (linear, finetune) ``model.pt`` in ``out``;
    ``fingerprint``: the data's, recorded so a study can tell when the data changed."""
    m = res.metrics
    out.mkdir(parents=True, exist_ok=True)
    record = {"protocol": protocol, "checkpoint": checkpoint}
    if fingerprint is not None:
        record["data_fingerprint"] = fingerprint
    write_json(
        out / "metrics.json",
        {
            **m.to_dict(),
            **record,
            "train_seconds": res.extra["train_seconds"],
            "seconds": round(res.seconds, 2),
            "labeled": labeled,
            **{k: v for k, v in res.extra.items() if k != "train_seconds"},
        },
    )
    plot_confusion(
        m.confusion,
        class_names,
        out / "confusion.png",
        title=f"{protocol} probe, {labeled} labels: {100 * m.accuracy:.1f}%",
    )
    if res.classifier is not None:
        export_model(
            out / "model.pt",
            res.classifier.cpu(),
            class_names,
            {"method": f"probe:{protocol}", "metrics": m.summary(), "init": checkpoint},
        )


def run_probe(
    cfg: ProbeConfig,
    *,
    log: Log = print,
    progress: bool = True,
    data: tuple[Dataset, Splits] | None = None,
) -> ProbeResult:
    """Evaluate the encoder in ``cfg.checkpoint`` with ``cfg.protocol``; results in ``cfg.out``.

    ``data``: the dataset and splits ready-made (e.g. a study's selected labeled set)."""
    t0 = time.perf_counter()
    if cfg.finetune_blocks is not None and cfg.protocol != "finetune":
        raise ConfigError("`finetune_blocks` only applies to `protocol` finetune")
    check_run_folder(cfg.out, "probe")
    Budget.parse(cfg.budget)
    encoder, meta = load_encoder(cfg.checkpoint)
    ds, splits = data if data is not None else probe_data(cfg)
    if splits.test is None or len(splits.test) == 0:
        raise DataError(f"{cfg.data} has no test set to report on; give one with `test`")
    for what, part in (("training", splits.labeled), ("test", splits.test)):
        check_shapes(encoder, part, what)
    device = pick_device(cfg.device)
    out = Path(cfg.out)
    with RunLock(out, "probe"):  # creates the folder; refuses a second writer
        return _probe_and_write(cfg, out, encoder, meta, ds, splits, device, t0, log, progress)


def _probe_and_write(
    cfg: ProbeConfig,
    out: Path,
    encoder: Any,
    meta: dict[str, Any],
    ds: Dataset,
    splits: Splits,
    device: torch.device,
    t0: float,
    log: Log,
    progress: bool,
) -> ProbeResult:
    """Run the probe of ``run_probe`` (inputs checked, ``out`` locked) and write its results."""
    labeled, val, test = splits.labeled, splits.val, splits.test
    assert test is not None
    log(
        f"{cfg.protocol} probe of {cfg.checkpoint} ({meta.get('method') or 'unknown method'}, "
        f"{encoder.config['backbone']}): {len(labeled)} labeled, "
        f"{len(val) if val is not None and len(val) else 0} val, {len(test)} test"
    )
    protocol = Protocol(cfg.protocol, cfg.seed, cfg.budget, cfg.finetune_blocks, flip=cfg.flip)
    res = probe_encoder(
        encoder, labeled, test, val, protocol, device=device, out=out, progress=progress, log=log
    )
    res.seconds = time.perf_counter() - t0
    write_probe(
        out,
        res,
        ds.class_names,
        protocol=cfg.protocol,
        checkpoint=cfg.checkpoint,
        labeled=len(labeled),
        fingerprint=data_fingerprint(ds),
    )
    write_json(out / "provenance.json", provenance(device, resolve_precision("auto", device)))
    return res


def read_metrics(out: str | Path) -> dict[str, Any]:
    """The ``metrics.json`` a probe wrote."""
    return json.loads((Path(out) / "metrics.json").read_text())


def run_data(checkpoint: str | Path) -> tuple[str | None, str | None]:
    """The ``data`` and ``test`` specs a run folder (or a file inside one) was trained on."""
    p = Path(checkpoint)
    cfg_file = (p if p.is_dir() else p.parent) / "config.json"
    try:
        cfg = json.loads(cfg_file.read_text())
    except (OSError, ValueError):
        return None, None
    return cfg.get("data"), cfg.get("test")
