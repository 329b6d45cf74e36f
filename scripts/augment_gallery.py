"""Write one PNG per augmentation policy and docs/augmentations.md describing them.

python scripts/augment_gallery.py --out docs/img

Uses real CIFAR-10 test images from ../shared/data/cifar10 when present, else the scikit-learn
digits (8x8). Each PNG shows the originals in the top row and augmented draws below; the
Markdown page embeds them and lists the measured throughput of each policy.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see benchmarks/bench_augment.py

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import torch

from fewlabels.augment import POLICIES, build_policy

REPO = Path(__file__).resolve().parents[1]
CIFAR_TEST = REPO / ".." / "shared" / "data" / "cifar10" / "cifar-10-batches-bin" / "test_batch.bin"
CIFAR_CLASSES = (
    "airplane automobile bird cat deer dog frog horse ship truck".split()  # noqa: SIM905
)
DRAWS = 3  # augmented draws (rows, or row pairs for two-output policies) per figure


def load_images(n: int) -> tuple[torch.Tensor, list[str], str]:
    """``n`` uint8 images (N, C, H, W) of distinct classes where possible, their class
    names and the data set's name."""
    if CIFAR_TEST.is_file():
        raw = np.fromfile(CIFAR_TEST, dtype=np.uint8).reshape(-1, 1 + 3072)
        labels, imgs = raw[:, 0], raw[:, 1:].reshape(-1, 3, 32, 32)
        picks = [int(np.flatnonzero(labels == c)[0]) for c in range(min(n, 10))]
        return (
            torch.from_numpy(imgs[picks].copy()),
            [CIFAR_CLASSES[labels[i]] for i in picks],
            "CIFAR-10 (test set)",
        )
    from sklearn.datasets import load_digits

    d = load_digits()
    picks = [int(np.flatnonzero(d.target == c)[0]) for c in range(min(n, 10))]
    imgs = np.round(d.images[picks] * (255 / 16)).astype(np.uint8)[:, None]
    return torch.from_numpy(imgs), [str(d.target[i]) for i in picks], "scikit-learn digits"


def _show(ax: plt.Axes, img: torch.Tensor) -> None:
    arr = img.detach().float().clamp(0, 1).permute(1, 2, 0).numpy()
    if arr.shape[2] == 1:
        ax.imshow(arr[:, :, 0], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    else:
        ax.imshow(arr, interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])


