"""Self-supervised losses against loop-by-loop formulas, and the methods built on them."""

from __future__ import annotations

import math

import pytest
import torch

from fewlabels.augment import build_policy
from fewlabels.data.imageset import ImageSet
from fewlabels.losses import (
    barlow_twins_loss,
    byol_loss,
    correlation_loss,
    cross_correlation,
    moco_loss,
    nt_xent_loss,
    vicreg_loss,
    vicreg_terms,
)
from fewlabels.losses.distributed import gather_with_grad
from fewlabels.methods import METHODS, Batch, build_method
from fewlabels.methods.momentum import cosine_tau
from fewlabels.models import Network
from fewlabels.models.heads import MLP
from fewlabels.train.loop import TrainConfig, Trainer

torch.set_num_threads(1)

SMALL = {
    "simclr": {"projector": (32, 16)},
    "barlow_twins": {"projector": (32, 32)},
    "vicreg": {"projector": (32, 32)},
    "byol": {"projector": (32, 16), "predictor_hidden": 32},
    "moco": {"head": (32, 16), "queue_size": 64},
}


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    dot = sum(float(x) * float(y) for x, y in zip(a, b, strict=True))
    na = math.sqrt(sum(float(x) ** 2 for x in a))
    nb = math.sqrt(sum(float(y) ** 2 for y in b))
    return dot / (na * nb)


def _mean_std(col: list[float], ddof: int) -> tuple[float, float]:
    m = sum(col) / len(col)
    return m, sum((x - m) ** 2 for x in col) / (len(col) - ddof)


# -- the losses against explicit loops --------------------------------------------------


def test_nt_xent_matches_row_by_row_formula():
    z1, z2, t = _rand(5, 3, seed=1), _rand(5, 3, seed=2), 0.5
    z = [*z1, *z2]  # anchor a and its partner (a + 5) % 10
    total = 0.0
    for a in range(10):
        pos = (a + 5) % 10
        denom = sum(math.exp(_cos(z[a], z[j]) / t) for j in range(10) if j != a)
        total += -math.log(math.exp(_cos(z[a], z[pos]) / t) / denom)
    assert float(nt_xent_loss(z1, z2, t)) == pytest.approx(total / 10, rel=1e-5)


def test_nt_xent_hand_worked_orthogonal_pairs():
    # two images, both views the same one-hot vector: each anchor sees its positive at
    # cosine 1 and two negatives at cosine 0
    z = torch.eye(2)
    t = 0.2
    assert float(nt_xent_loss(z, z, t)) == pytest.approx(math.log(1 + 2 * math.exp(-1 / t)))


def test_nt_xent_local_anchors_against_gathered_batch_give_the_global_loss():
    # what DDP does: rank r scores its rows (offset r*n) against the gathered batch; the
    # mean over ranks is the whole-batch loss, value and gradient
    z1 = _rand(8, 4, seed=3).requires_grad_()
    z2 = _rand(8, 4, seed=4).requires_grad_()
    full = nt_xent_loss(z1, z2, 0.3)
    g_full = torch.autograd.grad(full, [z1, z2])
    parts = [
        nt_xent_loss(z1[r * 4 : r * 4 + 4], z2[r * 4 : r * 4 + 4], 0.3, z1, z2, offset=r * 4)
        for r in range(2)
    ]
    mean = (parts[0] + parts[1]) / 2
    assert float(mean.detach()) == pytest.approx(float(full.detach()), rel=1e-6)
    for a, b in zip(torch.autograd.grad(mean, [z1, z2]), g_full, strict=True):
        torch.testing.assert_close(a, b)


# (6, 3): the (D, D) matrix is formed; (3, 5): fewer rows than dimensions, the N x N route
@pytest.mark.parametrize("shape", [(6, 3), (3, 5)])
def test_barlow_twins_matches_loops_over_correlation_entries(shape: tuple[int, int]):
    z1, z2, lambd, eps = _rand(*shape, seed=5), _rand(*shape, seed=6), 0.01, 1e-5
    n, d = z1.shape
    cols1 = [_mean_std([float(z1[b, i]) for b in range(n)], 0) for i in range(d)]
    cols2 = [_mean_std([float(z2[b, j]) for b in range(n)], 0) for j in range(d)]
    loss = 0.0
    for i in range(d):
        for j in range(d):
            (m1, v1), (m2, v2) = cols1[i], cols2[j]
            c = sum(
                (float(z1[b, i]) - m1) / math.sqrt(v1 + eps) * (float(z2[b, j]) - m2)
                for b in range(n)
            ) / (n * math.sqrt(v2 + eps))
            loss += (1 - c) ** 2 if i == j else lambd * c**2
    assert float(barlow_twins_loss(z1, z2, lambd)) == pytest.approx(loss, rel=1e-5)


def test_barlow_twins_is_zero_when_the_correlation_is_the_identity():
    # centred, unit-variance, orthogonal columns: C = I (up to the BN epsilon)
    z = torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    torch.testing.assert_close(cross_correlation(z, z), torch.eye(2), atol=1e-4, rtol=0)
    assert float(barlow_twins_loss(z, z, 5e-3)) < 1e-8
    assert float(barlow_twins_loss(z, -z, 0.0)) == pytest.approx(8.0, rel=1e-4)  # C = -I


