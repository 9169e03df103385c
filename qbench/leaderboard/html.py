"""``leaderboard.html``: one self-contained page (no network): sortable tables, plots, provenance.

Everything is inline: the style, a small sorting script, the plots as SVG data URIs (an SVG in
an ``<img>`` cannot run script). A Content-Security-Policy forbids any fetch. Every string that
comes from a record (labels, descriptions, errors, provenance) is escaped with
:func:`html.escape`, so a component description containing markup shows as text.
"""

from __future__ import annotations

import base64
import math
from html import escape
from pathlib import Path

import pandas as pd

from qbench.leaderboard.formatting import fmt_ci, fmt_stat, fmt_value
from qbench.leaderboard.frame import RunsFrame
from qbench.leaderboard.markdown import ARROW, status_text
from qbench.leaderboard.plots import slug

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
code{font-size:.9em}dl{display:grid;grid-template-columns:max-content auto;gap:.2rem 1rem}dt{font-weight:600}
"""

SCRIPT = """
(function () {
  "use strict";
  function sortKey(cell) {
    return cell.hasAttribute("data-v") ? cell.getAttribute("data-v") : cell.textContent.trim();
  }
  document.querySelectorAll("table.sortable").forEach(function (table) {
    var headers = table.tHead.rows[0].cells;
    Array.prototype.forEach.call(headers, function (th, index) {
      th.addEventListener("click", function () {
        var ascending = th.getAttribute("aria-sort") !== "ascending";
        Array.prototype.forEach.call(headers, function (other) { other.setAttribute("aria-sort", "none"); });
        th.setAttribute("aria-sort", ascending ? "ascending" : "descending");
        var numeric = th.getAttribute("data-type") === "number";
        var body = table.tBodies[0];
        var rows = Array.prototype.slice.call(body.rows);
        rows.sort(function (a, b) {
          var x = sortKey(a.cells[index]), y = sortKey(b.cells[index]);
          if (numeric) {
            var fx = x === "" ? NaN : Number(x), fy = y === "" ? NaN : Number(y);
            if (isNaN(fx) || isNaN(fy)) { return isNaN(fx) - isNaN(fy); }
            return ascending ? fx - fy : fy - fx;
          }
          return ascending ? x.localeCompare(y) : y.localeCompare(x);
        });
        rows.forEach(function (row) { body.appendChild(row); });
      });
    });
  });
})();
"""


def _num(value: object) -> str:
    if value is None or value is pd.NA or (isinstance(value, float) and math.isnan(value)):
        return ""
    return repr(float(value))


def _th(text: str, numeric: bool) -> str:
    kind = "number" if numeric else "text"
    css = "" if numeric else ' class="text"'
    return f'<th data-type="{kind}" aria-sort="none" scope="col"{css}>{escape(text)}</th>'


def _dataset_table(frame: RunsFrame, table: pd.DataFrame, label: str) -> str:
    info = frame.datasets[label]
    rows = table[table["dataset_label"] == label]
    columns = [info.primary_metric, *[c for c in info.value_columns if c != info.primary_metric]]
    head = [_th("rank", True), _th("quantizer", False), _th("cell", False)]
    head += [_th(f"{c} {ARROW.get(frame.directions[c], '')}", True) for c in columns]
    head += [_th("seeds", True), _th("full precision", False)]
    body = []
    for _, row in rows.iterrows():
        failed = row["n_diverged"] + row["n_error"] > 0
        css = "unranked" if pd.isna(row["rank"]) else "failed" if failed else ""
        cells = [f'<td data-v="{_num(row["rank"])}">{"" if pd.isna(row["rank"]) else int(row["rank"])}</td>',
                 f'<td class="text">{escape(row["quantizer_label"])}</td>',
                 f'<td class="text">{escape(row["cell_label"])}</td>']  # fmt: skip
        for c in columns:
            mean, ci, n = row[f"{c}_mean"], row[f"{c}_ci95"], row[f"{c}_n"]
            title = f"std {fmt_value(row[f'{c}_std']) or '?'}, n {n}"
            cells.append(f'<td data-v="{_num(mean)}" title="{escape(title)}">{escape(fmt_stat(mean, ci))}</td>')
        cells.append(f'<td data-v="{int(row["n_ok"])}">{escape(status_text(row))}</td>')
        cells.append(f'<td class="text">{escape(row["full_precision"] or "")}</td>')
        body.append(f'<tr class="{css}">' + "".join(cells) + "</tr>")
    return (f'<table class="sortable" id="table-{slug(label)}"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')  # fmt: skip


def _paired_table(pairs: pd.DataFrame) -> str:
    head = [_th("quantizer", False), _th("cell", False), _th("metric", False), _th("difference to float", True),
            _th("n", True), _th("verdict", False)]  # fmt: skip
    body = []
    for r in pairs.itertuples(index=False):
        diff = fmt_value(r.diff_mean, signed=True) + ("" if math.isnan(r.diff_ci95) else f" ± {fmt_ci(r.diff_ci95)}")
        css = {"better": "better", "worse": "worse"}.get(r.verdict, "muted")
        body.append(
            f'<tr><td class="text">{escape(r.quantizer_label)}</td><td class="text">{escape(r.cell_label)}</td>'
            f'<td class="text">{escape(r.metric)}</td><td data-v="{_num(r.diff_mean)}">{escape(diff)}</td>'
            f'<td>{int(r.n)}</td><td class="text {css}" title="{escape(r.sentence)}">{escape(r.verdict)}</td></tr>'
        )
    return (f'<table class="sortable paired"><thead><tr>{"".join(head)}</tr></thead>'
            f'<tbody>{"".join(body)}</tbody></table>')  # fmt: skip


def _figure(path: Path) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    caption = path.stem.replace("-", " ")
    return (f'<figure><img src="data:image/svg+xml;base64,{data}" alt="{escape(caption)}">'
            f"<figcaption>{escape(caption)}</figcaption></figure>")  # fmt: skip


def render_html(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
                plots: list[Path], notes: list[str]) -> str:  # fmt: skip
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
    svgs = [p for p in plots if p.suffix == ".svg"]
    for label, info in frame.datasets.items():
        parts.append(f'<section id="dataset-{slug(label)}"><h2>{escape(label)}</h2>')
        text = f"Ranked by {info.primary_metric} ({'lower' if info.direction == 'min' else 'higher'} is better)."
        if info.licence:
            text += f" Dataset licence: {info.licence}."
        parts.append(f"<p>{escape(text)}</p>")
        parts.append(_dataset_table(frame, table, label))
        pairs = paired[paired["dataset_label"] == label] if len(paired) else paired
        if len(pairs):
            parts.append("<h3>Against the float baseline (paired by cell and seed)</h3>")
            parts.append(_paired_table(pairs))
        for path in svgs:
            if path.stem.startswith(slug(label) + "-"):
                parts.append(_figure(path))
        parts.append("</section>")
    failures = runs[runs["status"] != "ok"].head(500)
    if len(failures):
        parts.append('<section id="failures"><h2>Failed and diverged runs</h2><table class="sortable"><thead><tr>')
        parts.append(_th("case", False) + _th("status", False) + _th("seed", True) + _th("message", False))
        parts.append("</tr></thead><tbody>")
        for r in failures.itertuples(index=False):
            parts.append(f'<tr class="failed"><td class="text">{escape(r.case_id)}</td><td class="text">'
                         f'{escape(str(r.status))}</td><td>{int(r.seed)}</td><td class="text">{escape(r.error)}'
                         "</td></tr>")  # fmt: skip
        parts.append("</tbody></table></section>")
    if frame.descriptions:
        parts.append('<section id="components"><h2>Components</h2><dl>')
        parts += [f"<dt>{escape(k)}</dt><dd>{escape(v)}</dd>" for k, v in frame.descriptions.items()]
        parts.append("</dl></section>")
    parts.append('<section id="provenance"><h2>Provenance</h2><dl>')
    parts += [f"<dt>{escape(k)}</dt><dd>{escape(', '.join(v))}</dd>" for k, v in frame.provenance.items()]
    parts.append("</dl>")
    if notes:
        parts.append("<ul>" + "".join(f"<li>{escape(n)}</li>" for n in notes) + "</ul>")
    parts.append(f"</section><script>{SCRIPT}</script></body></html>")
    return "\n".join(parts)
