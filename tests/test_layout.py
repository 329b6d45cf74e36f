"""The layout rules: the package layers contract (import-linter) and scripts/check_layout.py."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
CHECKER = REPO / "scripts" / "check_layout.py"

# the packages every layer of the contract needs (api and losses are optional layers)
LAYER_PACKAGES = [
    "cli",
    "api",
    "study",
    "select",
    "generate",
    "train",
    "evaluate",
    "methods",
    "losses",
    "heads",
    "augment",
    "models",
    "data",
    "core",
]


def _load_checker():
    spec = importlib.util.spec_from_file_location("check_layout", CHECKER)
    module = importlib.util.module_from_spec(spec)
    sys.modules["check_layout"] = module
    spec.loader.exec_module(module)
    return module


check_layout = _load_checker()


# --- the layers contract -------------------------------------------------------------------


def _write_package(root: Path, sources: dict[str, str]) -> None:
    """A fake ``fewlabels`` package: every layer package, plus ``sources`` (path -> text)."""
    package = root / "fewlabels"
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name in LAYER_PACKAGES:
        (package / name).mkdir()
        (package / name / "__init__.py").write_text("")
    for relative, text in sources.items():
        path = package / relative
        if not path.parent.exists():  # a new package, e.g. an optional layer
            path.parent.mkdir(parents=True)
            (path.parent / "__init__.py").write_text("")
        path.write_text(text)


def _write_config(path: Path) -> None:
    """The repository's own [tool.importlinter] table, as an import-linter TOML file."""
    table = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["importlinter"]
    lines = ["[tool.importlinter]", f"root_package = {table['root_package']!r}", ""]
    for contract in table["contracts"]:
        lines.append("[[tool.importlinter.contracts]]")
        for key, value in contract.items():
            text = repr(value).replace("True", "true").replace("False", "false")
            lines.append(f"{key} = {text}")
    path.write_text("\n".join(lines) + "\n")


def _lint_imports(tmp_path: Path, sources: dict[str, str]) -> subprocess.CompletedProcess:
    tree = tmp_path / "tree"
    tree.mkdir()
    _write_package(tree, sources)
    config = tmp_path / "importlinter.toml"
    _write_config(config)
    code = "from importlinter.cli import lint_imports_command; lint_imports_command()"
    return subprocess.run(
        [sys.executable, "-c", code, str(config), "--no-cache", "--no-logo"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tree), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contract_keeps_downward_imports(tmp_path: Path) -> None:
    """Imports that only go down the layers keep the contract (control for the tests below)."""
    result = _lint_imports(
        tmp_path,
        {
            "cli/main.py": "import fewlabels.api\n",
            "study/run.py": "from fewlabels.train import loop\nfrom fewlabels import select\n",
            "select/pick.py": "import fewlabels.evaluate\n",
            "train/loop.py": "import fewlabels.methods\nimport fewlabels.data\n",
            "methods/m.py": "import fewlabels.losses\n",
            "losses/l.py": "import fewlabels.augment\nimport fewlabels.models\n",
            "api/run.py": "import fewlabels.study\n",
            "data/d.py": "import fewlabels.core\n",
        },
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        # evaluate -> train, the kind of upward import main had
        (
            {"evaluate/probe.py": "from fewlabels.train import loop\n"},
            "fewlabels.evaluate is not allowed to import fewlabels.train",
        ),
        # a function-level import is an import all the same
        (
            {"data/splits.py": "def f():\n    import fewlabels.select\n"},
            "fewlabels.data is not allowed to import fewlabels.select",
        ),
        # siblings in one layer may not import each other
        (
            {"select/pick.py": "import fewlabels.generate\n"},
            "fewlabels.select is not allowed to import fewlabels.generate",
        ),
        (
            {"models/net.py": "from fewlabels.augment import ops\n"},
            "fewlabels.models is not allowed to import fewlabels.augment",
        ),
        # the optional layers (api, losses) are checked once they exist
        (
            {"losses/ntxent.py": "from fewlabels.methods import simclr\n"},
            "fewlabels.losses is not allowed to import fewlabels.methods",
        ),
        (
            {"api/train.py": "import fewlabels.cli\n"},
            "fewlabels.api is not allowed to import fewlabels.cli",
        ),
        # core is the lowest layer
        (
            {"core/x.py": "import fewlabels.data\n"},
            "fewlabels.core is not allowed to import fewlabels.data",
        ),
    ],
)
def test_contract_breaks_on_upward_import(
    tmp_path: Path, sources: dict[str, str], message: str
) -> None:
    result = _lint_imports(tmp_path, sources)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "0 kept, 1 broken" in result.stdout
    assert message in result.stdout


