"""Autoencoder, denoising autoencoder and VAE: decoder shapes, losses against loops, steps."""

from __future__ import annotations

import math

import pytest
import torch

from fewlabels.augment import build_policy
from fewlabels.core.errors import ConfigError
from fewlabels.data.digits import load_digits_dataset
from fewlabels.data.imageset import ImageSet
from fewlabels.losses import gaussian_kl, reconstruction_loss, vae_loss
from fewlabels.methods import METHODS, Batch, build_method
from fewlabels.methods.autoencoder import corrupt
from fewlabels.methods.vae import reparameterize
from fewlabels.models import Network
from fewlabels.models.heads import ConvDecoder, decoder_plan
from fewlabels.train.loop import TrainConfig, Trainer

torch.set_num_threads(1)

NAMES = ["autoencoder", "denoising_autoencoder", "vae"]
SMALL = {"decoder_width": 16}


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _images(n: int, c: int, size: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, c, size, size), dtype=torch.uint8, generator=g)


def _method(name: str, c: int = 1, size: int = 8, seed: int = 0, **kw):
    torch.manual_seed(seed)
    net = Network("convnet", c, size, 0, backbone_kwargs={"widths": (8, 16, 16, 16)})
    return build_method(name, net, **{**SMALL, **kw})


# -- the decoder --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("c", "size", "plan"),
    [(1, 8, (4, 1)), (3, 12, (3, 2)), (1, 28, (4, 3)), (3, 32, (4, 3)), (3, 96, (3, 5))],
)
def test_decoder_output_shape_and_range(c, size, plan):
    assert decoder_plan(size) == plan
    _, n = plan
    dec = ConvDecoder(24, c, size, width=32)
    out = dec(_rand(3, 24)).detach()
    assert out.shape == (3, c, size, size)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    convs = [m for m in dec.modules() if isinstance(m, torch.nn.ConvTranspose2d)]
    assert len(convs) == n and convs[-1].out_channels == c
    assert [m.in_channels for m in convs] == [max(16, 32 >> k) for k in range(n)]


def test_decoder_rejects_bad_sizes():
    with pytest.raises(ConfigError, match="decoder sizes must be positive"):
        ConvDecoder(0, 3, 32)
    with pytest.raises(ConfigError, match="image size"):
        decoder_plan(0)


# -- the losses against explicit loops -----------------------------------------------------


def test_reconstruction_loss_is_the_mean_squared_pixel_error():
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    want = sum((float(x) - float(y)) ** 2 for x, y in zip(a.flatten(), b.flatten(), strict=True))
    assert float(reconstruction_loss(a, b)) == pytest.approx(want / a.numel(), rel=1e-6)
    hand = reconstruction_loss(torch.tensor([[0.0, 1.0]]), torch.tensor([[0.5, 0.5]]))
    assert float(hand) == pytest.approx(0.25)
    b.requires_grad_()
    a.requires_grad_()
    reconstruction_loss(a, b).backward()
    assert a.grad is not None and b.grad is None  # the clean image is a fixed target


def test_gaussian_kl_matches_the_closed_form_per_dimension():
    mu, logvar = _rand(4, 3, seed=1), _rand(4, 3, seed=2)
    got = gaussian_kl(mu, logvar)
    for i in range(4):
        kl = 0.0
        for j in range(3):  # KL(N(m, s^2) || N(0, 1)) = log(1/s) + (s^2 + m^2)/2 - 1/2
            m, s = float(mu[i, j]), math.exp(0.5 * float(logvar[i, j]))
            kl += math.log(1 / s) + (s * s + m * m) / 2 - 0.5
        assert float(got[i]) == pytest.approx(kl, rel=1e-5)
    # the prior itself: zero; a unit shift in one dimension: 1/2
    assert float(gaussian_kl(torch.zeros(1, 5), torch.zeros(1, 5))) == 0.0
    assert float(gaussian_kl(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 2))) == 0.5


def test_vae_loss_sums_pixels_per_image_and_weights_the_kl():
    recon, target = torch.rand(3, 1, 2, 2), torch.rand(3, 1, 2, 2)
    mu, logvar = _rand(3, 4, seed=3), _rand(3, 4, seed=4)
    loss, rec, kl = vae_loss(recon, target, mu, logvar, beta=2.5)
    per_image = [
        sum(
            (float(x) - float(y)) ** 2
            for x, y in zip(recon[i].flatten(), target[i].flatten(), strict=True)
        )
        for i in range(3)
    ]
    assert float(rec) == pytest.approx(sum(per_image) / 3, rel=1e-6)
    assert float(kl) == pytest.approx(float(gaussian_kl(mu, logvar).mean()), rel=1e-6)
    want = (float(rec) + 2.5 * float(kl)) / 4  # per pixel value: 1 x 2 x 2 per image
    assert float(loss.detach()) == pytest.approx(want, rel=1e-6)


def test_reparameterize_and_its_gradients():
    mu = torch.tensor([[1.0, -2.0]], requires_grad=True)
    logvar = torch.tensor([[0.0, math.log(4.0)]], requires_grad=True)
    z = reparameterize(mu, logvar, eps=torch.tensor([[0.5, -1.0]]))
    torch.testing.assert_close(z, torch.tensor([[1.5, -4.0]]))  # mu + sigma * eps
    z.sum().backward()
    torch.testing.assert_close(mu.grad, torch.ones(1, 2))
    torch.testing.assert_close(logvar.grad, torch.tensor([[0.25, -1.0]]))  # sigma*eps/2