@pytest.mark.parametrize("shape", [(6, 3), (3, 5)])
def test_vicreg_terms_match_separate_loops(shape: tuple[int, int]):
    z1, z2 = _rand(*shape, seed=7), _rand(*shape, seed=8)
    n, d = z1.shape
    sim = sum((float(z1[b, j]) - float(z2[b, j])) ** 2 for b in range(n) for j in range(d))
    sim /= n * d
    var = cov = 0.0
    for z in (z1, z2):
        cols = [[float(z[b, j]) for b in range(n)] for j in range(d)]
        stats = [_mean_std(c, 1) for c in cols]
        var += sum(max(0.0, 1 - math.sqrt(v + 1e-4)) for _, v in stats) / d / 2
        for i in range(d):
            for j in range(d):
                if i != j:
                    c = sum(
                        (cols[i][b] - stats[i][0]) * (cols[j][b] - stats[j][0]) for b in range(n)
                    ) / (n - 1)
                    cov += c**2 / d
    got = vicreg_terms(z1, z2)
    for g, want in zip(got, (sim, var, cov), strict=True):
        assert float(g) == pytest.approx(want, rel=1e-5)
    weighted = float(vicreg_loss(z1, z2, 2.0, 3.0, 4.0))
    assert weighted == pytest.approx(2 * sim + 3 * var + 4 * cov, rel=1e-5)


def test_gram_route_gives_the_same_loss_and_gradients_as_the_d_by_d_matrix():
    # batch 8 < 64 dimensions: both losses take the (N, N) route; the references form
    # the (D, D) matrices directly
    z1 = _rand(8, 64, seed=21).requires_grad_(True)
    z2 = _rand(8, 64, seed=22).requires_grad_(True)
    ref = correlation_loss(cross_correlation(z1, z2), 5e-3)
    got = barlow_twins_loss(z1, z2, 5e-3)

    def cov_ref(z: torch.Tensor) -> torch.Tensor:
        c = torch.cov(z.T)
        return (c.square().sum() - c.diagonal().square().sum()) / z.shape[1]

    for a, b in ((got, ref), (vicreg_terms(z1, z2)[2], cov_ref(z1) + cov_ref(z2))):
        assert float(a.detach()) == pytest.approx(float(b.detach()), rel=1e-5)
        grads = torch.autograd.grad(a, [z1, z2]), torch.autograd.grad(b, [z1, z2])
        for ga, gb in zip(*grads, strict=True):
            torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


def test_vicreg_is_zero_for_equal_spread_out_uncorrelated_embeddings():
    z = 2 * torch.tensor([[1.0, 1.0], [1.0, -1.0], [-1.0, 1.0], [-1.0, -1.0]])
    assert float(vicreg_loss(z, z)) == pytest.approx(0.0, abs=1e-7)
    # collapsed embeddings: the variance term is its maximum, 1 - sqrt(eps)
    _, var, _ = vicreg_terms(torch.ones(4, 3), torch.ones(4, 3))
    assert float(var) == pytest.approx(1 - 1e-2)


def test_byol_loss_matches_loop_and_hand_worked_values():
    p, z = _rand(5, 4, seed=9), _rand(5, 4, seed=10)
    want = sum(2 - 2 * _cos(p[i], z[i]) for i in range(5)) / 5
    assert float(byol_loss(p, z)) == pytest.approx(want, rel=1e-5)
    assert float(byol_loss(p, 3 * p)) == pytest.approx(0.0, abs=1e-6)  # aligned: minimum
    assert float(byol_loss(p, -p)) == pytest.approx(4.0)  # opposite: maximum
    p.requires_grad_()
    z.requires_grad_()
    byol_loss(p, z).backward()
    assert p.grad is not None and z.grad is None  # stop-gradient on the target


def test_moco_loss_matches_per_row_log_softmax():
    q, k = _rand(4, 3, seed=11), _rand(4, 3, seed=12)
    queue = torch.nn.functional.normalize(_rand(7, 3, seed=13), dim=1)
    t = 0.2
    total = 0.0
    for i in range(4):
        logits = [_cos(q[i], k[i]) / t] + [_cos(q[i], queue[j]) / t for j in range(7)]
        total -= logits[0] - math.log(sum(math.exp(v) for v in logits))
    assert float(moco_loss(q, k, queue, t)) == pytest.approx(total / 4, rel=1e-5)


def test_losses_run_in_fp32_inside_bf16_autocast():
    z1, z2 = _rand(8, 16, seed=14), _rand(8, 16, seed=15)
    ref = cross_correlation(z1, z2)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        c = cross_correlation(z1.bfloat16(), z2.bfloat16())
        loss = nt_xent_loss(z1, z2, 0.5)
    assert c.dtype == loss.dtype == torch.float32
    assert float(loss) == pytest.approx(float(nt_xent_loss(z1, z2, 0.5)), rel=1e-6)
    torch.testing.assert_close(c, cross_correlation(z1.bfloat16().float(), z2.bfloat16().float()))
    assert not torch.equal(c, ref)  # the bf16 inputs were used as given, then upcast


