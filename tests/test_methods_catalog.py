"""`fewlabels methods`: every name --method accepts, with options read from the code, and
docs/methods.md equal to its Markdown."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import invoke
from cli_helpers import one_line_error as _one_line_error

from fewlabels.methods import METHODS, method_names
from fewlabels.methods.catalog import describe
from fewlabels.train.self_training import DEFAULTS as SELF_TRAINING_DEFAULTS

DOC = Path(__file__).resolve().parents[1] / "docs" / "methods.md"


def test_every_method_is_listed_with_its_constructor_defaults():
    found = {m["name"]: m for m in describe()}
    assert sorted(found) == method_names()
    assert found["fixmatch"]["options"]["threshold"] == 0.95
    assert found["barlow_twins"]["options"]["lambd"] == 0.005
    assert found["teacher_student"]["options"] == SELF_TRAINING_DEFAULTS
    for name, cls in METHODS.items():
        assert found[name]["kind"] == cls.kind
        assert found[name]["summary"].endswith(".") and len(found[name]["summary"]) > 20
    assert found["simclr"]["summary"].startswith("SimCLR (Chen et al. 2020): pull two views")


def test_every_option_is_listed_from_the_config_with_its_source():
    found = {m["name"]: m for m in describe()}
    for name, cls in METHODS.items():
        fields = cls.Config.model_fields
        assert found[name]["options"] == {k: f.default for k, f in fields.items()}
        assert found[name]["descriptions"] == {k: f.description for k, f in fields.items()}
    assert found["simclr"]["descriptions"]["temperature"].startswith("SimCLR appendix B.9")
    assert found["teacher_student"]["descriptions"] == {}
    r = invoke("methods", "--kind", "semi-supervised")
    assert r.exit_code == 0, r.output
    assert "    threshold: FixMatch section 3.2 and appendix B.1: tau = 0.95." in r.output


def test_cli_lists_one_kind_and_refuses_an_unknown_kind():
    r = invoke("methods", "--kind", "self-supervised")
    assert r.exit_code == 0, r.output
    assert "simclr  (self-supervised)" in r.output and "fixmatch" not in r.output
    assert "options: temperature=0.5, projector=[2048, 128]" in r.output
    _one_line_error(invoke("methods", "--kind", "magic"), "unknown kind 'magic'")


def test_docs_methods_md_is_up_to_date():
    r = invoke("methods", "--markdown")
    assert r.exit_code == 0, r.output
    assert DOC.read_text() == r.output, "run: fewlabels methods --markdown > docs/methods.md"