def test_contract_breaks_on_undeclared_package(tmp_path: Path) -> None:
    """The contract is exhaustive: a new package must be given its place in the layers."""
    tree_sources = {"extras.py": "X = 1\n"}
    result = _lint_imports(tmp_path, tree_sources)
    assert result.returncode == 1, result.stdout + result.stderr
    assert "- fewlabels.extras" in result.stdout


# --- scripts/check_layout.py ---------------------------------------------------------------


def _function(name: str, body_lines: int) -> str:
    return f"def {name}():\n" + "".join(f"    x{k} = {k}\n" for k in range(body_lines - 1))


PLANTED = {
    # 501 lines
    "big.py": "".join(f"a{k} = {k}\n" for k in range(501)),
    # 500 lines: allowed
    "edge.py": "".join(f"a{k} = {k}\n" for k in range(500)),
    # an 81-line function (def line + 80) and an 80-line one (allowed)
    "long.py": _function("too_long", 81) + "\n\n" + _function("just_right", 80),
    "lazy.py": (
        "import fewlabels.core\n"  # module level: fine
        "from fewlabels.data import splits\n"  # module level: fine
        "\n"
        "\n"
        "def f():\n"
        "    import umap\n"  # optional third-party: fine
        "    import fewlabels.train\n"
        "    from fewlabels.select import base\n"
        "    from . import sibling\n"
        "    return umap, sibling\n"
        "\n"
        "\n"
        "class C:\n"
        "    async def g(self):\n"
        "        def inner():\n"
        "            from fewlabels.evaluate.probe import run_probe\n"
        "        import importlib\n"
        "        return importlib.import_module('fewlabels.study')\n"
    ),
}


def _planted_tree(root: Path) -> Path:
    package = root / "src" / "fewlabels"
    (package / "sub").mkdir(parents=True)
    for name, text in PLANTED.items():
        (package / "sub" / name).write_text(text)
    (package / "__init__.py").write_text("")
    return package


def test_check_layout_finds_planted_violations(tmp_path: Path) -> None:
    package = _planted_tree(tmp_path)
    found = [str(v) for v in check_layout.check_tree(package)]
    assert found == [
        "src/fewlabels/sub/big.py:1: file has 501 lines (at most 500)",
        "src/fewlabels/sub/lazy.py:7: function-level import of fewlabels.train in f",
        "src/fewlabels/sub/lazy.py:8: function-level import of fewlabels.select in f",
        "src/fewlabels/sub/lazy.py:9: function-level import of . in f",
        "src/fewlabels/sub/lazy.py:16: function-level import of fewlabels.evaluate.probe in g",
        "src/fewlabels/sub/lazy.py:18: function-level import of fewlabels.study in g",
        "src/fewlabels/sub/long.py:1: function too_long has 81 lines (at most 80)",
    ]


def test_check_layout_command_prints_and_fails(tmp_path: Path) -> None:
    package = _planted_tree(tmp_path)
    result = subprocess.run(
        [sys.executable, str(CHECKER), str(package)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 1
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    # paths are shown from the folder holding src/, as in `path:line: what`
    assert lines[0] == "src/fewlabels/sub/big.py:1: file has 501 lines (at most 500)"
    assert all(line.startswith("src/fewlabels/sub/") for line in lines)
    assert "7 layout violation(s)" in result.stderr


def test_check_layout_command_passes_a_clean_tree(tmp_path: Path) -> None:
    package = tmp_path / "src" / "fewlabels"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("import fewlabels.core\n\n\n" + _function("f", 80))
    result = subprocess.run(
        [sys.executable, str(CHECKER), str(package)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout == ""


def test_source_tree_follows_layout_rules() -> None:
    violations = check_layout.check_tree(REPO / "src" / "fewlabels")
    assert not violations, "\n".join(map(str, violations))
