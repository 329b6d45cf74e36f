"""``fewlabels generate`` end to end: data -> GAN training -> N samples as PNG files ->
a real-vs-generated picture -> (with an encoder) FD and precision/recall vs the test set.

The run folder ``out`` holds ``checkpoint.pt`` (resumable GAN training state),
``generator.pt`` (the EMA generator alone), ``curve.jsonl`` (losses over training),
``config.json``, ``real_vs_generated.png``, ``quality.json`` (when an encoder was given)
and ``samples/unlabeled/gen_XXXXXX.png``: ``folder:OUT/samples`` is then a data spec of
unlabeled images, usable as a pool of its own or added to another source's unlabeled pool
(``RunConfig.extra_unlabeled``, ``fewlabels pretrain --add-unlabeled folder:OUT/samples``).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import BaseModel, ConfigDict, Field, field_validator

from fewlabels.core.checkpoint import atomic_write_bytes, save_checkpoint
from fewlabels.core.device import pick_device
from fewlabels.core.errors import ConfigError, DataError
from fewlabels.core.precision import resolve_precision
from fewlabels.core.progress import track
from fewlabels.core.provenance import provenance
from fewlabels.data import load_dataset
from fewlabels.evaluate.features import load_encoder
from fewlabels.evaluate.plots import literal, plain_text
from fewlabels.generate.gan import check_size, sample
from fewlabels.generate.quality import sample_quality
from fewlabels.generate.train import GANConfig, GANResult, train_gan

SAMPLES = "samples"


class GenerateConfig(BaseModel):
    """What ``run_generate`` does; saved as ``config.json`` in the run folder."""

    model_config = ConfigDict(extra="forbid")

    data: str = "digits"
    test: str | None = None  # reference images for quality (default: the data's test set)
    out: str = "runs/generate"
    num: int | None = None  # images to sample; None: as many as the training pool
    size: int | None = None  # None: the source's size
    encoder: str | None = None  # checkpoint whose features measure sample quality
    device: str = "auto"
    strict: bool = False
    sample_seed: int = 0
    gan: GANConfig = Field(default_factory=GANConfig)

    @field_validator("num")
    @classmethod
    def _num(cls, v: int | None) -> int | None:
        if v is not None and v < 0:
            raise ValueError("the number of images to sample cannot be negative")
        return v

    @field_validator("size")
    @classmethod
    def _size(cls, v: int | None) -> int | None:
        if v is not None:
            check_size(v)
        return v


@dataclass
class GenerateResult:
    """What ``run_generate`` produced."""

    out_dir: Path
    samples_dir: Path
    num: int
    gan: GANResult
    quality: dict[str, Any] | None
    pool: int


def training_pool(spec: str, size: int | None, *, strict: bool = False) -> torch.Tensor:
    """Every training image of a source (labels dropped) plus its unlabeled set, as uint8
    (N, C, S, S) at ``size`` (default: the source's, when the GAN supports it)."""
    ds = load_dataset(spec, strict=strict)
    parts = [p.images for p in (ds.train, ds.unlabeled) if p is not None and len(p)]
    if not parts:
        raise DataError(f"{spec} holds no training or unlabeled images to learn from")
    images = torch.cat(parts)
    h, w = int(images.shape[2]), int(images.shape[3])
    if size is None:
        if h != w:
            raise ConfigError(f"{spec} has {w}x{h} images; pick a square `size` (e.g. 32)")
        try:
            size = check_size(h)
        except ConfigError:
            raise ConfigError(
                f"{spec} has {h} px images; the GAN needs 8, 16, 32, 64 or 128 px: pass `size`"
            ) from None
    return resize(images, size)


def resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 images to ``size`` x ``size`` (bilinear, antialiased), in chunks."""
    if tuple(images.shape[-2:]) == (size, size):
        return images
    out = [
        F.interpolate(
            images[s : s + 2048].float(), size=(size, size), mode="bilinear", antialias=True
        )
        .round()
        .clamp(0, 255)
        .to(torch.uint8)
        for s in range(0, len(images), 2048)
    ]
    return torch.cat(out)


def write_png_folder(images: torch.Tensor, folder: Path, progress: bool | None = None) -> Path:
    """Write uint8 (N, C, H, W) images as ``folder/unlabeled/gen_XXXXXX.png``.

    The files go to a temp folder that then replaces ``folder`` as a whole, so a reader
    sees the old set or the new one, never a mix.
    """
    from PIL import Image

    folder = Path(folder)
    tmp = folder.with_name(f".{folder.name}.tmp{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "unlabeled").mkdir(parents=True)
    try:
        arr = images.permute(0, 2, 3, 1).contiguous().numpy()
        for i, a in enumerate(track(arr, "writing samples", enabled=progress)):
            im = Image.fromarray(a[..., 0] if a.shape[-1] == 1 else a)
            im.save(tmp / "unlabeled" / f"gen_{i:06d}.png", compress_level=1)
        old = folder.with_name(f".{folder.name}.old{os.getpid()}")
        if folder.exists():
            os.replace(folder, old)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def comparison_png(
    real: torch.Tensor,
    fake: torch.Tensor,
    path: Path,
    title: str = "",
    totals: tuple[int, int] | None = None,
) -> Path:
    """Two panels side by side: 64 real images and 64 generated ones (of ``totals``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with plain_text():  # the title names the data spec: shown literally, never as TeX
        fig, axes = plt.subplots(1, 2, figsize=(10, 5.4))
        totals = totals or (len(real), len(fake))
        for ax, imgs, name, total in (
            (axes[0], real, "real", totals[0]),
            (axes[1], fake, "generated", totals[1]),
        ):
            ax.imshow(_grid(imgs[:64]), cmap="gray" if imgs.shape[1] == 1 else None)
            ax.set_title(f"{name} ({min(64, len(imgs))} of {total:,})")
            ax.set_axis_off()
        if title:
            fig.suptitle(literal(title), fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    atomic_write_bytes(path, buf.getvalue())
    return path


def _grid(images: torch.Tensor, cols: int = 8) -> np.ndarray:
    n, c, h, w = images.shape
    rows = max(1, -(-n // cols))
    out = np.full((rows * (h + 1) + 1, cols * (w + 1) + 1, c), 255, np.uint8)
    for i, im in enumerate(images.permute(0, 2, 3, 1).numpy()):
        r, col = divmod(i, cols)
        out[1 + r * (h + 1) : 1 + r * (h + 1) + h, 1 + col * (w + 1) : 1 + col * (w + 1) + w] = im
    return out[..., 0] if c == 1 else out


def reference_images(cfg: GenerateConfig) -> tuple[torch.Tensor, str]:
    """The real images quality is measured against: the test set of ``test`` or ``data``."""
    spec = cfg.test or cfg.data
    ds = load_dataset(spec, strict=cfg.strict)
    if ds.test is not None and len(ds.test):
        return ds.test.images, f"{spec} (test set)"
    raise DataError(f"{spec} has no test set to measure sample quality against; pass `test` SPEC")


def run_generate(
    cfg: GenerateConfig,
    *,
    progress: bool = True,
    log: Callable[[str], None] = print,
    stop_at_step: int | None = None,
) -> GenerateResult:
    """Train (or resume) the GAN, sample ``num`` images into ``out/samples``, measure them."""
    t0 = time.perf_counter()
    try:
        device = pick_device(cfg.device)
    except RuntimeError:
        raise ConfigError(f"unknown device {cfg.device!r}: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError("`device` cuda was asked for but no GPU is available")
    out = Path(cfg.out)
    if out.exists() and not out.is_dir():
        raise ConfigError(f"`out` {out} is a file, not a folder")
    encoder = None
    if cfg.encoder is not None:  # fail on a bad encoder before hours of training
        encoder, _ = load_encoder(cfg.encoder)
    images = training_pool(cfg.data, cfg.size, strict=cfg.strict)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_bytes(out / "config.json", (cfg.model_dump_json(indent=2) + "\n").encode())
    record = provenance(device, resolve_precision(cfg.gan.precision, device))
    atomic_write_bytes(out / "provenance.json", (json.dumps(record, indent=2) + "\n").encode())
    c, s = int(images.shape[1]), int(images.shape[-1])
    log(f"data {cfg.data}: {len(images):,} training images, {c}x{s}x{s}")
    log(f"training the GAN for {cfg.gan.budget} on {device.type} -> {out}")
    res = train_gan(
        images,
        cfg.gan,
        out_dir=out,
        device=device,
        progress=progress,
        log=log,
        stop_at_step=stop_at_step,
        data_info={"spec": cfg.data, "images": len(images)},
    )
    gen = res.generator
    save_checkpoint(
        {
            "kind": "generator",
            "generator_config": dict(gen.config),
            "state_dict": {k: v.detach().cpu() for k, v in gen.state_dict().items()},
            "steps": res.steps,
            "train_seconds": res.train_seconds,
            "data": cfg.data,
        },
        out / "generator.pt",
    )
    num = len(images) if cfg.num is None else cfg.num
    fake = sample(gen, num, seed=cfg.sample_seed, device=device, progress=progress)
    samples_dir = write_png_folder(fake, out / SAMPLES, progress)
    log(f"trained {res.steps} steps in {res.train_seconds:.1f}s; wrote {num:,} images")
    picture = fake if len(fake) else sample(gen, 64, seed=cfg.sample_seed, device=device)
    comparison_png(
        images[torch.randperm(len(images), generator=torch.Generator().manual_seed(0))[:64]],
        picture,
        out / "real_vs_generated.png",
        title=f"{cfg.data}: GAN after {res.steps} steps ({res.train_seconds:.0f} s)",
        totals=(len(images), len(fake)),
    )
    quality = None
    if encoder is not None:
        real, where = reference_images(cfg)
        fake_q = fake if len(fake) >= 10 else sample(gen, 1000, seed=cfg.sample_seed + 1)
        quality = {
            "encoder": cfg.encoder,
            "reference": where,
            **sample_quality_safe(encoder, real, fake_q),
        }
        atomic_write_bytes(out / "quality.json", (json.dumps(quality, indent=2) + "\n").encode())
    log(f"done in {time.perf_counter() - t0:.1f}s")
    return GenerateResult(out, samples_dir, num, res, quality, len(images))


def sample_quality_safe(encoder: Any, real: torch.Tensor, fake: torch.Tensor) -> dict[str, Any]:
    """``sample_quality`` with k lowered for tiny sets (at least 2 images each needed)."""
    k = min(3, len(real) - 1, len(fake) - 1)
    if k < 1:
        raise DataError("sample quality needs at least 2 real and 2 generated images")
    return sample_quality(encoder, real, fake, k=k)
