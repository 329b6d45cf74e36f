"""The one training loop. It knows a method only through ``fewlabels.methods.base``.

Per step (``ClassifierStep``): draw index batches -> gather uint8 images on the device ->
augment with the method's policies -> ``method(batch)`` under autocast -> backward ->
clip -> optimiser -> ``method.after_step``; then the loop core's callbacks
(``fewlabels.train.engine``): EMA, the budget's clock, the loss, the progress bar,
periodic evaluation and the curve, checkpoints. Everything random is seeded from
``(seed, step)``, so a run resumed from a checkpoint continues exactly as if it had never
stopped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from fewlabels.core.artifacts import read_curve
from fewlabels.core.budget import Budget
from fewlabels.core.device import DistInfo
from fewlabels.core.errors import CheckpointError, ConfigError, DivergenceError
from fewlabels.core.precision import autocast, resolve_precision
from fewlabels.data.imageset import ImageSet
from fewlabels.methods.base import Method
from fewlabels.train.config import TrainConfig, TrainingSettings, with_train_defaults
from fewlabels.train.ema import ModelEMA
from fewlabels.train.engine import (
    BudgetClock,
    Callback,
    Checkpointing,
    CurveLog,
    EMAUpdate,
    LoopState,
    ProgressBar,
    ProgressCallback,
    fmt_loss,
    run_loop,
)
from fewlabels.train.evaluation import PeriodicEvaluation
from fewlabels.train.feed import TrainingFeeds, build_feeds, check_inputs, data_in_memory_from_env
from fewlabels.train.optim import build_optimizer
from fewlabels.train.sampling import IndexStream, count_images, mix_seed
from fewlabels.train.schedule import warmup_cosine

__all__ = [
    "FitResult",
    "IndexStream",
    "TrainConfig",
    "Trainer",
    "TrainingSettings",
    "barrier",
    "build_optimizer",
    "count_images",
    "with_train_defaults",
]

_mix = mix_seed  # the name generate/ and older code import


@dataclass
class FitResult:
    """What a fit produced: steps run, training seconds, the curve and the final network."""

    steps: int
    train_seconds: float
    curve: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    step_seconds: list[float] = field(default_factory=list)


class ClassifierStep:
    """One optimisation step of a method: the loop's hot path (no host-device sync but
    the divergence check's, no per-image Python)."""

    def __init__(
        self,
        trainer: Trainer,
        method: Method,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        feeds: TrainingFeeds,
        clock: BudgetClock,
    ) -> None:
        """Made before a checkpoint's optimiser state is loaded: the schedule scales the
        optimiser's initial learning rates."""
        self.trainer, self.method, self.model, self.optimizer = trainer, method, model, optimizer
        self.feeds, self.cfg, self.clock = feeds, trainer.cfg, clock
        self.base_lrs = [g["lr"] for g in optimizer.param_groups]
        self.device, self.precision = trainer.device, trainer.precision
        self.rank = trainer.dist.rank

    def __call__(self, loop: LoopState) -> None:
        cfg, dev, prog, step = self.cfg, self.device, loop.progress, self.clock.step
        mult = warmup_cosine(prog, cfg.warmup, cfg.final_lr)
        for g, lr0 in zip(self.optimizer.param_groups, self.base_lrs, strict=True):
            g["lr"] = lr0 * mult
        torch.manual_seed(mix_seed(cfg.seed, 7, step, self.rank))
        gen = torch.Generator(device=dev).manual_seed(mix_seed(cfg.seed, 11, step, self.rank))
        batch = self.feeds.draw(step, gen, prog)
        if self.trainer.images_per_step is None:  # images through the backbone per step
            self._count(batch)
        with autocast(self.precision, dev):
            out = self.model(batch)
        loss = out["loss"]
        if not torch.isfinite(loss.detach()).all():  # before the update: weights stay intact
            self._diverged(float(loss.detach()), step)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if cfg.grad_clip > 0:
            nn.utils.clip_grad_norm_(self.method.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.method.after_step()
        loop.out["loss"] = loss

    def _count(self, batch: Any) -> None:
        n = count_images(batch, self.method.unlabeled_copies) * self.feeds.dist.world_size
        self.trainer.images_per_step = n
        if self.clock.total_steps is None and self.clock.budget.kind == "images":
            self.clock.total_steps = self.clock.budget.steps_for_images(n)

    def _diverged(self, value: float, step: int) -> None:
        """Stop with advice that fits the run: bf16 is suggested only when it was used, the
        checkpoint only when one was written."""
        advice = "lower train.lr"
        if self.precision == "bf16":
            advice += " or set train.precision to fp32"
        out_dir = self.trainer.out_dir
        kept = ""
        if out_dir is not None and (out_dir / "checkpoint.pt").exists():
            kept = f". The last checkpoint in {out_dir} is intact"
        lr = self.optimizer.param_groups[0]["lr"]
        raise DivergenceError(f"loss became {value} at step {step} (lr {lr:.3g}); {advice}{kept}")


class LossAverage(Callback):
    """The last step's loss as a float (``loop.out['loss_value']``) and its running
    average (``loop.out['loss_avg']``, decay 0.95), for the bar and the curve."""

    def on_start(self, loop: LoopState) -> None:
        loop.out["loss_avg"] = None

    def on_step_end(self, loop: LoopState) -> None:
        lv = float(loop.out["loss"].detach())
        avg = loop.out["loss_avg"]
        loop.out["loss_value"] = lv
        loop.out["loss_avg"] = lv if avg is None else 0.95 * avg + 0.05 * lv


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
        callbacks: Sequence[Callback] = (),
    ) -> None:
        """``callbacks``: more loop callbacks, run after the trainer's own (e.g. trackers).
        ``data_in_memory``: keep the training images on the device (True), read each
        batch from the cache file or host memory (False), or decide by size (None; the
        ``FEWLABELS_DATA_IN_MEMORY`` environment variable, 1 or 0, overrides that: see
        ``fewlabels.train.feed.data_in_memory_from_env``)."""
        self.cfg = cfg
        self.callbacks = list(callbacks)
        if data_in_memory is None:
            data_in_memory = data_in_memory_from_env()
        self.data_in_memory = data_in_memory
        self.device = torch.device(device)
        self.dist = dist_info or DistInfo()
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.progress = progress and self.dist.is_main
        self.precision = resolve_precision(cfg.precision, self.device)
        self.budget = Budget.parse(cfg.budget)
        self.log = log or (lambda s: None)
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
        feeds = self._prepare(method, labeled, unlabeled)
        model: nn.Module = method
        if self.dist.enabled:
            if self.device.type == "cuda":  # torch's SyncBatchNorm runs on GPUs only
                method = nn.SyncBatchNorm.convert_sync_batchnorm(method)  # type: ignore[assignment]
            model = nn.parallel.DistributedDataParallel(method)
        optimizer = build_optimizer(method, self.cfg)
        steps_per_epoch = feeds.primary.n / self.cfg.batch_size
        clock = BudgetClock(self.budget, self.budget.total_steps(steps_per_epoch), calibrate=True)
        step_fn = ClassifierStep(self, method, model, optimizer, feeds, clock)  # before resume
        ema = ModelEMA(method.network, self.cfg.ema) if self.cfg.ema > 0 else None
        loop = LoopState(clock, stop_at_step)
        ckpt = Checkpointing(
            self.out_dir / "checkpoint.pt" if self.out_dir else None,
            self.cfg.checkpoint_every_s,
            lambda: self._snapshot(method, optimizer, ema, clock, extra_state),
            writer=self.dist.is_main,
        )
        curve_log = CurveLog(self.out_dir, writer=self.dist.is_main)
        state = ckpt.load(self.device) if resume else None
        if state is not None:
            self._resume(state, method, optimizer, ema, clock, loop)
        curve_log.reset(loop.curve)  # a resumed run keeps the rows up to its step
        if state is not None:
            self.log(f"resumed from {ckpt.path} at step {clock.step}")
        self.images_per_step = None
        method.train()
        evaluation = PeriodicEvaluation(self, method, ema, val, labeled, feeds.primary, optimizer)
        bar = ProgressBar(self.progress, "train", (("loss", "loss"), ("val", "val")))
        callbacks: list[Callback] = [clock, LossAverage()]
        if self.progress:
            callbacks.append(
                ProgressCallback(bar, lambda lp: {"loss": fmt_loss(lp.out["loss_avg"])})
            )
        callbacks += [evaluation, curve_log, ckpt]
        if ema is not None:  # last: the checkpoint keeps the raw weights, the network the EMA's
            callbacks.append(EMAUpdate(ema, method.network, export_to=method.network))
        callbacks += self.callbacks
        run_loop(loop, step_fn, callbacks)
        return FitResult(
            clock.step, clock.train_s, loop.curve, loop.stopped_early, loop.step_seconds
        )

    # -- internals ----------------------------------------------------------------
    def _prepare(
        self, method: Method, labeled: ImageSet | None, unlabeled: ImageSet | None
    ) -> TrainingFeeds:
        """Check the inputs, move and set up the method, and build its feeds."""
        check_inputs(method, labeled, unlabeled)
        uses_lab = bool(method.views.get("labeled"))
        uses_unl = bool(method.views.get("unlabeled"))
        method.to(self.device)
        method.to(memory_format=torch.channels_last)  # type: ignore[call-overload]
        some = labeled if labeled is not None else unlabeled
        method.setup(
            num_labeled=len(labeled) if uses_lab and labeled is not None else 0,
            num_unlabeled=len(unlabeled) if uses_unl and unlabeled is not None else 0,
            num_classes=some.num_classes if some is not None else 0,
        )
        return build_feeds(
            method,
            self.cfg,
            labeled,
            unlabeled,
            device=self.device,
            dist=self.dist,
            in_memory=self.data_in_memory,
        )

    def _resume(
        self,
        state: dict[str, Any],
        method: Method,
        optimizer: torch.optim.Optimizer,
        ema: ModelEMA | None,
        clock: BudgetClock,
        loop: LoopState,
    ) -> None:
        """Load a checkpoint's weights, optimiser, EMA, clock and curve, or refuse it."""
        assert self.out_dir is not None
        path = self.out_dir / "checkpoint.pt"
        if with_train_defaults(state.get("train_config")) != self.cfg.model_dump():
            raise CheckpointError(
                f"{path} was written with other training settings; use a new `out` or remove it"
            )
        try:
            method.load_state_dict(state["method"])
            optimizer.load_state_dict(state["optimizer"])
            if ema is not None and "ema" in state:
                ema.load_state_dict(state["ema"])
            clock.step, clock.train_s = int(state["step"]), float(state["train_seconds"])
        except (RuntimeError, KeyError, TypeError, ValueError, AttributeError):
            raise CheckpointError(
                f"{path} holds a different architecture than this run, or is not a "
                "training checkpoint; use a new `out` or remove it"
            ) from None
        clock.total_steps = state.get("total_steps") or clock.total_steps
        rows = read_curve(self.out_dir / "curve.jsonl")
        loop.curve = [r for r in rows if r["step"] <= clock.step]

    def _snapshot(
        self,
        method: Method,
        optimizer: torch.optim.Optimizer,
        ema: ModelEMA | None,
        clock: BudgetClock,
        extra: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The checkpoint's contents: everything an exact resume needs."""
        state: dict[str, Any] = {
            "kind": "training",
            "method_name": method.name,
            "method": method.state_dict(),
            "optimizer": optimizer.state_dict(),
            "step": clock.step,
            "total_steps": clock.total_steps,
            "train_seconds": clock.train_s,
            "train_config": self.cfg.model_dump(),
            "network_config": getattr(method.network, "config", None),
        }
        if ema is not None:
            state["ema"] = ema.state_dict()
        if extra:
            state.update(extra)
        return state


def barrier(info: DistInfo) -> None:
    """Wait for every rank (no-op for one process)."""
    if info.enabled and dist.is_initialized():
        dist.barrier()
