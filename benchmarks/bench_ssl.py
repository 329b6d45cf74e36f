"""Self-supervised pretraining at a fixed budget, then linear and kNN probes on 250 labels.

For each method: pretrain on the CIFAR-10 training images (labels hidden) for ``--budget``
with the 250-label split (25 per class, val train:0.1) feeding the online probe and kNN
monitor; then a linear probe (logistic regression on frozen features) and a kNN probe
on the same 25 labels per class. One JSON line per method; ``--random-init`` adds the
untrained-encoder baseline, ``--probe-speed`` times feature extraction + linear probe on
all 20,000 training images labeled (target: under 60 s on the 2-core CPU).

    python benchmarks/bench_ssl.py simclr byol --budget 10m
    python benchmarks/bench_ssl.py --random-init --no-pretrain
    python benchmarks/bench_ssl.py --probe-speed
    python benchmarks/bench_ssl.py vicreg --budget 30m --reuse   # probes of a finished run
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path
from typing import Any

import torch

from fewlabels.core.errors import FewlabelsError
from fewlabels.methods import METHODS
from fewlabels.train.probing import ProbeConfig, run_probe
from fewlabels.train.run import RunConfig, build_network, export_model, prepare_data, run_training

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"
CIFAR = f"cifar10:{DATA / 'cifar10'}"

# The recipes measured here are now the settings' rules (fewlabels.train.resolve and each
# method's Config.train_rules / Config.resolve): SGD at 0.06 x batch/256 with weight decay
# 5e-4 and batch 256 for pretraining (lightly's CIFAR-10 benchmark); LARS for VICReg (peak
# 0.6 x batch/256), Barlow Twins (0.3), BYOL (0.3, wd 1e-5) and DINO (0.1, wd 1e-6) with
# a gradient-norm clip; AdamW 1e-3 for the autoencoders; projectors 4x the feature wide;
# VICReg's crops from 0.35 of the image at 0.625 of its side; DINO's sharper teacher.
# A run here gives only data, labels, budget and method; the evidence behind
# each rule, kept from the per-method overrides these were:
TRAIN = {"evals": 5}
# lightly's CIFAR-10 benchmark settings (SGD, lr 0.06 x batch/256, momentum 0.9, wd 5e-4).
# VICReg and Barlow Twins train with LARS (solo-learn's CIFAR configs: lr 0.3 x batch/256,
# eta 0.02 with clip_lr, weight decay 1e-4): VICReg's loss blows up under SGD at lr 0.06.
# Barlow Twins with LARS alone made 843 steps in 10 minutes to 24.3%, below the
# random-init probe; with VICReg's gradient-norm clip (below) and solo-learn's 0.1 loss
# scale (METHOD_KWARGS), 1,267 steps to 40.7% (bf16 host)
# VICReg's loss still became inf at step 25 of 10 minutes with those settings and a
# 2048-wide projector (suspected, not isolated: biases and norms, outside LARS, take
# plain SGD steps on its large gradients); with the gradient norm clipped at 1 it
# completes and leads the 10-minute table (43.5% linear, bf16 host). Peak lr 0.6, twice
# solo-learn's (tuned for 1,000 epochs; 30 minutes here are ~40): on the fp32 CPU the 20 px
# recipe probed 42.8 / 46.3 / 44.9% linear after 10 minutes at lr 0.3 / 0.6 / 1.0
# (`fewlabels pretrain --lr`), and 30 minutes at 0.6 made 3,156-3,180 steps to 56.8-57.2%
# linear, 54.5-55.1% kNN against 54.8-55.1% and 52.4-54.3% at 0.3 (two runs each)
# BYOL (solo-learn's CIFAR config: LARS lr 1.0, eta 0.02 with clip_lr, wd 1e-5), 10
# minutes: under the SGD above 24.7%, with LARS alone 23.8% (both below random init),
# with the gradient-norm clip 27.1%; its loss stayed near 3.2 until the learning rate
# had decayed to a third, so it starts from 0.3: 1,204 steps to 31.8% (bf16 host)
# DINO (solo-learn's CIFAR config: LARS lr 0.3, eta 0.02 with clip_lr, wd 1e-6; gradient
# norm clipped at 3 as in the official main_dino.py), 10 minutes: under the SGD above
# 23.3%, with LARS 0.3 and the clip 23.9%, at lr 0.1 23.0% (bf16 host), all below the
# untrained encoder with the paper's head settings (see METHOD_KWARGS)
# The autoencoders under the SGD above (lr 0.06) probed at 26.5% (plain), 24.7%
# (denoising), 21.4% (VAE) against random init's 25.9%: a per-pixel MSE gives the encoder
# small gradients, which plain SGD turns into small steps. They train with AdamW, the
# usual autoencoder optimiser (lr 1e-3, the fewlabels default weight decay 0.05): 28.1%,
# 28.0% and 26.8% at 10 minutes (bf16 host), all above random init.
# ... and with narrower projectors than the papers' (below): their 8192-wide ones make ~120
# steps in 10 minutes on 2 CPU cores (Barlow Twins: below the random-init probe), and a
# 5% warm-up of a time budget is then ~6 steps, after which VICReg's loss becomes NaN.
# VICReg's crops: ours default to BYOL's smallest crop, 0.08 of the image; solo-learn's
# CIFAR VICReg config takes 0.2. 10-minute runs of 0.08 / 0.2 / 0.35 made 1,346 / 1,515
# / 1,686 steps (the machine's speed drifted) to 45.9 / 48.2 / 48.7%, so they were rerun
# at a fixed 1,200 steps: 44.7 / 45.1 / 47.5% linear, 43.5 / 44.2 / 45.4% kNN (bf16
# host, one seed each). The recipe takes 0.35; at 30 minutes the gap closes: 0.08 / 0.2
# / 0.35 reached 56.2 / 55.3 / 55.9% (4,127 / 3,669 / 3,854 steps).
# The views come out at 24 px (out_size): at a fixed 1,200 steps they probe 44.8%
# against 47.5% at 32 px (20 px: 44.6%) but take 357 s instead of 555 s, so 30 minutes
# make 5,345 / 5,875 steps (two runs) instead of 3,854: 58.8 / 59.3% against 55.9%
# (batch 128, lr 0.15: 10,675 steps, 58.2%; at batch 128 crops growing from 24 to 32
# px, out_size=24..32, made 8,830 steps to 56.6%). 20 px views (0.24 s a step against
# 0.29-0.31 s at 24 px) made 7,275 steps in 30 minutes to 58.6%.
# Projectors 1,024 wide, not 2,048 (the runs above): the papers' 8,192 are 4x a
# ResNet-50's 2,048-d feature, 1,024 is 4x the VICReg recipe's 256-d one (8x fastnet-s's
# usual 128-d). On the CPU without native bf16 the 2,048-wide layers took ~0.2 s of a ~1 s
# VICReg step; at 1,024 the full step rose from 0.785 to 0.933 of the bare two-view rate
# (4 rounds) and 30 minutes made 2,178 / 2,256 steps (two runs) to 52.4 / 54.5% linear,
# 50.2 / 52.6% kNN against 2,000 to 51.7% / 49.6% (bf16 host, 10 minutes: 45.6% against
# 45.9%). Barlow Twins (10 minutes, fp32): 533 steps to 34.5% / 32.0% against 451 to 34.1%
# / 31.6%, and 0.947 of the bare rate against 0.794.
# 20 px views, not 24: on the fp32 CPU the bare two-view step over 512 images takes 0.41 s
# at 20 px against 0.59 s at 24 px (16 px: 0.24 s; bench_ssl_step.py --size), and the full
# VICReg step 0.50 / 0.67 / 0.31 s at 20 / 24 / 16 px (its heads weigh more on a cheaper
# backbone: 0.82 / 0.88 / 0.77 of the bare rate, 0.93 at 32 px). 30 minutes made 3,394 /
# 3,186 steps to 55.1 / 54.8% linear, 54.3 / 52.4% kNN (two runs) against 2,178 / 2,256
# steps to 52.4 / 54.5% and 50.2 / 52.6% at 24 px; 16 px views made 5,416 steps to 55.1% /
# 51.6%. On the bf16
# host 20 px was level with 24 px (58.6% against 58.8 / 59.3%, 128 wide, above).
# Self-Classifier's ImageNet heads (4096-wide MLP, four classifiers of 1,000-8,000
# classes) ran at 0.44 of the bare two-view step and made 654 steps in 10 minutes to
# 34.5% (a starved run); for 20,000 images and batches of 256, a 2048-wide MLP and one
# classifier of 1,000 classes (the paper's ablation: one of 1,000 already works):
# 1,557 steps to 43.1% (bf16 host). The MLP is now 1,024 wide (8x the 128-d feature):
# 10 minutes on the fp32 host made 620 steps to 35.7% linear / 31.6% kNN against 583 to
# 35.2% / 31.8% at 2,048, and the full step ran at 0.930 of the bare rate (0.843).
# DINO's paper settings (4,096 prototypes, teacher at 0.04): within ~30 steps the
# centred teacher targets went uniform (entropy -> log K, loss -> log K) and stayed
# there, also with the prototypes frozen for 80 steps, the 0.04 -> 0.07 warm-up,
# BatchNorm in the head, or a teacher momentum of 0.996 or 0.9995 (100-second runs,
# kNN 19-21%, random init 19%). A sharper teacher (0.02), 1,024 prototypes and
# BatchNorm in the head gave the best kNN of those short runs (22%); at 10 minutes its
# loss fell from 7.9 to 4.9 (log K = 6.9): 943 steps to 31.6% (bf16 host)


# fastnet-s's last group at 256 channels instead of 128 (a 256-d feature), once this bench's
# VICReg option: two 30-minute runs made 5,050 / 4,889 steps to 59.9 / 58.7% linear, 59.4 /
# 58.4% kNN against 5,345 / 5,875 steps to 58.8 / 59.3% linear, 57.0 / 57.6% kNN at 128
# (bf16 host): kNN gains, linear is level, so the rules keep the backbones' own widths.
# The backbone and batch size are the rules' unless --backbone / --batch-size give them.


def ssl_methods() -> list[str]:
    return sorted(n for n, c in METHODS.items() if c.kind == "self-supervised")


def probes(ckpt: Path, out: Path, seed: int) -> dict[str, Any]:
    row: dict[str, Any] = {}
    for protocol in ("linear", "knn"):
        cfg = ProbeConfig(
            checkpoint=str(ckpt),
            data=CIFAR,
            labels_per_class=25,
            val="train:0.1",
            protocol=protocol,
            seed=seed,
            out=str(out / f"probe-{protocol}"),
        )
        res = run_probe(cfg, log=lambda s: None, progress=False)
        row[f"{protocol}_acc"] = round(res.metrics.accuracy, 4)
        row[f"{protocol}_macro_f1"] = round(res.metrics.macro_f1, 4)
        row[f"{protocol}_s"] = round(res.seconds, 1)
    return row


def bench_config(method: str, args: argparse.Namespace) -> RunConfig:
    """The pretraining run of ``method``: its optimiser settings, the bench's budget."""
    train: dict[str, Any] = dict(TRAIN, budget=args.budget, seed=args.seed)
    if args.batch_size is not None:
        train["batch_size"] = args.batch_size
    if args.lr is not None:  # a variant: the peak lr at batch 256, scaled like the rules'
        train["batch_size"] = batch = args.batch_size or 256
        train["lr"] = args.lr * batch / 256
    return RunConfig(
        data=CIFAR,
        labels_per_class=25,
        val="train:0.1",
        **({"backbone": args.backbone} if args.backbone else {}),
        **({"backbone_kwargs": args.backbone_kwargs} if args.backbone_kwargs else {}),
        method=method,
        method_kwargs=dict(args.method_kwargs),
        train=train,
        out=str(args.out / method),
    )


