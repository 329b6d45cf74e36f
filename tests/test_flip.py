"""``flip: false``: data whose mirror image is not of its class (digits, text). No view of
any method mirrors, fine-tuning does not, and test-time augmentation is refused."""

from __future__ import annotations

import json

import pytest
import torch
from cli_helpers import invoke, one_line_error

import fewlabels
from fewlabels.augment import build_policy, unmirrored
from fewlabels.core.errors import ConfigError
from fewlabels.study.spec import parse_study
from fewlabels.train import probing
from fewlabels.train.run import RunConfig, run_training


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("weak", "weak:flip=0"),
        ("strong:cutout=2", "strong:cutout=2,flip=0"),
        ("twoview:min_scale=0.35", "twoview:min_scale=0.35,flip=0"),
        ("simclr", "simclr:flip=0"),
        ("rotation", "rotation:flip=0"),
        ("denoise", "denoise:flip=0"),
        ("flips", "flips:flip=0"),
        ("weak:flip=0.5", "weak:flip=0.5"),  # the spec's own flip wins
        ("none", "none"),  # no mirror to remove
    ],
)
def test_unmirrored_adds_flip_0_where_the_policy_mirrors(spec: str, expected: str) -> None:
    assert unmirrored(spec) == expected
    build_policy(unmirrored(spec), image_size=8)  # still a valid policy


def _asymmetric(n: int = 64, size: int = 8) -> torch.Tensor:
    """Images whose left and right halves differ (a mirror image is detectable)."""
    x = torch.zeros(n, 1, size, size, dtype=torch.uint8)
    x[:, :, :, : size // 2] = 200
    return x


@pytest.mark.parametrize("spec", ["weak:pad=0", "flips"])
def test_a_flip_0_policy_never_mirrors(spec: str) -> None:
    x = _asymmetric()
    expect = x.float().div(255)
    g = torch.Generator().manual_seed(0)
    mirrored = build_policy(spec, image_size=8)(x, g)
    assert not torch.allclose(mirrored, expect)  # the default mirrors some images
    kept = build_policy(unmirrored(spec), image_size=8)(x, torch.Generator().manual_seed(0))
    assert torch.allclose(kept.contiguous(), expect)


def _views(method) -> list[str]:
    return [p for v in method.views.values() for p in v]


@pytest.mark.parametrize(
    ("method", "kwargs"),
    [
        ("supervised", {}),
        ("fixmatch", {"strong": "strong:cutout=2"}),
        ("simclr", {}),  # its online probe's labeled view too
    ],
)
def test_a_run_with_flip_false_mirrors_in_no_view(method: str, kwargs: dict) -> None:
    cfg = RunConfig(
        labels_per_class=3,
        method=method,
        method_kwargs=kwargs,
        flip=False,
        train={"budget": "2steps", "batch_size": 16},
        out=None,
    )
    res = run_training(cfg, progress=False, log=lambda s: None)
    views = _views(res.method)
    assert views and all("flip=0" in v or v.startswith("none") for v in views), views
    if method == "fixmatch":
        assert "strong:cutout=2,flip=0" in views
    default = run_training(
        cfg.model_copy(update={"flip": True}), progress=False, log=lambda s: None
    )
    assert not any("flip=0" in v for v in _views(default.method))


def test_tta_with_flip_false_is_refused_before_anything_is_written(tmp_path) -> None:
    out = tmp_path / "run"
    cfg = RunConfig(flip=False, tta=True, train={"budget": "2steps"}, out=str(out))
    with pytest.raises(ConfigError, match="tta averages"):
        run_training(cfg, progress=False, log=lambda s: None)
    assert not out.exists()


def test_the_cli_takes_no_flip_and_refuses_it_with_tta(tmp_path) -> None:
    out = tmp_path / "refused"
    r = invoke("train", "--no-flip", "--tta", "--budget", "2steps", "--out", str(out))
    one_line_error(r, "tta averages")
    assert not out.exists()
    ok = tmp_path / "run"
    args = ("--no-flip", "--budget", "2steps", "--no-progress", "--out", str(ok))
    assert invoke("train", *args).exit_code == 0
    assert json.loads((ok / "config.json").read_text())["flip"] is False


def test_finetuning_with_flip_false_does_not_mirror(monkeypatch) -> None:
    made: list[str] = []
    real = probing.Supervised

    def recording(net, **options):
        m = real(net, **options)
        made.extend(_views(m))
        return m

    monkeypatch.setattr(probing, "Supervised", recording)
    splits = fewlabels.split(fewlabels.load("digits"), labels_per_class=3, seed=0)
    enc = fewlabels.train("supervised", splits.labeled, budget="2steps", batch_size=16)
    fewlabels.probe(enc, splits.labeled, splits.test, protocol="finetune", budget="2steps",
                    flip=False)  # fmt: skip
    assert made == ["weak:flip=0"]


STUDY = """
data: digits
flip: false
budget: 2steps
grid:
  labels_per_class: [2]
  seeds: [0]
methods:
  - supervised
  - {name: ssl, pretrain: simclr, then: finetune}
upper_bound: false
"""


def test_a_study_passes_flip_false_to_every_run_and_probe() -> None:
    plan = parse_study(STUDY, "s.yaml", check_data=False)
    configs = [job.spec.get("config") or job.spec["probe"] for job in plan.jobs.values()]
    assert len(configs) == 3 and all(c.get("flip") is False for c in configs)
    kept = parse_study(STUDY.replace("flip: false\n", ""), "s.yaml", check_data=False)
    kept_configs = [j.spec.get("config") or j.spec["probe"] for j in kept.jobs.values()]
    assert not any("flip" in c for c in kept_configs)  # the keys of existing studies stay
