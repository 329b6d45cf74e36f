"""Backbones and Network: shapes on small and tiny images, gradients, channels_last,
bf16 autocast, stem selection, config round-trip, errors."""

from __future__ import annotations

import builtins
import json

import pytest
import torch
from torch import nn

from fewlabels.core.errors import ConfigError
from fewlabels.models import BACKBONES, Network, build_backbone
from fewlabels.models.registry import resolve_stem

NAMES = sorted(BACKBONES)
FEATURE_DIMS = {
    "convnet": 512,
    "fastnet": 256,
    "fastnet-s": 128,
    "wrn-28-2": 128,
    "wrn-45-2": 128,
    "resnet18": 512,
    "resnet34": 512,
    "resnet50": 2048,
}


def test_every_registered_backbone_is_tested():
    assert set(NAMES) == set(FEATURE_DIMS)


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("shape", [(2, 3, 32, 32), (2, 1, 8, 8)], ids=["32px", "8px"])
def test_backbone_forward_backward_channels_last_bf16(name, shape):
    torch.manual_seed(0)
    n, c, s, _ = shape
    bb = build_backbone(name, c, s)
    assert bb.feature_dim == FEATURE_DIMS[name]
    stages = bb.stages()
    assert len(stages) >= 3 and all(isinstance(m, nn.Module) for m in stages)
    # every parameter belongs to exactly one stage, so "last k stages" is well defined
    staged = [id(p) for m in stages for p in m.parameters()]
    assert len(staged) == len(set(staged)) == len(list(bb.parameters()))

    x = torch.randn(shape)
    bb.train()
    out = bb(x)
    assert out.shape == (n, bb.feature_dim)
    out.square().mean().backward()
    grads = [p.grad for p in bb.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)

    bb.eval()
    with torch.no_grad():
        ref = bb(x)
        assert torch.isfinite(ref).all()
        cl = bb.to(memory_format=torch.channels_last)(
            x.contiguous(memory_format=torch.channels_last)
        )
        torch.testing.assert_close(cl, ref, rtol=1e-4, atol=1e-4)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = bb(x.contiguous(memory_format=torch.channels_last))
        assert low.shape == ref.shape and torch.isfinite(low.float()).all()


def test_resnet_stems():
    assert resolve_stem("auto", 32) == "cifar"
    assert resolve_stem("auto", 96) == "imagenet"
    assert resolve_stem("cifar", 224) == "cifar"
    with pytest.raises(ConfigError, match="stem"):
        resolve_stem("tiny", 32)
    big = build_backbone("resnet18", 3, 96)  # auto -> imagenet stem
    assert isinstance(big.stem[-1], nn.MaxPool2d) and big.stem[0].kernel_size == (7, 7)
    small = build_backbone("resnet18", 3, 32)
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.stem)
    assert small.stem[0].kernel_size == (3, 3) and small.stem[0].stride == (1, 1)
    with torch.no_grad():
        assert big.eval()(torch.randn(2, 3, 96, 96)).shape == (2, 512)
        forced = build_backbone("resnet18", 1, 8, stem="imagenet").eval()
        assert forced(torch.randn(2, 1, 8, 8)).shape == (2, 512)


def test_fastnet_widths_and_tiny_stem():
    bb = build_backbone("fastnet", 1, 8, widths=(16, 32))
    assert bb.feature_dim == 32 and bb.stem[0].kernel_size == (3, 3)
    assert build_backbone("fastnet", 3, 32).stem[0].kernel_size == (2, 2)
    small = build_backbone("fastnet-s", 3, 32)
    assert [g.conv2.out_channels for g in small.groups] == [32, 128, 128]
    assert build_backbone("fastnet-s", 3, 32, widths=(8, 16)).feature_dim == 16
    with torch.no_grad():
        assert bb.eval()(torch.randn(2, 1, 8, 8)).shape == (2, 32)


