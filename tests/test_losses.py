"""fewlabels.losses: each loss on a tiny case worked by hand, the module classes equal to the
functions (and to the values the methods' own loss functions gave before they moved here),
and gradients reaching exactly the inputs that should get them."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F

from fewlabels import losses
from fewlabels.losses import (
    BarlowTwinsLoss,
    BYOLLoss,
    DINOLoss,
    FairnessLoss,
    InfoNCELoss,
    MoCoLoss,
    NTXentLoss,
    PseudoLabelLoss,
    ReconstructionLoss,
    RotationLoss,
    SelfClassifierLoss,
    SoftmaxMSELoss,
    SupervisedLoss,
    SwAVLoss,
    VAELoss,
    VICRegLoss,
)

torch.set_num_threads(1)


def _rand(*shape: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(*shape, generator=g, dtype=torch.float64)


# The losses of the methods' own functions (fewlabels.methods.<method>.<name>_loss at commit
# d1038ab, before they moved to fewlabels.losses) on the inputs of ``_golden_inputs``.
BEFORE = {
    "nt_xent": 2.5691215991973877,
    "barlow_twins": 3.9965319633483887,
    "vicreg": 51.048805236816406,
    "byol": 1.91547691822052,
    "moco": 3.4885494709014893,
    "swav": 4.352176189422607,
    "dino": 9.976633071899414,
    "self_classifier": 4.042414665222168,
    "fairness": -2.1665961400259883,
    "vae": 0.17916256189346313,
}


def _golden() -> dict[str, torch.Tensor]:
    z1, z2 = _rand(6, 5, seed=1), _rand(6, 5, seed=2)
    mask = (z2[:, 0] > 0).double()
    running = torch.softmax(_rand(5, seed=3), 0), torch.softmax(_rand(5, seed=4), 0)
    recon, image = (
        torch.sigmoid(_rand(2, 1, 3, 3, seed=3)),
        torch.sigmoid(_rand(2, 1, 3, 3, seed=4)),
    )
    teacher = _rand(6, 5, seed=3), _rand(6, 5, seed=4), _rand(1, 5, seed=5)
    return {
        "nt_xent": NTXentLoss(temperature=0.5)(z1, z2),
        "barlow_twins": BarlowTwinsLoss(lambd=5e-3)(z1, z2),
        "vicreg": VICRegLoss()(z1, z2),
        "byol": losses.byol_loss(z1, z2),
        "moco": InfoNCELoss(0.2)(z1, z2, F.normalize(_rand(7, 5, seed=3), dim=1)),
        "swav": SwAVLoss(0.1, 0.05, 3)(z1, z2, F.normalize(_rand(4, 5, seed=3), dim=1)),
        "dino": DINOLoss(0.1, 0.04)(z1, z2, *teacher),
        "self_classifier": SelfClassifierLoss(0.1, 0.05)(z1, z2),
        "fairness": FairnessLoss()(torch.softmax(z1, 1), mask, *running),
        "vae": VAELoss(beta=0.5)(recon, image, z1[:2], z2[:2])[0],
    }


def test_the_losses_equal_what_the_methods_computed_before_they_moved():
    got = _golden()
    assert set(got) == set(BEFORE)
    for name, value in got.items():
        assert float(value) == pytest.approx(BEFORE[name], rel=1e-6, abs=1e-9), name


def _grads(fn: Callable[..., torch.Tensor], *inputs: torch.Tensor) -> list[torch.Tensor | None]:
    leaves = [t.detach().clone().requires_grad_(True) for t in inputs]
    fn(*leaves).backward()
    return [t.grad for t in leaves]


def _flows(g: torch.Tensor | None) -> bool:
    return g is not None and bool(torch.isfinite(g).all()) and bool(g.abs().sum() > 0)


# -- contrastive and joint-embedding losses -----------------------------------------------


def test_nt_xent_on_two_orthogonal_images():
    # two images, each view identical: every anchor scores its partner 1, the other image's
    # two views 0 and its own copy is masked out: -log(e / (e + 2)) for each of the 4 anchors
    z = torch.eye(2)
    assert float(NTXentLoss(temperature=1.0)(z, z.clone())) == pytest.approx(
        math.log((math.e + 2) / math.e)
    )
    z1, z2 = _rand(4, 3, seed=0).float(), _rand(4, 3, seed=1).float()
    assert torch.equal(NTXentLoss(0.5)(z1, z2), losses.nt_xent_loss(z1, z2, 0.5))
    assert all(_flows(g) for g in _grads(NTXentLoss(0.5), z1, z2))


def test_infonce_on_a_query_equal_to_its_key():
    q = torch.tensor([[1.0, 0.0, 0.0]])
    queue = torch.tensor([[0.0, 1.0, 0.0], [0.0, 0.0, 1.0]])
    assert float(InfoNCELoss(temperature=1.0)(q, q.clone(), queue)) == pytest.approx(
        math.log((math.e + 2) / math.e)
    )
    assert MoCoLoss is InfoNCELoss and losses.infonce_loss is losses.moco_loss
    gq, gk, gqueue = _grads(InfoNCELoss(0.2), _rand(2, 3, seed=0), _rand(2, 3, seed=1), queue)
    assert _flows(gq) and gk is None and gqueue is None  # keys and queue are detached


def test_barlow_twins_is_zero_for_whitened_views_and_eight_for_opposite_ones():
    # standardised, uncorrelated columns: C = I (up to eps) for z against itself, -I
    # against -z, so sum (1 - C_ii)^2 = 2 * 2^2
    z = torch.tensor([[1.0, 1.0], [-1.0, 1.0], [1.0, -1.0], [-1.0, -1.0]])
    assert float(BarlowTwinsLoss()(z, z.clone())) == pytest.approx(0.0, abs=1e-8)
    assert float(BarlowTwinsLoss()(z, -z)) == pytest.approx(8.0, rel=1e-4)
    assert float(BarlowTwinsLoss(scale=0.5)(z, -z)) == pytest.approx(4.0, rel=1e-4)
    assert all(
        _flows(g) for g in _grads(BarlowTwinsLoss(), _rand(6, 4, seed=0), _rand(6, 4, seed=1))
    )


def test_vicreg_only_the_invariance_term_sees_a_shift():
    # uncorrelated columns with standard deviation above 1: no variance or covariance term
    z = torch.tensor([[2.0, 2.0], [-2.0, -2.0], [2.0, -2.0], [-2.0, 2.0]])
    assert float(VICRegLoss()(z, z.clone())) == 0.0
    assert float(VICRegLoss()(z, z + 1)) == pytest.approx(25.0)  # mse 1 x sim_weight 25
    assert float(VICRegLoss(sim_weight=2.0)(z, z + 1)) == pytest.approx(2.0)
    assert all(_flows(g) for g in _grads(VICRegLoss(), _rand(6, 4, seed=0), _rand(6, 4, seed=1)))


def test_byol_loss_is_two_minus_twice_the_cosine():
    t = _rand(5, 3, seed=0).float()
    assert float(BYOLLoss()(t, -t, t, t)) == pytest.approx(4.0)  # cos 1 -> 0, cos -1 -> 4
    gp1, gp2, gt1, gt2 = _grads(BYOLLoss(), *(_rand(5, 3, seed=s) for s in range(4)))
    assert _flows(gp1) and _flows(gp2) and gt1 is None and gt2 is None


def test_swav_module_equals_the_function_and_trains_prototypes():
    z1, z2 = _rand(6, 4, seed=0).float(), _rand(6, 4, seed=1).float()
    w = F.normalize(_rand(3, 4, seed=2).float(), dim=1)
    assert torch.equal(SwAVLoss(0.1, 0.05, 3)(z1, z2, w), losses.swav_loss(z1, z2, w))
    assert all(_flows(g) for g in _grads(SwAVLoss(), z1, z2, w))


def test_dino_loss_is_the_cross_entropy_to_a_one_hot_teacher():
    # a teacher that is (nearly) one-hot on class 0 after sharpening; a uniform student:
    # H = log K for each of the two pairs
    t = torch.tensor([[100.0, 0.0, 0.0]])
    s = torch.zeros(1, 3)
    assert float(DINOLoss()(s, s, t, t, torch.zeros(1, 3))) == pytest.approx(math.log(3))
    grads = _grads(DINOLoss(), *(_rand(4, 3, seed=k) for k in range(4)), torch.zeros(1, 3))
    assert _flows(grads[0]) and _flows(grads[1]) and grads[2] is None and grads[3] is None


def test_self_classifier_uniform_logits_and_gradients_on_both_sides():
    # equal logits: every prediction and target is uniform, log(N/C * 1/N) = -log C
    s = torch.zeros(4, 3)
    assert float(SelfClassifierLoss()(s, s)) == pytest.approx(math.log(3), rel=1e-6)
    assert all(
        _flows(g) for g in _grads(SelfClassifierLoss(), _rand(6, 5, seed=0), _rand(6, 5, seed=1))
    )


# -- classification, reconstruction, semi-supervised ---------------------------------------


def test_cross_entropies_of_uniform_logits_are_log_k():
    logits, labels = torch.zeros(3, 4), torch.tensor([0, 1, 3])
    assert float(SupervisedLoss()(logits, labels)) == pytest.approx(math.log(4))
    assert float(SupervisedLoss(label_smoothing=0.2)(logits, labels)) == pytest.approx(math.log(4))
    assert float(RotationLoss()(logits, labels)) == pytest.approx(math.log(4))
    (g,) = _grads(lambda x: RotationLoss()(x, labels), _rand(3, 4, seed=0))
    assert _flows(g)


def test_reconstruction_and_vae_losses_by_hand():
    recon, image = torch.full((2, 1, 2, 3), 0.5), torch.zeros(2, 1, 2, 3)
    assert float(ReconstructionLoss()(recon, image)) == pytest.approx(0.25)
    mu, logvar = torch.ones(2, 4), torch.zeros(2, 4)  # KL = 0.5 * 4 * 1^2 = 2 per image
    loss, rec, kl = VAELoss(beta=0.5)(recon, image, mu, logvar)
    assert float(rec) == pytest.approx(6 * 0.25) and float(kl) == pytest.approx(2.0)
    assert float(loss) == pytest.approx((1.5 + 0.5 * 2.0) / 6)
    grads = _grads(lambda r, t, m, v: VAELoss()(r, t, m, v)[0], recon, image, mu, logvar + 0.3)
    assert _flows(grads[0]) and grads[1] is None and _flows(grads[2]) and _flows(grads[3])
    grads = _grads(ReconstructionLoss(), recon, image)
    assert _flows(grads[0]) and grads[1] is None


def test_pseudo_label_loss_averages_over_every_row():
    logits, targets = torch.zeros(2, 4), torch.tensor([1, 2])
    loss = PseudoLabelLoss()(logits, targets, torch.tensor([1.0, 0.0]))
    assert float(loss) == pytest.approx(math.log(4) / 2)  # the dropped row still counts
    (g,) = _grads(lambda x: PseudoLabelLoss()(x, targets, torch.ones(2)), _rand(2, 4, seed=0))
    assert _flows(g)


def test_fairness_loss_without_kept_samples_is_zero_and_has_gradients_otherwise():
    probs = torch.softmax(_rand(6, 3, seed=0), dim=1)
    running = torch.full((3,), 1 / 3, dtype=torch.float64)
    assert float(FairnessLoss()(probs, torch.zeros(6), running, running)) == 0.0
    (g,) = _grads(lambda p: FairnessLoss()(p, torch.ones(6), running, running), probs)
    assert _flows(g)


def test_softmax_mse_by_hand_and_the_teacher_gets_no_gradient():
    student = torch.zeros(1, 2)  # (0.5, 0.5)
    teacher = torch.tensor([[50.0, -50.0]])  # (1, 0)
    assert float(SoftmaxMSELoss()(student, teacher)) == pytest.approx(0.25)
    gs, gt = _grads(SoftmaxMSELoss(), _rand(3, 4, seed=0), _rand(3, 4, seed=1))
    assert _flows(gs) and gt is None


# -- helpers --------------------------------------------------------------------------------


def test_sum_sq_product_both_ways_and_full_precision_under_autocast():
    for n, d in ((3, 7), (7, 3)):
        a, b = _rand(n, d, seed=0), _rand(n, d, seed=1)
        torch.testing.assert_close(losses.sum_sq_product(a, b), (a.T @ b).square().sum())

    @losses.full_precision
    def dtype_of(x: torch.Tensor) -> torch.dtype:
        return (x @ x.T).dtype

    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert dtype_of(torch.randn(2, 2, dtype=torch.bfloat16)) == torch.float32


def test_losses_import_only_core():
    import ast
    from pathlib import Path

    root = Path(losses.__file__).parent
    for path in root.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("fewlabels"):
                assert node.module.startswith(("fewlabels.core", "fewlabels.losses")), path
            if isinstance(node, ast.Import):
                assert not any(a.name.startswith("fewlabels") for a in node.names), path
