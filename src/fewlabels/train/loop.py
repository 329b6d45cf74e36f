"""The one training loop. It knows a method only through ``fewlabels.methods.base``.

Per step: draw index batches -> gather uint8 images on the device -> augment with the
method's policies -> ``method(batch)`` under autocast -> backward -> optimiser ->
schedule -> EMA. Everything random is seeded from ``(seed, step)``, so a run resumed
from a checkpoint continues exactly as if it had never stopped.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, field_validator
from torch import nn

from fewlabels.augment import build_policy
from fewlabels.core.atomic import atomic_write_text
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.device import DistInfo
from fewlabels.core.errors import CheckpointError, ConfigError, DivergenceError
from fewlabels.core.precision import autocast, resolve_precision
from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import predict_logits, quick_metrics
from fewlabels.evaluate.monitor import FeatureMonitor
from fewlabels.methods.base import Batch, Method
from fewlabels.train.ema import ModelEMA
from fewlabels.train.feed import ImageFeed, resolve_in_memory
from fewlabels.train.lars import LARS
from fewlabels.train.schedule import warmup_cosine

# field -> (low, high, low excluded): the ranges TrainConfig accepts (high always excluded)
_RANGES: dict[str, tuple[float, float, bool]] = {
    "lr": (0.0, math.inf, True),
    "weight_decay": (0.0, math.inf, False),
    "momentum": (0.0, 1.0, False),
    "warmup": (0.0, math.nextafter(1.0, 2.0), False),  # 1 itself allowed
    "final_lr": (0.0, math.inf, False),
    "evals": (0, math.inf, False),
    "eval_batch_size": (1, math.inf, False),
    "checkpoint_every_s": (0.0, math.inf, False),
    "seed": (0, 2**63, False),
    "grad_clip": (0.0, math.inf, False),
    "lars_eta": (0.0, math.inf, True),
}


class TrainConfig(BaseModel):
    """Optimisation settings shared by every method (unknown keys are refused)."""

    model_config = ConfigDict(extra="forbid")

    budget: str = "10epochs"
    batch_size: int = 256
    unlabeled_batch_ratio: float = 7.0
    optimizer: Literal["sgd", "adamw", "lars"] = "sgd"
    lr: float | None = None
    weight_decay: float | None = None
    momentum: float = 0.9
    nesterov: bool = True  # sgd only (LARS and AdamW take plain momentum)
    warmup: float = 0.05
    final_lr: float = 0.0
    ema: float = 0.0
    precision: Literal["auto", "bf16", "fp32"] = "auto"
    evals: int = 10
    eval_batch_size: int = 1024
    checkpoint_every_s: float = 120.0
    seed: int = 0
    grad_clip: float = 0.0
    # LARS trust coefficient (solo-learn's CIFAR setting; the LARS paper used 0.001)
    lars_eta: float = 0.02
    # Cap each layer's LARS rate at the global lr (solo-learn's clip_lr, on in its CIFAR
    # configs); false: the LARS paper's unclipped trust ratio times the lr.
    lars_clip: bool = True
    # Save val embeddings at each evaluation (embeddings/step_*.npz); None: only for
    # self-supervised methods.
    save_embeddings: bool | None = None

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: str) -> str:
        Budget.parse(v)
        return v

    @field_validator("batch_size")
    @classmethod
    def _batch(cls, v: int) -> int:
        if v < 1:
            raise ValueError("batch size must be at least 1")
        return v

    @field_validator("unlabeled_batch_ratio")
    @classmethod
    def _ratio(cls, v: float) -> float:
        if not v > 0:
            raise ValueError("unlabeled batch ratio must be positive")
        return v

    @field_validator(
        "lr", "weight_decay", "momentum", "warmup", "final_lr", "evals", "eval_batch_size",
        "checkpoint_every_s", "seed", "grad_clip", "lars_eta",
    )  # fmt: skip
    @classmethod
    def _ranges(cls, v: float | None, info: Any) -> float | None:
        lo, hi, lo_open = _RANGES[info.field_name]
        if v is None:
            return v
        if not math.isfinite(v) or v < lo or (lo_open and v == lo) or v >= hi:
            top = "2**63" if hi == 2**63 else f"{hi:g}"
            span = f"{'above' if lo_open else 'at least'} {lo:g}" + (
                f" and below {top}" if math.isfinite(hi) else ""
            )
            raise ValueError(f"{info.field_name} must be {span}, got {v}")
        return v

    @field_validator("ema")
    @classmethod
    def _ema(cls, v: float) -> float:
        if not (v == 0 or 0 < v < 1):
            raise ValueError("ema decay must be 0 (off) or in (0, 1)")
        return v

    def resolved_lr(self) -> float:
        if self.lr is not None:
            return self.lr
        # SGD: linear scaling from 0.1 at batch 256; LARS: from 0.3 (solo-learn's CIFAR
        # Barlow Twins / VICReg configs); AdamW: a common 1e-3.
        base = {"sgd": 0.1, "lars": 0.3}.get(self.optimizer)
        return 1e-3 if base is None else base * self.batch_size / 256

    def resolved_weight_decay(self) -> float:
        if self.weight_decay is not None:
            return self.weight_decay
        return {"sgd": 5e-4, "lars": 1e-4, "adamw": 0.05}[self.optimizer]


def with_train_defaults(saved: Any) -> Any:
    """Saved training settings with the settings added since they were written filled in
    by their defaults (which keep the old behaviour), so older runs still resume."""
    if not isinstance(saved, dict):
        return saved
    filled = {**TrainConfig().model_dump(), **saved}
    if "lars_clip" not in saved:  # LARS before lars_clip existed was unclipped
        filled["lars_clip"] = saved.get("optimizer") != "lars"
    return filled


class IndexStream:
    """Step-indexed sampling without replacement: epoch ``e`` is a seeded permutation.

    Batch ``s`` covers positions ``s*B .. s*B+B-1`` of the endless concatenation of
    epoch permutations, so any step's indices can be recomputed from ``(seed, s)``.
    Under DDP each rank takes its contiguous slice of the global batch.
    """

    def __init__(self, n: int, batch_size: int, seed: int, stream: int) -> None:
        if n <= 0:
            raise ConfigError("cannot sample batches from an empty set")
        self.n, self.batch_size, self.seed, self.stream = n, batch_size, seed, stream
        self._cache: dict[int, torch.Tensor] = {}

    def _perm(self, epoch: int) -> torch.Tensor:
        if epoch not in self._cache:
            if len(self._cache) > 4:
                self._cache.pop(min(self._cache))
            g = torch.Generator().manual_seed(_mix(self.seed, self.stream, epoch))
            self._cache[epoch] = torch.randperm(self.n, generator=g)
        return self._cache[epoch]

    def indices(self, step: int, rank: int = 0, world: int = 1) -> torch.Tensor:
        per = self.batch_size // world
        start = step * self.batch_size + rank * per
        pos = torch.arange(start, start + per)
        epochs, offsets = pos // self.n, pos % self.n
        out = torch.empty(per, dtype=torch.long)
        for e in epochs.unique().tolist():
            m = epochs == e
            out[m] = self._perm(int(e))[offsets[m]]
        return out

    def epoch(self, step: int) -> float:
        return step * self.batch_size / self.n


def count_images(batch: Batch, unlabeled_copies: int = 1) -> int:
    """Images through the backbone in a step: the rows of every 4-D tensor of every view,
    unlabeled ones ``unlabeled_copies`` times (a method's ``Method.unlabeled_copies``)."""
    n = 0
    for copies, entries in ((1, batch.labeled), (unlabeled_copies, batch.unlabeled)):
        for entry in entries:
            for t in entry if isinstance(entry, (tuple, list)) else (entry,):
                if isinstance(t, torch.Tensor) and t.ndim == 4:
                    n += copies * t.shape[0]
    return n


def _mix(*xs: int) -> int:
    h = 1469598103934665603
    for x in xs:
        h = ((h ^ (int(x) & 0xFFFFFFFFFFFF)) * 1099511628211) % (1 << 61)
    return h


@dataclass
class FitResult:
    """What a fit produced: steps run, training seconds, the curve and the final network."""

    steps: int
    train_seconds: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    step_seconds: list[float] = field(default_factory=list)


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    return [
        {"params": decay, "weight_decay": weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD (Nesterov), LARS or AdamW; no weight decay on biases and norm parameters (nor
    LARS's trust ratio: they take plain momentum SGD under LARS)."""
    groups = _param_groups(model, cfg.resolved_weight_decay())
    lr = cfg.resolved_lr()
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, nesterov=cfg.nesterov)
    if cfg.optimizer == "lars":
        groups[1]["lars"] = False
        return LARS(groups, lr=lr, momentum=cfg.momentum, eta=cfg.lars_eta, clip=cfg.lars_clip)
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999))


class Trainer:
    """Runs one method over labeled / unlabeled image sets for a budget."""

    def __init__(
        self,
        cfg: TrainConfig,
        *,
        device: torch.device | str = "cpu",
        dist_info: DistInfo | None = None,
        out_dir: str | Path | None = None,
        progress: bool = True,
        log: Callable[[str], None] | None = None,
        data_in_memory: bool | None = None,
    ) -> None:
        """``data_in_memory``: keep the training images on the device (True), read each
        batch from the cache file or host memory (False), or decide by size (None; the
        ``FEWLABELS_DATA_IN_MEMORY`` environment variable, 1 or 0, overrides that)."""
        self.cfg = cfg
        if data_in_memory is None and os.environ.get("FEWLABELS_DATA_IN_MEMORY"):
            data_in_memory = os.environ["FEWLABELS_DATA_IN_MEMORY"].lower() not in ("0", "no")
        self.data_in_memory = data_in_memory
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress and self.dist.is_main
        self.precision = resolve_precision(cfg.precision, self.device)
        self.budget = Budget.parse(cfg.budget)
        self.log = log or (lambda s: None)
        self._monitor: FeatureMonitor | None = None
        self.images_per_step: int | None = None
        if cfg.batch_size % self.dist.world_size:
            raise ConfigError(
                f"batch size {cfg.batch_size} does not split evenly over "
                f"{self.dist.world_size} processes"
            )

    # -- public -----------------------------------------------------------------
    def fit(
        self,
        method: Method,
        labeled: ImageSet | None,
        unlabeled: ImageSet | None = None,
        val: ImageSet | None = None,
        *,
        resume: bool = True,
        stop_at_step: int | None = None,
        extra_state: dict[str, Any] | None = None,
    ) -> FitResult:
        """Train ``method`` in place. ``stop_at_step`` halts early (for resume tests)."""
        cfg, dev = self.cfg, self.device
        uses_lab = bool(method.views.get("labeled"))
        uses_unl = bool(method.views.get("unlabeled"))
        if uses_lab and (labeled is None or len(labeled) == 0):
            raise ConfigError(f"method {method.name!r} needs labeled images and none were given")
        if uses_unl and (unlabeled is None or len(unlabeled) == 0):
            raise ConfigError(
                f"method {method.name!r} needs unlabeled images and the unlabeled pool is empty"
            )
        method.to(dev)
        method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        some = labeled if labeled is not None else unlabeled
        method.setup(
            num_labeled=len(labeled) if uses_lab and labeled is not None else 0,
            num_unlabeled=len(unlabeled) if uses_unl and unlabeled is not None else 0,
            num_classes=some.num_classes if some is not None else 0,
        )
        bs = cfg.batch_size
        ubs = round(bs * cfg.unlabeled_batch_ratio) if uses_lab else bs
        lbs = bs  # see Method.primary: which stream --batch-size counts
        by_unl = uses_lab and uses_unl and method.primary == "unlabeled"
        if by_unl:
            ubs = bs
            lbs = max(self.dist.world_size, round(bs / cfg.unlabeled_batch_ratio))
            lbs -= lbs % self.dist.world_size
        ubs -= ubs % self.dist.world_size
        in_memory = resolve_in_memory(
            self.data_in_memory,
            dev,
            labeled.images if uses_lab and labeled is not None else None,
            unlabeled.images if uses_unl and unlabeled is not None else None,
        )
        lab_imgs = (
            ImageFeed(labeled.images, dev, in_memory) if uses_lab and labeled is not None else None
        )
        lab_y = labeled.labels.to(dev) if uses_lab and labeled is not None else None
        unl_imgs = (
            ImageFeed(unlabeled.images, dev, in_memory)
            if uses_unl and unlabeled is not None
            else None
        )
        lab_stream = IndexStream(len(labeled), lbs, cfg.seed, 1) if lab_imgs is not None else None
        unl_stream = (
            IndexStream(len(unlabeled), ubs, cfg.seed, 2)
            if unl_imgs is not None and unlabeled is not None
            else None
        )
        primary = (unl_stream or lab_stream) if by_unl else (lab_stream or unl_stream)
        assert primary is not None
        steps_per_epoch = primary.n / bs
        size = (lab_imgs if lab_imgs is not None else unl_imgs).shape[-1]  # type: ignore[union-attr]
        lab_pols = [build_policy(p, image_size=size) for p in method.views.get("labeled", ())]
        unl_pols = [build_policy(p, image_size=size) for p in method.views.get("unlabeled", ())]

        model: nn.Module = method
        if self.dist.enabled:
            if dev.type == "cuda":  # torch's SyncBatchNorm runs on GPUs only
                method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # type: ignore[assignment]
            model = nn.parallel.DistributedDataParallel(method)
        optimizer = build_optimizer(method, cfg)
        base_lrs = [g["lr"] for g in optimizer.param_groups]
        ema = ModelEMA(method.network, cfg.ema) if cfg.ema > 0 else None

        total_steps = self.budget.total_steps(steps_per_epoch)
        step, train_s, curve = 0, 0.0, []
        ckpt_path = self.out_dir / "checkpoint.pt" if self.out_dir else None
        if resume and ckpt_path is not None and ckpt_path.exists():
            state = load_checkpoint(ckpt_path, map_location=dev)
            if with_train_defaults(state.get("train_config")) != cfg.model_dump():
                raise CheckpointError(
                    f"{ckpt_path} was written with other training settings; "
                    "use a new --out or remove it"
                )
            try:
                method.load_state_dict(state["method"])
                optimizer.load_state_dict(state["optimizer"])
                if ema is not None and "ema" in state:
                    ema.load_state_dict(state["ema"])
                step, train_s = int(state["step"]), float(state["train_seconds"])
            except (RuntimeError, KeyError, TypeError, ValueError, AttributeError):
                raise CheckpointError(
                    f"{ckpt_path} holds a different architecture than this run, or is not a "
                    "training checkpoint; use a new --out or remove it"
                ) from None
            total_steps = state.get("total_steps") or total_steps
            curve = [r for r in self._read_curve() if r["step"] <= step]
            self._write_curve(curve)
            self.log(f"resumed from {ckpt_path} at step {step}")
        elif self.out_dir is not None and self.dist.is_main:
            self._write_curve([])

        # Evaluation points as fractions of the budget.
        eval_fracs = [(i + 1) / cfg.evals for i in range(cfg.evals)] if cfg.evals > 0 else [1.0]
        next_eval = sum(1 for c in curve if c.get("val_acc") is not None)
        timed = self.budget.kind == "seconds"
        mark = (step, train_s)
        t_run0 = time.perf_counter()
        last_ckpt = time.perf_counter()
        bar = _Bar(self.progress, self.budget, total_steps)
        loss_ema: float | None = None
        stopped_early = False
        step_seconds: list[float] = []
        self.images_per_step = None
        method.train()
        self._monitor = None  # self-supervised runs: kNN accuracy and embeddings too
        if method.kind == "self-supervised" and val is not None and len(val):
            save = cfg.save_embeddings is not False and self.dist.is_main and self.out_dir
            self._monitor = FeatureMonitor(
                val,
                labeled,
                embeddings_dir=self.out_dir / "embeddings" if save and self.out_dir else None,
                seed=cfg.seed,
                batch_size=cfg.eval_batch_size,
                device=dev,
                precision=self.precision,
            )

        def progress_now() -> float:
            if total_steps is not None:
                return min(1.0, step / max(1, total_steps))
            if self.budget.kind == "images":
                return 0.0  # the step count is known once a batch has been counted
            return min(1.0, train_s / self.budget.amount)

        while True:
            prog = progress_now()
            if prog >= 1.0:
                break
            if stop_at_step is not None and step >= stop_at_step:
                stopped_early = True
                break
            t0 = time.perf_counter()
            mult = warmup_cosine(prog, cfg.warmup, cfg.final_lr)
            for g, lr0 in zip(optimizer.param_groups, base_lrs, strict=True):
                g["lr"] = lr0 * mult
            torch.manual_seed(_mix(cfg.seed, 7, step, self.dist.rank))
            gen = torch.Generator(device=dev).manual_seed(_mix(cfg.seed, 11, step, self.dist.rank))
            batch = Batch(step=step, progress=prog)
            r, w = self.dist.rank, self.dist.world_size
            if lab_stream is not None and lab_imgs is not None and lab_y is not None:
                idx = lab_stream.indices(step, r, w)  # host indices: no device round trip
                x = lab_imgs.take(idx)
                batch.labeled = [p(x, gen, prog) for p in lab_pols]
                batch.labels = lab_y[idx.to(dev)]
            if unl_stream is not None and unl_imgs is not None:
                uidx = unl_stream.indices(step, r, w)
                ux = unl_imgs.take(uidx)
                batch.unlabeled = [p(ux, gen, prog) for p in unl_pols]
                batch.unlabeled_index = uidx.to(dev)
            if self.images_per_step is None:  # images through the backbone per step
                self.images_per_step = count_images(batch, method.unlabeled_copies) * w
                if total_steps is None and self.budget.kind == "images":
                    total_steps = self.budget.steps_for_images(self.images_per_step)
            with autocast(self.precision, dev):
                out = model(batch)
            loss = out["loss"]
            if not torch.isfinite(loss.detach()).all():
                raise DivergenceError(
                    f"loss became {float(loss.detach())} at step {step} "
                    f"(lr {optimizer.param_groups[0]['lr']:.3g}); lower --lr or use fp32. "
                    f"The last checkpoint in {self.out_dir} is intact"
                    if self.out_dir
                    else f"loss became {float(loss.detach())} at step {step}; lower the lr"
                )
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if cfg.grad_clip > 0:
                nn.utils.clip_grad_norm_(method.parameters(), cfg.grad_clip)
            optimizer.step()
            method.after_step()
            if ema is not None:
                ema.update(method.network)
            step += 1
            dt = time.perf_counter() - t0
            train_s += dt
            step_seconds.append(dt)
            lv = float(loss.detach())
            loss_ema = lv if loss_ema is None else 0.95 * loss_ema + 0.05 * lv

            # A wall-clock budget becomes a step count once the speed is known, so the
            # schedule is a function of the step; every 10% of the budget the count is
            # re-estimated from the recent speed, so a machine that slows down (or speeds
            # up) still ends its schedule on time.
            if timed:
                if total_steps is None:
                    if step >= 20 and train_s >= min(0.03 * self.budget.amount, 30.0):
                        total_steps = max(step + 1, int(step / train_s * self.budget.amount))
                        mark = (step, train_s)
                elif train_s - mark[1] >= 0.1 * self.budget.amount:
                    rate = (step - mark[0]) / max(train_s - mark[1], 1e-9)
                    left = max(0.0, self.budget.amount - train_s)
                    total_steps = max(step + 1, step + int(rate * left))
                    mark = (step, train_s)

            prog = progress_now()
            bar.update(step, prog, loss_ema)
            if next_eval < len(eval_fracs) and prog >= eval_fracs[next_eval] - 1e-9:
                next_eval += 1
                row = self._evaluate(method, ema, val, step, primary, train_s, t_run0, loss_ema)
                row["lr"] = optimizer.param_groups[0]["lr"]
                curve.append(row)
                if self.dist.is_main and self.out_dir is not None:
                    self._append_curve(row)
                bar.note(row)
            if (
                ckpt_path is not None
                and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s
                and prog < 1.0
            ):
                self._save(
                    ckpt_path, method, optimizer, ema, step, total_steps, train_s, extra_state
                )
                last_ckpt = time.perf_counter()
            if self.budget.kind == "seconds" and train_s >= self.budget.amount * 1.02:
                break  # the machine slowed down after calibration: the clock wins
        bar.close()
        if ckpt_path is not None:
            self._save(ckpt_path, method, optimizer, ema, step, total_steps, train_s, extra_state)
        if ema is not None:  # evaluation and export use the averaged weights
            method.network.load_state_dict(ema.state_dict())
        return FitResult(step, train_s, curve, stopped_early, step_seconds)

    # -- internals ----------------------------------------------------------------
    def _evaluate(
        self,
        method: Method,
        ema: ModelEMA | None,
        val: ImageSet | None,
        step: int,
        stream: IndexStream,
        train_s: float,
        t_run0: float,
        loss: float | None,
    ) -> dict[str, Any]:
        row: dict[str, Any] = {
            "step": step,
            "epoch": round(stream.epoch(step), 4),
            "images_seen": step * self.cfg.batch_size,
            "time_s": round(train_s, 3),
            "wall_s": round(time.perf_counter() - t_run0, 3),
            "loss": loss,
            "val_acc": None,
            "val_f1": None,
        }
        if self.images_per_step:
            row["backbone_images"] = step * self.images_per_step
        if val is not None and len(val) and val.is_labeled.all():
            net = ema.module if ema is not None else method.network
            logits = (
                self._monitor.evaluate(net, row)
                if self._monitor is not None
                else predict_logits(
                    net,
                    val.images,
                    batch_size=self.cfg.eval_batch_size,
                    device=self.device,
                    precision=self.precision,
                )
            )
            acc, f1 = quick_metrics(val.labels.numpy(), logits.argmax(1).numpy())
            row["val_acc"], row["val_f1"] = round(acc, 5), round(f1, 5)
        return row

    def _save(
        self,
        path: Path,
        method: Method,
        optimizer: torch.optim.Optimizer,
        ema: ModelEMA | None,
        step: int,
        total_steps: int | None,
        train_s: float,
        extra: dict[str, Any] | None,
    ) -> None:
        if not self.dist.is_main:
            return
        state: dict[str, Any] = {
            "kind": "training",
            "method_name": method.name,
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": step,
            "total_steps": total_steps,
            "train_seconds": train_s,
            "train_config": self.cfg.model_dump(),
            "network_config": getattr(method.network, "config", None),
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        if extra:
            state.update(extra)
        save_checkpoint(state, path)

    def _curve_path(self) -> Path:
        assert self.out_dir is not None
        return self.out_dir / "curve.jsonl"

    def _read_curve(self) -> list[dict[str, Any]]:
        p = self._curve_path()
        if not p.exists():
            return []
        rows = []
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break  # a line cut short by a crash ends the readable curve
        return rows

    def _write_curve(self, rows: list[dict[str, Any]]) -> None:
        if not self.dist.is_main or self.out_dir is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self._curve_path(), "".join(json.dumps(r) + "\n" for r in rows))

    def _append_curve(self, row: dict[str, Any]) -> None:
        with open(self._curve_path(), "a") as f:
            f.write(json.dumps(row) + "\n")


class _Bar:
    """A rich progress bar over budget progress; silent when disabled."""

    def __init__(self, enabled: bool, budget: Budget, total_steps: int | None) -> None:
        self.enabled = enabled
        self.prog: Any = None
        if not enabled:
            return
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.prog = Progress(
            TextColumn("[bold]train"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("step {task.fields[step]}"),
            TextColumn("loss {task.fields[loss]}"),
            TextColumn("val {task.fields[val]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            transient=False,
        )
        self.prog.start()
        self.task = self.prog.add_task("train", total=1.0, step=0, loss="-", val="-")

    def update(self, step: int, progress: float, loss: float | None) -> None:
        if self.prog is not None and (step % 5 == 0 or progress >= 1.0):
            loss_s = f"{loss:.3f}" if loss is not None and math.isfinite(loss) else "-"
            self.prog.update(self.task, completed=progress, step=step, loss=loss_s)

    def note(self, row: dict[str, Any]) -> None:
        if self.prog is not None and row.get("val_acc") is not None:
            self.prog.update(self.task, val=f"{100 * row['val_acc']:.1f}%")

    def close(self) -> None:
        if self.prog is not None:
            self.prog.stop()


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
