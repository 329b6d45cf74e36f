"""Generated images: DiffAugment ops, GAN steps and exact resume, sampling to loadable PNGs,
sample-quality measures against direct computations, the CLI's one-line errors, extra
unlabeled images in pretraining, and the study's ``synthetic`` axis."""

from __future__ import annotations

import json

import numpy as np
import pytest
import scipy.linalg
import torch
from cli_helpers import invoke
from cli_helpers import one_line_error as _one_line_error

from fewlabels.core.checkpoint import load_checkpoint
from fewlabels.core.errors import ConfigError, DivergenceError
from fewlabels.data import load_dataset
from fewlabels.generate import GANConfig, frechet_distance, knn_precision_recall, train_gan
from fewlabels.generate.diffaugment import cutout, diff_augment, translation
from fewlabels.generate.train import load_generator

TINY = {"batch_size": 16, "z_dim": 16, "width": 8, "precision": "fp32", "checkpoint_every_s": 0}


def blobs(n: int = 48, size: int = 16, seed: int = 0) -> torch.Tensor:
    """uint8 RGB images of one bright square each on a dark background."""
    g = np.random.default_rng(seed)
    x = np.full((n, 3, size, size), 20, np.uint8)
    for i in range(n):
        r, c = g.integers(0, size - 4, 2)
        x[i, :, r : r + 4, c : c + 4] = g.integers(100, 256, 3)[:, None, None]
    return torch.from_numpy(x)


# -- DiffAugment ---------------------------------------------------------------------------
def test_translation_moves_an_impulse_within_an_eighth_and_cutout_zeroes_a_square():
    x = torch.zeros(64, 1, 16, 16)
    x[:, 0, 8, 8] = 1.0
    y = translation(x, torch.Generator().manual_seed(0))
    pos = y[:, 0].flatten(1).argmax(1)
    dy, dx = pos // 16 - 8, pos % 16 - 8
    assert y.sum(dim=(1, 2, 3)).eq(1).all()  # a shift of 2 at most keeps the pixel inside
    assert dy.abs().max() == 2 and dx.abs().max() == 2  # 1/8 of 16, both ways, all seen
    assert len(set(zip(dy.tolist(), dx.tolist(), strict=True))) > 10
    ones = torch.ones(64, 3, 16, 16)
    z = cutout(ones, torch.Generator().manual_seed(1))
    holes = (z[:, 0] == 0).sum(dim=(1, 2))
    assert holes.max() == 64 and holes.min() > 0  # an 8x8 square, clipped at the border
    assert torch.equal(z[:, 0], z[:, 2])  # the same hole in every channel


def test_diff_augment_is_seeded_and_passes_gradients():
    x = (torch.rand(8, 3, 16, 16) * 2 - 1).requires_grad_()
    a = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(3))
    b = diff_augment(x, "color,translation,cutout", torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and a.shape == x.shape
    a.sum().backward()
    assert x.grad is not None and x.grad.abs().sum() > 0
    with pytest.raises(ConfigError, match="unknown augmentation 'flip'"):
        diff_augment(x, "color,flip", torch.Generator())


# -- quality measures ----------------------------------------------------------------------
def _fd_direct(a: np.ndarray, b: np.ndarray) -> float:
    """The textbook formula with scipy's matrix square root."""
    mu1, mu2 = a.mean(0), b.mean(0)
    s1, s2 = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root = scipy.linalg.sqrtm(s1 @ s2).real
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1 + s2 - 2 * root))


def test_frechet_distance_matches_scipy_and_grows_with_a_mean_shift():
    g = np.random.default_rng(0)
    a = g.normal(size=(500, 6)) @ g.normal(size=(6, 6))
    b = g.normal(size=(400, 6)) * 1.5
    assert frechet_distance(a, a) == pytest.approx(0.0, abs=1e-8)
    assert frechet_distance(a, b) == pytest.approx(_fd_direct(a, b), rel=1e-6)
    fds = [frechet_distance(a, a + s) for s in (0.5, 1.0, 2.0)]
    for s, fd in zip((0.5, 1.0, 2.0), fds, strict=True):  # a shift moves only the means
        assert fd == pytest.approx(6 * s**2, rel=1e-6)
        assert fd == pytest.approx(_fd_direct(a, a + s), rel=1e-5)
    assert fds[0] < fds[1] < fds[2]