def gallery(name: str, x: torch.Tensor, names: list[str], path: Path, seed: int = 0) -> None:
    """A grid: originals on top, then ``DRAWS`` augmented draws of policy ``name``."""
    pol = build_policy(name, image_size=x.shape[-1])
    g = torch.Generator().manual_seed(seed)
    rows: list[tuple[str, torch.Tensor, list[str] | None]] = [("original", x.float() / 255, None)]
    for d in range(DRAWS):
        out = pol(x, g)
        outs = out if isinstance(out, tuple) else (out,)
        if name == "rotation":
            img, k = outs
            rows.append((f"draw {d + 1}", img, [f"k={int(v)}" for v in k]))
            continue
        for label, o in zip(pol.outputs, outs, strict=True):
            rows.append((f"{label} {d + 1}" if len(outs) > 1 else f"draw {d + 1}", o, None))
    ncols = len(x)
    fig, axes = plt.subplots(
        len(rows), ncols, figsize=(1.1 * ncols + 0.6, 1.1 * len(rows) + 0.3), squeeze=False
    )
    for r, (label, imgs, titles) in enumerate(rows):
        for c in range(ncols):
            ax = axes[r, c]
            _show(ax, imgs[c])
            if r == 0:
                ax.set_title(names[c], fontsize=7)
            elif titles is not None:
                ax.set_title(titles[c], fontsize=7)
        axes[r, 0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(f"policy '{name}'", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _bench_module():
    spec = importlib.util.spec_from_file_location(
        "bench_augment", REPO / "benchmarks" / "bench_augment.py"
    )
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def speeds(reps: int) -> dict[str, dict[int, dict[str, object]]]:
    """Throughput per policy at 32 px, batch 256, with 1 and 2 threads."""
    bench = _bench_module()
    old = torch.get_num_threads()
    res: dict[str, dict[int, dict[str, object]]] = {n: {} for n in POLICIES}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for name in POLICIES:
                res[name][threads] = bench.measure(name, 256, 32, reps)
    finally:
        torch.set_num_threads(old)
    return res


OPS_TABLE = (
    ("`hflip`, `vflip`", "mirror with probability `p`"),
    (
        "`pad_crop`",
        "translation by up to `pad` px with `reflect` / `replicate` / `zeros` padding, "
        "optional fused flip; one gather, works on uint8",
    ),
    (
        "`random_resized_crop`",
        "area in `scale`, log-uniform aspect in `ratio` (10 tries, else the whole image), "
        "bilinear resize, optional fused flip; one `grid_sample`",
    ),
    (
        "`color_jitter`",
        "brightness, contrast, then saturation + hue as one 3x3 matrix (hue rotation in YIQ "
        "space), in this fixed order; 1-channel images get brightness and contrast only",
    ),
    ("`grayscale`", "ITU-R 601 luma, channel count kept"),
    (
        "`gaussian_blur`",
        "sigma uniform in `sigma` px; kernel about 10% of the side (odd, >= 3, capped at the "
        "side); grouped separable convolution over the selected samples",
    ),
    ("`solarize`", "`1 - x` for pixels >= `threshold`"),
    ("`gaussian_noise`", "N(0, std^2) noise, clamped"),
    ("`rot90`", "k x 90 degrees, k in {0, 1, 2, 3}; returns `(x, k)`"),
    ("`cutout`", "`size` x `size` grey square at a random centre"),
    (
        "`rand_augment`",
        "`num_ops` ops per sample from identity, autocontrast, equalize (PIL's algorithm, "
        "batched), brightness, colour, contrast, posterize, sharpness, solarize, rotate, "
        "shear x/y, translate x/y; magnitude `m` of 30, or random per sample (`None`); the "
        "geometric ops share one affine `grid_sample`",
    ),
)


INTRO = """\
# Augmentations

`fewlabels.augment` augments whole batches on the tensor's own device (CPU or GPU) with
per-sample random parameters. A policy is called as `policy(x_uint8_nchw, generator)`:
it converts uint8 to float32 in [0, 1] once, applies its ops and returns channels_last
float32 images (or a tuple). All randomness comes from the `torch.Generator` passed in, so
the same seed gives bit-identical output; the training loop seeds it from
`(seed, step, rank)`. Python loops run over op types or a handful of values, never over
samples.

```python
from fewlabels.augment import build_policy
weak = build_policy("weak", image_size=32)
x = weak(images_uint8, torch.Generator(device=images_uint8.device).manual_seed(0))
```

Unknown names raise `ConfigError`. Policies work down to 8x8 images (pad >= 1 px, blur
kernels capped at the image side).

A policy name may carry its options after a colon, wherever a method takes a policy
(`--config` method kwargs, a study's `kwargs:`): `weak:flip=0` translates without
mirroring, `strong:cutout=2` is the strong view with a 2 px cutout,
`simclr:min_scale=0.3` SimCLR's views with larger crops. Where a mirror image is another
class (digits, letters, signs), say so once for the data: `flip: false` in a config or
study file, `--no-flip` on the command line, `flip=False` in the Python API. Then every
view of every method, the online probe's and fine-tuning's included, takes `flip=0`
(`fewlabels.augment.unmirrored`; a policy's own `flip=` still wins), and test-time
augmentation, which averages over the mirror image, is refused. `examples/digits.yaml`
does this.

## Ops (`fewlabels.augment.ops`)

{ops_table}

## Policies
"""


def write_markdown(
    path: Path,
    img_dir: Path,
    dataset: str,
    res: dict[str, dict[int, dict[str, object]]] | None,
) -> None:
    """docs/augmentations.md: policy table, speeds and the galleries."""
    table = "\n".join(f"| {op} | {text} |" for op, text in OPS_TABLE)
    lines = [INTRO.format(ops_table="| op | what it does (per sample) |\n|---|---|\n" + table)]
    lines.append("| policy | returns | description |\n|---|---|---|")
    for name in POLICIES:
        pol = build_policy(name, image_size=32)
        lines.append(f"| `{name}` | {', '.join(pol.outputs)} | {pol.description} |")
    lines.append("")
    if res is not None:
        lines.append(
            "## Speed\n\nImages per second on this machine's CPU (2 cores, shared), 32x32 RGB, "
            "batch 256, median of 20 runs after warm-up; two-view policies count both views. "
            "`python benchmarks/bench_augment.py` measures them again.\n"
        )
        lines.append("| policy | 1 thread | 2 threads | target (2 threads) |\n|---|---|---|---|")
        for name in POLICIES:
            r1, r2 = res[name][1], res[name][2]
            target = r2["target"]
            lines.append(
                f"| `{name}` | {r1['img_per_s']:,} | {r2['img_per_s']:,} | "
                f"{'' if target is None else f'{target:,}'} |"
            )
        lines.append(
            "\nMeasured with `OMP_WAIT_POLICY=PASSIVE`. With OpenMP's default busy-waiting, "
            "two threads on two cores shared with other jobs collapse for these small kernels "
            "(strong fell to a few hundred images/s in a test run); set the variable before "
            "torch starts, or use one thread.\n"
        )
    lines.append(f"## Galleries\n\nTop row: originals ({dataset}); below: augmented draws.\n")
    img_dir, base = img_dir.resolve(), path.parent.resolve()
    rel = img_dir.relative_to(base) if img_dir.is_relative_to(base) else img_dir
    for name in POLICIES:
        lines.append(f"### `{name}`\n\n![{name}]({rel.as_posix()}/aug_{name}.png)\n")
    path.write_text("\n".join(lines))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=REPO / "docs" / "img", help="folder for PNGs")
    ap.add_argument(
        "--doc", type=Path, default=None, help="Markdown page (default: OUT/../augmentations.md)"
    )
    ap.add_argument("--n", type=int, default=8, help="images per row")
    ap.add_argument("--reps", type=int, default=20, help="timed runs per policy")
    ap.add_argument("--no-bench", action="store_true", help="skip the speed measurement")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    x, names, dataset = load_images(args.n)
    for name in POLICIES:
        path = args.out / f"aug_{name}.png"
        gallery(name, x, names, path)
        print(f"wrote {path}")
    res = None if args.no_bench else speeds(args.reps)
    doc = args.doc or args.out.parent / "augmentations.md"
    write_markdown(doc, args.out.resolve(), dataset, res)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()
