"""Pretraining throughput of the full self-supervised loop step against the bare backbone.

The yardstick (GUIDE section 4) is the bare backbone's two-view step in its fastest
correct setting: forward + cross-entropy through a linear layer + backward + SGD on
2 x batch ready float images, bf16 autocast and channels_last when the CPU has native
bf16. The loop step is ``Trainer.fit`` on a uint8 ImageSet resident in memory: index
sampling, gathering, the method's batched augmentation, its heads and loss, backward,
the optimiser, the schedule and ``after_step``. Images/s count source images x views
(a ``denoise`` pair or a single autoencoder view counts once; RotNet's four rotations of
each image count four times). A method whose backbone sees more than two views per image
(RotNet: 4 x batch) is also timed against the bare backbone on that many images
(``bare_same_images_img_s``, ``ratio_same_images``), since the bare step itself can run
slower per image on the larger batch; ``ratio`` stays the target's yardstick. A method that
also runs a frozen momentum copy of its backbone over both views (BYOL, DINO) does a third
backbone pass that the two-view yardstick leaves out (a forward costs about a third of a
forward + backward: on the Xeon the bare step with it ran at 0.76-0.79 of the bare rate);
it is also timed against the bare step plus that no-grad forward
(``bare_with_teacher_img_s``, ``ratio_with_teacher``). Each method
runs with the settings ``bench_ssl.py`` pretrains it with (optimiser, learning rate,
gradient clip, projector widths, backbone options, which the bare step then takes too), but
with views at the images' own size (a recipe's smaller ``out_size`` crops are left out).
Bare and loop steps are timed in alternating rounds (loop, bare, loop, bare, ...), each
rate the median over all its rounds' steps, so a drifting machine slows both alike. Prints
one JSON line per method: {"method", "backbone", "batch", "bare_two_view_img_s",
"loop_img_s", "ratio", "target": 0.9, ...}.

    python benchmarks/bench_ssl_step.py --methods simclr byol vae --backbone fastnet-s
"""

from __future__ import annotations

import argparse
import json
import statistics

import torch
from bench_ssl import METHOD_BACKBONE
from bench_train_step import BareStep

from fewlabels.augment import build_policy, parse_policy
from fewlabels.core.budget import Budget
from fewlabels.core.precision import resolve_precision
from fewlabels.core.process import keep_freed_memory
from fewlabels.data.imageset import ImageSet
from fewlabels.methods import METHODS, build_method, method_class
from fewlabels.methods.rules import Facts
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer
from fewlabels.train.resolve import generic_rules


def ssl_methods() -> list[str]:
    """Every registered method whose kind is self-supervised."""
    return [n for n, c in METHODS.items() if getattr(c, "kind", "") == "self-supervised"]


def recipe(name: str, backbone: str, batch: int, size: int) -> tuple[dict, dict]:
    """The method options and optimiser settings a pretraining run of ``name`` resolves to
    for ``size`` px images at ``batch`` (the settings' rules, which bench_ssl.py's recipes
    became), with views at the images' own size: a recipe that pretrains on smaller crops
    (``out_size``) would otherwise be timed on fewer pixels than the bare two-view
    yardstick, and the ratio would no longer compare like with like."""
    cls = method_class(name)
    net = Network(backbone, 3, size, 10, backbone_kwargs=METHOD_BACKBONE.get((name, backbone), {}))
    facts = Facts(
        image_size=size, channels=3, num_classes=10, labeled=0, unlabeled=4096,
        budget=Budget.parse("1000steps"), kind=cls.kind, method=name, backbone=backbone,
        feature_dim=net.feature_dim, batch=batch,
    )  # fmt: skip
    kw = {k: r.value for k, r in cls.Config.resolve(facts).items()}
    if isinstance(kw.get("augment"), str):
        policy, opts = parse_policy(kw["augment"])
        opts.pop("out_size", None)
        kw["augment"] = policy + (
            ":" + ",".join(f"{k}={v}" for k, v in opts.items()) if opts else ""
        )
    given = {"backbone": backbone, "train.batch_size": batch}
    rules, _ = generic_rules(facts, given, method_rules=cls.Config.train_rules)
    wanted = ("optimizer", "lr", "weight_decay", "grad_clip")
    train = {k: rules[f"train.{k}"].value for k in wanted if f"train.{k}" in rules}
    return kw, train


def teacher_sees_both_views(method: torch.nn.Module) -> bool:
    """Whether ``method`` holds a frozen copy of its backbone and runs it over both views each
    step (BYOL, DINO); MoCo v2 in its default asymmetric form runs each network on one."""
    frozen = [
        m
        for m in method.modules()
        if isinstance(m, Network) and not any(p.requires_grad for p in m.parameters())
    ]
    return bool(frozen) and bool(getattr(method, "symmetric", True))