def test_knn_precision_recall_on_hand_made_points():
    line = np.array([[float(i), 0.0] for i in range(10)])  # k=3 radii: 2 inside, 3 at ends
    fake = np.array([[0.5, 0.0], [4.0, 1.5], [9.0, 2.9], [50.0, 0.0], [51.0, 0.0], [53, 0.0]])
    p, r = knn_precision_recall(line, fake, k=3)
    assert p == pytest.approx(3 / 6)  # the first three are within a real point's radius
    # fake radii (3rd neighbour among the fakes) are about 50 for the first three, so every
    # real point is covered
    assert r == 1.0
    p2, r2 = knn_precision_recall(line, line + np.array([0.0, 10.0]), k=3)  # moved far away
    assert p2 == 0.0 and r2 == 0.0
    p3, r3 = knn_precision_recall(line, line, k=3)
    assert p3 == 1.0 and r3 == 1.0
    with pytest.raises(ConfigError, match="more than 3"):
        knn_precision_recall(line, fake[:3], k=3)


# -- GAN training --------------------------------------------------------------------------
def test_gan_steps_are_finite_and_resume_bit_for_bit(tmp_path):
    images = blobs()
    cfg = GANConfig(budget="4steps", **TINY)
    full = train_gan(images, cfg, out_dir=tmp_path / "a", progress=False)
    assert full.steps == 4
    rows = [json.loads(s) for s in (tmp_path / "a" / "curve.jsonl").read_text().splitlines()]
    assert rows and all(np.isfinite(r[k]) for r in rows for k in ("d_loss", "g_loss"))
    half = train_gan(images, cfg, out_dir=tmp_path / "b", progress=False, stop_at_step=2)
    assert half.stopped_early and half.steps == 2
    resumed = train_gan(images, cfg, out_dir=tmp_path / "b", progress=False)
    assert resumed.resumed_from == 2 and resumed.steps == 4
    a = load_checkpoint(tmp_path / "a" / "checkpoint.pt")
    b = load_checkpoint(tmp_path / "b" / "checkpoint.pt")
    for part in ("generator", "discriminator", "generator_ema"):
        for k, v in a[part].items():
            assert torch.equal(v, b[part][k]), (part, k)
    # the generator moved away from its initialisation
    fresh = train_gan(images, GANConfig(budget="1steps", **TINY), progress=False)
    assert any(
        not torch.equal(v, full.generator.state_dict()[k])
        for k, v in fresh.generator.state_dict().items()
    )
    with pytest.raises(Exception, match="other GAN settings"):
        train_gan(
            images, GANConfig(budget="4steps", **{**TINY, "width": 4}), out_dir=tmp_path / "a"
        )


def test_generate_cli_writes_pngs_that_a_data_spec_loads(tmp_path):
    from fewlabels.models import Network
    from fewlabels.train.run import export_model

    enc = Network("convnet", in_channels=1, image_size=8, num_classes=0)
    export_model(tmp_path / "enc.pt", enc, [str(i) for i in range(10)], {"method": "none"})
    out = tmp_path / "gen"
    args = ["generate", "--data", "digits", "--out", str(out), "--budget", "3steps"]
    args += ["--num", "30", "--width", "8", "--batch-size", "16", "--precision", "fp32"]
    r = invoke(*args, "--encoder", str(tmp_path / "enc.pt"), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "Frechet dist." in r.output and "precision" in r.output
    ds = load_dataset(f"folder:{out / 'samples'}")
    assert ds.unlabeled is not None and ds.unlabeled.images.shape == (30, 1, 8, 8)
    assert len(ds.train) == 0
    q = json.loads((out / "quality.json").read_text())
    assert q["fd"] >= 0 and 0 <= q["precision"] <= 1 and 0 <= q["recall"] <= 1
    assert (out / "real_vs_generated.png").stat().st_size > 1000
    gen, meta = load_generator(out)
    assert gen.config["channels"] == 1 and meta["steps"] == 3
    # rerunning resumes the finished run: no more training, the same images
    before = (out / "samples" / "unlabeled" / "gen_000007.png").read_bytes()
    r2 = invoke(*args, "--no-progress")
    assert r2.exit_code == 0 and "trained 3 steps" in r2.output, r2.output
    assert (out / "samples" / "unlabeled" / "gen_000007.png").read_bytes() == before
    # quality of any folder
    r3 = invoke("quality", str(out / "samples"), "--encoder", str(tmp_path / "enc.pt"),
                "--reference", "digits")  # fmt: skip
    assert r3.exit_code == 0 and f"{q['fd']:.4g}" in r3.output, r3.output


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--size", "12"], "image size 12"),
        (["--budget", "soon"], "budget 'soon'"),
        (["--augment", "color,warp"], "unknown augmentation 'warp'"),
        (["--loss", "wasserstein"], "invalid setting"),
        (["--encoder", "nowhere.pt"], "does not exist"),
        (["--data", "cifar10:/no/such/dir"], "no such file"),
        (["--num", "-1"], "invalid setting"),
    ],
)
def test_generate_cli_bad_input_is_one_line(tmp_path, extra, needle):
    r = invoke("generate", "--out", str(tmp_path / "g"), "--budget", "1steps", *extra)
    _one_line_error(r, needle)


