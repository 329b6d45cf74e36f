"""SwAV, Self-Classifier, DINO and RotNet: losses against loop-by-loop formulas, and the
methods built on them (a few steps, after_step, the Trainer on digits)."""

from __future__ import annotations

import math

import pytest
import torch

from fewlabels.core.errors import ConfigError
from fewlabels.data.digits import load_digits_dataset
from fewlabels.data.imageset import ImageSet
from fewlabels.losses import dino_loss, rotation_loss, self_classifier_loss, sinkhorn, swav_loss
from fewlabels.methods import METHODS, Batch, build_method
from fewlabels.methods.rotnet import all_rotations
from fewlabels.models import Network
from fewlabels.models.heads import CosineLinear
from fewlabels.train.loop import TrainConfig, Trainer

torch.set_num_threads(1)

SMALL = {
    "swav": {"projector": (32, 16), "num_prototypes": 20},
    "self_classifier": {"projector": (32, 16), "classes": (10, 24)},
    "dino": {"head": (32, 16), "num_prototypes": 30},
    "rotnet": {},
}


def _rand(*shape: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _rows(t: torch.Tensor) -> list[list[float]]:
    return [[float(v) for v in row] for row in t.detach()]


def _softmax(xs: list[float]) -> list[float]:
    m = max(xs)
    e = [math.exp(x - m) for x in xs]
    return [v / sum(e) for v in e]


def _unit(v: list[float]) -> list[float]:
    n = math.sqrt(sum(x * x for x in v))
    return [x / n for x in v]


def _cosines(z: torch.Tensor, w: torch.Tensor) -> list[list[float]]:
    zs, ws = [_unit(r) for r in _rows(z)], [_unit(r) for r in _rows(w)]
    return [[sum(a * b for a, b in zip(zi, wk, strict=True)) for wk in ws] for zi in zs]


def _sinkhorn_loop(scores: list[list[float]], eps: float, iters: int) -> list[list[float]]:
    """Sinkhorn-Knopp on a B x K list, entry by entry (the paper's algorithm)."""
    b, k = len(scores), len(scores[0])
    q = [[math.exp(s / eps) for s in row] for row in scores]
    total = sum(map(sum, q))
    q = [[v / total for v in row] for row in q]
    for _ in range(iters):
        for j in range(k):  # each prototype's mass -> 1/K
            col = sum(q[i][j] for i in range(b))
            for i in range(b):
                q[i][j] /= col * k
        for i in range(b):  # each sample's mass -> 1/B
            row = sum(q[i])
            q[i] = [v / (row * b) for v in q[i]]
    return [[v * b for v in row] for row in q]


# -- SwAV -------------------------------------------------------------------------------


def test_sinkhorn_matches_the_loop_and_has_the_right_marginals():
    scores = torch.nn.functional.normalize(_rand(6, 4, seed=1), dim=1)
    q = sinkhorn(scores, 0.05, 3)
    want = _sinkhorn_loop(_rows(scores), 0.05, 3)
    torch.testing.assert_close(q, torch.tensor(want), rtol=1e-5, atol=1e-6)
    # every sample's codes sum to 1 (the last normalisation is over samples)
    torch.testing.assert_close(q.sum(1), torch.ones(6))
    # with enough iterations each prototype receives B/K of the batch: equipartition
    many = sinkhorn(scores, 0.05, 300)
    torch.testing.assert_close(many.sum(0), torch.full((4,), 6 / 4), rtol=1e-4, atol=1e-4)
    assert not torch.allclose(q.sum(0), torch.full((4,), 1.5), atol=1e-3)  # 3 is not enough
    # equal scores everywhere: uniform codes
    torch.testing.assert_close(sinkhorn(torch.zeros(3, 5), 0.05, 3), torch.full((3, 5), 0.2))


def test_sinkhorn_is_fp32_and_gradient_free_inside_bf16_autocast():
    scores = _rand(5, 3, seed=2).requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        q = sinkhorn(scores, 0.5, 3)
    assert q.dtype == torch.float32 and not q.requires_grad
    torch.testing.assert_close(q, torch.tensor(_sinkhorn_loop(_rows(scores), 0.5, 3)))


def test_swav_loss_matches_swapped_prediction_loop():
    z1, z2 = _rand(6, 5, seed=3), _rand(6, 5, seed=4)
    protos = torch.nn.functional.normalize(_rand(4, 5, seed=5), dim=1)
    t, eps = 0.1, 0.05
    s1, s2 = _cosines(z1, protos), _cosines(z2, protos)
    q1, q2 = _sinkhorn_loop(s1, eps, 3), _sinkhorn_loop(s2, eps, 3)
    total = 0.0
    for q, s in ((q2, s1), (q1, s2)):  # codes of one view, predictions of the other
        for i in range(6):
            p = _softmax([v / t for v in s[i]])
            total -= sum(q[i][k] * math.log(p[k]) for k in range(4)) / 6
    got = swav_loss(z1, z2, protos, t, eps, 3)
    assert float(got) == pytest.approx(total / 2, rel=1e-5)


def test_swav_codes_carry_no_gradient():
    # the loss's gradient w.r.t. the scores is (softmax - q) / (N T): the codes are constants
    z1 = _rand(4, 3, seed=6).requires_grad_()
    z2 = _rand(4, 3, seed=7)
    protos = torch.eye(3)
    swav_loss(z1, z2, protos, 0.5, 0.5, 3).backward()
    zn = torch.nn.functional.normalize(z1.detach(), dim=1)
    zn.requires_grad_()
    s1 = zn @ protos.T
    q2 = sinkhorn(torch.nn.functional.normalize(z2, dim=1) @ protos.T, 0.5, 3)
    ce = -(q2 * torch.log_softmax(s1 / 0.5, dim=1)).sum(1).mean() / 2
    (g_zn,) = torch.autograd.grad(ce, zn)
    (g_z1,) = torch.autograd.grad(torch.nn.functional.normalize(z1, dim=1), z1, g_zn)
    torch.testing.assert_close(z1.grad, g_z1)


# -- Self-Classifier ---------------------------------------------------------------------


def _self_classifier_loop(s1, s2, tr, tc, eps=1e-8):
    a, b = _rows(s1), _rows(s2)
    n, c = len(a), len(a[0])

    def log_pred(s):  # row softmax, then each class column scaled to sum 1 over the batch
        rows = [_softmax([v / tr for v in r]) for r in s]
        cols = [sum(rows[i][y] for i in range(n)) for y in range(c)]
        return [[math.log(n / c * rows[i][y] / cols[y] + eps) for y in range(c)] for i in range(n)]

    def target(s):  # softmax over the batch per class, then each row scaled to sum 1
        cols = [_softmax([s[i][y] / tc for i in range(n)]) for y in range(c)]
        out = [[cols[y][i] for y in range(c)] for i in range(n)]
        return [[v / sum(r) for v in r] for r in out]

    total = 0.0
    for t, lp in ((target(a), log_pred(b)), (target(b), log_pred(a))):
        total -= sum(t[i][y] * lp[i][y] for i in range(n) for y in range(c)) / n
    return total / 2


def test_self_classifier_loss_matches_the_loop():
    s1, s2 = _rand(7, 5, seed=8), _rand(7, 5, seed=9)
    got = self_classifier_loss(s1, s2, 0.1, 0.05)
    assert float(got) == pytest.approx(_self_classifier_loop(s1, s2, 0.1, 0.05), rel=1e-5)
    got = self_classifier_loss(s1, s2, 0.7, 0.3)
    assert float(got) == pytest.approx(_self_classifier_loop(s1, s2, 0.7, 0.3), rel=1e-5)


def test_self_classifier_hand_worked_cases():
    # equal logits everywhere: every distribution is uniform, the loss is log C
    assert float(self_classifier_loss(torch.zeros(4, 6), torch.zeros(4, 6))) == pytest.approx(
        math.log(6), rel=1e-6
    )
    # N = C images, each confidently in its own class in both views: loss ~ 0
    balanced = 5 * torch.eye(4)
    assert float(self_classifier_loss(balanced, balanced)) < 1e-3
    # all images confidently in class 0: the uniform prior makes this costly
    collapsed = torch.zeros(4, 4)
    collapsed[:, 0] = 5
    assert float(self_classifier_loss(collapsed, collapsed)) > 5


# -- DINO ---------------------------------------------------------------------------------


def test_dino_loss_matches_loop_with_centering_and_sharpening():
    s1, s2, t1, t2 = (_rand(5, 4, seed=s) for s in (10, 11, 12, 13))
    center = _rand(1, 4, seed=14)
    ts, tt = 0.1, 0.04
    total = 0.0
    for t, s in ((t1, s2), (t2, s1)):
        for i in range(5):
            pt = _softmax([(float(t[i, k]) - float(center[0, k])) / tt for k in range(4)])
            ps = _softmax([float(s[i, k]) / ts for k in range(4)])
            total -= sum(pt[k] * math.log(ps[k]) for k in range(4)) / 5
    got = dino_loss(s1, s2, t1, t2, center, ts, tt)
    assert float(got) == pytest.approx(total / 2, rel=1e-5)
    # centring matters: without it the loss differs
    assert float(dino_loss(s1, s2, t1, t2, 0 * center, ts, tt)) != pytest.approx(total / 2)
    # the teacher is a target: no gradient reaches it
    t1.requires_grad_()
    s1.requires_grad_()
    dino_loss(s1, s2, t1, t2, center, ts, tt).backward()
    assert t1.grad is None and s1.grad is not None


def test_cosine_linear_gives_cosines_in_fp32():
    layer = CosineLinear(3, 2)
    with torch.no_grad():
        layer.weight.copy_(torch.tensor([[2.0, 0.0, 0.0], [0.0, 3.0, 4.0]]))
    x = torch.tensor([[5.0, 0.0, 0.0], [1.0, 1.0, 0.0]])
    want = torch.tensor([[1.0, 0.0], [1 / math.sqrt(2), 3 / (5 * math.sqrt(2))]])
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = layer(x.bfloat16())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, want, rtol=1e-2, atol=1e-2)
    torch.testing.assert_close(layer(x), want)


