"""Augmentation ops and policies: exactness, determinism, per-sample randomness, layouts."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image, ImageOps

import fewlabels.augment as augment
from fewlabels.augment import (
    POLICIES,
    Policy,
    build_policy,
    color_jitter,
    cutout,
    gaussian_blur,
    gaussian_noise,
    geometric,
    grayscale,
    hflip,
    ops,
    pad_crop,
    parse_policy,
    rand_augment,
    randaugment,
    random_resized_crop,
    rot90,
    solarize,
    vflip,
)
from fewlabels.core.errors import ConfigError


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Small ops on a busy 2-core machine run far faster on one thread than on two."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def images_u8(n: int = 8, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randint(0, 256, (n, c, size, size), generator=gen(seed), dtype=torch.uint8)


def images(n: int = 8, c: int = 3, size: int = 32, seed: int = 0) -> torch.Tensor:
    return images_u8(n, c, size, seed).float() / 255


def as_tuple(out: torch.Tensor | tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return out if isinstance(out, tuple) else (out,)


# ---- policies --------------------------------------------------------------------------
@pytest.mark.parametrize("name", list(POLICIES))
@pytest.mark.parametrize(("c", "size"), [(1, 8), (3, 8), (1, 32), (3, 32), (3, 64)])
def test_policy_shapes_dtype_range_layout(name: str, c: int, size: int) -> None:
    x = images_u8(6, c, size)
    pol = build_policy(name, image_size=size)
    assert isinstance(pol, Policy) and pol.name == name
    out = as_tuple(pol(x, gen()))
    assert len(out) == len(pol.outputs)
    assert sum(o.shape == x.shape for o in out) >= pol.num_views
    for o in out:
        if o.dim() == 1:  # rotation labels
            assert o.dtype == torch.int64 and o.shape == (6,)
            assert int(o.min()) >= 0 and int(o.max()) <= 3
            continue
        assert o.shape == x.shape and o.dtype == torch.float32
        assert o.is_contiguous(memory_format=torch.channels_last)
        assert torch.isfinite(o).all()
        assert float(o.min()) >= 0 and float(o.max()) <= 1


@pytest.mark.parametrize("name", list(POLICIES))
def test_policy_determinism(name: str) -> None:
    x = images_u8(16)
    pol = build_policy(name, image_size=32)
    a, b, c = (as_tuple(pol(x, gen(s))) for s in (1, 1, 2))
    assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))
    if name != "none":
        assert not all(torch.equal(u, v) for u, v in zip(a, c, strict=True))


def test_policy_generator_advances() -> None:
    x, g = images_u8(16), gen()
    pol = build_policy("weak", image_size=32)
    assert not torch.equal(pol(x, g), pol(x, g))


def test_none_policy_is_conversion() -> None:
    x = images_u8()
    assert torch.equal(build_policy("none")(x, gen()), x.float() / 255)


def test_twoview_views_differ_and_min_scale() -> None:
    pol = build_policy("twoview", image_size=32, min_scale=0.5)
    v1, v2 = pol(images_u8(8), gen())
    assert pol.num_views == 2 and not torch.equal(v1, v2)


def test_rotation_policy_labels_match_content() -> None:
    x = images_u8(32)
    y, k = build_policy("rotation")(x, gen(3))
    xf = x.float() / 255
    for i in range(len(x)):  # each output is a rotated copy of the sample or its mirror
        cands = [torch.rot90(v, int(k[i]), dims=(1, 2)) for v in (xf[i], xf[i].flip(2))]
        assert any(torch.equal(y[i], cand) for cand in cands)
    assert len(set(k.tolist())) > 1


def test_denoise_policy() -> None:
    x = images_u8(16)
    noisy, clean = build_policy("denoise")(x, gen())
    xf = x.float() / 255
    for i in range(len(x)):
        assert torch.equal(clean[i], xf[i]) or torch.equal(clean[i], xf[i].flip(2))
    diff = noisy - clean
    assert 0.05 < float(diff.std()) < 0.12


def test_unknown_policy_and_option() -> None:
    with pytest.raises(ConfigError, match="unknown augmentation policy 'fancy'; choose from"):
        build_policy("fancy")
    with pytest.raises(ConfigError, match="weak"):
        build_policy("weak", bogus=1)


def test_policy_options_in_the_name() -> None:
    assert parse_policy("strong:flip=0,cutout=2,magnitude=4.5,mode=zeros") == (
        "strong",
        {"flip": 0, "cutout": 2, "magnitude": 4.5, "mode": "zeros"},
    )
    assert parse_policy("weak") == ("weak", {})
    with pytest.raises(ConfigError, match="expected key=value"):
        build_policy("weak:flip")
    with pytest.raises(ConfigError, match="weak"):
        build_policy("weak:bogus=1")
    # flip=0: every output is a translation of its input, never a mirror
    x = images_u8()
    y = (build_policy("weak:flip=0,pad=0")(x, gen()) * 255).round().to(torch.uint8)
    assert torch.equal(y, x)
    y = (build_policy("weak:pad=0")(x, gen()) * 255).round().to(torch.uint8)
    mirrored = [torch.equal(y[i], x[i].flip(2)) for i in range(len(x))]
    assert any(mirrored) and not all(mirrored)
    assert "flip" not in build_policy("strong:flip=0").description


def test_ssl_views_leave_blur_out_at_32px_unless_asked() -> None:
    # the CIFAR recipes drop blur; larger images keep SimCLR's / BYOL's probabilities
    assert "blur p=0.0" in build_policy("simclr", image_size=32).description
    assert "blur p=0.5" in build_policy("simclr", image_size=96).description
    assert "blur p=0.5" in build_policy("simclr:blur_p=0.5", image_size=32).description
    assert "blur p=0.0/0.0" in build_policy("twoview", image_size=32).description
    assert "blur p=1.0/0.1" in build_policy("twoview", image_size=64).description
    # no blur: a view with neither jitter nor grayscale is a pure crop of the image
    x = torch.zeros(8, 3, 32, 32, dtype=torch.uint8)
    x[:, :, ::2] = 255  # stripes that any blur would smear into greys
    pol = build_policy("simclr:min_scale=1.0,flip=0", image_size=32, jitter=(0, 0, 0, 0))
    v1, _ = pol(x, gen())
    grey = ((v1 > 0.01) & (v1 < 0.99)).float().mean()
    assert grey < 0.05, grey  # with blur_p=1.0 every pixel of these stripes turns grey


def test_policy_accepts_float_input() -> None:
    x = images_u8()
    pol = build_policy("weak")
    assert torch.equal(pol(x, gen()), pol(x.float() / 255, gen()))


# ---- flips, translation, rot90 ----------------------------------------------------------
@pytest.mark.parametrize(("op", "dim"), [(hflip, 3), (vflip, 2)])
def test_flips_exact_and_per_sample(op, dim: int) -> None:
    x = images(64)
    assert torch.equal(op(x, gen(), p=1.0), torch.flip(x, (dim,)))
    assert torch.equal(op(x, gen(), p=0.0), x)
    y = op(x, gen(), p=0.5)
    flipped = [torch.equal(y[i], x[i].flip(dim - 1)) for i in range(len(x))]
    kept = [torch.equal(y[i], x[i]) for i in range(len(x))]
    assert all(f or k for f, k in zip(flipped, kept, strict=True))
    assert any(flipped) and any(kept)


def test_rot90_exact() -> None:
    x = images(32, size=8)
    y, k = rot90(x, gen())
    assert k.dtype == torch.int64 and set(k.tolist()) == {0, 1, 2, 3}
    for i in range(len(x)):
        assert torch.equal(y[i], torch.rot90(x[i], int(k[i]), dims=(1, 2)))
    with pytest.raises(ValueError, match="square"):
        rot90(torch.zeros(2, 3, 4, 6), gen())


@pytest.mark.parametrize("mode", ["reflect", "replicate", "zeros"])
def test_pad_crop_zero_offset_is_identity(mode: str) -> None:
    x = images(4)
    assert torch.equal(pad_crop(x, gen(), pad=0, mode=mode), x)
    xcl = x.contiguous(memory_format=torch.channels_last)
    out = pad_crop(xcl, gen(), pad=0, mode=mode)
    assert torch.equal(out, x) and out.is_contiguous(memory_format=torch.channels_last)


@pytest.mark.parametrize(("mode", "pad_mode"), [("reflect", "reflect"), ("zeros", "constant")])
@pytest.mark.parametrize("flip_p", [0.0, 0.5])
def test_pad_crop_is_a_crop_of_the_padded_image(mode: str, pad_mode: str, flip_p: float) -> None:
    pad, size = 3, 8
    x = images(24, size=size)
    y = pad_crop(x, gen(), pad=pad, mode=mode, flip_p=flip_p)
    shifts = set()
    for i in range(len(x)):
        src = [x[i : i + 1], x[i : i + 1].flip(3)] if flip_p else [x[i : i + 1]]
        found = None
        for f, s in enumerate(src):
            big = F.pad(s, (pad,) * 4, mode=pad_mode)[0]
            for dy in range(2 * pad + 1):
                for dx in range(2 * pad + 1):
                    if torch.equal(big[:, dy : dy + size, dx : dx + size], y[i]):
                        found = (f, dy, dx)
        assert found is not None
        shifts.add(found)
    assert len(shifts) > 5  # per-sample offsets


def test_pad_crop_uint8_matches_float() -> None:
    x = images_u8(8)
    a = pad_crop(x, gen(), pad=4, flip_p=0.5)
    assert a.dtype == torch.uint8
    assert torch.equal(a.float() / 255, pad_crop(x.float() / 255, gen(), pad=4, flip_p=0.5))


# ---- resampling -----------------------------------------------------------------------
def test_random_resized_crop_full_crop_is_identity_and_size() -> None:
    x = images(4)
    y = random_resized_crop(x, gen(), scale=(1.0, 1.0), ratio=(1.0, 1.0))
    assert torch.allclose(y, x, atol=1e-5)
    assert random_resized_crop(x, gen(), size=16).shape == (4, 3, 16, 16)
    assert random_resized_crop(x, gen(), size=(8, 12)).shape == (4, 3, 8, 12)
    z = random_resized_crop(x[:, :, :, :16], gen(), size=8, scale=(0.9, 1.0))  # wide input
    assert z.shape == (4, 3, 8, 8) and torch.isfinite(z).all()


def test_random_resized_crop_per_sample() -> None:
    x = images(1).expand(16, -1, -1, -1)
    y = random_resized_crop(x, gen(), scale=(0.2, 0.6))
    assert len({tuple(v.flatten()[:8].tolist()) for v in y}) == 16


# ---- colour ------------------------------------------------------------------------------
@pytest.mark.parametrize("c", [1, 3])
def test_color_jitter_zero_strength_is_identity(c: int) -> None:
    x = images(8, c)
    assert torch.equal(color_jitter(x, gen(), 0, 0, 0, 0, p=1.0), x)
    assert torch.equal(color_jitter(x, gen(), 0.4, 0.4, 0.4, 0.1, p=0.0), x)
    y = color_jitter(x, gen(), 0.4, 0.4, 0.4, 0.1, p=1.0)
    assert y.shape == x.shape and float(y.min()) >= 0 and float(y.max()) <= 1
    assert sum(not torch.allclose(y[i], x[i]) for i in range(len(x))) == len(x)


def test_color_jitter_hue_keeps_gray_and_brightness_scales() -> None:
    x = images(8, 1).expand(-1, 3, -1, -1).contiguous()  # gray: hue/saturation leave it
    y = color_jitter(x, gen(), 0, 0, 0.5, 0.5, p=1.0)
    assert torch.allclose(y, x, atol=1e-5)
    dark = torch.full((8, 3, 4, 4), 0.25)
    b = color_jitter(dark, gen(), 0.5, 0, 0, 0, p=1.0)[:, 0, 0, 0]
    assert float(b.min()) >= 0.125 - 1e-6 and float(b.max()) <= 0.375 + 1e-6
    assert len(set(b.tolist())) == 8


def test_grayscale() -> None:
    x = images(16)
    y = grayscale(x, gen(), p=1.0)
    assert y.shape == x.shape and torch.equal(y[:, 0], y[:, 1]) and torch.equal(y[:, 1], y[:, 2])
    want = 0.299 * x[:, 0] + 0.587 * x[:, 1] + 0.114 * x[:, 2]
    assert torch.allclose(y[:, 0], want, atol=1e-6)
    assert torch.equal(grayscale(x, gen(), p=0.0), x)
    g1 = images(4, 1)
    assert torch.equal(grayscale(g1, gen(), p=1.0), g1)
    z = grayscale(x, gen(), p=0.5)
    gray = [torch.equal(z[i, 0], z[i, 1]) for i in range(len(x))]
    assert any(gray) and not all(gray)


def test_solarize_inverts_above_threshold() -> None:
    x = images(8)
    y = solarize(x, gen(), p=1.0, threshold=0.5)
    assert torch.equal(y, torch.where(x >= 0.5, 1 - x, x))
    assert torch.equal(solarize(x, gen(), p=0.0), x)


# ---- filtering, noise, occlusion ---------------------------------------------------------
@pytest.mark.parametrize("size", [2, 8, 32])
def test_gaussian_blur(size: int) -> None:
    x = images(8, size=size)
    assert torch.equal(gaussian_blur(x, gen(), p=0.0), x)
    flat = torch.full((4, 3, size, size), 0.3)
    assert torch.allclose(gaussian_blur(flat, gen(), p=1.0, kernel_size=9), flat, atol=1e-6)
    y = gaussian_blur(x, gen(), sigma=(1.0, 2.0), p=1.0, kernel_size=5)
    assert y.shape == x.shape
    if size >= 8:
        assert float(y.std()) < float(x.std())  # smoother
        tiny = gaussian_blur(x, gen(), sigma=(0.01, 0.01), p=1.0)
        assert torch.allclose(tiny, x, atol=1e-6)
        half = gaussian_blur(x, gen(), sigma=(2.0, 2.0), p=0.5)
        kept = [torch.equal(half[i], x[i]) for i in range(len(x))]
        assert any(kept) and not all(kept)


def test_gaussian_noise() -> None:
    x = torch.full((8, 3, 16, 16), 0.5)
    assert torch.equal(gaussian_noise(x, gen(), std=0.0), x)
    y = gaussian_noise(x, gen(), std=0.1)
    assert 0.08 < float((y - x).std()) < 0.12
    assert torch.equal(gaussian_noise(x, gen(), std=0.1, p=0.0), x)


def test_cutout() -> None:
    x = torch.zeros(32, 3, 16, 16)
    y = cutout(x, gen(), size=8, p=1.0, fill=0.5)
    area = (y[:, 0] == 0.5).flatten(1).sum(1)
    assert int(area.min()) >= 16 and int(area.max()) <= 64
    assert len(set(area.tolist())) > 1
    assert torch.equal(y[:, 0], y[:, 2])
    assert torch.equal(cutout(x, gen(), size=8, p=0.0), x)


# ---- RandAugment -----------------------------------------------------------------------
@pytest.mark.parametrize("magnitude", [None, 10, 30])
@pytest.mark.parametrize(("c", "size"), [(1, 8), (3, 32)])
def test_rand_augment(magnitude: float | None, c: int, size: int) -> None:
    x = images(32, c, size)
    y = rand_augment(x, gen(), num_ops=2, magnitude=magnitude)
    assert y.shape == x.shape and torch.isfinite(y).all()
    assert float(y.min()) >= 0 and float(y.max()) <= 1
    assert torch.equal(y, rand_augment(x, gen(), num_ops=2, magnitude=magnitude))
    changed = [not torch.equal(y[i], x[i]) for i in range(len(x))]
    assert sum(changed) > len(x) // 2
    assert torch.equal(rand_augment(x, gen(), num_ops=0), x)


def _pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(x.permute(1, 2, 0).numpy())


def test_equalize_and_posterize_match_pil() -> None:
    x = images_u8(4, 3, 16)
    x[1] = x[1] // 4 + 100  # narrow histogram
    x[2, 1] = 7  # a constant channel
    xf = x.float() / 255
    eq = (randaugment._equalize(xf) * 255).round().to(torch.uint8)
    v = torch.full((4,), 1.0)  # posterize to 4 bits
    post = (randaugment._color_op("posterize", xf, v) * 255).round().to(torch.uint8)
    for i in range(len(x)):
        want = np.asarray(ImageOps.equalize(_pil(x[i])))
        assert np.array_equal(eq[i].permute(1, 2, 0).numpy(), want)
        want = np.asarray(ImageOps.posterize(_pil(x[i]), 4))
        assert np.array_equal(post[i].permute(1, 2, 0).numpy(), want)


def test_rand_augment_takes_channels_last_images() -> None:
    """A single channels_last image (a one-sample subset of a batch) equalizes as NCHW does."""
    xf = images(3)
    xcl = xf.contiguous(memory_format=torch.channels_last)
    assert torch.equal(randaugment._equalize(xcl[:1]), randaugment._equalize(xf[:1]))
    for seed in range(4):  # seed 2 hands equalize a single image, twice
        y = rand_augment(xcl, gen(seed), num_ops=3)
        assert y.shape == xf.shape and y.min() >= 0 and y.max() <= 1


def test_autocontrast_stretches_each_channel() -> None:
    x = images(4) * 0.5 + 0.2
    y = randaugment._autocontrast(x)
    assert torch.allclose(y.amin((2, 3)), torch.zeros(4, 3), atol=1e-6)
    assert torch.allclose(y.amax((2, 3)), torch.ones(4, 3), atol=1e-6)
    flat = torch.full((2, 3, 4, 4), 0.3)
    assert torch.equal(randaugment._autocontrast(flat), flat)


def test_geometric_identity_at_zero_strength() -> None:
    x = images(5)
    theta = randaugment._geom_theta(torch.arange(5), torch.zeros(5), 32, 32)
    assert torch.allclose(geometric._affine(x, theta, fill=0.5), x, atol=1e-5)


def test_ops_module_gathers_the_public_ops() -> None:
    """``fewlabels.augment.ops`` keeps naming every op the package exports."""
    for name in augment.__all__:
        if name not in ("POLICIES", "Policy", "build_policy", "parse_policy", "unmirrored"):
            assert getattr(ops, name) is getattr(augment, name)
    assert ops.RAND_OPS == ops.COLOR_OPS + ops.GEOM_OPS


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu_generator_use() -> None:
    x = images_u8(16).cuda()
    for name in POLICIES:
        pol = build_policy(name)
        cpu_gen = as_tuple(pol(x, gen(4)))  # CPU generator, CUDA data
        dev_gen = torch.Generator(device="cuda").manual_seed(4)
        a, b = as_tuple(pol(x, dev_gen)), as_tuple(pol(x, torch.Generator("cuda").manual_seed(4)))
        assert all(o.device.type == "cuda" for o in cpu_gen + a)
        assert all(torch.equal(u, v) for u, v in zip(a, b, strict=True))


def test_ssl_views_resized_to_out_size() -> None:
    # the whole image (min_scale=1, no flip, no jitter) resized from 32 to 16 px by the
    # bilinear crop: each output pixel is the mean of its 2 x 2 block
    x = images_u8(8)
    x = x[:, :1].expand(-1, 3, -1, -1).contiguous()  # grey, so grayscale changes nothing
    for name in ("simclr", "twoview"):
        pol = build_policy(f"{name}:min_scale=1.0,flip=0,out_size=16", jitter=(0, 0, 0, 0))
        v1, v2 = pol(x, gen())
        assert v1.shape == v2.shape == (8, 3, 16, 16)
        assert "resized to 16 px" in pol.description
        want = torch.nn.functional.avg_pool2d(x.float() / 255, 2)
        assert torch.allclose(v1, want, atol=1e-5)
    assert build_policy("twoview")(x, gen())[0].shape == (8, 3, 32, 32)
    assert not build_policy("twoview:out_size=16").uses_progress
    for bad in ("4", "big", "24..16", "4..32", "24..", "true"):
        with pytest.raises(ConfigError, match="out_size must be a side in pixels >= 8 or a range"):
            build_policy(f"twoview:out_size={bad}")


def test_ssl_views_grow_with_training_progress() -> None:
    # "16..32": 16 px at the start, up in steps of 4 px, 32 px from 85% of training on
    pol = build_policy("simclr:out_size=16..32")
    assert pol.uses_progress and "16 px growing to 32 px at 85% of training" in pol.description
    x = images_u8(4)
    sides = [pol(x, gen(), p)[0].shape[-1] for p in (0.0, 0.2, 0.4, 0.6, 0.8, 0.85, 0.99)]
    assert sides == [16, 16, 20, 24, 28, 32, 32]
    assert pol(x, gen())[1].shape[-1] == 32  # outside training: the final side
    # the same generator state gives the same crops, whatever the side
    assert torch.equal(pol(x, gen(5), 0.5)[0], pol(x, gen(5), 0.5)[0])
    same = build_policy("twoview:out_size=24..24")
    assert not same.uses_progress and "resized to 24 px)" in same.description
