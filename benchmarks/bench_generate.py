"""Generated images on CIFAR-10: GAN sample quality in an encoder's feature space, and what
adding generated images to the pretraining pool does to probe accuracy.

1. ``gan``: ``fewlabels generate`` on the 20,000 training images for ``--gan-budget``, then
   20,000 samples (1x the pool).
2. ``quality``: for each ``--encoder NAME=PATH`` (default: a SimCLR run pretrained here on
   the real training images for ``--pretrain-budget``), FD and k=3 precision/recall against
   the 10,000 test images of 10,000 real training images (the floor), of 10,000 per-pixel
   Gaussian noise images (the training set's mean and std) and of 10,000 GAN samples.
3. ``synthetic``: for each ``--synthetic`` ratio r > 0, SimCLR pretraining on the real pool
   plus r x its size of generated images at the same ``--pretrain-budget`` (images through
   the backbone), then a linear probe on 25 labels per class, beside the 0x baseline.

One JSON line per result.

    python benchmarks/bench_generate.py --gan-budget 12m --pretrain-budget 300kimg
    python benchmarks/bench_generate.py --encoder supervised=runs/bench/cifar-full --synthetic
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]
CIFAR = f"cifar10:{ROOT.parent / 'shared' / 'data' / 'cifar10'}"
SSL_TRAIN = {"batch_size": 256, "optimizer": "sgd", "lr": 0.06, "weight_decay": 5e-4, "evals": 2}


def emit(row: dict[str, Any]) -> None:
    print(json.dumps(row), flush=True)


def pretrain(out: Path, args: argparse.Namespace, extra: str | None, ratio: float) -> dict:
    """SimCLR at the fixed budget (optionally with generated images), then a linear probe."""
    from fewlabels.train.probing import ProbeConfig, run_probe
    from fewlabels.train.run import RunConfig, run_training

    shutil.rmtree(out, ignore_errors=True)
    cfg = RunConfig(
        data=CIFAR,
        labels_per_class=25,
        val="train:0.1",
        backbone=args.backbone,
        method="simclr",
        extra_unlabeled=extra,
        extra_unlabeled_ratio=ratio if extra else None,
        train={**SSL_TRAIN, "budget": args.pretrain_budget, "seed": args.seed},
        out=str(out),
    )
    res = run_training(cfg, progress=False, log=lambda s: None)
    m = json.loads((out / "metrics.json").read_text()) if (out / "metrics.json").exists() else {}
    probe = run_probe(
        ProbeConfig(
            checkpoint=str(out),
            data=CIFAR,
            labels_per_class=25,
            val="train:0.1",
            protocol="linear",
            seed=args.seed,
            out=str(out / "probe-linear"),
        ),
        log=lambda s: None,
        progress=False,
    )
    seen = [r.get("backbone_images") for r in res.curve if r.get("backbone_images")]
    return {
        "pretrain_budget": args.pretrain_budget,
        "pretrain_steps": res.steps,
        "pretrain_s": round(res.train_seconds, 1),
        "backbone_images": seen[-1] if seen else None,
        "real_pool": m.get("labeled", 0) + m.get("unlabeled", 0),
        "generated_images": m.get("extra_unlabeled", 0),
        "linear_probe_acc": round(probe.metrics.accuracy, 4),
        "linear_probe_macro_f1": round(probe.metrics.macro_f1, 4),
    }


def quality_rows(name: str, enc_path: Path, test, train, fake) -> None:
    """FD and precision/recall in one encoder's features: real train, noise, GAN samples."""
    from fewlabels.evaluate.features import load_encoder
    from fewlabels.generate import sample_quality

    encoder, _ = load_encoder(enc_path)
    base = {"step": "quality", "encoder": name}
    t0 = time.perf_counter()
    q = sample_quality(encoder, test, train, max_images=10_000)
    emit({**base, "images": "real train", **q, "s": round(time.perf_counter() - t0, 1)})
    x = train[:10_000].float()
    g = torch.Generator().manual_seed(0)
    noise = (x.mean(0) + x.std(0) * torch.randn(10_000, *x.shape[1:], generator=g)).round()
    q = sample_quality(encoder, test, noise.clamp(0, 255).to(torch.uint8), max_images=10_000)
    emit({**base, "images": "pixel gaussian", **q})
    q = sample_quality(encoder, test, fake, max_images=10_000)
    emit({**base, "images": "GAN samples", **q})


