"""A real package: the wheel ships LICENSE, py.typed and the examples; installed outside the
repository, ``fewlabels --version``, ``init`` and an example study by name work."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import site
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
import yaml
from typer.testing import CliRunner

import fewlabels
from fewlabels.cli import app
from fewlabels.cli.init import examples, study_file
from fewlabels.study import load_study

REPO = Path(__file__).resolve().parents[1]
runner = CliRunner()


def _run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> str:
    res = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, (cmd, res.stdout[-1000:], res.stderr[-2000:])
    return res.stdout


def test_metadata_matches_the_build_requirements():
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert meta["project"]["license"] == "MIT"
    # a license expression (PEP 639) needs setuptools >= 77 to build
    assert "setuptools>=77" in meta["build-system"]["requires"]
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    torch_req = next(d for d in meta["project"]["dependencies"] if d.startswith("torch"))
    assert torch_req == "torch>=2.13"  # admits current releases
    assert re.fullmatch(r"timm==[\d.]+", meta["project"]["optional-dependencies"]["timm"][0])
    assert fewlabels.__version__ == meta["project"]["version"]
    # examples/ at the root is the package's folder, not a second copy
    assert (REPO / "examples").resolve() == (REPO / "src" / "fewlabels" / "examples").resolve()


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, built from a copy of the sources (nothing written into the repository)."""
    if importlib.util.find_spec("setuptools") is None:
        pytest.skip("building the wheel needs setuptools>=77 (the dev extra)")
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in ("pyproject.toml", "README.md", "LICENSE"):
        shutil.copy2(REPO / name, src / name)
    ignore = shutil.ignore_patterns("__pycache__", "*.egg-info", "*.pyc")
    shutil.copytree(REPO / "src", src / "src", ignore=ignore)
    cmd = [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation"]
    _run([*cmd, "-q", "-w", str(tmp / "dist")], cwd=tmp)
    (found,) = (tmp / "dist").glob("fewlabels-*.whl")
    return found


def test_wheel_ships_license_types_and_examples(wheel):
    names = zipfile.ZipFile(wheel).namelist()
    assert "fewlabels/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    shipped = {Path(n).stem for n in names if n.startswith("fewlabels/examples/")}
    assert shipped == set(examples()) and "digits" in shipped
    meta = zipfile.ZipFile(wheel).read(next(n for n in names if n.endswith("METADATA")))
    assert b"License-Expression: MIT" in meta and b"Requires-Dist: torch>=2.13" in meta


def test_installed_wheel_works_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    purelib = _run(
        [str(py), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], tmp_path
    )
    # the dependencies (torch, ...) from this environment, after the venv's own packages
    deps = [p for p in sys.path if p.endswith("-packages")] or site.getsitepackages()
    (Path(purelib.strip()) / "zz_deps.pth").write_text("\n".join(deps) + "\n")
    _run([str(py), "-m", "pip", "install", "-q", "--no-deps", str(wheel)], cwd=tmp_path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["OMP_NUM_THREADS"] = "1"
    work = tmp_path / "work"
    work.mkdir()
    cli = str(venv / "bin" / "fewlabels")
    assert _run([cli, "--version"], work, env).strip() == f"fewlabels {fewlabels.__version__}"
    _run([cli, "init", "mystudy"], work, env)
    data = yaml.safe_load((work / "mystudy.yaml").read_text())
    assert data["name"] == "mystudy" and data["data"] == "digits"
    assert "digits" in _run([cli, "init", "--list"], work, env)
    check = (
        "import fewlabels, pathlib; from fewlabels.cli.init import study_file; "
        "from fewlabels.study import load_study; "
        f"assert fewlabels.__file__.startswith({str(venv)!r}), fewlabels.__file__; "
        "print(load_study(study_file(pathlib.Path('digits'))).name)"
    )
    assert _run([str(py), "-c", check], work, env).strip() == "digits-demo"


def test_init_refuses_to_overwrite_and_checks_names(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    r = runner.invoke(app, ["init", "s1", "--example", "cifar10"], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    first = (tmp_path / "s1.yaml").read_text()
    assert "name: s1" in first and "fewlabels study s1.yaml" in first
    (tmp_path / "s1.yaml").write_text("mine")
    r = runner.invoke(app, ["init", "s1.yaml"], catch_exceptions=False)
    assert r.exit_code == 2 and "s1.yaml already exists" in r.output
    assert (tmp_path / "s1.yaml").read_text() == "mine"
    for bad, needle in (("../up", "study name"), ("x", "unknown example")):
        args = ["init", bad] + (["--example", "nope"] if bad == "x" else [])
        r = runner.invoke(app, args, catch_exceptions=False)
        assert r.exit_code == 2 and needle in r.output.splitlines()[-1], r.output
    assert not (tmp_path / "x.yaml").exists()


def test_study_takes_an_example_by_name_but_a_file_wins(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert study_file(Path("digits")) == examples()["digits"]
    assert study_file(Path("digits.yaml")) == examples()["digits"]
    assert load_study(study_file(Path("digits"))).name == "digits-demo"
    (tmp_path / "digits.yaml").write_text("name: mine\n")
    assert study_file(Path("digits.yaml")) == Path("digits.yaml")
    assert study_file(Path("sub/digits")) == Path("sub/digits")  # a path is never an example


def test_lock_is_resolved_and_hashed_and_torch_pinned_beside_it():
    text = (REPO / "requirements.lock").read_text()
    assert "autogenerated by pip-compile" in text
    blocks = re.findall(
        r"(?m)^([A-Za-z0-9][\w.\-]*)==(\S+) \\\n((?:    --hash=sha256:\w+.*\n)+)", text
    )
    pinned = {name.lower() for name, _, _ in blocks}
    lines = [ln for ln in text.splitlines() if re.match(r"[A-Za-z0-9]", ln)]
    assert len(lines) == len(blocks) > 50  # every requirement pinned, each with its hashes
    # transitive packages a hand-written lock missed; torch is installed by its own pin
    assert {"narwhals", "cloudpickle", "tzdata", "sympy", "setuptools"} <= pinned
    assert "torch" not in pinned
    (torch_pin,) = [
        ln
        for ln in (REPO / "requirements-torch.txt").read_text().splitlines()
        if ln and not ln.startswith("#")
    ]
    assert re.fullmatch(r"torch==2\.1[3-9]\.\d+", torch_pin)
    make = (REPO / "Makefile").read_text()
    assert "--require-hashes -r requirements.lock" in make
    assert "-r requirements-torch.txt" in make
