"""What a run knows before its first step (``run_facts``), the speed probe (a few timed
training passes of a backbone on the device, which tell the rules how many steps a
wall-clock budget buys), and ``resolve_run``: a RunConfig's settings resolved for its data
(the rules: ``fewlabels.train.resolve``)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.precision import autocast, resolve_precision
from fewlabels.data import Dataset, Splits
from fewlabels.methods import method_class
from fewlabels.models import Network
from fewlabels.train.resolve import Facts, Resolution, Resolved, resolve_settings

__all__ = ["facts_of", "resolve_run", "reused_values", "run_facts", "speed_probe"]


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def speed_probe(
    *,
    channels: int,
    image_size: int,
    num_classes: int,
    device: torch.device,
    stem: str = "auto",
    backbone_kwargs: dict[str, Any] | None = None,
    seconds: float = 1.5,
    steps: int = 3,
    precision: str = "fp32",
) -> Callable[[str, int, int], float]:
    """A function (backbone, images, side) -> seconds of one forward and backward pass of
    that backbone on that many random images of ``side`` px (default: ``image_size``; a
    method whose views are smaller puts those through the network built for
    ``image_size``): the median of up to ``steps`` timed passes after one untimed one,
    stopping after about ``seconds``. The network and images are channels-last, as the
    training loop runs them. Uses its own random generator (the run's seeded streams are
    untouched) and measures in the run's ``precision`` (bf16 steps on a CPU with bf16
    instructions can be several times faster)."""
    cache: dict[tuple[str, int, int], float] = {}

    def probe(backbone: str, n: int, side: int | None = None) -> float:
        key = (backbone, n, side or image_size)
        if key not in cache:
            cache[key] = _time_passes(backbone, max(2, n), side or image_size)
        return cache[key]

    def _time_passes(backbone: str, n: int, side: int) -> float:
        with torch.random.fork_rng(devices=[]):  # the weights' init draws from torch's RNG
            net = Network(
                backbone, in_channels=channels, image_size=image_size,
                num_classes=num_classes, stem=stem, backbone_kwargs=dict(backbone_kwargs or {}),
            ).to(device)  # fmt: skip
        net = net.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        gen = torch.Generator().manual_seed(0)
        x = torch.rand(n, channels, side, side, generator=gen).to(device)
        x = x.contiguous(memory_format=torch.channels_last)
        times: list[float] = []
        start = time.perf_counter()
        for i in range(steps + 1):
            t0 = time.perf_counter()
            net.zero_grad(set_to_none=True)
            with autocast(precision, device):
                out = net(x)
            out.float().logsumexp(1).mean().backward()
            _sync(device)
            if i:
                times.append(time.perf_counter() - t0)
            if time.perf_counter() - start > seconds:
                break
        return sorted(times)[len(times) // 2] if times else time.perf_counter() - start

    return probe


def run_facts(cfg: Any, ds: Dataset, splits: Splits, device: torch.device) -> Facts:
    """The facts of a RunConfig's run on these splits (``facts_of``)."""
    return facts_of(cfg, ds, len(splits.labeled), len(splits.unlabeled), device)


def facts_of(cfg: Any, ds: Dataset, labeled: int, unlabeled: int, device: torch.device) -> Facts:
    """The facts of a RunConfig's run with this many labeled and unlabeled images: image
    size and channels, classes, the counts (a pretraining run learns from every training
    image), the budget and the method's kind."""
    kind = method_class(cfg.method).kind
    if kind == "self-supervised":
        unlabeled += labeled
    return Facts(
        image_size=int(ds.train.image_size[0]),
        channels=int(ds.train.channels),
        num_classes=int(ds.train.num_classes),
        labeled=labeled,
        unlabeled=unlabeled,
        budget=cfg.train.budget,
        kind=kind,
        method=cfg.method,
        device=device.type,
    )


def reused_values(out: Path | None) -> dict[str, Any] | None:
    """The derived values an earlier start of the run in ``out`` trained with (its
    ``resolved.json``), when it left a checkpoint to resume; else None."""
    if out is None or not (out / "checkpoint.pt").exists():
        return None
    try:
        rows = json.loads((out / "resolved.json").read_text())["settings"]
        return {r["setting"]: r["value"] for r in rows if not r["given"]}
    except (OSError, ValueError, KeyError, TypeError):
        return None


def resolve_run(
    cfg: Any,
    ds: Dataset,
    splits: Splits,
    device: torch.device,
    out: Path | None = None,
    *,
    probe: bool = True,
    init_backbone: str | None = None,
) -> tuple[Any, Resolution]:
    """``cfg`` with the settings it leaves out derived for this data, budget and device,
    and their record. A wall-clock budget runs the speed probe (about a second per
    backbone tried; ``probe=False``: none, as under several processes, which must all
    derive the same values); a resumed run reuses the values its first start derived;
    ``init_backbone``: the backbone of the weights the run starts from (``cfg.init``)."""
    facts = run_facts(cfg, ds, splits, device)
    timer = speed_probe(
        channels=facts.channels, image_size=facts.image_size, num_classes=facts.num_classes,
        device=device, stem=cfg.stem, backbone_kwargs=cfg.backbone_kwargs,
        precision=resolve_precision(cfg.train.precision, device),
    )  # fmt: skip
    reuse = reused_values(out)

    def feature_dim(backbone: str) -> int:
        with torch.random.fork_rng(devices=[]):
            net = Network(
                backbone, facts.channels, facts.image_size, 0, stem=cfg.stem,
                backbone_kwargs=dict(cfg.backbone_kwargs),
            )  # fmt: skip
        return int(net.feature_dim)

    config_cls = method_class(cfg.method).Config
    return resolve_settings(
        cfg, facts, config_cls, probe=timer if probe else None, feature_dim=feature_dim,
        reuse=reuse,
        fixed={"backbone": Resolved(init_backbone, "the backbone of the init weights")}
        if init_backbone else None,
    )  # fmt: skip