# -- RotNet -------------------------------------------------------------------------------


def test_rotation_loss_is_cross_entropy_over_the_four_rotations():
    logits, k = _rand(6, 4, seed=15), torch.tensor([0, 1, 2, 3, 1, 0])
    want = -sum(math.log(_softmax(_rows(logits)[i])[int(k[i])]) for i in range(6)) / 6
    assert float(rotation_loss(logits, k)) == pytest.approx(want, rel=1e-6)


def test_all_rotations_labels_every_quarter_turn():
    # a 2x2 image [[1, 2], [3, 4]] turned a quarter counter-clockwise is [[2, 4], [1, 3]]
    img = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    turns = {
        0: [[1.0, 2.0], [3.0, 4.0]],
        1: [[2.0, 4.0], [1.0, 3.0]],
        2: [[4.0, 3.0], [2.0, 1.0]],
        3: [[3.0, 1.0], [4.0, 2.0]],
    }
    x = torch.tensor(turns[3]).view(1, 1, 2, 2)  # the policy already turned it 3 times
    xs, ks = all_rotations(x, torch.tensor([3]))
    assert ks.tolist() == [3, 0, 1, 2]
    for image, k in zip(xs, ks, strict=True):
        assert image[0].tolist() == turns[int(k)]
    assert torch.equal(torch.rot90(img, 1, dims=(2, 3))[0, 0], torch.tensor(turns[1]))


