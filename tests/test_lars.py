"""LARS: the trust-ratio update against a hand computation, its exclusions, and its use
by the loop (defaults, exact resume, a VICReg run that plain SGD cannot keep finite)."""

from __future__ import annotations

import math

import pytest
import torch

from fewlabels.core.errors import ConfigError
from fewlabels.data.digits import load_digits_dataset
from fewlabels.methods import Batch, build_method
from fewlabels.models import Network
from fewlabels.train.lars import LARS
from fewlabels.train.loop import TrainConfig, build_optimizer


def _norm(xs: list[float]) -> float:
    return math.sqrt(sum(x * x for x in xs))


def _moved(p: torch.Tensor, w0: list[float]) -> float:
    """How far ``p`` is from where it started, ``w0``."""
    return _norm([a - b for a, b in zip(p.tolist(), w0, strict=True)])


def test_one_step_is_the_trust_ratio_times_the_decayed_gradient():
    w0, g = [3.0, -4.0], [0.5, 1.0]  # ||w|| = 5
    lr, eta, wd = 0.1, 0.02, 0.01
    p = torch.nn.Parameter(torch.tensor(w0))
    p.grad = torch.tensor(g)
    LARS([p], lr=lr, momentum=0.0, weight_decay=wd, eta=eta).step()
    d = [gi + wd * wi for gi, wi in zip(g, w0, strict=True)]
    ratio = eta * _norm(w0) / _norm(d)
    want = [wi - lr * ratio * di for wi, di in zip(w0, d, strict=True)]
    assert p.tolist() == pytest.approx(want, rel=1e-6)
    # every layer moves by lr * eta of its own norm, whatever its gradient's scale
    assert _moved(p, w0) == pytest.approx(lr * eta * _norm(w0), rel=1e-4)


def test_clip_caps_a_layers_rate_at_the_global_lr():
    w0 = [3.0, -4.0]  # ||w|| = 5
    eta = 0.02
    # a large gradient: eta ||w|| / ||d|| = 0.1 / 50 = 0.002, below lr = 0.1, so the
    # layer's rate 0.002 is used as is: the step is eta ||w|| in norm (0.1)
    # a tiny gradient: eta ||w|| / ||d|| = 0.1 / 0.05 = 2 > lr, so it is capped at lr:
    # the step is lr * d, as plain SGD would take
    for g, want_norm in (([30.0, 40.0], eta * 5.0), ([0.03, 0.04], 0.1 * 0.05)):
        p = torch.nn.Parameter(torch.tensor(w0))
        p.grad = torch.tensor(g)
        LARS([p], lr=0.1, momentum=0.0, eta=eta, clip=True).step()
        assert _moved(p, w0) == pytest.approx(want_norm, abs=2e-6)
    # unclipped, the same large gradient moves lr * eta * ||w|| = 0.01
    p = torch.nn.Parameter(torch.tensor(w0))
    p.grad = torch.tensor([30.0, 40.0])
    LARS([p], lr=0.1, momentum=0.0, eta=eta, clip=False).step()
    assert _moved(p, w0) == pytest.approx(0.01, abs=2e-6)


def test_clip_edge_cases_zero_norm_lr_above_one_and_lr_zero():
    # a zero weight takes the plain step (factor 1) even where lr > 1 would cap 1 / lr
    z = torch.nn.Parameter(torch.zeros(2))
    z.grad = torch.tensor([1.0, 2.0])
    LARS([z], lr=2.0, momentum=0.0, clip=True).step()
    assert z.tolist() == [-2.0, -4.0]
    # at lr 0 (a warm-up's first step) nothing moves and no raw gradient enters momentum
    p = torch.nn.Parameter(torch.tensor([3.0, -4.0]))
    opt = LARS([p], lr=0.1, momentum=0.9, eta=0.02, clip=True)
    opt.param_groups[0]["lr"] = 0.0
    p.grad = torch.tensor([300.0, 400.0])
    opt.step()
    assert p.tolist() == [3.0, -4.0] and "momentum_buffer" not in opt.state[p]
    opt.param_groups[0]["lr"] = 0.1
    opt.step()  # the first real step is bounded by eta * ||w|| = 0.1, not lr * ||g|| = 50
    assert _moved(p, [3.0, -4.0]) < 0.1 + 1e-5


