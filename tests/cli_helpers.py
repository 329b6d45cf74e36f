"""Helpers for tests that drive the command line: invoke it, check a one-line error."""

from __future__ import annotations

from typing import Any

from typer.testing import CliRunner

from fewlabels.cli import app

runner = CliRunner()


def invoke(*args: str) -> Any:
    """Run ``fewlabels ARGS`` in-process; exceptions propagate (they are bugs)."""
    return runner.invoke(app, list(args), catch_exceptions=False)


def one_line_error(r: Any, needle: str) -> str:
    """Assert exit code 2 and a last line ``error: ...`` that names ``needle`` (any case),
    without a traceback; return that line."""
    assert r.exit_code == 2, r.output
    lines = [ln for ln in r.output.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("error: "), r.output
    assert needle.lower() in lines[-1].lower(), lines[-1]
    assert "Traceback" not in r.output
    return lines[-1]
