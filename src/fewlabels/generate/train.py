"""Training a GAN with differentiable augmentation: budget, checkpoints that resume exactly,
EMA of the generator, a progress bar, divergence detection.

Per step: a batch of real images (a seeded ``IndexStream``, as in the training loop) and
one of generated images; the discriminator sees both through the same family of
differentiable augmentations (``diffaugment``) and takes a step; then the generator takes
one through the discriminator's score on its augmented images; then the EMA of the
generator's weights is updated. The noise and the augmentations of step ``s`` are seeded
from ``(seed, s)``, so a run resumed from ``checkpoint.pt`` continues bit for bit.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, field_validator

from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint, save_checkpoint
from fewlabels.core.errors import CheckpointError, ConfigError, DivergenceError
from fewlabels.core.precision import autocast, resolve_precision, slow_precision_warning
from fewlabels.generate.diffaugment import diff_augment, parse_policy
from fewlabels.generate.gan import Discriminator, Generator, d_loss, from_uint8, g_loss
from fewlabels.train.ema import ModelEMA
from fewlabels.train.loop import IndexStream, _mix

# settings that may change between a run and its resumption (they do not change the maths)
_RESUMABLE = ("budget", "checkpoint_every_s", "evals")


class GANConfig(BaseModel):
    """GAN training settings (unknown keys are refused); saved in the checkpoint."""

    model_config = ConfigDict(extra="forbid")

    budget: str = "30m"
    batch_size: int = 64
    z_dim: int = 128
    width: int | None = None  # generator width at full size; None: 32 on a CPU, 64 on a GPU
    d_width: int | None = None  # discriminator width; None: the generator's
    loss: Literal["hinge", "ns"] = "hinge"
    augment: str = "color,translation,cutout"
    lr: float = 2e-4
    betas: tuple[float, float] = (0.5, 0.999)
    ema: float = 0.999
    # fp32 by default: bf16 autocast (faster on CPUs with native bf16) was not validated
    # for GAN stability here
    precision: Literal["auto", "bf16", "fp32"] = "fp32"
    seed: int = 0
    evals: int = 20  # points on curve.jsonl
    checkpoint_every_s: float = 60.0

    @field_validator("budget")
    @classmethod
    def _budget(cls, v: str) -> str:
        Budget.parse(v)
        return v

    @field_validator("batch_size", "z_dim")
    @classmethod
    def _positive(cls, v: int) -> int:
        if v < 1:
            raise ValueError("must be at least 1")
        return v

    @field_validator("width", "d_width")
    @classmethod
    def _width(cls, v: int | None) -> int | None:
        if v is not None and v < 1:
            raise ValueError("width must be at least 1")
        return v

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: str) -> str:
        parse_policy(v)
        return v

    @field_validator("lr")
    @classmethod
    def _lr(cls, v: float) -> float:
        if not v > 0 or not math.isfinite(v):
            raise ValueError("learning rate must be positive")
        return v

    @field_validator("ema")
    @classmethod
    def _ema(cls, v: float) -> float:
        if not 0 < v < 1:
            raise ValueError("ema decay must be in (0, 1)")
        return v

    def resolved(self, device: torch.device) -> GANConfig:
        """A copy with ``width``/``d_width`` decided for this device."""
        width = self.width or (64 if device.type == "cuda" else 32)
        return self.model_copy(update={"width": width, "d_width": self.d_width or width})


@dataclass
class GANResult:
    """What ``train_gan`` produced: steps, training seconds, the loss curve and the networks."""

    steps: int
    train_seconds: float
    generator: Generator  # the EMA generator, the one to sample from
    curve: list[dict[str, Any]] = field(default_factory=list)
    stopped_early: bool = False
    resumed_from: int = 0


def build_networks(cfg: GANConfig, channels: int, size: int) -> tuple[Generator, Discriminator]:
    """The generator and discriminator for ``cfg`` (resolved widths) and this image shape."""
    assert cfg.width is not None and cfg.d_width is not None
    gen = Generator(z_dim=cfg.z_dim, width=cfg.width, image_size=size, channels=channels)
    disc = Discriminator(width=cfg.d_width, image_size=size, channels=channels)
    return gen, disc


def _identity(cfg: GANConfig) -> dict[str, Any]:
    return {k: v for k, v in cfg.model_dump(mode="json").items() if k not in _RESUMABLE}


def train_gan(
    images: torch.Tensor,
    cfg: GANConfig,
    *,
    out_dir: str | Path | None = None,
    device: torch.device | str = "cpu",
    progress: bool = True,
    log: Callable[[str], None] = lambda s: None,
    stop_at_step: int | None = None,
    data_info: dict[str, Any] | None = None,
) -> GANResult:
    """Train on uint8 (N, C, H, W) ``images`` for ``cfg.budget``; resumes ``out_dir``'s checkpoint.

    Budgets: ``500steps``; ``10epochs`` (passes over the images); ``200kimg`` (real images
    shown to the discriminator); ``30m`` (training seconds, summed over resumptions).
    """
    if images.dtype != torch.uint8 or images.dim() != 4 or len(images) == 0:
        raise ConfigError("the GAN needs a non-empty uint8 (N, C, H, W) image tensor")
    dev = torch.device(device)
    cfg = cfg.resolved(dev)
    budget = Budget.parse(cfg.budget)
    precision = resolve_precision(cfg.precision, dev)
    slow = slow_precision_warning(precision, dev)
    if slow:
        log(slow)
    ops = parse_policy(cfg.augment)
    n, channels, size = len(images), int(images.shape[1]), int(images.shape[-1])
    bs = cfg.batch_size
    if budget.kind == "steps":
        total: int | None = int(budget.amount)
    elif budget.kind == "epochs":
        total = max(1, math.ceil(budget.amount * n / bs))
    elif budget.kind == "images":
        total = budget.steps_for_images(bs)
    else:
        total = None  # wall clock: stop when the training seconds reach the budget

    torch.manual_seed(cfg.seed)
    gen, disc = build_networks(cfg, channels, size)
    gen.to(dev, memory_format=torch.channels_last)
    disc.to(dev, memory_format=torch.channels_last)
    opt_g = torch.optim.Adam(gen.parameters(), lr=cfg.lr, betas=cfg.betas)
    opt_d = torch.optim.Adam(disc.parameters(), lr=cfg.lr, betas=cfg.betas)
    ema = ModelEMA(gen, cfg.ema)
    step, train_s, curve = 0, 0.0, []
    out = Path(out_dir) if out_dir is not None else None
    ckpt = out / "checkpoint.pt" if out is not None else None
    if ckpt is not None and ckpt.exists():
        state = load_checkpoint(ckpt, map_location=dev)
        if state.get("kind") != "gan":
            raise CheckpointError(f"{ckpt} is not a GAN checkpoint; use another --out")
        if state.get("config") != _identity(cfg):
            raise CheckpointError(
                f"{ckpt} was written with other GAN settings; use a new --out or remove it"
            )
        if tuple(state.get("image_shape", ())) != (channels, size, size):
            raise CheckpointError(
                f"{ckpt} was trained on {state.get('image_shape')} images, these are "
                f"{(channels, size, size)}; use a new --out or remove it"
            )
        try:
            gen.load_state_dict(state["generator"])
            disc.load_state_dict(state["discriminator"])
            ema.load_state_dict(state["generator_ema"])
            opt_g.load_state_dict(state["opt_g"])
            opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"{ckpt} does not fit these networks ({type(e).__name__})"
            ) from None
        step, train_s = int(state["step"]), float(state["train_seconds"])
        curve = [r for r in _read_curve(out) if r["step"] <= step]  # type: ignore[arg-type]
        log(f"resumed from {ckpt} at step {step}")
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "curve.jsonl").write_text("".join(json.dumps(r) + "\n" for r in curve))
    resumed_from = step

    def save() -> None:
        if ckpt is None:
            return
        save_checkpoint(
            {
                "kind": "gan",
                "config": _identity(cfg),
                "image_shape": [channels, size, size],
                "generator": gen.state_dict(),
                "discriminator": disc.state_dict(),
                "generator_ema": ema.state_dict(),
                "generator_config": dict(gen.config),
                "opt_g": opt_g.state_dict(),
                "opt_d": opt_d.state_dict(),
                "step": step,
                "train_seconds": train_s,
                "data": dict(data_info or {}),
            },
            ckpt,
        )

    def fraction() -> float:
        if total is not None:
            return min(1.0, step / max(1, total))
        return min(1.0, train_s / budget.amount)

    real_all = images.to(dev)
    stream = IndexStream(n, bs, cfg.seed, 5)
    every = max(1, (total or 0) // max(1, cfg.evals)) if total is not None else None
    every_s = budget.amount / max(1, cfg.evals) if total is None else None
    last_point_s = train_s
    acc: dict[str, float] = {}
    acc_n = 0
    bar = _Bar(progress)
    last_ckpt = time.perf_counter()
    stopped = False
    gen.train()
    disc.train()
    while fraction() < 1.0:
        if stop_at_step is not None and step >= stop_at_step:
            stopped = True
            break
        t0 = time.perf_counter()
        g = torch.Generator(device=dev).manual_seed(_mix(cfg.seed, 13, step))
        real = from_uint8(real_all[stream.indices(step).to(dev)])
        real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(bs, cfg.z_dim, generator=g, device=dev)
        # discriminator step: real and generated images, augmented alike, in one batch
        with autocast(precision, dev):
            fake = gen(z)
            scores = disc(diff_augment(torch.cat([real, fake.detach()]), ops, g))
        loss_d = d_loss(cfg.loss, scores[:bs], scores[bs:])
        opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        opt_d.step()
        # generator step through the updated discriminator (its weights frozen)
        disc.requires_grad_(False)
        with autocast(precision, dev):
            s_fake = disc(diff_augment(fake, ops, g))
        loss_g = g_loss(cfg.loss, s_fake)
        opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        opt_g.step()
        disc.requires_grad_(True)
        # EMA with a warm-up, so a short run is not dominated by its first weights
        ema.decay = min(cfg.ema, (1 + step) / (10 + step))
        ema.update(gen)
        ld, lg = float(loss_d.detach()), float(loss_g.detach())
        if not (math.isfinite(ld) and math.isfinite(lg)):
            where = f"; the last checkpoint in {out} is intact" if out is not None else ""
            raise DivergenceError(
                f"GAN loss became non-finite at step {step} (D {ld}, G {lg}); lower --lr "
                f"or use --precision fp32{where}"
            )
        step += 1
        train_s += time.perf_counter() - t0
        for k, v in (
            ("d_loss", ld),
            ("g_loss", lg),
            ("d_real", float(scores[:bs].detach().float().mean())),
            ("d_fake", float(scores[bs:].detach().float().mean())),
        ):
            acc[k] = acc.get(k, 0.0) + v
        acc_n += 1
        frac = fraction()
        due = (every is not None and step % every == 0) or (
            every_s is not None and train_s - last_point_s >= every_s
        )
        if due or frac >= 1.0:
            row = {"step": step, "time_s": round(train_s, 3), "images_seen": step * bs}
            row.update({k: round(v / acc_n, 5) for k, v in acc.items()})
            curve.append(row)
            acc, acc_n, last_point_s = {}, 0, train_s
            if out is not None:
                with open(out / "curve.jsonl", "a") as f:
                    f.write(json.dumps(row) + "\n")
        bar.update(step, frac, ld, lg)
        if ckpt is not None and time.perf_counter() - last_ckpt > cfg.checkpoint_every_s:
            save()
            last_ckpt = time.perf_counter()
    bar.close()
    if step > resumed_from or (ckpt is not None and not ckpt.exists()):
        save()
    return GANResult(step, train_s, ema.module, curve, stopped, resumed_from)


def _read_curve(out: Path) -> list[dict[str, Any]]:
    p = out / "curve.jsonl"
    rows: list[dict[str, Any]] = []
    if p.exists():
        for line in p.read_text().splitlines():
            try:
                rows.append(json.loads(line))
            except json.JSONDecodeError:
                break
    return rows


class _Bar:
    """A rich progress bar over the budget; silent when disabled."""

    def __init__(self, enabled: bool) -> None:
        self.prog: Any = None
        if not enabled:
            return
        from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

        self.prog = Progress(
            TextColumn("[bold]GAN"),
            BarColumn(),
            TextColumn("{task.percentage:>5.1f}%"),
            TextColumn("step {task.fields[step]}"),
            TextColumn("D {task.fields[d]}"),
            TextColumn("G {task.fields[g]}"),
            TimeElapsedColumn(),
        )
        self.prog.start()
        self.task = self.prog.add_task("gan", total=1.0, step=0, d="-", g="-")

    def update(self, step: int, frac: float, d: float, g: float) -> None:
        if self.prog is not None and (step % 5 == 0 or frac >= 1.0):
            self.prog.update(self.task, completed=frac, step=step, d=f"{d:.3f}", g=f"{g:.3f}")

    def close(self) -> None:
        if self.prog is not None:
            self.prog.stop()


def load_generator(path: str | Path) -> tuple[Generator, dict[str, Any]]:
    """The EMA generator of a ``generator.pt``, a GAN ``checkpoint.pt`` or a generate folder."""
    p = Path(path)
    if p.is_dir():
        p = next((p / f for f in ("generator.pt", "checkpoint.pt") if (p / f).exists()), p)
        if p.is_dir():
            raise CheckpointError(f"{path} holds no generator.pt or checkpoint.pt")
    obj = load_checkpoint(p)
    state = obj.get("state_dict") if obj.get("kind") == "generator" else obj.get("generator_ema")
    cfg = obj.get("generator_config")
    if obj.get("kind") not in ("generator", "gan") or not isinstance(cfg, dict) or not state:
        raise CheckpointError(f"{p} holds no generator")
    try:
        gen = Generator(**cfg)
        gen.load_state_dict(state)
    except (RuntimeError, TypeError, KeyError, ConfigError) as e:
        raise CheckpointError(f"{p} does not match its generator architecture: {e}") from None
    meta = {k: v for k, v in obj.items() if not isinstance(v, dict) and k != "format"}
    return gen.eval(), meta