def test_mlp_layout_and_single_process_gather():
    head = MLP(8, (16, 4))
    kinds = [type(m).__name__ for m in head]
    assert kinds == ["Linear", "BatchNorm1d", "ReLU", "Linear"]
    assert head[0].bias is None and head[-1].bias is not None
    assert [type(m).__name__ for m in MLP(8, (16, 4), bn=False, last_bn=True)] == [
        "Linear",
        "ReLU",
        "Linear",
        "BatchNorm1d",
    ]
    t = torch.randn(3, 2)
    assert gather_with_grad(t) is t


def test_cosine_tau_schedule():
    assert cosine_tau(0.99, 0.0) == pytest.approx(0.99)
    assert cosine_tau(0.99, 0.5) == pytest.approx(0.995)
    assert cosine_tau(0.99, 1.0) == pytest.approx(1.0)


# -- the methods -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def views() -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    x = torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g)
    return build_policy("twoview", image_size=16)(x, g)  # type: ignore[return-value]


def _method(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    net = Network("convnet", 3, 16, 0, backbone_kwargs=kw.pop("backbone_kwargs", None))
    return build_method(name, net, **{**SMALL[name], **kw})


def test_methods_are_registered_with_two_view_policies():
    for name in SMALL:
        m = _method(name)
        assert METHODS[name] is type(m) and m.name == name
        assert m.views["labeled"] == () and len(m.views["unlabeled"]) == 1
    assert _method("simclr").views["unlabeled"] == ("simclr",)
    assert _method("byol").views["unlabeled"] == ("twoview",)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name, views):
    m = _method(name)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for s in range(15):
        torch.manual_seed(s)  # dropout masks
        out = m(Batch(unlabeled=[views], step=s, progress=s / 15))
        assert out["loss"].dtype == torch.float32 and out["loss"].requires_grad
        assert all(not v.requires_grad for k, v in out.items() if k != "loss")
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if name != "moco":  # MoCo's queue would fill with this very batch's keys
            m.after_step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def _snapshot(module: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in module.parameters()]


@pytest.mark.parametrize(
    ("name", "online", "target", "tau"),
    [
        ("byol", "network", "target_network", 0.995),  # cosine tau at progress 0.5
        ("byol", "projector", "target_projector", 0.995),
        ("moco", "network", "key_network", 0.99),
        ("moco", "head", "key_head", 0.99),
    ],
)
def test_after_step_moves_the_momentum_encoder(name, online, target, tau, views):
    m = _method(name)
    on, tg = getattr(m, online), getattr(m, target)
    assert all(not p.requires_grad for p in tg.parameters())
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(Batch(unlabeled=[views], progress=0.5))["loss"].backward()
    assert all(p.grad is None for p in tg.parameters())
    opt.step()
    before = _snapshot(tg)
    assert any(not torch.equal(a, b) for a, b in zip(before, _snapshot(on), strict=True))
    m.after_step()
    moved = False
    for old, new, o in zip(before, tg.parameters(), on.parameters(), strict=True):
        torch.testing.assert_close(new, tau * old + (1 - tau) * o.detach())
        moved |= not torch.equal(old, new)
    assert moved


def test_moco_enqueues_the_keys_and_advances_the_pointer(views):
    m = _method("moco", backbone_kwargs={"dropout": 0.0}, queue_size=40)
    v2 = views[1]
    old = m.queue.clone()
    m(Batch(unlabeled=[views]))
    with torch.no_grad():  # the keys of view 2 from the (not yet moved) key encoder
        keys = torch.nn.functional.normalize(m.key_head(m.key_network.features(v2)), dim=1)
    m.after_step()
    assert int(m.queue_ptr) == 16
    torch.testing.assert_close(m.queue[:16], keys)
    assert torch.equal(m.queue[16:], old[16:])
    m(Batch(unlabeled=[views]))
    m.after_step()
    m(Batch(unlabeled=[views]))
    m.after_step()  # 48 keys into 40 slots: wraps around
    assert int(m.queue_ptr) == 8
    torch.testing.assert_close(m.queue.norm(dim=1), torch.ones(40))
    sym = _method("moco", symmetric=True)
    sym(Batch(unlabeled=[views]))
    sym.after_step()
    assert int(sym.queue_ptr) == 32  # both views' keys


@pytest.mark.parametrize("name", list(SMALL))
def test_trainer_runs_each_method_on_unlabeled_images(name):
    g = torch.Generator().manual_seed(1)
    images = torch.randint(0, 256, (40, 3, 16, 16), dtype=torch.uint8, generator=g)
    unlabeled = ImageSet(images, torch.full((40,), -1), ["a", "b"])
    cfg = TrainConfig(budget="3steps", batch_size=16, precision="fp32", evals=1)
    m = _method(name)
    res = Trainer(cfg, progress=False).fit(m, None, unlabeled)
    assert res.steps == 3
    assert res.curve and math.isfinite(res.curve[-1]["loss"])