# -- generated images in pretraining and in a study ----------------------------------------
STUDY = """\
name: gen
data: digits
val: none
budget: 2steps
train: {batch_size: 16, evals: 1, precision: fp32}
generate: {budget: 2steps, batch_size: 16, width: 8, z_dim: 16, precision: fp32}
grid:
  labels_per_class: [2]
  unlabeled: [100]
  seeds: [0]
  synthetic: [0, 0.5]
methods:
  - supervised
  - {name: ssl, pretrain: simclr, then: knn}
upper_bound: false
report: {tsne: false}
"""


def test_study_synthetic_axis_trains_a_gan_and_adds_its_images(tmp_path):
    """The plan's generate job, run by the runner; a pretraining that takes 0.5x the pool."""
    from fewlabels.study import load_study
    from fewlabels.study.runner import execute_run
    from fewlabels.train.run import add_extra_unlabeled, load_extra_unlabeled

    path = tmp_path / "s.yaml"
    path.write_text(STUDY)
    plan = load_study(path)
    assert sorted(j.kind for j in plan.jobs.values()).count("generate") == 1
    assert {c.method for c in plan.cells} == {"supervised", "ssl", "ssl +0.5x generated"}
    syn = next(c for c in plan.cells if c.synthetic)
    gen_key, pre_key = syn.job_keys[0], syn.job_keys[1]
    assert plan.jobs[gen_key].kind == "generate" and plan.jobs[pre_key].deps == (gen_key,)
    base = next(c for c in plan.cells if c.method == "ssl")
    assert gen_key not in base.job_keys  # the 0x cell is the plain pipeline
    study = tmp_path / "out"
    for key in (gen_key, pre_key):
        job = plan.jobs[key]
        metrics, curve = execute_run({"key": key, "kind": job.kind, "spec": job.spec}, study)
        assert curve and metrics["steps"] == 2
    assert metrics["extra_unlabeled"] == 60  # half of the 20 labeled + 100 unlabeled images
    samples = study / "runs" / gen_key / "samples"
    assert len(list((samples / "unlabeled").glob("gen_*.png"))) == 1437  # digits' train set
    # too many asked for, or images of another size: one-line errors
    cfg = json.loads((study / "runs" / pre_key / "config.json").read_text())
    assert len(cfg.pop("data_fingerprint")) == 64  # the run's data, beside its settings
    from fewlabels.train.run import RunConfig

    rc = RunConfig(**{**cfg, "extra_unlabeled": f"folder:{samples}"})
    extra = load_extra_unlabeled(rc, load_dataset("digits").train)
    pool = load_dataset("digits").train
    with pytest.raises(Exception, match="only 1,437 are there"):
        add_extra_unlabeled(pool, extra, 1.5)
    assert len(add_extra_unlabeled(pool, extra, 0.0)) == len(pool)
    from fewlabels.generate.run import write_png_folder

    write_png_folder(torch.zeros(3, 3, 16, 16, dtype=torch.uint8), tmp_path / "big")
    with pytest.raises(Exception, match="generate them at the training images' size"):
        load_extra_unlabeled(
            rc.model_copy(update={"extra_unlabeled": f"folder:{tmp_path / 'big'}"}), pool
        )