def settings(cfg: RunConfig) -> dict[str, Any]:
    """What a row says of the run's optimiser."""
    t = cfg.train
    return {
        "method": cfg.method,
        "backbone": cfg.backbone,
        **({"backbone_kwargs": cfg.backbone_kwargs} if cfg.backbone_kwargs else {}),
        "budget": str(t.budget),
        "batch_size": t.batch_size,
        "optimizer": t.optimizer,
        "lr": t.lr,
        **({"lars_clip": t.lars_clip} if t.optimizer == "lars" else {}),
        **({"grad_clip": t.grad_clip} if t.grad_clip else {}),
        **({"method_kwargs": cfg.method_kwargs} if cfg.method_kwargs else {}),
    }


def pretrain_row(cfg: RunConfig, args: argparse.Namespace) -> dict[str, Any]:
    """``pretrain``'s row, marked as a variant when ``--method-kwargs``, ``--backbone-kwargs``,
    ``--batch-size`` or ``--lr`` changed the recipe."""
    try:
        row = pretrain(cfg, args.reuse)
    except FewlabelsError as e:  # a method that diverges is a result, not a crash
        row = {**settings(cfg), "error": str(e)}
    variant = (
        args.method_kwargs
        or args.backbone_kwargs
        or args.batch_size is not None
        or args.lr is not None
    )
    return {**row, "variant": True} if variant else row


