"""Periodic evaluation during training: ``evals`` curve rows spread over the budget, with
validation accuracy, the embeddings of a fixed subset of validation images saved beside
(``embeddings/step_XXXXXX.npz``, unless ``save_embeddings`` is false) and, for
self-supervised methods, the feature monitor's kNN accuracy."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import torch

from fewlabels.data.imageset import ImageSet
from fewlabels.evaluate.metrics import predict_logits, quick_metrics
from fewlabels.evaluate.monitor import FeatureMonitor
from fewlabels.methods.base import Method
from fewlabels.train.ema import ModelEMA
from fewlabels.train.engine import Callback, LoopState
from fewlabels.train.sampling import IndexStream

if TYPE_CHECKING:  # the trainer is only read here (its settings, device and folder)
    from fewlabels.train.loop import Trainer

__all__ = ["PeriodicEvaluation"]


class PeriodicEvaluation(Callback):
    """At each ``(i + 1) / evals`` of the budget (only the end with ``evals`` 0), records a
    curve row: step, epoch, images, times, the running loss, the lr and the validation
    accuracy and macro-F1 (of the EMA weights when there are any), whose network's
    validation features it saves in ``out_dir/embeddings`` (the main process only)."""

    def __init__(
        self,
        trainer: Trainer,
        method: Method,
        ema: ModelEMA | None,
        val: ImageSet | None,
        labeled: ImageSet | None,
        stream: IndexStream,
        optimizer: torch.optim.Optimizer,
    ) -> None:
        cfg = trainer.cfg
        self.trainer, self.method, self.ema, self.val = trainer, method, ema, val
        self.stream, self.optimizer = stream, optimizer
        self.fracs = [(i + 1) / cfg.evals for i in range(cfg.evals)] if cfg.evals > 0 else [1.0]
        self.next = 0
        self.monitor: FeatureMonitor | None = None
        if val is None or not len(val):
            return
        out_dir = trainer.out_dir
        save = cfg.save_embeddings is not False and trainer.dist.is_main and out_dir is not None
        ssl = method.kind == "self-supervised"  # the online probe, kNN and embeddings
        if ssl or (save and val.is_labeled.all()):  # a classifier: its embeddings
            self.monitor = FeatureMonitor(
                val,
                labeled,
                knn=ssl,
                embeddings_dir=out_dir / "embeddings" if save and out_dir else None,
                seed=cfg.seed,
                batch_size=cfg.eval_batch_size,
                device=trainer.device,
                precision=trainer.precision,
            )

    def on_start(self, loop: LoopState) -> None:
        self.next = sum(1 for c in loop.curve if c.get("val_acc") is not None)

    def on_step_end(self, loop: LoopState) -> None:
        if self.next < len(self.fracs) and loop.progress >= self.fracs[self.next] - 1e-9:
            self.next += 1
            row = self.row(loop)
            row["lr"] = self.optimizer.param_groups[0]["lr"]
            loop.record(row)

    def row(self, loop: LoopState) -> dict[str, Any]:
        """The curve row for now."""
        step, train_s, trainer = loop.clock.step, loop.clock.train_s, self.trainer
        row: dict[str, Any] = {
            "step": step,
            "epoch": round(self.stream.epoch(step), 4),
            "images_seen": step * trainer.cfg.batch_size,
            "time_s": round(train_s, 3),
            "wall_s": round(time.perf_counter() - loop.started, 3),
            "loss": loop.out.get("loss_avg"),
            "val_acc": None,
            "val_f1": None,
        }
        if trainer.images_per_step:
            row["backbone_images"] = step * trainer.images_per_step
        val = self.val
        if val is not None and len(val) and val.is_labeled.all():
            net = self.ema.module if self.ema is not None else self.method.network
            if self.monitor is not None:
                logits, points = self.monitor.evaluate(net, row)
            else:
                logits = predict_logits(
                    net,
                    val.images,
                    batch_size=trainer.cfg.eval_batch_size,
                    device=trainer.device,
                    precision=trainer.precision,
                )
            acc, f1 = quick_metrics(val.labels.numpy(), logits.argmax(1).numpy())
            row["val_acc"], row["val_f1"] = round(acc, 5), round(f1, 5)
            if self.monitor is not None:
                self.monitor.save(points, row)
        return row
