"""Renderers of a study report: its sections as Markdown and as one self-contained HTML
page (inline CSS, relative ``<img>`` paths, no scripts), and its rows as CSV."""

from __future__ import annotations

import csv
import html
import io
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

from fewlabels.study.results import Row, settings_text
from fewlabels.study.sections import Section, Table

CSV_COLUMNS = [
    "cell",
    "method",
    "pipeline",
    "role",
    "labels",
    "labels_per_class",
    "labeled_fraction",
    "unlabeled",
    "n_labeled",
    "n_unlabeled",
    "seed",
    "status",
    "accuracy",
    "macro_f1",
    "steps",
    "train_seconds",
    "wall_seconds",
    "img_per_s",
    "error",
    "run_key",
    "strategy",
    "synthetic",
    "val_acc",
    "trial",
    "trial_settings",
]

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Helvetica,Arial,sans-serif;margin:2em auto;
max-width:1100px;color:#222;line-height:1.45;padding:0 1em}
h1{font-size:1.6em}h2{margin-top:1.6em;border-bottom:1px solid #ddd}h3{font-size:1.05em}
table{border-collapse:collapse;margin:.6em 0 1.4em;font-size:.88em}
th,td{border:1px solid #ccc;padding:.25em .6em;text-align:left}th{background:#f3f3f3}
figure{margin:1em 0}img{max-width:100%;border:1px solid #eee}figcaption{color:#555;font-size:.9em}
ul.summary li{margin:.3em 0}.note{color:#777;font-size:.9em}
"""


@dataclass
class Page:
    """A report page: the study's name and file, its cell counts, and its sections."""

    name: str
    source: str
    cells: int
    done: int
    sections: list[Section]
    study_dir: Path
    provenance: list[str] = field(default_factory=list)  # the footer: what produced the runs

    def verdict(self) -> Section | None:
        """The verdict section, shown first."""
        return next((sec for sec in self.sections if sec.name == "verdict"), None)

    def _rest(self) -> list[Section]:
        return [sec for sec in self.sections if sec.name != "verdict"]

    def summary(self) -> list[str]:
        return [s for sec in self._rest() for s in sec.summary]

    def tables(self) -> list[Table]:
        return [t for sec in self._rest() for t in sec.tables]

    def figures(self) -> list[tuple[str, str]]:
        """(caption, path relative to the study folder) of every figure."""
        return [
            (f.caption, f.path.relative_to(self.study_dir).as_posix())
            for sec in self.sections
            for f in sec.figures
        ]

    def notes(self) -> list[str]:
        return [n for sec in self._rest() for n in sec.notes]


def render_csv(rows: list[Row]) -> str:
    """One line per cell, the columns of ``CSV_COLUMNS`` (empty for none)."""
    buf = io.StringIO(newline="")
    w = csv.DictWriter(buf, fieldnames=CSV_COLUMNS, extrasaction="ignore")
    w.writeheader()
    for r in rows:
        d = asdict(r)
        d["trial_settings"] = settings_text(r.trial_settings)
        w.writerow({k: "" if d.get(k) is None else d[k] for k in CSV_COLUMNS})
    return buf.getvalue()


_MD_SPECIALS = re.compile(r"([\\`*_\[\]<>|$~&])")


def md_text(text: object) -> str:
    """``text`` (plain words holding user strings: method, class and file names) as Markdown
    shows it literally: every character Markdown or inline HTML would read is
    backslash-escaped, and line breaks become spaces."""
    return _MD_SPECIALS.sub(r"\\\1", " ".join(str(text).splitlines()))


def _md_code(text: str) -> str:
    """``text`` as an inline code span (fenced with more backticks than it holds)."""
    fence = "`" * (max((len(m) for m in re.findall(r"`+", text)), default=0) + 1)
    return f"{fence} {text} {fence}" if "`" in text else f"`{text}`"


def _md_table(t: Table) -> str:
    lines = [
        f"### {md_text(t.title)}",
        "",
        "| " + " | ".join(md_text(h) for h in t.header) + " |",
        "|" + "|".join("---" for _ in t.header) + "|",
    ]
    lines += ["| " + " | ".join(md_text(c) for c in row) + " |" for row in t.rows]
    return "\n".join(lines) + "\n"


def render_markdown(page: Page) -> str:
    """The report as Markdown: summary, tables, figures, notes."""
    e = md_text
    md = [
        f"# Study {e(page.name)}",
        "",
        f"From {_md_code(page.source)}; {page.cells} cells, {page.done} done.",
        "",
    ]
    verdict = page.verdict()
    if verdict is not None:
        md += ["## Verdict", ""] + [f"- {e(s)}" for s in verdict.summary] + [""]
        md += [f"_{e(n)}_\n" for n in verdict.notes] + [_md_table(t) for t in verdict.tables]
    md += ["## Summary", ""] + [f"- {e(s)}" for s in page.summary()] + [""]
    md += ["## Tables", ""] + [_md_table(t) for t in page.tables()]
    md += ["## Figures", ""] + [f"![{e(c)}]({p})\n" for c, p in page.figures()]
    md += [f"_{e(n)}_" for n in page.notes()]
    if page.provenance:
        md += ["", "---", ""] + [f"_{e(line)}_  " for line in page.provenance]
    return "\n".join(md) + "\n"


def _html_table(t: Table) -> str:
    e = html.escape
    head = "".join(f"<th>{e(h)}</th>" for h in t.header)
    rows = "".join("<tr>" + "".join(f"<td>{e(str(c))}</td>" for c in r) + "</tr>" for r in t.rows)
    return f"<h3>{e(t.title)}</h3>\n<table><tr>{head}</tr>{rows}</table>\n"


def render_html(page: Page) -> str:
    """The report as one HTML page: summary, figures, notes, tables."""
    e = html.escape
    body = [
        f"<h1>Study {e(page.name)}</h1>",
        f"<p class='note'>From <code>{e(page.source)}</code>; {page.cells} cells, "
        f"{page.done} done. Tables as markdown: "
        "<a href='report.md'>report.md</a>; every cell: <a href='results.csv'>"
        "results.csv</a>; the verdict's lines: <a href='verdict.csv'>verdict.csv</a>.</p>",
    ]
    verdict = page.verdict()
    if verdict is not None:
        body += ["<h2>Verdict</h2>", "<ul class='summary'>"]
        body += [f"<li>{e(s)}</li>" for s in verdict.summary] + ["</ul>"]
        body += [f"<p class='note'>{e(n)}</p>" for n in verdict.notes]
        body += [_html_table(t) for t in verdict.tables]
    body += ["<h2>Summary</h2>", "<ul class='summary'>"]
    body += [f"<li>{e(s)}</li>" for s in page.summary()] + ["</ul>", "<h2>Figures</h2>"]
    for caption, rel in page.figures():
        body.append(
            f"<figure><img src='{e(rel)}' alt='{e(caption)}'><figcaption>{e(caption)}"
            "</figcaption></figure>"
        )
    body += [f"<p class='note'>{e(n)}</p>" for n in page.notes()]
    body += ["<h2>Tables</h2>"] + [_html_table(t) for t in page.tables()]
    if page.provenance:
        lines = "<br>".join(e(line) for line in page.provenance)
        body.append(f"<footer class='note'><hr>{lines}</footer>")
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>Study {e(page.name)}</title><style>{_CSS}</style></head><body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
