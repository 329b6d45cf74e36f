"""Pretraining throughput of the full self-supervised loop step against the bare backbone.

The yardstick (GUIDE section 4) is the bare backbone's two-view step in its fastest
correct setting: forward + cross-entropy through a linear layer + backward + SGD on
2 x batch ready float images, bf16 autocast and channels_last when the CPU has native
bf16. The loop step is ``Trainer.fit`` on a uint8 ImageSet resident in memory: index
sampling, gathering, the method's batched augmentation, its heads and loss, backward,
the optimiser, the schedule and ``after_step``. Images/s count source images x views
(a ``denoise`` pair or a single autoencoder view counts once). Prints one JSON line per
method: {"method", "backbone", "batch", "bare_two_view_img_s", "loop_img_s", "ratio",
"target": 0.9}.

    python benchmarks/bench_ssl_step.py --methods simclr byol vae --backbone convnet
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from fewlabels.augment import build_policy
from fewlabels.data.imageset import ImageSet
from fewlabels.methods import METHODS, build_method
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer
from fewlabels.train.precision import autocast, resolve_precision

# trained with LARS, as in bench_ssl.py (VICReg's loss blows up under SGD at this lr)
LARS_METHODS = ("vicreg", "barlow_twins")


def ssl_methods() -> list[str]:
    """Every registered method whose kind is self-supervised."""
    return [n for n, c in METHODS.items() if getattr(c, "kind", "") == "self-supervised"]


def bare_two_view_rate(
    backbone: str, batch: int, size: int, steps: int, warmup: int, precision: str
) -> float:
    torch.manual_seed(0)
    net = Network(backbone, 3, size, 10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(2 * batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (2 * batch,))
    dev = torch.device("cpu")
    times = []
    for i in range(steps + warmup):
        t0 = time.perf_counter()
        with autocast(precision, dev):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= warmup:
            times.append(time.perf_counter() - t0)
    return 2 * batch / statistics.median(times)


def loop_rate(
    method_name: str,
    backbone: str,
    batch: int,
    size: int,
    steps: int,
    warmup: int,
    precision: str,
) -> tuple[float, int]:
    """(source images x views per second, views) of ``Trainer.fit`` on resident images."""
    g = torch.Generator().manual_seed(0)
    n = 4096
    data = ImageSet(
        torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
        torch.full((n,), -1, dtype=torch.long),
        [str(i) for i in range(10)],
    )
    torch.manual_seed(0)
    method = build_method(method_name, Network(backbone, 3, size, 10))
    views = sum(build_policy(p, image_size=size).num_views for p in method.views["unlabeled"])
    cfg = TrainConfig(
        budget=f"{steps + warmup}steps",
        batch_size=batch,
        precision=precision,
        evals=1,
        optimizer="lars" if method_name in LARS_METHODS else "sgd",
    )
    res = Trainer(cfg, progress=False).fit(method, None, data, None)
    return batch * views / statistics.median(res.step_seconds[warmup:]), views


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=None, help="default: every SSL method")
    ap.add_argument("--backbone", default="convnet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=15)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    names = args.methods or ssl_methods()
    common = (args.batch, args.size, args.steps, args.warmup, precision)
    for name in names:
        row: dict[str, object] = {
            "method": name,
            "backbone": args.backbone,
            "batch": args.batch,
            "size": args.size,
            "precision": precision,
        }
        try:
            loop, views = loop_rate(name, args.backbone, *common)
            # measured beside each method: on a shared machine a ratio holds, a rate drifts
            bare = bare_two_view_rate(args.backbone, *common)
        except Exception as e:  # one broken method must not hide the others' figures
            row["error"] = f"{type(e).__name__}: {e}"
        else:
            row.update(
                views=views,
                bare_two_view_img_s=round(bare, 1),
                loop_img_s=round(loop, 1),
                ratio=round(loop / bare, 3),
                target=0.9,
            )
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
