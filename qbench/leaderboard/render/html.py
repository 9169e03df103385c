"""``leaderboard.html``: one self-contained page (no network): sortable tables, plots, provenance.

Everything is inline: the style, a small sorting script, the plots as SVG data URIs (an SVG in
an ``<img>`` cannot run script). A Content-Security-Policy forbids any fetch. Every string that
comes from a record (labels, descriptions, errors, provenance) is escaped with
:func:`html.escape`, so a component description containing markup shows as text.
"""

from __future__ import annotations

import base64
import functools
from collections.abc import Callable
from html import escape
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.leaderboard.compute.frame import RunsFrame
from qbench.leaderboard.render.display import NO_BASELINE_SENTENCE, Column, Displays, DisplayTable
from qbench.leaderboard.render.markdown import MAX_FAILURES_LISTED, PAIRED_TEXT, SECTIONS
from qbench.leaderboard.render.plots import slug

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"

STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",sans-serif;margin:2rem auto;max-width:82rem;
padding:0 1rem;color:#1d232b;background:#fff}
h1{font-size:1.6rem;margin-bottom:.2rem}h2{margin-top:2.2rem;border-bottom:1px solid #d9dee5}
table{border-collapse:collapse;margin:.6rem 0 1.2rem;font-variant-numeric:tabular-nums}
th,td{border:1px solid #d9dee5;padding:.25rem .5rem;text-align:right;vertical-align:top}
td.text,th.text{text-align:left}thead th{background:#f2f4f7;cursor:pointer;user-select:none;white-space:nowrap}
thead th[aria-sort=ascending]::after{content:" \\25B2"}thead th[aria-sort=descending]::after{content:" \\25BC"}
tr.failed td{background:#fff4f2}tr.unranked td{color:#7a828e}
.better{color:#17703a}.worse{color:#b3261e}.muted{color:#6a737d}
figure{display:inline-block;margin:.5rem 1rem .5rem 0}figure img{max-width:40rem;border:1px solid #eef0f3}
.scroll{overflow-x:auto;max-width:100%}
code{font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
"""

def sort_script() -> str:
    """The table-sorting script, one file shared with the static site (``qbench site``)."""
    from importlib import resources

    return resources.files("qbench.leaderboard.render").joinpath("assets", "sortable.js").read_text(encoding="utf-8")


def _th(text: str, numeric: bool) -> str:
    kind = "number" if numeric else "text"
    css = "" if numeric else ' class="text"'
    return f'<th data-type="{kind}" aria-sort="none" scope="col"{css}>{escape(text)}</th>'


#: labels and other texts repeat down a column (a merged site writes millions of cells): each is escaped once
_escape_text = functools.lru_cache(maxsize=65536)(escape)


def html_table(display: DisplayTable, table_id: str = "", css: str = "sortable") -> str:
    """A sortable table; every cell escaped (all text may come from a plugin or a matrix).

    The one HTML table writer: the leaderboard page and the static site (:mod:`qbench.publish.site`).
    """
    head = "".join(_th(col.title, col.numeric) for col in display.columns)
    per_column = []
    for col in display.columns:
        base = "" if col.numeric else ' class="text"'
        titles: list[str | None] = list(col.titles) if col.titles else [None] * len(col.cells)
        keys: list[str | None] = list(col.sort_values) if col.sort_values else [None] * len(col.cells)
        links: list[str | None] = list(col.links) if col.links else [None] * len(col.cells)
        # Numeric columns hold text qbench formatted from numbers; anything else may come from a
        # plugin or a matrix and is escaped (escaping every cell would double the page's time).
        clean = _escape_text if not col.numeric else str
        if not col.titles and not col.links:  # the common column, in one pass (a site writes millions of cells)
            per_column.append([f"<td{base}>{clean(text)}</td>" if key is None else
                               f'<td{base} data-v="{key}">{clean(text)}</td>'
                               for text, key in zip(col.cells, keys, strict=True)])  # fmt: skip
            continue
        cells = []
        for text, title, key, link in zip(col.cells, titles, keys, links, strict=True):
            attrs = base if key is None else f'{base} data-v="{key}"'
            if title is not None:
                attrs += f' title="{clean(title)}"'
            shown = clean(text) if link is None else f'<a href="{escape(link)}">{clean(text)}</a>'
            cells.append(f"<td{attrs}>{shown}</td>")
        per_column.append(cells)
    classes = display.row_classes or [""] * len(display)
    body = "".join(
        (f'<tr class="{c}">' if c else "<tr>") + "".join(row) + "</tr>"
        for c, row in zip(classes, zip(*per_column, strict=True), strict=True)
    )
    ident = f' id="{escape(table_id)}"' if table_id else ""
    return (f'<div class="scroll"><table class="{css}"{ident}><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>")  # fmt: skip


def _figure(path: Path, read: Callable[[Path], Path]) -> str:
    data = base64.b64encode(read(path).read_bytes()).decode("ascii")
    caption = path.stem.replace("-", " ")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")  # fmt: skip


def render_html(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
                plots: list[Path], notes: list[str], displays: Displays | None = None,
                fair: Any = None, read: Callable[[Path], Path] = Path, trends: Any = None) -> str:  # fmt: skip
    """The page; ``read`` maps a plot's final path to where its content is now (a staged temporary file)."""
    from qbench.leaderboard.render.trends import html_section

    displays = displays or Displays.build(frame, table, paired, fair)
    runs = frame.runs
    counts = runs["status"].value_counts()
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        '<link rel="icon" href="data:,">',
        f"<title>{escape(title)}</title><style>{STYLE}</style></head><body>",
        f"<h1>{escape(title)}</h1>",
        f'<p class="summary">{len(runs)} runs: {counts.get("ok", 0)} ok, {counts.get("diverged", 0)} diverged, '
        f"{counts.get('error', 0)} error. Each row aggregates the ok seeds of one quantizer, cell and dataset: "
        "mean ± half-width of the 95% confidence interval (Student t). ↓ lower is better, ↑ higher is better. "
        "Click a column header to sort.</p>",
    ]
    if displays.protocol:
        parts.append('<section id="protocol"><h2>Protocol</h2>' + "".join(f"<p>{escape(line)}</p>"
                                                                         for line in displays.protocol) + "</section>")
    svgs = [p for p in plots if p.suffix == ".svg"]
    for label, info in frame.datasets.items():
        parts.append(f'<section id="dataset-{slug(label)}"><h2>{escape(label)}</h2>')
        text = (f"Ranked by {info.primary_metric} ({'lower' if info.direction == 'min' else 'higher'} is better)."
                if info.primary_metric else "Unranked: no case reported a metric (see the failures).")
        if info.licence:
            text += f" Dataset licence: {info.licence}."
        parts.append(f"<p>{escape(text)}</p>")
        parts.append(html_table(displays.ranked[label], f"table-{slug(label)}"))
        parts += [f'<p class="worse">{escape(flag)}</p>' for flag in displays.unbracketed.get(label, [])]
        parts += [f"<p>{escape(note)}</p>" for note in displays.curves.get(label, [])]
        if label in displays.paired:
            parts.append(f"<h3>Against the {escape(displays.baseline)} baseline (paired by cell and seed)</h3>")
            parts.append(f"<p>{escape(PAIRED_TEXT.format(base=displays.baseline))}</p>")
            parts.append(html_table(displays.paired[label], css="sortable paired"))
            notes = [displays.untested[label]] if label in displays.untested else []
            parts += [f"<p>{escape(note)}</p>" for note in [*notes, *displays.shapes.get(label, [])]]
        elif not displays.baseline:
            parts.append(f"<p>{escape(NO_BASELINE_SENTENCE)}</p>")
        for heading, tables, text in SECTIONS:
            if label in getattr(displays, tables):
                parts.append(f"<h3>{escape(heading)}</h3><p>{escape(text)}</p>")
                parts.append(html_table(getattr(displays, tables)[label], css=f"sortable {tables}"))
        section = html_section(trends, label) if trends is not None else ""
        if section:
            parts.append(section)
        for path in svgs:
            if path.stem.startswith(slug(label) + "-"):
                parts.append(_figure(path, read))
        parts.append("</section>")
    for label in trends.datasets() if trends is not None else ():
        if label not in frame.datasets:  # a swept dataset parameter: the trend spans several sections
            figures = "".join(_figure(path, read) for path in svgs if path.stem.startswith(f"{slug(label)}-trend-"))
            parts.append(f'<section id="trends-{slug(label)}"><h2>{escape(label)}: trends across its parameter</h2>'
                         f"{html_section(trends, label)}{figures}</section>")
    failures = runs[runs["status"] != "ok"].head(MAX_FAILURES_LISTED)
    if len(failures):
        display = DisplayTable([
            Column("case", failures["case_id"].tolist()),
            Column("status", failures["status"].astype(str).tolist()),
            Column("seed", [str(s) for s in failures["seed"].tolist()], numeric=True),
            Column("message", failures["error"].tolist()),
        ], ["failed"] * len(failures))  # fmt: skip
        parts.append(f'<section id="failures"><h2>Failed and diverged runs</h2>{html_table(display)}</section>')
    if frame.descriptions:
        parts.append('<section id="components"><h2>Components</h2><dl>')
        parts += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in frame.descriptions.items()]
        parts.append("</dl></section>")
    parts.append('<section id="provenance"><h2>Provenance</h2><dl>')
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(', '.join(v))}</dd>" for k, v in frame.provenance.items()]
    parts.append("</dl>")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"</section><script>{sort_script()}</script></body></html>")
    return "\n".join(parts)