# -- the methods ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (16, 3, 16, 16), dtype=torch.uint8, generator=g)


def _method(name: str, seed: int = 0, **kw):
    torch.manual_seed(seed)
    net = Network("convnet", 3, 16, 0, backbone_kwargs={"dropout": 0.0})
    return build_method(name, net, **{**SMALL[name], **kw})


def _views(m, images: torch.Tensor):
    from fewlabels.augment import build_policy

    g = torch.Generator().manual_seed(1)
    return [build_policy(p, image_size=16)(images, g) for p in m.views["unlabeled"]]


def test_methods_are_registered_as_self_supervised():
    for name in SMALL:
        m = _method(name)
        assert METHODS[name] is type(m) and m.name == name
        assert m.kind == "self-supervised"
        assert m.views["labeled"] == () and len(m.views["unlabeled"]) == 1
    assert _method("rotnet").views["unlabeled"] == ("rotation",)


@pytest.mark.parametrize("name", list(SMALL))
def test_a_few_steps_on_a_fixed_batch_lower_the_loss(name, images):
    m = _method(name)
    views = _views(m, images)
    opt = torch.optim.Adam([p for p in m.parameters() if p.requires_grad], lr=1e-3)
    losses = []
    for s in range(15):
        out = m(Batch(unlabeled=views, step=s, progress=s / 15))
        assert out["loss"].dtype == torch.float32 and out["loss"].requires_grad
        assert all(not v.requires_grad for k, v in out.items() if k != "loss")
        opt.zero_grad()
        out["loss"].backward()
        opt.step()
        if name != "dino":  # against a moving teacher and centre DINO's loss need not fall
            m.after_step()
        losses.append(float(out["loss"].detach()))
    assert sum(losses[-3:]) < sum(losses[:3]), losses