def test_corrupt_adds_clamped_noise_and_masks_values():
    x = torch.rand(4, 3, 16, 16)
    assert torch.equal(corrupt(x, 0.0, 0.0), x)
    torch.manual_seed(0)
    dropped = corrupt(x, 0.0, 0.5)
    assert torch.all((dropped == 0) | (dropped == x))
    assert 0.45 < float((dropped == 0).float().mean()) < 0.55
    torch.manual_seed(0)
    noisy = corrupt(x, 0.1, 0.0)
    assert float(noisy.min()) >= 0 and float(noisy.max()) <= 1
    inside = (noisy > 0) & (noisy < 1)  # the clamp leaves these alone
    assert 0.09 < float((noisy - x)[inside].std()) < 0.11


# -- the methods --------------------------------------------------------------------------


def test_registered_as_self_supervised_with_flip_views():
    for name in NAMES:
        m = _method(name)
        assert METHODS[name] is type(m) and m.name == name
        assert m.kind == "self-supervised"
        assert m.views == {"labeled": (), "unlabeled": ("flips",)}
    assert _method("autoencoder").noise_std == 0.0 == _method("autoencoder").drop_p
    dae = _method("denoising_autoencoder")
    assert dae.noise_std == 0.1 and dae.drop_p == 0.1
    assert _method("vae", augment="denoise").views["unlabeled"] == ("denoise",)
    with pytest.raises(ConfigError, match="drop_p"):
        _method("denoising_autoencoder", drop_p=1.0)
    with pytest.raises(ConfigError, match="beta"):
        _method("vae", beta=-1)
    with pytest.raises(ConfigError, match="method 'vae'"):
        _method("vae", temperature=0.1)


def test_flips_policy_mirrors_each_image_or_not():
    x = _images(32, 3, 8)
    y = build_policy("flips", image_size=8)(x, torch.Generator().manual_seed(0))
    xf = x.float() / 255
    seen = set()
    for i in range(32):
        cands = [xf[i], xf[i].flip(2), xf[i].flip(1), xf[i].flip(1).flip(2)]
        hits = [k for k, c in enumerate(cands) if torch.equal(y[i], c)]
        assert hits
        seen.add(hits[0])
    assert seen == {0, 1, 2, 3}


def test_dae_reconstructs_the_clean_view_from_the_corrupted_one():
    m = _method("denoising_autoencoder", c=3, size=16, noise_std=0.2, drop_p=0.3)
    x = torch.rand(6, 3, 16, 16)
    torch.manual_seed(5)
    out = m(Batch(unlabeled=[x]))
    torch.manual_seed(5)  # same draws: the corruption, then the encoder's dropout
    xc = corrupt(x, 0.2, 0.3)
    want = reconstruction_loss(m.decoder(m.network.features(xc)), x)
    assert float(out["loss"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert not torch.equal(xc, x)
    # a (noisy, clean) pair from the `denoise` policy: the target is its clean half
    ae = _method("autoencoder", c=3, size=16)
    noisy = torch.rand(6, 3, 16, 16)
    torch.manual_seed(6)
    got = ae(Batch(unlabeled=[(noisy, x)]))["loss"]
    torch.manual_seed(6)
    want = reconstruction_loss(ae.decoder(ae.network.features(noisy)), x)
    assert float(got.detach()) == pytest.approx(float(want.detach()), rel=1e-6)


def test_vae_step_uses_mean_and_logvar_heads():
    m = _method("vae", latent_dim=5, beta=0.5)
    assert m.mu.out_features == m.logvar.out_features == 5
    assert m.decoder.fc.in_features == 5
    x = torch.rand(4, 1, 8, 8)
    torch.manual_seed(1)
    out = m(Batch(unlabeled=[x]))
    torch.manual_seed(1)
    h = m.network.features(x)
    mu, logvar = m.mu(h), m.logvar(h)
    want, _, kl = vae_loss(m.decoder(reparameterize(mu, logvar)), x, mu, logvar, 0.5)
    assert float(out["loss"].detach()) == pytest.approx(float(want.detach()), rel=1e-6)
    assert float(out["kl"]) == pytest.approx(float(kl.detach()), rel=1e-6)
    assert not out["kl"].requires_grad and not out["recon"].requires_grad


@pytest.mark.parametrize("name", NAMES)
def test_loss_is_fp32_under_bf16_autocast(name):
    m = _method(name)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = m(Batch(unlabeled=[torch.rand(4, 1, 8, 8)]))["loss"]
    assert loss.dtype == torch.float32 and math.isfinite(float(loss.detach()))


@pytest.mark.parametrize("name", NAMES)
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name):
    m = _method(name, c=3, size=16)
    x = build_policy("flips", image_size=16)(_images(16, 3, 16), torch.Generator().manual_seed(0))
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    losses = []
    for s in range(15):
        torch.manual_seed(s)
        out = m(Batch(unlabeled=[x], step=s))
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-3:]) < 0.9 * sum(losses[:3]), losses


@pytest.fixture(scope="module")
def unlabeled_digits() -> ImageSet:
    train = load_digits_dataset().train
    return ImageSet(train.images[:48], torch.full((48,), -1), train.class_names)


@pytest.mark.parametrize("name", NAMES)
def test_trainer_runs_each_method_on_unlabeled_digits(name, unlabeled_digits):
    cfg = TrainConfig(budget="3steps", batch_size=16, precision="fp32", evals=1)
    m = _method(name)
    before = [p.detach().clone() for p in m.network.backbone.parameters()]
    res = Trainer(cfg, progress=False).fit(m, None, unlabeled_digits)
    assert res.steps == 3
    assert res.curve and math.isfinite(res.curve[-1]["loss"])
    after = list(m.network.backbone.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
