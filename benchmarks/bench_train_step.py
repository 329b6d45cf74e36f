"""Training-step throughput of the full loop against the bare backbone step.

The yardstick (GUIDE section 4) is the bare step in its fastest correct setting:
forward + cross-entropy + backward + SGD on a ready float batch, bf16 autocast and
channels_last when the CPU has native bf16. The loop step adds everything a real run
does: index sampling, gathering uint8 images, batched weak augmentation, the method and
the schedule. Prints one JSON line per backbone: {"backbone", "bare_img_s",
"loop_img_s", "ratio", "target": 0.9}.

Bare and loop steps are timed in alternating rounds (bare, loop, bare, loop, ...) and
each rate is the median over all its rounds' steps, so a machine whose speed drifts
(shared cores) biases neither side.

    python benchmarks/bench_train_step.py --backbones convnet resnet18 --batch 256
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from fewlabels.core.precision import autocast, resolve_precision
from fewlabels.core.process import keep_freed_memory
from fewlabels.data.imageset import ImageSet
from fewlabels.methods.supervised import Supervised
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer


class BareStep:
    """Forward + cross-entropy + backward + an optimiser step (SGD unless ``make_optimizer``
    builds another) of the bare network on one ready batch. ``teacher`` adds what a
    momentum-teacher method cannot do without: a no-grad forward of a frozen copy of the
    backbone (BatchNorm in training mode, as BYOL's and DINO's targets) over the same batch."""

    def __init__(
        self,
        backbone: str,
        batch: int,
        size: int,
        precision: str,
        make_optimizer: Callable[[Any], torch.optim.Optimizer] | None = None,
        backbone_kwargs: dict[str, Any] | None = None,
        teacher: bool = False,
    ) -> None:
        torch.manual_seed(0)
        self.net = Network(backbone, 3, size, 10, backbone_kwargs=backbone_kwargs)
        self.net = self.net.to(memory_format=torch.channels_last)
        self.teacher = copy.deepcopy(self.net).requires_grad_(False) if teacher else None
        params = self.net.parameters()
        self.opt = (
            make_optimizer(params)
            if make_optimizer
            else torch.optim.SGD(params, lr=0.01, momentum=0.9, nesterov=True)
        )
        self.x = torch.rand(batch, 3, size, size).contiguous(memory_format=torch.channels_last)
        self.y = torch.randint(0, 10, (batch,))
        self.precision = precision

    def times(self, steps: int) -> list[float]:
        out = []
        for _ in range(steps):
            t0 = time.perf_counter()
            with autocast(self.precision, torch.device("cpu")):
                loss = F.cross_entropy(self.net(self.x).float(), self.y)
                if self.teacher is not None:
                    with torch.no_grad():
                        self.teacher.features(self.x)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            self.opt.step()
            out.append(time.perf_counter() - t0)
        return out


class LoopSteps:
    """Steps of the real loop (``Trainer.fit``) on a uint8 set resident in memory."""

    def __init__(self, backbone: str, batch: int, size: int, precision: str) -> None:
        g = torch.Generator().manual_seed(0)
        n = 4096
        self.data = ImageSet(
            torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            torch.randint(0, 10, (n,), generator=g),
            [str(i) for i in range(10)],
        )
        torch.manual_seed(0)
        self.method = Supervised(Network(backbone, 3, size, 10))
        self.batch, self.precision = batch, precision

    def times(self, steps: int) -> list[float]:
        cfg = TrainConfig(
            budget=f"{steps}steps", batch_size=self.batch, precision=self.precision, evals=1
        )
        return Trainer(cfg, progress=False).fit(self.method, self.data, None, None).step_seconds


def rates(
    backbone: str, batch: int, size: int, steps: int, rounds: int, precision: str
) -> tuple[float, float]:
    """(bare, loop) images/s: medians over ``rounds`` alternating rounds of ``steps``."""
    bare, loop = (
        BareStep(backbone, batch, size, precision),
        LoopSteps(backbone, batch, size, precision),
    )
    bare.times(2)  # warm-up: allocator, first-call dispatch
    loop.times(2)
    tb: list[float] = []
    tl: list[float] = []
    for _ in range(rounds):
        tb += bare.times(steps)
        tl += loop.times(steps)[1:]  # the first step of a fit carries its set-up
    return batch / statistics.median(tb), batch / statistics.median(tl)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--backbones", nargs="+", default=["convnet", "resnet18"])
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=8, help="steps per round")
    ap.add_argument("--rounds", type=int, default=6, help="alternating bare/loop rounds")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as Trainer.fit does: both sides under the same allocator
    precision = resolve_precision("auto", torch.device("cpu"))
    for bb in args.backbones:
        bare, loop = rates(bb, args.batch, args.size, args.steps, args.rounds, precision)
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
