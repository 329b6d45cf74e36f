"""User strings (class and method names) are shown literally in a study's report: drawn
as plain text in its figures, escaped for Markdown in report.md and for HTML in
report.html (issue 32, item 7)."""

from __future__ import annotations

import html

import numpy as np
from cli_helpers import invoke

from fewlabels.study.render import md_text

CLASSES = ["$x^2$", "[bold]", "<b>a|b</b>"]
METHOD = "$x^$ *em* <i>|"  # a math-text syntax error if matplotlib parsed it


def test_md_text_escapes_what_markdown_would_read():
    assert md_text("<b>a|b</b>") == "\\<b\\>a\\|b\\</b\\>"
    assert md_text("$x^2$ [bold] *em* a_b `c` ~d~ &amp;") == (
        "\\$x^2\\$ \\[bold\\] \\*em\\* a\\_b \\`c\\` \\~d\\~ \\&amp;"
    )
    assert md_text("two\nlines") == "two lines"


def test_a_study_with_odd_class_and_method_names_reports_them_literally(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 20)
    images = rng.integers(0, 255, (60, 8, 8), dtype=np.uint8)
    np.savez(
        tmp_path / "odd.npz",
        images=images,
        labels=labels,
        test_images=images[::4],
        test_labels=labels[::4],
        class_names=np.array(CLASSES),
    )
    spec = tmp_path / "odd.yaml"
    spec.write_text(
        f"name: odd\ndata: npz:{tmp_path / 'odd.npz'}\nbudget: 2steps\n"
        "train:\n  batch_size: 8\n  precision: fp32\n"
        "grid:\n  labels_per_class: [3]\n  unlabeled: [0]\n  seeds: [0]\n"
        f"methods:\n  - supervised\n  - name: {METHOD!r}\n    train: supervised\n"
        "upper_bound: false\n"
    )
    out = tmp_path / "out"
    r = invoke("study", str(spec), "--out", str(out), "--no-progress")
    assert r.exit_code == 0, r.output
    assert "0 failed" in r.output, r.output
    md = (out / "report.md").read_text()
    page = (out / "report.html").read_text()
    assert md_text(METHOD) in md and METHOD not in md
    assert html.escape(METHOD) in page and "<i>" not in page
    figures = {p.name for p in (out / "figures").iterdir()}
    assert {"confusion.png", "compute.png"} <= figures