def test_swav_keeps_prototypes_unit_norm_and_can_freeze_them(images):
    m = _method("swav", freeze_prototypes_steps=1)
    views = _views(m, images)
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(20))
    m(Batch(unlabeled=views, step=0))["loss"].backward()
    assert m.prototypes.weight.grad is not None
    assert float(m.prototypes.weight.grad.abs().max()) == 0.0  # frozen at step 0
    m.zero_grad()
    m(Batch(unlabeled=views, step=1))["loss"].backward()
    assert float(m.prototypes.weight.grad.abs().max()) > 0
    with torch.no_grad():
        m.prototypes.weight.mul_(3.0)
    m.after_step()
    torch.testing.assert_close(m.prototypes.weight.norm(dim=1), torch.ones(20))


def test_dino_moves_teacher_and_center_after_the_step(images):
    m = _method("dino")
    views = _views(m, images)
    assert torch.equal(m.center, torch.zeros(1, 30))
    opt = torch.optim.SGD([p for p in m.parameters() if p.requires_grad], lr=0.5)
    m(Batch(unlabeled=views, progress=0.5))["loss"].backward()
    assert all(p.grad is None for p in m.teacher_head.parameters())
    with torch.no_grad():  # the teacher's outputs of this step, before anything moves
        x = torch.cat(list(views[0]))
        mean = m.teacher_head(m.teacher_network.features(x)).mean(0, keepdim=True)
    opt.step()
    old = [p.detach().clone() for p in m.teacher_head.parameters()]
    m.after_step()
    torch.testing.assert_close(m.center, 0.1 * mean)  # 0.9 * 0 + 0.1 * batch mean
    tau = 0.995  # cosine schedule from 0.99 at progress 0.5
    for o, new, on in zip(old, m.teacher_head.parameters(), m.head.parameters(), strict=True):
        torch.testing.assert_close(new, tau * o + (1 - tau) * on.detach())


def test_dino_can_freeze_its_prototypes_for_the_first_steps(images):
    m = _method("dino", freeze_prototypes_steps=2)
    views = _views(m, images)
    protos = m.head[1].weight
    for step, moves in ((0, False), (1, False), (2, True)):
        m.zero_grad()
        m(Batch(unlabeled=views, step=step))["loss"].backward()
        assert protos.grad is not None  # a zero gradient, not None: DDP sees it used
        assert (float(protos.grad.abs().max()) > 0) is moves, step
        assert float(m.head[0][0].weight.grad.abs().max()) > 0  # the MLP always learns