def test_a_state_saved_before_clip_existed_loads_unclipped():
    p = torch.nn.Parameter(torch.ones(2))
    saved = LARS([p], lr=0.1).state_dict()
    del saved["param_groups"][0]["clip"]
    opt = LARS([p], lr=0.1, clip=True)
    opt.load_state_dict(saved)
    assert opt.param_groups[0]["clip"] is False


def test_gradient_scale_does_not_change_the_step():
    steps = []
    for scale in (1e-3, 1.0, 1e4):
        p = torch.nn.Parameter(torch.tensor([1.0, 2.0, 2.0]))
        p.grad = torch.tensor([0.1, -0.2, 0.3]) * scale
        LARS([p], lr=0.5, momentum=0.0, eta=0.01).step()
        steps.append(p.detach().clone())
    assert torch.allclose(steps[0], steps[1]) and torch.allclose(steps[1], steps[2])


def test_excluded_group_and_zero_norms_take_plain_sgd_with_momentum():
    a = torch.nn.Parameter(torch.tensor([1.0, 1.0]))  # excluded (a bias, say)
    z = torch.nn.Parameter(torch.zeros(2))  # zero weight: the trust ratio falls back to 1
    opt = LARS([{"params": [a], "lars": False}, {"params": [z]}], lr=0.1, momentum=0.9, eta=0.02)
    for _ in range(2):
        a.grad = torch.tensor([1.0, -2.0])
        z.grad = torch.tensor([1.0, -2.0])
        opt.step()
    # momentum SGD: buf1 = g, buf2 = 0.9 g + g; total move = lr * (1 + 1.9) * g
    want = [1.0 - 0.1 * 2.9 * 1.0, 1.0 + 0.1 * 2.9 * 2.0]
    assert a.tolist() == pytest.approx(want)
    # z: step 1 is plain (ratio 1, zero norm); step 2 sees a non-zero weight again
    assert torch.all(torch.isfinite(z)) and z.abs().sum() > 0


def _reference_steps(
    ws: list[torch.Tensor], grads: list[list[torch.Tensor]], lrs: list[float], **kw: object
) -> list[torch.Tensor]:
    """LARS written out per parameter and per step, with plain tensor arithmetic: the first
    parameter is excluded (plain momentum SGD), the others take the trust ratio."""
    mom, wd, eta = float(kw["momentum"]), float(kw["weight_decay"]), float(kw["eta"])
    nesterov, clip = bool(kw["nesterov"]), bool(kw["clip"])
    ws = [w.clone() for w in ws]
    bufs: list[torch.Tensor | None] = [None] * len(ws)
    for lr, gs in zip(lrs, grads, strict=True):
        for i, (w, g) in enumerate(zip(ws, gs, strict=True)):
            if i == 0:
                d = g.clone()
            else:
                if clip and lr == 0:
                    continue
                d = g + wd * w
                wn, dn = float(w.norm()), float(d.norm())
                r = eta * wn / dn if wn > 0 and dn > 0 else 1.0
                if clip and wn > 0 and dn > 0:
                    r = min(r / lr, 1.0)
                d = d * r
            bufs[i] = d.clone() if bufs[i] is None else mom * bufs[i] + d
            step = d + mom * bufs[i] if nesterov else bufs[i]
            ws[i] = w - lr * step
    return ws