def finished(cfg: RunConfig) -> dict[str, Any] | None:
    """The metrics of a finished pretraining of ``cfg`` in its folder (same method, backbone
    and training settings as given), or None."""
    out = Path(cfg.out or "")
    try:
        used = RunConfig.read(out)
        metrics = json.loads((out / "metrics.json").read_text())
    except (OSError, ValueError):
        return None
    given = cfg.train.model_dump(exclude_unset=True)
    same = (
        used.method == cfg.method
        and used.method_kwargs == {**used.method_kwargs, **cfg.method_kwargs}
        and ("backbone" not in cfg.model_fields_set or used.backbone == cfg.backbone)
        and used.train.model_dump(include=set(given)) == given
    )
    return metrics if same else None


def pretrain(cfg: RunConfig, reuse: bool = False) -> dict[str, Any]:
    out = Path(cfg.out or "")
    done = finished(cfg) if reuse else None
    if done is None:
        shutil.rmtree(out, ignore_errors=True)  # a fresh run, never a resumed one
        res = run_training(cfg, progress=False, log=lambda s: None)
        curve, steps, seconds = res.curve, res.steps, res.train_seconds
    else:  # read back: the run finished, its probes are still to come
        curve = [json.loads(line) for line in (out / "curve.jsonl").read_text().splitlines()]
        steps, seconds = done["steps"], done["train_seconds"]
    last = curve[-1] if curve else {}
    return {
        **settings(RunConfig.read(out)),
        "pretrain_steps": steps,
        "pretrain_s": round(seconds, 1),
        "online_probe_val_acc": last.get("val_acc"),
        "knn_monitor_val_acc": last.get("knn_acc"),
        **probes(out, out, cfg.train.seed),
    }