def _row(method: str, seed: int, acc: float, synthetic: float = 0.0):
    from fewlabels.study.plan import method_name
    from fewlabels.study.results import Row

    return Row(
        cell=f"{method} {seed}", method=method_name(method, synthetic), base_method=method,
        pipeline="pretrain+probe", role="grid", labels="2/class", labels_per_class=2,
        labeled_fraction=None, unlabeled="rest", n_labeled=20, n_unlabeled=100,
        uses_unlabeled=True, seed=seed, status="done", accuracy=acc, macro_f1=acc,
        synthetic=synthetic,
    )  # fmt: skip


def test_synthetic_report_section_says_plainly_what_happened(tmp_path):
    from fewlabels.study.results import group_rows
    from fewlabels.study.sections import Results
    from fewlabels.study.synthetic import synthetic_section

    def section(rows):
        return synthetic_section(Results(rows, group_rows(rows), {}, tmp_path, tmp_path))

    rows = [_row("ssl", s, a) for s, a in enumerate((0.60, 0.62, 0.61))]
    rows += [_row("ssl", s, a, 0.5) for s, a in enumerate((0.50, 0.52, 0.51))]
    rows += [_row("ssl", s, a, 1.0) for s, a in enumerate((0.60, 0.63, 0.61))]
    sec = section(rows)
    text = " ".join(sec.summary)
    assert "adding 0.5x the real pool to the pretraining of ssl at 2/class" in text
    assert "by -10.0 points" in text and ": hurt." in text
    assert "by +0.3 points" in text and "no measurable effect" in text
    verdicts = [r[-1] for r in sec.tables[0].rows]
    assert verdicts == ["hurt", "no measurable effect (within the seed-to-seed spread)"]
    assert (tmp_path / "acc_vs_synthetic.png").stat().st_size > 1000
    assert section(rows[:3]).summary == []


@pytest.mark.parametrize(
    ("old", "new", "needle"),
    [
        ("budget: 2steps\ntrain", "budget: 2epochs\ntrain", "not epochs"),
        ("synthetic: [0, 0.5]", "synthetic: [0, 1.5]", "must be from 0 to 1"),
        ("  - {name: ssl, pretrain: simclr, then: knn}\n", "", "need a 'pretrain:'"),
        ("width: 8,", "widht: 8,", "generate.widht"),
    ],
)
def test_study_synthetic_axis_errors(tmp_path, old, new, needle):
    from fewlabels.study import load_study

    assert old in STUDY
    path = tmp_path / "s.yaml"
    path.write_text(STUDY.replace(old, new, 1))
    with pytest.raises(ConfigError, match=needle):
        load_study(path, check_data=False)


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_a_diverged_gan_names_settings_that_fit_the_run(tmp_path, monkeypatch, precision):
    from fewlabels.generate import train as gan_train

    real_d_loss = gan_train.d_loss
    monkeypatch.setattr(gan_train, "d_loss", lambda *a: real_d_loss(*a) * float("nan"))
    cfg = GANConfig(budget="2steps", **{**TINY, "precision": precision})
    with pytest.raises(DivergenceError) as e:
        train_gan(blobs(), cfg, out_dir=tmp_path / "g", progress=False)
    msg = str(e.value)
    assert "GAN loss became non-finite at step 0" in msg and "lower gan.lr" in msg, msg
    assert ("set gan.precision to fp32" in msg) == (precision == "bf16"), msg
    assert "--" not in msg and "checkpoint" not in msg, msg  # no flags; none was written
    # the CLI names its own flag for the setting
    args = ["generate", "--out", str(tmp_path / "c"), "--budget", "1steps", "--no-progress"]
    r = invoke(*args, "--width", "8", "--batch-size", "16", "--precision", precision)
    line = _one_line_error(r, "lower --lr")
    assert ("set --precision to fp32" in line) == (precision == "bf16"), line
