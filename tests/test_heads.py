"""fewlabels.models.heads: the named head classes keep the parameter layout of the heads the
methods built before (flat ``nn.Sequential`` MLPs), so old checkpoints still load."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import nn

import fewlabels.heads
from fewlabels.core.errors import ConfigError
from fewlabels.methods import build_method
from fewlabels.models import Network, heads
from fewlabels.models.heads import (
    MLP,
    CosineLinear,
    DINOHead,
    PredictionHead,
    ProjectionHead,
    Prototypes,
)

torch.set_num_threads(1)


def _flat_mlp(dims: list[int], bn: bool = True) -> nn.Sequential:
    """The layout ``fewlabels.methods.heads.mlp`` built before the heads had names."""
    layers: list[nn.Module] = []
    for a, b in itertools.pairwise(dims[:-1]):
        layers += [nn.Linear(a, b, bias=not bn), *([nn.BatchNorm1d(b)] if bn else []), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(dims[-2], dims[-1]))


def _layout(m: nn.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.shape) for k, v in m.state_dict().items()}


@pytest.mark.parametrize("bn", [True, False])
def test_projection_head_has_the_flat_sequential_layout(bn):
    old = _flat_mlp([8, 16, 12, 4], bn=bn)
    new = ProjectionHead(8, (16, 12, 4), bn=bn)
    assert _layout(new) == _layout(old)
    new.load_state_dict(old.state_dict())  # strict
    x = torch.randn(5, 8)
    old.eval(), new.eval()
    assert torch.equal(new(x), old(x))
    assert isinstance(new, nn.Sequential) and isinstance(new, MLP) and new.out_dim == 4


def test_prediction_dino_and_prototype_heads():
    pred = PredictionHead(6, 10)
    assert _layout(pred) == _layout(_flat_mlp([6, 10, 6])) and pred(torch.randn(3, 6)).shape == (
        3,
        6,
    )
    dino = DINOHead(8, (16, 4), 7, bn=False)
    assert list(dino.state_dict()) == [
        "0.0.weight",
        "0.0.bias",
        "0.2.weight",
        "0.2.bias",
        "1.weight",
    ]
    assert isinstance(dino[1], CosineLinear) and dino(torch.randn(2, 8)).shape == (2, 7)
    protos = Prototypes(4, 5)
    assert list(protos.state_dict()) == ["weight"]
    protos.normalize_()
    torch.testing.assert_close(protos.weight.norm(dim=1), torch.ones(5))


def test_an_mlp_needs_two_positive_sizes():
    with pytest.raises(ConfigError, match="an MLP needs at least two positive sizes"):
        MLP(8, ())
    with pytest.raises(ConfigError, match="an MLP needs at least two positive sizes"):
        ProjectionHead(8, (0, 4))


def test_fewlabels_heads_reexports_the_classes():
    for name in heads.__all__:
        assert getattr(fewlabels.heads, name) is getattr(heads, name)


def test_method_state_dict_keys_are_those_of_the_unnamed_heads():
    torch.manual_seed(0)
    net = Network("convnet", 3, 16, 0, backbone_kwargs={"widths": (8, 8, 8, 8)})
    keys = set(build_method("simclr", net, projector=(32, 16)).state_dict())
    assert {"projector.0.weight", "projector.1.running_mean", "projector.3.bias"} <= keys
    keys = set(build_method("dino", net, head=(32, 16), num_prototypes=10).state_dict())
    assert {"head.0.0.weight", "head.0.2.bias", "head.1.weight", "teacher_head.1.weight"} <= keys
    keys = set(build_method("swav", net, projector=(32, 16), num_prototypes=10).state_dict())
    assert "prototypes.weight" in keys
    keys = set(build_method("byol", net, projector=(32, 16), predictor_hidden=8).state_dict())
    assert {"predictor.0.weight", "predictor.3.bias", "target_projector.3.weight"} <= keys
    keys = set(build_method("autoencoder", net, decoder_width=16).state_dict())
    assert {"decoder.fc.weight", "decoder.net.0.running_var"} <= keys