@pytest.mark.parametrize("nesterov", [False, True])
@pytest.mark.parametrize("clip", [False, True])
def test_several_steps_match_the_per_parameter_formula(nesterov: bool, clip: bool):
    g = torch.Generator().manual_seed(0)
    shapes = [(4,), (5, 3), (6,), (2, 2, 3)]
    w0 = [torch.randn(s, generator=g) for s in shapes]
    w0[2] = torch.zeros(6)  # a zero weight: ratio 1
    lrs = [0.2, 0.0, 0.1, 0.3]  # the 0 is a warm-up's first step
    grads = [[torch.randn(s, generator=g) for s in shapes] for _ in lrs]
    kw = {"momentum": 0.9, "weight_decay": 0.01, "eta": 0.02, "nesterov": nesterov, "clip": clip}
    ps = [torch.nn.Parameter(w.clone()) for w in w0]
    opt = LARS(
        [{"params": ps[:1], "lars": False, "weight_decay": 0.0}, {"params": ps[1:]}],
        lr=0.2,
        **kw,  # type: ignore[arg-type]
    )
    for lr, gs in zip(lrs, grads, strict=True):
        for p, gi in zip(ps, gs, strict=True):
            p.grad = gi.clone()
        for group in opt.param_groups:
            group["lr"] = lr
        opt.step()
        for p, gi in zip(ps, gs, strict=True):  # the gradients are left untouched
            assert torch.equal(p.grad, gi)
    want = _reference_steps(w0, grads, lrs, **kw)
    for p, w in zip(ps, want, strict=True):
        torch.testing.assert_close(p.detach(), w, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("nesterov", [False, True])
def test_a_parameter_whose_gradient_starts_later_steps_as_if_alone(nesterov: bool):
    # One group updates its parameters together; a parameter without a gradient at first
    # (a head used from step 2, say) starts its momentum then, the others keep theirs.
    g = torch.Generator().manual_seed(1)
    w0 = [torch.randn(3, 2, generator=g), torch.randn(4, generator=g)]
    grads = [[torch.randn(3, 2, generator=g), None]] + [
        [torch.randn(3, 2, generator=g), torch.randn(4, generator=g)] for _ in range(3)
    ]
    kw = {"lr": 0.1, "momentum": 0.9, "weight_decay": 0.01, "eta": 0.02, "nesterov": nesterov}
    together = [torch.nn.Parameter(w.clone()) for w in w0]
    alone = [torch.nn.Parameter(w.clone()) for w in w0]
    opt_t = LARS([{"params": together}], **kw)  # type: ignore[arg-type]
    opt_a = LARS([{"params": [p]} for p in alone], **kw)  # type: ignore[arg-type]
    for gs in grads:
        for ps in (together, alone):
            for p, gi in zip(ps, gs, strict=True):
                p.grad = None if gi is None else gi.clone()
        opt_t.step()
        opt_a.step()
    assert not torch.equal(together[1].detach(), w0[1])  # it did move from step 2 on
    for a, b in zip(together, alone, strict=True):
        torch.testing.assert_close(a.detach(), b.detach(), rtol=1e-6, atol=1e-7)


def test_bad_settings_are_config_errors():
    p = torch.nn.Parameter(torch.ones(2))
    with pytest.raises(ConfigError, match="eta"):
        LARS([p], lr=0.1, eta=0.0)
    with pytest.raises(ConfigError, match="lr"):
        LARS([p], lr=0.0)
    with pytest.raises(ValueError, match="lars_eta"):
        TrainConfig(optimizer="lars", lars_eta=-1)


def test_loop_builds_lars_with_norms_and_biases_excluded():
    cfg = TrainConfig(optimizer="lars", batch_size=512)
    assert cfg.resolved_lr() == pytest.approx(0.6) and cfg.resolved_weight_decay() == 1e-4
    net = Network("convnet", 1, 8, 10)
    opt = build_optimizer(net, cfg)
    assert isinstance(opt, LARS)
    decay, no_decay = opt.param_groups
    assert decay["lars"] and decay["weight_decay"] == 1e-4 and decay["eta"] == 0.02
    assert decay["clip"]
    unclipped = build_optimizer(net, cfg.model_copy(update={"lars_clip": False}))
    assert not unclipped.param_groups[0]["clip"]
    assert not no_decay["lars"] and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim <= 1 for p in no_decay["params"])


def _vicreg_losses(optimizer: str, lr: float, steps: int = 30) -> list[float]:
    ds = load_digits_dataset()
    x = ds.train.images[:128].float() / 255
    torch.manual_seed(0)
    method = build_method("vicreg", Network("convnet", 1, 8, 10), projector=(256, 256))
    opt = build_optimizer(method, TrainConfig(optimizer=optimizer, lr=lr, weight_decay=0.0))
    g = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(steps):
        v1 = x + 0.1 * torch.randn(x.shape, generator=g)
        v2 = x + 0.1 * torch.randn(x.shape, generator=g)
        loss = method.step(Batch(unlabeled=[(v1, v2)]))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses


def test_vicreg_with_lars_stays_finite_and_learns_where_sgd_blows_up():
    sgd = _vicreg_losses("sgd", lr=1.0)
    lars = _vicreg_losses("lars", lr=1.0)
    assert not all(math.isfinite(v) and v < 1e4 for v in sgd), sgd
    assert all(math.isfinite(v) for v in lars)
    assert sum(lars[-5:]) / 5 < sum(lars[:5]) / 5
