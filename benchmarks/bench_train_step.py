"""Training-step throughput of the full loop against the bare backbone step.

The yardstick (GUIDE section 4) is the bare step in its fastest correct setting:
forward + cross-entropy + backward + SGD on a ready float batch, bf16 autocast and
channels_last when the CPU has native bf16. The loop step adds everything a real run
does: index sampling, gathering uint8 images, batched weak augmentation, the method and
the schedule. Prints one JSON line per backbone: {"backbone", "bare_img_s",
"loop_img_s", "ratio", "target": 0.9}.

    python benchmarks/bench_train_step.py --backbones convnet resnet18 --batch 256
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from fewlabels.data.imageset import ImageSet
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer
from fewlabels.train.precision import autocast, resolve_precision


def bare_rate(backbone: str, batch: int, size: int, steps: int, precision: str) -> float:
    torch.manual_seed(0)
    net = Network(backbone, 3, size, 10).to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, nesterov=True)
    x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch,))
    dev = torch.device("cpu")
    times = []
    for i in range(steps + 5):
        t0 = time.perf_counter()
        with autocast(precision, dev):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if i >= 5:
            times.append(time.perf_counter() - t0)
    return batch / statistics.median(times)


def loop_rate(backbone: str, batch: int, size: int, steps: int, precision: str) -> float:
    g = torch.Generator().manual_seed(0)
    n = 4096
    data = ImageSet(
        torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
        torch.randint(0, 10, (n,), generator=g),
        [str(i) for i in range(10)],
    )
    torch.manual_seed(0)
    method = Supervised(Network(backbone, 3, size, 10))
    cfg = TrainConfig(budget=f"{steps + 5}steps", batch_size=batch, precision=precision, evals=1)
    res = Trainer(cfg, progress=False).fit(method, data, None, None)
    return batch / statistics.median(res.step_seconds[5:])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["convnet", "resnet18"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    precision = resolve_precision("auto", torch.device("cpu"))
    for bb in args.backbones:
        bare = bare_rate(bb, args.batch, args.size, args.steps, precision)
        loop = loop_rate(bb, args.batch, args.size, args.steps, precision)
        print(
            json.dumps(
                {
                    "backbone": bb,
                    "batch": args.batch,
                    "size": args.size,
                    "precision": precision,
                    "bare_img_s": round(bare, 1),
                    "loop_img_s": round(loop, 1),
                    "ratio": round(loop / bare, 3),
                    "target": 0.9,
                }
            ),
            flush=True,
        )


if __name__ == "__main__":
    main()
