"""Every ```python block of README.md and docs/*.md runs: in order per file, sharing one
namespace per file, in a temporary working directory (with a copy of examples/). A block
preceded by a line ``<!-- not-run -->`` is skipped."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FENCE = re.compile(r"^```python[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
SKIP = "<!-- not-run -->"


def python_blocks(text: str) -> list[tuple[int, str]]:
    """(first line number, code) of each ```python block not marked ``<!-- not-run -->``."""
    out = []
    for m in FENCE.finditer(text):
        before = text[: m.start()].rstrip("\n").splitlines()
        if before and before[-1].strip() == SKIP:
            continue
        out.append((text.count("\n", 0, m.start()) + 2, m.group(1)))
    return out


DOCS = [
    p
    for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
    if python_blocks(p.read_text(encoding="utf-8"))
]


def test_the_block_finder():
    text = "x\n```python\na = 1\n```\n<!-- not-run -->\n```python\nboom()\n```\n```sh\nls\n```\n"
    assert python_blocks(text) == [(3, "a = 1\n")]


@pytest.mark.parametrize("doc", DOCS, ids=[str(p.relative_to(REPO)) for p in DOCS])
def test_python_examples_run(doc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    monkeypatch.chdir(tmp_path)
    namespace: dict = {"__name__": f"doc_{doc.stem}"}
    for line, code in python_blocks(doc.read_text(encoding="utf-8")):
        where = f"{doc.relative_to(REPO)}:{line}"
        exec(compile(code, where, "exec"), namespace)
