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

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

import torch
from pydantic import Field, field_validator

from fewlabels.core.artifacts import read_curve
from fewlabels.core.budget import Budget
from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import CheckpointError, ConfigError, DivergenceError
from fewlabels.core.precision import autocast, resolve_precision, slow_precision_warning
from fewlabels.generate.diffaugment import diff_augment, parse_policy
from fewlabels.generate.gan import Discriminator, Generator, d_loss, from_uint8, g_loss
from fewlabels.train.config import (
    BatchSize,
    BudgetSetting,
    CheckpointEvery,
    Evals,
    LearningRate,
    Precision,
    TrainingSettings,
)
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
    run_loop,
)
from fewlabels.train.sampling import IndexStream, mix_seed

# settings that may change between a run and its resumption (they do not change the maths)
_RESUMABLE = ("budget", "checkpoint_every_s", "evals")

Width = Annotated[int, Field(ge=1)]


class GANConfig(TrainingSettings):
    """GAN training settings (unknown keys are refused); saved in the checkpoint.

    The settings every trainer takes come from ``TrainingSettings`` (same names, types and
    ranges); only the GAN's defaults differ.
    """

    range_wording: ClassVar[dict[str, str]] = {
        **TrainingSettings.range_wording,
        "ema": "ema decay must be in (0, 1)",
    }

    budget: BudgetSetting = Budget.parse("30m")
    batch_size: BatchSize = 64
    lr: LearningRate = 2e-4
    ema: Annotated[float, Field(gt=0, lt=1)] = 0.999
    # fp32 by default: bf16 autocast (faster on CPUs with native bf16) was not validated
    # for GAN stability here
    precision: Precision = "fp32"
    evals: Evals = 20  # points on curve.jsonl
    checkpoint_every_s: CheckpointEvery = 60.0
    z_dim: Width = 128
    width: Width | None = None  # generator width at full size; None: 32 on a CPU, 64 on a GPU
    d_width: Width | None = None  # discriminator width; None: the generator's
    loss: Literal["hinge", "ns"] = "hinge"
    augment: str = "color,translation,cutout"
    betas: tuple[float, float] = (0.5, 0.999)

    @field_validator("augment")
    @classmethod
    def _augment(cls, v: str) -> str:
        parse_policy(v)
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


def _total_steps(budget: Budget, n: int, batch_size: int) -> int | None:
    """Steps for a steps, epochs (passes over ``n`` images) or images budget (real images
    shown to the discriminator); None for a wall-clock budget."""
    if budget.kind == "steps":
        return int(budget.amount)
    if budget.kind == "epochs":
        return max(1, math.ceil(budget.amount * n / batch_size))
    if budget.kind == "images":
        return budget.steps_for_images(batch_size)
    return None  # wall clock: stop when the training seconds reach the budget


