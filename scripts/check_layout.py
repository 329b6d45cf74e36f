"""Check the source layout rules: ``python scripts/check_layout.py [ROOT]``.

ROOT defaults to ``src/fewlabels``. The rules (issue "A library, not only a CLI"):

- no source file over 500 lines;
- no function over 80 lines (from its ``def`` line to its last line);
- no function-level import of ``fewlabels`` (``import fewlabels...``, ``from fewlabels...
  import``, a relative import, or ``importlib.import_module("fewlabels...")``): such an
  import usually dodges an import cycle or a layer rule. Lazy imports of optional
  third-party packages are fine.

Each violation prints as ``path:line: what``; the exit status is 1 when there is any.
The package layers themselves are checked by ``lint-imports`` ([tool.importlinter] in
pyproject.toml).
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_PACKAGE = ROOT / "src" / "fewlabels"
PACKAGE_NAME = "fewlabels"
MAX_FILE_LINES = 500
MAX_FUNCTION_LINES = 80

_FUNCTIONS = (ast.FunctionDef, ast.AsyncFunctionDef)


@dataclass(frozen=True, order=True)
class Violation:
    """One broken rule: where (file and line) and what."""

    path: str
    line: int
    what: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.what}"


def _is_package_module(name: str | None) -> bool:
    return name is not None and (name == PACKAGE_NAME or name.startswith(PACKAGE_NAME + "."))


def _package_import(node: ast.AST) -> str | None:
    """The imported module's name when ``node`` imports from the package, else None."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if _is_package_module(alias.name):
                return alias.name
    elif isinstance(node, ast.ImportFrom):
        if node.level > 0:
            return "." * node.level + (node.module or "")
        if _is_package_module(node.module):
            return node.module
    elif isinstance(node, ast.Call):
        func = node.func
        name = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", None)
        if name == "import_module" and node.args:
            first = node.args[0]
            value = first.value if isinstance(first, ast.Constant) else None
            if isinstance(value, str) and _is_package_module(value):
                return value
    return None


def _function_imports(function: ast.AST) -> Iterator[tuple[int, str]]:
    """(line, module) of each package import anywhere inside ``function``'s body."""
    for node in ast.walk(function):
        module = _package_import(node)
        if module is not None:
            yield node.lineno, module


def check_source(source: str, path: str) -> list[Violation]:
    """The violations in one file's source text (``path`` is only for the messages)."""
    found: list[Violation] = []
    n_lines = len(source.splitlines())
    if n_lines > MAX_FILE_LINES:
        found.append(Violation(path, 1, f"file has {n_lines} lines (at most {MAX_FILE_LINES})"))
    tree = ast.parse(source, filename=path)
    seen_imports: set[int] = set()
    for node in ast.walk(tree):
        if not isinstance(node, _FUNCTIONS):
            continue
        length = (node.end_lineno or node.lineno) - node.lineno + 1
        if length > MAX_FUNCTION_LINES:
            found.append(
                Violation(
                    path,
                    node.lineno,
                    f"function {node.name} has {length} lines (at most {MAX_FUNCTION_LINES})",
                )
            )
        for line, module in _function_imports(node):
            if line not in seen_imports:  # a nested function's import is reported once
                seen_imports.add(line)
                found.append(
                    Violation(path, line, f"function-level import of {module} in {node.name}")
                )
    return found


def check_tree(package: Path, relative_to: Path | None = None) -> list[Violation]:
    """The violations in every ``.py`` file under ``package``, sorted by path and line.

    Paths in the messages are relative to ``relative_to`` (default: ``package``'s parent's
    parent, the repository root for ``src/fewlabels``) when they lie under it.
    """
    base = relative_to if relative_to is not None else package.parent.parent
    found: list[Violation] = []
    for file in sorted(package.rglob("*.py")):
        shown = file.relative_to(base) if file.is_relative_to(base) else file
        found.extend(check_source(file.read_text(encoding="utf-8"), str(shown)))
    return sorted(found)


def main(argv: list[str] | None = None) -> int:
    """Print every violation under the given package (default src/fewlabels); 1 if any."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) > 1:
        print("usage: check_layout.py [PACKAGE_DIR]", file=sys.stderr)
        return 2
    package = Path(args[0]) if args else DEFAULT_PACKAGE
    if not package.is_dir():
        print(f"check_layout: {package} is not a directory", file=sys.stderr)
        return 2
    violations = check_tree(package)
    for violation in violations:
        print(violation)
    if violations:
        print(f"{len(violations)} layout violation(s)", file=sys.stderr)
    return 1 if violations else 0


if __name__ == "__main__":
    sys.exit(main())
