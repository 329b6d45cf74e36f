"""Each method's typed Config (defaults with sources, constraints, one-line errors naming
``method.<option>``) and methods used outside the training loop (``encoder``, ``method(x)``)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import fewlabels.methods
from fewlabels.core.errors import ConfigError
from fewlabels.methods import METHODS, Batch, MethodConfig, build_method
from fewlabels.methods.fixmatch import FixMatchConfig
from fewlabels.methods.simclr import SimCLR, SimCLRConfig
from fewlabels.models import Network

torch.set_num_threads(1)


def _net(num_classes: int = 0) -> Network:
    torch.manual_seed(0)
    return Network("convnet", 3, 16, num_classes, backbone_kwargs={"widths": (8, 8, 8, 8)})


def _build(name: str, **options):
    return build_method(name, _net(0 if METHODS[name].kind == "self-supervised" else 10), **options)


def test_every_method_has_a_config_whose_options_say_where_their_defaults_come_from():
    for name, cls in METHODS.items():
        assert issubclass(cls.Config, MethodConfig) and cls.Config is not MethodConfig, name
        assert cls.Config.model_config["extra"] == "forbid"
        for option, field in cls.Config.model_fields.items():
            assert field.description and len(field.description) > 10, f"{name}.{option}"
    assert METHODS["simclr"].Config is SimCLRConfig
    assert METHODS["denoising_autoencoder"].Config().noise_std == 0.1
    assert METHODS["autoencoder"].Config().noise_std == 0.0


@pytest.mark.parametrize("name", ["simclr", "dino", "fixmatch", "vae"])
def test_a_method_keeps_its_validated_config(name):
    m = _build(name)
    assert m.config == METHODS[name].Config()
    with pytest.raises(ValidationError):  # frozen
        m.config.augment = "x"  # type: ignore[misc]


def test_config_object_and_options_combine():
    cfg = SimCLRConfig(temperature=0.2)
    m = SimCLR(_net(), cfg)
    assert m.config is cfg and m.temperature == 0.2
    m = SimCLR(_net(), cfg, projector=[32, 16])
    assert m.config.temperature == 0.2 and m.config.projector == (32, 16)
    assert m.projector.out_dim == 16
    with pytest.raises(ConfigError, match="method 'simclr' takes a SimCLRConfig, got FixMatch"):
        SimCLR(_net(), FixMatchConfig())  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("name", "options", "message"),
    [
        ("simclr", {"temprature": 0.1}, "method 'simclr': unknown option method.temprature"),
        ("simclr", {"temperature": 0}, "method 'simclr': method.temperature must be > 0, got 0"),
        ("simclr", {"temperature": float("nan")}, "method.temperature must be > 0, got nan"),
        (
            "simclr",
            {"temperature": "warm"},
            "method.temperature should be a valid number, .* got 'warm'",
        ),
        ("simclr", {"projector": (32, 0)}, "method.projector.1 should be greater than 0"),
        ("moco", {"queue_size": 0}, "method 'moco': method.queue_size must be > 0, got 0"),
        ("moco", {"momentum": 1.5}, r"method.momentum must be in \[0, 1\], got 1.5"),
        ("byol", {"augment": "weak"}, "method.augment needs a two-view augmentation policy"),
        ("swav", {"augment": "nope"}, "method.augment unknown augmentation policy 'nope'"),
        ("self_classifier", {"classes": (10, 1)}, "method.classes.1 should be greater than or"),
        ("fixmatch", {"mask": "banana"}, r"method.mask should be 'fixed' or 'confidence'"),
        ("fixmatch", {"label_smoothing": 1.0}, r"method.label_smoothing must be in \[0, 1\)"),
        ("mean_teacher", {"ema": 1.0}, r"method 'mean_teacher': method.ema must be in \(0, 1\)"),
        ("vae", {"latent_dim": 0}, "method 'vae': method.latent_dim must be > 0, got 0"),
    ],
)
def test_bad_options_are_one_line_errors_naming_the_setting(name, options, message):
    with pytest.raises(ConfigError, match=message) as e:
        _build(name, **options)
    assert "\n" not in str(e.value)


def test_unknown_option_lists_what_the_method_takes():
    with pytest.raises(ConfigError) as e:
        _build("rotnet", temperature=0.1)
    assert str(e.value) == (
        "method 'rotnet': unknown option method.temperature (got 0.1); it takes "
        "all_rotations, head, augment"
    )


def test_self_classifier_takes_one_number_of_classes():
    m = _build("self_classifier", classes=12, projector=(32, 16))
    assert m.config.classes == (12,) and [c.out_features for c in m.classifiers] == [12]


# -- methods outside the loop ---------------------------------------------------------------


@pytest.mark.parametrize("name", ["simclr", "byol", "rotnet", "fixmatch", "autoencoder"])
def test_encoder_and_calling_a_method_on_images_give_the_network_features(name):
    m = _build(name)
    x = torch.rand(3, 3, 16, 16)
    m.eval()
    want = m.network.features(x)
    assert isinstance(m.encoder, torch.nn.Module)
    assert torch.equal(m.encoder(x), want) and torch.equal(m(x), want)
    own = {id(p) for p in m.parameters()}
    assert {id(p) for p in m.encoder.parameters()} == {id(p) for p in m.network.parameters()}
    assert {id(p) for p in m.encoder.parameters()} <= own  # shared, not copied
    with torch.no_grad():
        next(m.network.parameters()).add_(1.0)
    assert not torch.equal(m.encoder(x), want)  # the encoder is the network itself


def test_calling_a_method_on_a_batch_runs_its_step():
    from fewlabels.augment import build_policy

    m = _build("simclr", projector=(32, 16))
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 3, 16, 16), dtype=torch.uint8, generator=g)
    views = [build_policy("simclr", image_size=16)(images, g)]
    out = m(Batch(unlabeled=views))
    assert set(out) == {"loss", "contrastive_acc"} and out["loss"].requires_grad


def test_methods_import_fewlabels_only_at_module_level():
    root = Path(fewlabels.methods.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        top = set(map(id, tree.body))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom) and id(node) not in top:
                names = [a.name for a in node.names] + [getattr(node, "module", "") or ""]
                assert not any(n.startswith("fewlabels") for n in names), (path, node.lineno)


def test_the_online_probe_shows_the_inner_methods_config_and_encoder():
    from fewlabels.methods.online_probe import with_online_probe

    inner = _build("simclr", projector=(32, 16))
    wrapped = with_online_probe(inner)
    assert wrapped is not inner and wrapped.config is inner.config
    x = torch.rand(2, 3, 16, 16)
    wrapped.eval()
    assert torch.equal(wrapped(x), inner.network.features(x))
    assert torch.equal(wrapped.encoder(x), inner.network.features(x))