class _GAN:
    """The two networks, their optimisers and the generator's EMA, with checkpoint I/O."""

    def __init__(self, cfg: GANConfig, channels: int, size: int, device: torch.device) -> None:
        self.cfg, self.shape = cfg, [channels, size, size]
        torch.manual_seed(cfg.seed)
        self.gen, self.disc = build_networks(cfg, channels, size)
        self.gen.to(device, memory_format=torch.channels_last)
        self.disc.to(device, memory_format=torch.channels_last)
        self.opt_g = torch.optim.Adam(self.gen.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.opt_d = torch.optim.Adam(self.disc.parameters(), lr=cfg.lr, betas=cfg.betas)
        self.ema = ModelEMA(self.gen, cfg.ema)

    def snapshot(self, clock: BudgetClock, data_info: dict[str, Any] | None) -> dict[str, Any]:
        """The checkpoint's contents."""
        return {
            "kind": "gan",
            "config": _identity(self.cfg),
            "image_shape": list(self.shape),
            "generator": self.gen.state_dict(),
            "discriminator": self.disc.state_dict(),
            "generator_ema": self.ema.state_dict(),
            "generator_config": dict(self.gen.config),
            "opt_g": self.opt_g.state_dict(),
            "opt_d": self.opt_d.state_dict(),
            "step": clock.step,
            "train_seconds": clock.train_s,
            "data": dict(data_info or {}),
        }

    def restore(self, state: dict[str, Any], path: Path, clock: BudgetClock) -> None:
        """Load a checkpoint of this GAN, or refuse one of another."""
        if state.get("kind") != "gan":
            raise CheckpointError(f"{path} is not a GAN checkpoint; use another `out`")
        if state.get("config") != _identity(self.cfg):
            raise CheckpointError(
                f"{path} was written with other GAN settings; use a new `out` or remove it"
            )
        if tuple(state.get("image_shape", ())) != tuple(self.shape):
            raise CheckpointError(
                f"{path} was trained on {state.get('image_shape')} images, these are "
                f"{tuple(self.shape)}; use a new `out` or remove it"
            )
        try:
            self.gen.load_state_dict(state["generator"])
            self.disc.load_state_dict(state["discriminator"])
            self.ema.load_state_dict(state["generator_ema"])
            self.opt_g.load_state_dict(state["opt_g"])
            self.opt_d.load_state_dict(state["opt_d"])
        except (RuntimeError, KeyError, ValueError) as e:
            raise CheckpointError(
                f"{path} does not fit these networks ({type(e).__name__})"
            ) from None
        clock.step, clock.train_s = int(state["step"]), float(state["train_seconds"])


class _GANStep:
    """One GAN step: the discriminator on real and generated images, augmented alike in
    one batch; then the generator through the updated discriminator (frozen)."""

    def __init__(self, nets: _GAN, images: torch.Tensor, device: torch.device) -> None:
        cfg = nets.cfg
        self.nets, self.cfg, self.device = nets, cfg, device
        self.precision = resolve_precision(cfg.precision, device)
        self.ops = parse_policy(cfg.augment)
        self.real_all = images.to(device)
        self.stream = IndexStream(len(images), cfg.batch_size, cfg.seed, 5)

    def __call__(self, loop: LoopState) -> None:
        cfg, dev, step, bs = self.cfg, self.device, loop.clock.step, self.cfg.batch_size
        gen, disc, ops = self.nets.gen, self.nets.disc, self.ops
        g = torch.Generator(device=dev).manual_seed(mix_seed(cfg.seed, 13, step))
        real = from_uint8(self.real_all[self.stream.indices(step).to(dev)])
        real = real.contiguous(memory_format=torch.channels_last)
        z = torch.randn(bs, cfg.z_dim, generator=g, device=dev)
        with autocast(self.precision, dev):
            fake = gen(z)
            scores = disc(diff_augment(torch.cat([real, fake.detach()]), ops, g))
        loss_d = d_loss(cfg.loss, scores[:bs], scores[bs:])
        self.nets.opt_d.zero_grad(set_to_none=True)
        loss_d.backward()
        self.nets.opt_d.step()
        disc.requires_grad_(False)
        with autocast(self.precision, dev):
            s_fake = disc(diff_augment(fake, ops, g))
        loss_g = g_loss(cfg.loss, s_fake)
        self.nets.opt_g.zero_grad(set_to_none=True)
        loss_g.backward()
        self.nets.opt_g.step()
        disc.requires_grad_(True)
        loop.out["loss_d"], loop.out["loss_g"], loop.out["scores"] = loss_d, loss_g, scores


class _GANStats(Callback):
    """The step's losses and scores as floats (a non-finite loss stops the run), averaged
    into ``evals`` curve rows spread over the budget (and one at its end)."""

    def __init__(
        self, cfg: GANConfig, clock: BudgetClock, out: Path | None, precision: str
    ) -> None:
        self.cfg, self.out, self.precision = cfg, out, precision
        total, amount, evals = clock.total_steps, clock.budget.amount, max(1, cfg.evals)
        self.every = max(1, total // evals) if total is not None else None
        self.every_s = amount / evals if total is None else None
        self.acc: dict[str, float] = {}
        self.n, self.last_s = 0, 0.0

    def on_start(self, loop: LoopState) -> None:
        self.last_s = loop.clock.train_s

    def _diverged(self, ld: float, lg: float, step: int) -> None:
        """Stop with advice that fits the run (as the classifier's loop does): bf16 is
        suggested only when it was used, the checkpoint only when one was written."""
        advice = "lower gan.lr"
        if self.precision == "bf16":
            advice += " or set gan.precision to fp32"
        kept = ""
        if self.out is not None and (self.out / "checkpoint.pt").exists():
            kept = f"; the last checkpoint in {self.out} is intact"
        raise DivergenceError(
            f"GAN loss became non-finite at step {step} (D {ld}, G {lg}); {advice}{kept}"
        )

    def on_step_end(self, loop: LoopState) -> None:
        o, bs, step, train_s = loop.out, self.cfg.batch_size, loop.clock.step, loop.clock.train_s
        ld, lg = float(o["loss_d"].detach()), float(o["loss_g"].detach())
        if not (math.isfinite(ld) and math.isfinite(lg)):
            self._diverged(ld, lg, step - 1)
        o["d_value"], o["g_value"] = ld, lg
        scores = o["scores"].detach()
        for k, v in (
            ("d_loss", ld),
            ("g_loss", lg),
            ("d_real", float(scores[:bs].float().mean())),
            ("d_fake", float(scores[bs:].float().mean())),
        ):
            self.acc[k] = self.acc.get(k, 0.0) + v
        self.n += 1
        due = (self.every is not None and step % self.every == 0) or (
            self.every_s is not None and train_s - self.last_s >= self.every_s
        )
        if due or loop.progress >= 1.0:
            row: dict[str, Any] = {"step": step, "time_s": round(train_s, 3)}
            row["images_seen"] = step * bs
            row.update({k: round(v / self.n, 5) for k, v in self.acc.items()})
            self.acc, self.n, self.last_s = {}, 0, train_s
            loop.record(row)


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
    slow = slow_precision_warning(resolve_precision(cfg.precision, dev), dev)
    if slow:
        log(slow)
    nets = _GAN(cfg, int(images.shape[1]), int(images.shape[-1]), dev)
    total = _total_steps(cfg.budget, len(images), cfg.batch_size)
    clock = BudgetClock(cfg.budget, total, calibrate=False)
    loop = LoopState(clock, stop_at_step)
    out = Path(out_dir) if out_dir is not None else None
    path = out / "checkpoint.pt" if out is not None else None
    ckpt = Checkpointing(
        path, cfg.checkpoint_every_s, lambda: nets.snapshot(clock, data_info), only_if_stepped=True
    )
    state = ckpt.load(dev)
    if state is not None and out is not None:
        nets.restore(state, out / "checkpoint.pt", clock)
        loop.curve = [r for r in read_curve(out / "curve.jsonl") if r["step"] <= clock.step]
        log(f"resumed from {path} at step {clock.step}")
    curve_log = CurveLog(out)
    curve_log.reset(loop.curve)
    resumed_from = clock.step
    bar = ProgressBar(progress, "GAN", (("d", "D"), ("g", "G")))
    callbacks: list[Callback] = [
        EMAUpdate(nets.ema, nets.gen, warmup=True),
        clock,
        _GANStats(cfg, clock, out, resolve_precision(cfg.precision, dev)),
        curve_log,
        ProgressCallback(
            bar, lambda lp: {"d": f"{lp.out['d_value']:.3f}", "g": f"{lp.out['g_value']:.3f}"}
        ),
        ckpt,
    ]
    nets.gen.train()
    nets.disc.train()
    run_loop(loop, _GANStep(nets, images, dev), callbacks)
    return GANResult(
        clock.step, clock.train_s, nets.ema.module, loop.curve, loop.stopped_early, resumed_from
    )


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