def main() -> None:
    from fewlabels.data import load_dataset
    from fewlabels.generate import GenerateConfig, run_generate
    from fewlabels.generate.quality import load_images

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gan-budget", default="12m")
    ap.add_argument("--width", type=int, default=None)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--gan-precision", default="fp32")
    ap.add_argument("--pretrain-budget", default="300kimg")
    ap.add_argument("--backbone", default="fastnet")
    ap.add_argument(
        "--encoder",
        nargs="*",
        default=[],
        help="NAME=PATH of existing encoders for the quality figures (default: pretrain one)",
    )
    ap.add_argument("--synthetic", type=float, nargs="*", default=[0.5, 1.0])
    ap.add_argument("--skip-gan", action="store_true", help="reuse OUT/gan as it is")
    ap.add_argument(
        "--resume", action="store_true", help="continue OUT/gan's GAN up to --gan-budget"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-generate")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    torch.set_num_threads(2)
    args.out.mkdir(parents=True, exist_ok=True)
    ds = load_dataset(CIFAR)
    assert ds.test is not None
    test, train = ds.test.images, ds.train.images

    # 1. the GAN
    gan_dir = args.out / "gan"
    if not args.skip_gan:
        if not args.resume:
            shutil.rmtree(gan_dir, ignore_errors=True)
        gcfg = GenerateConfig(
            data=CIFAR,
            out=str(gan_dir),
            num=len(train),
            gan={
                "budget": args.gan_budget,
                "batch_size": args.batch_size,
                "width": args.width,
                "precision": args.gan_precision,
                "seed": args.seed,
            },
        )
        t0 = time.perf_counter()
        res = run_generate(gcfg, progress=False, log=lambda s: None)
        wall = time.perf_counter() - t0
        last = res.gan.curve[-1] if res.gan.curve else {}
        emit(
            {
                "step": "gan",
                "gan_budget": args.gan_budget,
                "resumed_from_step": res.gan.resumed_from,
                "width": res.gan.generator.config["width"],
                "batch_size": args.batch_size,
                "gan_steps": res.gan.steps,
                "gan_train_s": round(res.gan.train_seconds, 1),
                "gan_steps_per_s": round(res.gan.steps / max(res.gan.train_seconds, 1e-9), 2),
                "d_loss": last.get("d_loss"),
                "g_loss": last.get("g_loss"),
                "d_real": last.get("d_real"),
                "d_fake": last.get("d_fake"),
                "sampled": res.num,
                "wall_s": round(wall, 1),
            }
        )
    fake = load_images(f"folder:{gan_dir / 'samples'}")

    # 2. quality in each encoder's features (own SimCLR run when none is given)
    baseline = None
    encoders = [tuple(e.split("=", 1)) if "=" in e else (Path(e).name, e) for e in args.encoder]
    if not encoders:
        row = pretrain(args.out / "ssl-0x", args, None, 0.0)
        emit({"step": "encoder", "method": "simclr", "backbone": args.backbone, **row})
        encoders, baseline = [("simclr (this benchmark)", str(args.out / "ssl-0x"))], row
    for name, path in encoders:
        if Path(path).is_dir() and not (Path(path) / "model.pt").exists():
            emit({"step": "quality", "encoder": name, "skipped": f"no model.pt in {path}"})
            continue
        quality_rows(name, Path(path), test, train, fake)

    # 3. generated images in the pretraining pool, at the same compute
    extra = f"folder:{gan_dir / 'samples'}"
    ratios = [r for r in args.synthetic if r > 0]
    if ratios and baseline is None:
        baseline = pretrain(args.out / "ssl-0x", args, None, 0.0)
    if ratios and baseline is not None:
        emit({"step": "synthetic", "ratio": 0.0, **baseline})
    for r in ratios:
        row = pretrain(args.out / f"ssl-{r:g}x", args, extra, r)
        delta = round(100 * (row["linear_probe_acc"] - baseline["linear_probe_acc"]), 2)
        emit({"step": "synthetic", "ratio": r, **row, "change_points": delta})


if __name__ == "__main__":
    main()
