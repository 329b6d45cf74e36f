"""Issue 32 ("Reliability round two"), items 7, 11, 14, 15, 16, 18-21: each test fails on
the code before its fix. The methods' tests compare against small independent computations
of the reference rule (USB, the Mean Teacher code), not against a copy of our code."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from torch import nn

from fewlabels.methods import Batch
from fewlabels.methods.mean_teacher import MeanTeacher
from fewlabels.methods.softmatch import SoftMatch
from fewlabels.models import Network

HERE = Path(__file__).parent
sys.path.insert(0, str(HERE))


# -- 19, 20: SoftMatch as USB -----------------------------------------------------------------


class _Logits(nn.Module):
    """A two-class 'network' whose logits are its inputs, plus one weight (for the optimiser)."""

    num_classes = 2
    feature_dim = 2

    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.w


def test_softmatch_pseudo_labels_come_from_the_raw_predictions():
    m = SoftMatch(_Logits(), ema=0.5)
    # weak-view probabilities whose mean [0.8, 0.2] starts the alignment (USB: the first
    # batch); aligned, row 0 [0.6, 0.4] becomes [0.27, 0.73]
    lw = torch.log(torch.tensor([[0.6, 0.4], [0.9, 0.1], [0.9, 0.1]]))
    ls = torch.tensor([[0.0, 1.0], [2.0, 0.0], [0.5, 0.0]])
    xl, yl = torch.zeros(1, 2), torch.tensor([0])
    out = m(Batch(labeled=[xl], labels=yl, unlabeled=[lw, ls]))
    # reference (USB softmatch.train_step): probs = softmax(weak); aligned = SumNorm(probs /
    # p_model) with p_model = the first batch's mean; weights from the aligned probs;
    # pseudo-label = argmax of the raw probs
    probs = [[0.6, 0.4], [0.9, 0.1], [0.9, 0.1]]
    p_model = [sum(r[c] for r in probs) / 3 for c in range(2)]  # [0.8, 0.2]
    aligned = []
    for r in probs:
        a = [r[c] / p_model[c] for c in range(2)]
        aligned.append([x / sum(a) for x in a])
    assert aligned[0][1] > aligned[0][0]  # alignment flips row 0 to class 1 ...
    q = [max(a) for a in aligned]
    mu = 0.5 * 0.5 + 0.5 * (sum(q) / 3)  # USB: starts at 1/C, momentum 0.5 here
    var_b = sum((x - sum(q) / 3) ** 2 for x in q) / 2
    var = 0.5 * 1.0 + 0.5 * var_b
    w = [torch.exp(torch.tensor(-(min(x - mu, 0.0) ** 2) / (2 * var / 4))) for x in q]
    targets = [0, 0, 0]  # ... but the pseudo-labels are the raw argmax
    ce = [
        torch.nn.functional.cross_entropy(ls[i : i + 1], torch.tensor([targets[i]]))
        for i in range(3)
    ]
    want = sum(float(w[i]) * float(ce[i]) for i in range(3)) / 3
    assert float(out["loss_u"]) == pytest.approx(want, rel=1e-5)
    assert torch.allclose(m.alignment.class_probs, torch.tensor(p_model))


def test_alignment_mean_starts_from_the_first_batch_not_uniform():
    m = SoftMatch(_Logits(), ema=0.999)
    xl, yl = torch.zeros(1, 2), torch.tensor([0])
    lw = torch.log(torch.tensor([[0.9, 0.1], [0.7, 0.3]]))
    m(Batch(labeled=[xl], labels=yl, unlabeled=[lw, lw]))
    # USB DistAlignEMAHook.update_p: p_model is None -> p_model = mean of the first batch
    assert torch.allclose(m.alignment.class_probs, torch.tensor([0.8, 0.2]))
    lw2 = torch.log(torch.tensor([[0.5, 0.5], [0.5, 0.5]]))
    m(Batch(labeled=[xl], labels=yl, unlabeled=[lw2, lw2]))
    want = [0.999 * 0.8 + 0.001 * 0.5, 0.999 * 0.2 + 0.001 * 0.5]
    assert torch.allclose(m.alignment.class_probs, torch.tensor(want))


# -- 21: Mean Teacher's first update, running statistics under DDP ---------------------------------


def test_mean_teacher_first_update_averages_the_initial_weights():
    torch.manual_seed(0)
    net = Network("convnet", 1, 8, 10, backbone_kwargs={"widths": (8, 8, 8, 8)})
    mt = MeanTeacher(net, ema=0.999)
    init = [p.detach().clone() for p in mt.teacher.parameters()]
    with torch.no_grad():
        for p in mt.network.parameters():
            p.add_(1.0)
    mt.after_step()
    # the official code: optimizer.step(); global_step += 1;
    # alpha = min(1 - 1 / (global_step + 1), ema) = 0.5; ema = alpha * ema + (1 - alpha) * p
    for t0, s, t in zip(init, mt.network.parameters(), mt.teacher.parameters(), strict=True):
        torch.testing.assert_close(t, 0.5 * t0 + 0.5 * s.detach())


def test_running_statistics_are_gathered_across_ranks(tmp_path):
    sys.path.insert(0, str(HERE))
    from masking_ddp_worker import MOMENTUM, C, batches

    out = tmp_path / "state.pt"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node"]
    cmd += ["2", str(HERE / "masking_ddp_worker.py"), str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got = torch.load(out, weights_only=True)
    # reference (USB FreeMatchThresholingHook / SoftMatchWeightingHook / DistAlignEMAHook):
    # EMA updates from the whole gathered batch, written out row by row
    m = MOMENTUM
    tau, cp, hist, mu, var, align = 1 / C, [1 / C] * C, [1 / C] * C, 1 / C, 1.0, None
    for probs in batches():
        rows = probs.tolist()
        q = [max(r) for r in rows]
        top = [r.index(max(r)) for r in rows]
        mean_q = sum(q) / len(q)
        mean_p = [sum(r[c] for r in rows) / len(rows) for c in range(C)]
        tau = m * tau + (1 - m) * mean_q
        cp = [m * a + (1 - m) * b for a, b in zip(cp, mean_p, strict=True)]
        h = [top.count(c) / len(top) for c in range(C)]
        hist = [m * a + (1 - m) * b for a, b in zip(hist, h, strict=True)]
        mu = m * mu + (1 - m) * mean_q
        var = m * var + (1 - m) * sum((x - mean_q) ** 2 for x in q) / (len(q) - 1)
        ema = [m * a + (1 - m) * b for a, b in zip(align or mean_p, mean_p, strict=True)]
        align = mean_p if align is None else ema
    want = {"tau": [tau], "class_probs": cp, "hist": hist, "mu": [mu], "var": [var]}
    want["align"] = align
    for k, v in want.items():
        assert torch.allclose(got[k].reshape(-1), torch.tensor(v), atol=1e-6), k


# -- 18: the default expander is sized to the encoder ---------------------------------------


@pytest.mark.parametrize("name", ["barlow_twins", "vicreg"])
def test_default_projector_is_sized_to_the_encoder(name):
    from fewlabels.methods import build_method

    net = Network("convnet", 1, 8, 10)
    m = build_method(name, net)
    width = min(8192, 4 * net.feature_dim)  # the paper's 8192 = 4 x ResNet-50's 2048
    linears = [x for x in m.projector.modules() if isinstance(x, nn.Linear)]
    assert [x.out_features for x in linears] == [width] * 3
    # 3 x 8192 was 138M parameters (a 1.1 GB checkpoint with Adam's state) for this encoder
    assert sum(p.numel() for p in m.parameters()) < 12_000_000
    # an explicit projector still wins
    assert build_method(name, net, projector=(64, 32)).projector.out_dim == 32


# -- 7: user strings are shown literally -------------------------------------------------------

ODD_NAMES = ["$x^$", "$\\frac{1}{0", "a$b$c", ":train:", "[bold]b[/bold]", "[/x]", "50%_#&"]


def test_plots_draw_math_text_class_names_literally(tmp_path):
    import numpy as np

    from fewlabels.evaluate.plots import plot_confusion, plot_contact_sheet

    k = len(ODD_NAMES)
    conf = np.eye(k, dtype=int).tolist()
    assert plot_confusion(conf, ODD_NAMES, tmp_path / "c.png", title="$^$").exists()
    images = torch.zeros(k, 1, 8, 8, dtype=torch.uint8)
    labels = torch.arange(k)
    path = plot_contact_sheet(images, labels, ODD_NAMES, tmp_path / "s.png", title="$_$")
    assert path.exists()


def _odd_npz(tmp_path: Path) -> Path:
    import numpy as np

    k = len(ODD_NAMES)
    images = np.random.default_rng(0).integers(0, 255, (4 * k, 8, 8), dtype=np.uint8)
    labels = np.repeat(np.arange(k), 4)
    path = tmp_path / "odd.npz"
    np.savez(path, images=images, labels=labels, class_names=np.array(ODD_NAMES))
    return path


def test_data_inspect_shows_class_names_literally(tmp_path):
    npz = _odd_npz(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "COLUMNS": "200"}
    cmd = [str(Path(sys.executable).parent / "fewlabels"), "data", "inspect", f"npz:{npz}"]
    cmd += ["--sheet", str(tmp_path / "sheet.png")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert r.returncode == 0, r.stderr
    for name in ODD_NAMES[3:]:
        assert name in r.stdout, (name, r.stdout)
    assert "\U0001f686" not in r.stdout  # :train: is not turned into an emoji
    assert (tmp_path / "sheet.png").exists()


# -- 16, 15: label files: ids round-trip exactly, class names compare in NFC ----------------------


def _png(path: Path, value: int) -> None:
    import numpy as np
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((12, 12), value, np.uint8)).save(path)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(HERE.parent / "src"), "OMP_NUM_THREADS": "1"}
    env["FEWLABELS_CACHE"] = str(cwd / "cache")
    exe = str(Path(sys.executable).parent / "fewlabels")
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, cwd=cwd)


def test_select_ids_with_surrounding_spaces_round_trip_through_add_labels(tmp_path):
    import csv

    for k in range(3):
        _png(tmp_path / "imgs" / " cat" / f"{k}.png", 10 + 40 * k)
        _png(tmp_path / "imgs" / "dog" / f"{k}.png", 130 + 40 * k)
    r = _cli("select", "--data", "folder:imgs", "--budget", "6", "--strategy", "random",
             "--no-source-labels", "--out", "req.csv", cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stderr
    rows = list(csv.DictReader((tmp_path / "req.csv").open()))
    assert {r["id"] for r in rows} >= {" cat/0.png", "dog/0.png"}
    for row in rows:
        row["label"] = " cat" if row["id"].startswith(" cat/") else "dog"
    with (tmp_path / "req.csv").open("w") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    r = _cli("data", "add-labels", "req.csv", "--labels", "labels.csv", cwd=tmp_path)
    assert r.returncode == 0, r.stdout + r.stderr
    got = list(csv.DictReader((tmp_path / "labels.csv").open()))
    assert sorted((g["id"], g["label"]) for g in got) == sorted(
        [(f" cat/{k}.png", " cat") for k in range(3)] + [(f"dog/{k}.png", "dog") for k in range(3)]
    )
    # and the written labels file reads back as the same labeled set
    r = _cli("data", "add-labels", "req.csv", "--labels", "labels.csv", cwd=tmp_path)
    assert r.returncode == 0 and "6 were there already" in r.stdout, r.stdout + r.stderr


def test_class_names_are_compared_in_nfc(tmp_path):
    import unicodedata

    nfd, nfc = unicodedata.normalize("NFD", "café"), unicodedata.normalize("NFC", "café")
    assert nfd != nfc
    for k in range(2):
        _png(tmp_path / "imgs" / nfd / f"{k}.png", 10 + 40 * k)
        _png(tmp_path / "imgs" / "tea" / f"{k}.png", 130 + 40 * k)
    (tmp_path / "new.csv").write_text(f"id,label\n{nfd}/0.png,{nfc}\ntea/1.png,tea\n")
    r = _cli("data", "add-labels", "new.csv", "--data", "folder:imgs", "--labels", "l.csv",
             cwd=tmp_path)  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert "added 2 labels" in r.stdout


# -- 14: class folders named train/test in a flat folder; 15: unreadable folders ------------------


def test_flat_folder_with_classes_named_train_and_test(tmp_path):
    from cli_helpers import invoke

    for c in ("train", "test", "zebra"):
        for k in range(2):
            _png(tmp_path / "imgs" / c / f"{k}.png", 10 + 40 * k)
    r = invoke("data", "inspect", f"folder:{tmp_path / 'imgs'}", "--sheet", str(tmp_path / "s.png"))
    assert r.exit_code == 0, r.output
    assert "3 classes" in r.output
    from fewlabels.data import load_dataset

    ds = load_dataset(f"folder:{tmp_path / 'imgs'}", cache_dir=tmp_path / "cache")
    assert ds.class_names == ["test", "train", "zebra"] and ds.train.counts() == [2, 2, 2]


def _deny(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """os.scandir of ``folder`` fails as for a folder without read permission (the tests
    may run as root, whom chmod does not stop)."""
    real = os.scandir

    def scandir(path=".", *a):
        if Path(path) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *a)

    monkeypatch.setattr(os, "scandir", scandir)


def test_an_unreadable_class_folder_says_so(tmp_path, monkeypatch):
    from cli_helpers import invoke, one_line_error

    for c in ("cat", "dog"):
        _png(tmp_path / "imgs" / c / "0.png", 50)
    monkeypatch.setenv("FEWLABELS_CACHE", str(tmp_path / "cache"))
    _deny(monkeypatch, tmp_path / "imgs" / "dog")
    r = invoke("data", "inspect", f"folder:{tmp_path / 'imgs'}", "--sheet", str(tmp_path / "s.png"))
    line = one_line_error(r, f"cannot read class folder {tmp_path / 'imgs' / 'dog'}")
    assert "Permission denied" in line and "holds no images" not in line
    assert not (tmp_path / "s.png").exists()


def test_an_unreadable_unlabeled_folder_says_so(tmp_path, monkeypatch):
    from cli_helpers import invoke, one_line_error

    for c in ("cat", "dog"):
        _png(tmp_path / "imgs" / c / "0.png", 50)
    _png(tmp_path / "imgs" / "unlabeled" / "u.png", 50)
    monkeypatch.setenv("FEWLABELS_CACHE", str(tmp_path / "cache"))
    _deny(monkeypatch, tmp_path / "imgs" / "unlabeled")
    r = invoke("data", "inspect", f"folder:{tmp_path / 'imgs'}", "--sheet", str(tmp_path / "s.png"))
    line = one_line_error(r, "cannot read the unlabeled folder")
    assert "Permission denied" in line


# -- 15: --config DIR, warnings as one line ----------------------------------------------------


def test_config_that_is_a_folder_says_so(tmp_path):
    (tmp_path / "conf").mkdir()
    r = _cli("train", "--config", "conf", "--budget", "1steps", "--out", "out", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines == ["error: config file conf is a folder, not a YAML file"], r.stderr
    assert not (tmp_path / "out").exists()


def test_library_warnings_print_as_one_warning_line(tmp_path):
    for c in ("cat", "dog"):
        _png(tmp_path / "imgs" / c / "0.png", 50)
    _png(tmp_path / "imgs" / "loose.png", 50)  # warned about: ignored
    r = _cli("data", "inspect", "folder:imgs", "--sheet", "s.png", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines == ["warning: ignored 1 images directly in imgs: only images inside a class "
                     "folder (or unlabeled/) are used"], r.stderr  # fmt: skip


# -- 14: a validation fraction that rounds to 0 images is warned about ---------------------------


def _many_small_classes(k: int = 1000, per: int = 2):
    from fewlabels.data.imageset import Dataset, ImageSet

    y = torch.arange(k).repeat_interleave(per)
    images = torch.zeros(len(y), 1, 4, 4, dtype=torch.uint8)
    names = [f"c{i}" for i in range(k)]
    return Dataset("many", ImageSet(images, y, names), ImageSet(images, y, names))


def test_a_validation_fraction_that_rounds_to_zero_images_warns():
    from fewlabels.data.splits import SplitConfig, make_splits

    ds = _many_small_classes()
    msg = r"val 'train:0.1' takes no validation images: 0.1 of each class's labeled training"
    with pytest.warns(UserWarning, match=msg):
        s = make_splits(ds, SplitConfig(val="train:0.1", unlabeled="rest"))
    assert len(s.val) == 0
    with pytest.warns(UserWarning, match=r"val 'test:0.2' takes no validation images"):
        make_splits(ds, SplitConfig(val="test:0.2", unlabeled="rest"))
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(make_splits(ds, SplitConfig(val="train:0.5", unlabeled="rest")).val) == 1000
        make_splits(ds, SplitConfig(val="none", unlabeled="rest"))


# -- 14: evaluate, predict and quality treat images of another shape alike: convert + warn ---------


@pytest.fixture
def grey8_model_and_colour12_images(tmp_path):
    import numpy as np
    from PIL import Image

    from fewlabels.train.run import export_model

    torch.manual_seed(0)
    net = Network("convnet", 1, 8, 10)
    model = tmp_path / "m.pt"
    export_model(model, net, [str(i) for i in range(10)], {"method": "supervised"})
    rng = np.random.default_rng(0)
    for c in range(10):
        p = tmp_path / "imgs" / str(c) / "a.png"
        p.parent.mkdir(parents=True)
        Image.fromarray(rng.integers(0, 255, (12, 12, 3), dtype=np.uint8)).save(p)
    return model, tmp_path / "imgs"


CONVERTED = (
    "but the network expects 1x8x8: converted them (resized (bilinear), colour turned to grey)"
)


def _one_warning(r: subprocess.CompletedProcess) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("warning: "), r.stderr
    assert CONVERTED in lines[0], lines[0]
    return lines[0]


def test_evaluate_converts_images_of_another_shape_with_a_warning(
    grey8_model_and_colour12_images, tmp_path
):
    model, imgs = grey8_model_and_colour12_images
    r = _cli("evaluate", str(model), "--data", f"folder:{imgs}", "--split", "train", cwd=tmp_path)
    line = _one_warning(r)
    assert "the test images are 3x12x12" in line
    assert "10 images" in r.stdout


def test_predict_converts_images_of_another_shape_with_a_warning(
    grey8_model_and_colour12_images, tmp_path
):
    model, imgs = grey8_model_and_colour12_images
    r = _cli("predict", str(model), str(imgs), "--out", "p.csv", cwd=tmp_path)
    line = _one_warning(r)
    assert f"10 of 10 images differ in shape (the first: {imgs / '0' / 'a.png'}, 3x12x12)" in line
    assert len((tmp_path / "p.csv").read_text().splitlines()) == 11


def test_quality_converts_images_of_another_shape_with_a_warning(
    grey8_model_and_colour12_images, tmp_path
):
    model, imgs = grey8_model_and_colour12_images
    r = _cli("quality", str(imgs), "--encoder", str(model), "--reference", "digits", cwd=tmp_path)
    line = _one_warning(r)
    assert "the images judged are 3x12x12" in line