def test_dino_teacher_temperature_warms_up_linearly_then_stays(images):
    m = _method("dino", teacher_temp=0.07, warmup_teacher_temp=0.04, teacher_temp_warmup=0.4)
    views = _views(m, images)
    temps = []
    for prog in (0.0, 0.2, 0.4, 0.9):
        m(Batch(unlabeled=views, progress=prog))
        temps.append(m.current_teacher_temp)
    assert temps == pytest.approx([0.04, 0.055, 0.07, 0.07])
    assert _method("dino", teacher_temp=0.05).current_teacher_temp == 0.05  # no warm-up


def test_dino_head_batchnorm_and_bad_settings():
    assert any(isinstance(x, torch.nn.BatchNorm1d) for x in _method("dino", head_bn=True).modules())
    assert not any(isinstance(x, torch.nn.BatchNorm1d) for x in _method("dino").head.modules())
    for bad, want in (
        ({"warmup_teacher_temp": 0.0}, "method.warmup_teacher_temp must be > 0, got 0.0"),
        ({"teacher_temp_warmup": 1.5}, r"method.teacher_temp_warmup must be in \[0, 1\], got 1.5"),
        ({"freeze_prototypes_steps": -1}, "method.freeze_prototypes_steps must be >= 0, got -1"),
    ):
        with pytest.raises(ConfigError, match="method 'dino': " + want) as e:
            _method("dino", **bad)
        assert "\n" not in str(e.value)


def test_rotnet_step_sees_all_four_rotations(images):
    m = _method("rotnet")
    (view,) = _views(m, images)
    x, k = view
    assert x.shape == images.shape and k.dtype == torch.long
    real, shapes = m.network.features, []

    def features(t: torch.Tensor) -> torch.Tensor:
        shapes.append(tuple(t.shape))
        return real(t)

    m.network.features = features  # type: ignore[method-assign]
    assert float(m(Batch(unlabeled=[view]))["loss"].detach()) > 0
    assert shapes == [(4 * 16, 3, 16, 16)]
    one = _method("rotnet", all_rotations=False)
    assert float(one(Batch(unlabeled=[view]))["loss"].detach()) > 0


def test_trainer_feeds_training_progress_to_growing_crops() -> None:
    # VICReg with crops growing from 16 to 32 px: the backbone sees them grow step by step
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    data = ImageSet(
        torch.randint(0, 256, (32, 3, 32, 32), dtype=torch.uint8, generator=g),
        torch.full((32,), -1),
        [str(i) for i in range(10)],
    )
    m = build_method(
        "vicreg",
        Network("convnet", 3, 32, 0),
        projector=(32, 32),
        augment="twoview:out_size=16..32",
    )
    sides: list[int] = []
    real = m.network.features

    def features(t: torch.Tensor) -> torch.Tensor:
        sides.append(t.shape[-1])
        return real(t)

    m.network.features = features  # type: ignore[method-assign]
    cfg = TrainConfig(budget="6steps", batch_size=8, precision="fp32", evals=1)
    Trainer(cfg, progress=False).fit(m, None, data)
    # progress 0, 1/6, ..., 5/6 -> 16 + 4 * floor(16 * p / 0.85 / 4) px
    assert sorted(set(sides)) == [16, 20, 24, 28] and sides == sorted(sides)


@pytest.fixture(scope="module")
def unlabeled_digits() -> ImageSet:
    train = load_digits_dataset().train
    return ImageSet(train.images[:48], torch.full((48,), -1), train.class_names)


@pytest.mark.parametrize("name", list(SMALL))
def test_trainer_runs_each_method_on_unlabeled_digits(name, unlabeled_digits):
    torch.manual_seed(0)
    net = Network("convnet", 1, 8, 0)
    m = build_method(name, net, **SMALL[name])
    before = [p.detach().clone() for p in m.network.backbone.parameters()]
    cfg = TrainConfig(budget="3steps", batch_size=16, precision="fp32", evals=1)
    res = Trainer(cfg, progress=False).fit(m, None, unlabeled_digits)
    assert res.steps == 3
    assert res.curve and math.isfinite(res.curve[-1]["loss"])
    after = list(m.network.backbone.parameters())
    assert any(not torch.equal(a, b) for a, b in zip(before, after, strict=True))