def test_network_config_round_trip_and_normalisation():
    net = Network(
        "fastnet",
        3,
        32,
        10,
        mean=(0.4, 0.5, 0.6),
        std=(0.2, 0.25, 0.3),
        backbone_kwargs={"widths": (16, 32, 32)},
    )
    cfg = json.loads(json.dumps(net.config))
    assert cfg == net.config
    assert cfg["backbone_kwargs"] == {"widths": [16, 32, 32]}
    clone = Network.from_config(cfg)
    clone.load_state_dict(net.state_dict(), strict=True)
    x = torch.rand(2, 3, 32, 32)
    net.eval(), clone.eval()
    with torch.no_grad():
        torch.testing.assert_close(clone(x), net(x))
        assert net(x).shape == (2, 10)
        assert net.features(x).shape == (2, 32)
        xn = net.normalize(x.contiguous(memory_format=torch.channels_last))
        assert xn.is_contiguous(memory_format=torch.channels_last)
        torch.testing.assert_close(xn[:, 2], (x[:, 2] - 0.6) / 0.3)
    assert net.config is not net.config  # a copy: editing it cannot change the network


def test_network_defaults_and_encoder_only():
    net = Network("convnet", 1, 8, 0)
    assert isinstance(net.head, nn.Identity)
    assert net.mean.shape == (1, 1, 1, 1) and net.mean.item() == 0.5 and net.std.item() == 0.25
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 1, 8, 8)).shape == (2, net.feature_dim)
    with pytest.raises(ConfigError, match="mean and std"):
        Network("convnet", 3, 32, 10, mean=[0.5])


def test_unknown_backbone_and_bad_keyword():
    with pytest.raises(ConfigError, match=r"unknown backbone 'vgg'; choose from .*convnet"):
        build_backbone("vgg", 3, 32)
    with pytest.raises(ConfigError, match="unknown backbone"):
        Network("vgg", 3, 32, 10)
    with pytest.raises(ConfigError, match="convnet"):
        build_backbone("convnet", 3, 32, depth=7)


def test_timm_missing_is_a_config_error(monkeypatch):
    real_import = builtins.__import__

    def no_timm(name, *args, **kwargs):
        if name == "timm" or name.startswith("timm."):
            raise ImportError("No module named 'timm'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_timm)
    with pytest.raises(
        ConfigError, match=r"timm is not installed; pip install 'fewlabels\[timm\]'"
    ):
        build_backbone("timm:resnet18", 3, 32)


def test_convnet_small_maps_use_the_taps_that_see_the_image() -> None:
    # 8 px: blocks see 8, 4, 2, 1 px maps -> kernels 3, 3, 2 (no padding), 1
    net = build_backbone("convnet", 1, 8)
    convs = [b[0] for b in net.blocks]
    assert [c.kernel_size[0] for c in convs] == [3, 3, 2, 1]
    assert [c.padding[0] for c in convs] == [1, 1, 0, 0]
    assert [b[0].kernel_size[0] for b in build_backbone("convnet", 3, 32).blocks] == [3] * 4
    # the same function as the padded 3x3 kernels: a 3x3/pad-1 conv on a 1x1 map is its
    # centre tap; a 3x3/stride-2/pad-1 conv on a 2x2 map is its lower-right 2x2 taps
    torch.manual_seed(0)
    w = torch.randn(5, 4, 3, 3)
    x1, x2 = torch.randn(2, 4, 1, 1), torch.randn(2, 4, 2, 2)
    full1 = torch.nn.functional.conv2d(x1, w, padding=1)
    assert torch.allclose(full1, torch.nn.functional.conv2d(x1, w[:, :, 1:2, 1:2]), atol=1e-6)
    full2 = torch.nn.functional.conv2d(x2, w, stride=2, padding=1)
    assert torch.allclose(
        full2, torch.nn.functional.conv2d(x2, w[:, :, 1:, 1:], stride=2), atol=1e-6
    )
    # a 1x1 final map is repeated into the 2x2 grid exactly as the average pool would
    with torch.no_grad():
        feats = net.eval()(torch.randn(3, 1, 8, 8))
        last = net.blocks[-1](net.blocks[2](net.blocks[1](net.blocks[0](torch.randn(1, 1, 8, 8)))))
    assert feats.shape == (3, 512)
    assert torch.equal(
        torch.flatten(net.pool(last), 1), torch.flatten(last, 1).repeat_interleave(4, 1)
    )