def random_init(args: argparse.Namespace) -> dict[str, Any]:
    cfg = RunConfig(
        data=CIFAR,
        labels_per_class=25,
        backbone=args.backbone or "fastnet",
        backbone_kwargs=args.backbone_kwargs,
    )
    ds, splits = prepare_data(cfg)
    torch.manual_seed(args.seed)
    net = build_network(cfg, splits.labeled, ds.train.num_classes)
    out = args.out / "random-init"
    export_model(out / "model.pt", net, ds.class_names, {"method": "random-init"})
    return {
        "method": "random-init",
        "backbone": cfg.backbone,
        **({"backbone_kwargs": args.backbone_kwargs} if args.backbone_kwargs else {}),
        **probes(out, out, args.seed),
    }


def probe_speed(args: argparse.Namespace) -> dict[str, Any]:
    """Features of all 20,000 labeled training images + the linear probe, timed cold."""
    from fewlabels.core.precision import resolve_precision
    from fewlabels.evaluate.features import extract_features
    from fewlabels.evaluate.probe import linear_probe

    cfg = RunConfig(
        data=CIFAR,
        val="none",
        backbone=args.backbone or "fastnet",
        backbone_kwargs=args.backbone_kwargs,
    )
    ds, splits = prepare_data(cfg)
    torch.manual_seed(args.seed)
    net = build_network(cfg, splits.labeled, ds.train.num_classes)
    net = net.eval().to(memory_format=torch.channels_last)
    precision = resolve_precision("auto", torch.device("cpu"))
    lab = splits.labeled
    assert splits.test is not None
    extract_features(net, lab.images[:64], precision=precision)  # warm-up
    t0 = time.perf_counter()
    feats = extract_features(net, lab.images, precision=precision)
    t1 = time.perf_counter()
    w, b, info = linear_probe(feats, lab.labels, ds.train.num_classes, seed=args.seed)
    t2 = time.perf_counter()
    test_f = extract_features(net, splits.test.images, precision=precision)
    acc = float(((test_f @ w.T + b).argmax(1) == splits.test.labels).float().mean())
    return {
        "mode": "probe-speed",
        "backbone": cfg.backbone,
        **({"backbone_kwargs": args.backbone_kwargs} if args.backbone_kwargs else {}),
        "images": len(lab),
        "feature_dim": int(feats.shape[1]),
        "precision": precision,
        "extract_s": round(t1 - t0, 2),
        "extract_img_per_s": round(len(lab) / (t1 - t0), 1),
        "probe_fit_s": round(t2 - t1, 2),
        "total_s": round(t2 - t0, 2),
        "target_s": 60,
        "weight_decay": info["weight_decay"],
        "random_init_test_acc": round(acc, 4),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("methods", nargs="*", help="default: every self-supervised method")
    ap.add_argument("--budget", default="10m")
    ap.add_argument("--backbone", help="default: the rules' choice (random init: fastnet)")
    ap.add_argument(
        "--batch-size", type=int, help="default: the rules' (rows with it are variants)"
    )
    ap.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate at batch 256 instead of the method's (scaled with "
        "--batch-size like it; rows with it are variants)",
    )
    ap.add_argument("--random-init", action="store_true", help="add the untrained baseline")
    ap.add_argument("--no-pretrain", action="store_true", help="skip the methods")
    ap.add_argument("--probe-speed", action="store_true", help="only time the probe")
    ap.add_argument(
        "--reuse", action="store_true", help="probe a finished pretraining of the same settings"
    )
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "bench-ssl")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--method-kwargs",
        type=json.loads,
        default={},
        help="JSON merged over the method's bench options, e.g. '{\"projector\": [1024, 1024]}'; "
        "its rows are marked as variants, which results.md lists apart",
    )
    ap.add_argument(
        "--backbone-kwargs",
        type=json.loads,
        default={},
        help="JSON options of the backbone, e.g. '{\"widths\": [32, 128, 256]}' (pretraining "
        "rows with them are variants)",
    )
    args = ap.parse_args()
    torch.set_num_threads(2)
    if args.probe_speed:  # extraction is timed without the feature cache
        print(json.dumps(probe_speed(args)), flush=True)
        return
    unknown = [m for m in args.methods if m not in ssl_methods()]
    if unknown:
        ap.error(f"not self-supervised methods: {', '.join(unknown)}; choose from {ssl_methods()}")
    if not args.no_pretrain:
        for m in args.methods or ssl_methods():
            print(json.dumps(pretrain_row(bench_config(m, args), args)), flush=True)
    if args.random_init:
        print(json.dumps(random_init(args)), flush=True)


if __name__ == "__main__":
    main()