class LoopSteps:
    """``Trainer.fit`` of one method on resident uint8 images, with bench_ssl's settings."""

    def __init__(self, name: str, backbone: str, batch: int, size: int, precision: str) -> None:
        g = torch.Generator().manual_seed(0)
        n = 4096
        self.data = ImageSet(
            torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g),
            torch.full((n,), -1, dtype=torch.long),
            [str(i) for i in range(10)],
        )
        torch.manual_seed(0)
        self.kwargs, self.train = recipe(name, backbone, batch, size)  # what is timed
        self.backbone_kwargs = METHOD_BACKBONE.get((name, backbone), {})
        net = Network(backbone, 3, size, 10, backbone_kwargs=self.backbone_kwargs)
        self.method = build_method(name, net, **self.kwargs)
        self.views = self.method.unlabeled_copies * sum(
            build_policy(p, image_size=size).num_views for p in self.method.views["unlabeled"]
        )
        self.batch, self.precision = batch, precision

    def times(self, steps: int) -> list[float]:
        cfg = TrainConfig(
            budget=f"{steps + 1}steps",
            batch_size=self.batch,
            precision=self.precision,
            evals=0,
            **self.train,
        )
        res = Trainer(cfg, progress=False).fit(self.method, None, self.data, None)
        return res.step_seconds[1:]  # the first step of a fit carries its set-up


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--methods", nargs="+", default=None, help="default: every SSL method")
    ap.add_argument("--backbone", default="convnet")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--steps", type=int, default=10, help="timed steps per round")
    ap.add_argument("--rounds", type=int, default=2, help="alternating loop/bare rounds")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()  # as the CLI does: both sides under the same allocator
    precision = resolve_precision("auto", torch.device("cpu"))
    names = args.methods or ssl_methods()
    bare = BareStep(args.backbone, 2 * args.batch, args.size, precision)  # two views
    bare.times(3)  # warm-up: allocator, first-call dispatch
    for name in names:
        row: dict[str, object] = {
            "method": name,
            "backbone": args.backbone,
            "batch": args.batch,
            "size": args.size,
            "precision": precision,
        }
        try:
            loop = LoopSteps(name, args.backbone, args.batch, args.size, precision)
            row.update(loop.train)
            if loop.kwargs:  # what was timed: views at the images' own size
                row["method_kwargs"] = loop.kwargs
            bk = loop.backbone_kwargs  # the recipe's backbone options: the bare step takes them
            if bk:
                row["backbone_kwargs"] = bk
            loop.times(2)  # warm-up
            own = bare
            if bk:
                own = BareStep(
                    args.backbone, 2 * args.batch, args.size, precision, backbone_kwargs=bk
                )
                own.times(3)
            same = None  # the bare step on as many images as the loop's backbone sees
            if loop.views > 2:
                n_same = loop.views * args.batch
                same = BareStep(args.backbone, n_same, args.size, precision, backbone_kwargs=bk)
                same.times(3)
            teach = None  # the bare step plus the teacher's no-grad forward over both views
            if teacher_sees_both_views(loop.method):
                teach = BareStep(
                    args.backbone,
                    2 * args.batch,
                    args.size,
                    precision,
                    backbone_kwargs=bk,
                    teacher=True,
                )
                teach.times(3)
            tl: list[float] = []
            tb: list[float] = []
            ts: list[float] = []
            tt: list[float] = []
            for _ in range(args.rounds):
                tl += loop.times(args.steps)
                tb += own.times(args.steps)
                if same is not None:
                    ts += same.times(args.steps)
                if teach is not None:
                    tt += teach.times(args.steps)
        except Exception as e:  # one broken method must not hide the others' figures
            row["error"] = f"{type(e).__name__}: {e}"
        else:
            bare_rate = 2 * args.batch / statistics.median(tb)
            loop_rate = args.batch * loop.views / statistics.median(tl)
            row.update(
                views=loop.views,
                rounds=args.rounds,
                steps_per_round=args.steps,
                bare_two_view_img_s=round(bare_rate, 1),
                loop_img_s=round(loop_rate, 1),
                ratio=round(loop_rate / bare_rate, 3),
                target=0.9,
            )
            if same is not None:
                same_rate = loop.views * args.batch / statistics.median(ts)
                row["bare_same_images_img_s"] = round(same_rate, 1)
                row["ratio_same_images"] = round(loop_rate / same_rate, 3)
            if teach is not None:
                teach_rate = 2 * args.batch / statistics.median(tt)
                row["bare_with_teacher_img_s"] = round(teach_rate, 1)
                row["ratio_with_teacher"] = round(loop_rate / teach_rate, 3)
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
