"""The GPU check (run by ``benchmarks/gpu_check.sh``): every method for a few steps on CUDA,
then the SimCLR ResNet-18 step timed against the bare backbone and against itself in fp32.

Prints one JSON line per result (``scripts/record.py gpu`` appends them, with the GPU's
name, torch version and commit, to ``benchmarks/results/gpu.jsonl``):

- ``{"check": "method", "method", "kind", "steps", "ok", "seconds", "precision", ...}``
  for each registered method (``error`` instead of ``ok: true`` when it failed);
- ``{"check": "simclr_resnet18", "loop_img_s", "bare_two_view_img_s", "ratio",
  "loop_fp32_img_s", "speedup_over_fp32", ...}``: images through the backbone per second
  (two views of each image), the loop's per-step rate measured as the difference between a
  short and a longer fit, so set-up (moving the model and data to the GPU) is left out.

``--check`` only says whether CUDA is usable (exit 3 and one line when it is not).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

import torch
import torch.nn.functional as F

from fewlabels.core.precision import autocast, resolve_precision
from fewlabels.data.imageset import ImageSet
from fewlabels.methods import METHODS, build_method
from fewlabels.models import Network
from fewlabels.train.loop import TrainConfig, Trainer

NO_CUDA = 3  # exit status when there is no usable GPU
DEVICE = "cuda"  # a test of this script itself may set "cpu"


def sync() -> None:
    """Wait for the device's queued work (timings must not stop at a kernel launch)."""
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def cuda_problem() -> str | None:
    """Why CUDA cannot be used here, or None when it can."""
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build (no CUDA support)"
    if not torch.cuda.is_available():
        return f"torch {torch.__version__} (CUDA {torch.version.cuda}) sees no CUDA device"
    return None


def images(n: int, size: int, labeled: bool, seed: int) -> ImageSet:
    """``n`` random uint8 RGB images, labeled 0-9 or unlabeled (-1)."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, 256, (n, 3, size, size), dtype=torch.uint8, generator=g)
    y = torch.randint(0, 10, (n,), generator=g) if labeled else torch.full((n,), -1)
    return ImageSet(x, y, [str(i) for i in range(10)])


def fit_seconds(method: torch.nn.Module, kind: str, cfg: TrainConfig, size: int) -> float:
    """Wall-clock of one ``Trainer.fit`` on CUDA, the GPU's queue drained at both ends."""
    labeled = images(512, size, True, 0) if kind != "self-supervised" else None
    unlabeled = images(2048, size, False, 1) if kind != "supervised" else None
    trainer = Trainer(cfg, device=DEVICE, progress=False)
    sync()
    t0 = time.perf_counter()
    trainer.fit(method, labeled, unlabeled, None, resume=False)  # type: ignore[arg-type]
    sync()
    return time.perf_counter() - t0


def method_rows(steps: int, batch: int, size: int) -> list[dict[str, Any]]:
    """Every registered method, ``steps`` steps on CUDA with a small ConvNet."""
    rows = []
    for name, cls in METHODS.items():
        kind = str(getattr(cls, "kind", ""))
        row: dict[str, Any] = {"check": "method", "method": name, "kind": kind, "steps": steps}
        row.update(backbone="convnet", batch=batch, size=size, precision="auto")
        try:
            torch.manual_seed(0)
            method = build_method(name, Network("convnet", 3, size, 10))
            cfg = TrainConfig(budget=f"{steps}steps", batch_size=batch, evals=0)
            row["seconds"] = round(fit_seconds(method, kind, cfg, size), 3)
            params = [p for p in method.parameters() if p.requires_grad]
            row["ok"] = bool(params) and all(p.device.type == DEVICE for p in params)
            row["finite"] = all(bool(torch.isfinite(p).all()) for p in params)
        except Exception as e:  # one broken method must not hide the others
            row["ok"], row["error"] = False, f"{type(e).__name__}: {str(e).splitlines()[0]}"
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def bare_rate(batch: int, size: int, precision: str, steps: int) -> float:
    """Images/s of the bare ResNet-18 step on ``2 x batch`` ready images (two views):
    forward + cross-entropy + backward + SGD, channels_last, in ``precision``."""
    torch.manual_seed(0)
    dev = torch.device(DEVICE)
    net = Network("resnet18", 3, size, 10).to(dev, memory_format=torch.channels_last)
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    x = torch.rand(2 * batch, 3, size, size, device=dev).contiguous(
        memory_format=torch.channels_last
    )
    y = torch.randint(0, 10, (2 * batch,), device=dev)

    def run(n: int) -> None:
        for _ in range(n):
            with autocast(precision, dev):
                loss = F.cross_entropy(net(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    run(5)  # warm-up: kernels chosen, memory pooled
    sync()
    t0 = time.perf_counter()
    run(steps)
    sync()
    return 2 * batch * steps / (time.perf_counter() - t0)


def loop_rate(batch: int, size: int, precision: str, steps: int) -> float:
    """Images/s (two views per image) of SimCLR's loop step with ResNet-18: a fit of
    ``5 + steps`` steps minus a fit of 5, so the fit's set-up cancels out."""

    def fit(n: int) -> float:
        torch.manual_seed(0)
        method = build_method("simclr", Network("resnet18", 3, size, 10))
        cfg = TrainConfig(budget=f"{n}steps", batch_size=batch, precision=precision, evals=0)
        return fit_seconds(method, "self-supervised", cfg, size)

    fit(3)  # warm-up
    short, long = fit(5), fit(5 + steps)
    return 2 * batch * steps / max(long - short, 1e-9)


def simclr_row(batch: int, size: int, steps: int) -> dict[str, Any]:
    """The SimCLR ResNet-18 step against the bare backbone and against itself in fp32."""
    precision = resolve_precision("auto", torch.device(DEVICE))
    bare = bare_rate(batch, size, precision, steps)
    loop = loop_rate(batch, size, precision, steps)
    loop32 = loop_rate(batch, size, "fp32", steps)
    bare32 = bare_rate(batch, size, "fp32", steps)
    row = {"check": "simclr_resnet18", "method": "simclr", "backbone": "resnet18"}
    row.update(batch=batch, size=size, steps=steps, precision=precision)
    row.update(
        bare_two_view_img_s=round(bare, 1),
        loop_img_s=round(loop, 1),
        ratio=round(loop / bare, 3),
        target=0.9,
        bare_fp32_img_s=round(bare32, 1),
        loop_fp32_img_s=round(loop32, 1),
        speedup_over_fp32=round(loop / loop32, 3),
    )
    print(json.dumps(row), flush=True)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="only check that CUDA is usable")
    ap.add_argument("--method-steps", type=int, default=3)
    ap.add_argument("--batch", type=int, default=256, help="SimCLR images per step")
    ap.add_argument("--steps", type=int, default=30, help="timed SimCLR steps")
    args = ap.parse_args()
    problem = cuda_problem()
    if problem is not None:
        print(f"gpu_check: no GPU to check: {problem}; nothing was run", file=sys.stderr)
        return NO_CUDA
    if args.check:
        return 0
    torch.backends.cudnn.benchmark = True
    rows = method_rows(args.method_steps, 32, 32)
    simclr_row(args.batch, 32, args.steps)
    failed = [r["method"] for r in rows if not r.get("ok")]
    if failed:
        print(f"gpu_check: failed on CUDA: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
