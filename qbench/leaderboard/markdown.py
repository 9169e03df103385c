"""``leaderboard.md``: one section per dataset, ranked table, paired comparison, failures.

Every string that comes from a plugin or a matrix (labels, descriptions, error messages) goes
through :func:`escape_markdown`, so it reads as text wherever the Markdown is rendered.
"""

from __future__ import annotations

import pandas as pd
from tabulate import tabulate

from qbench.leaderboard.formatting import escape_markdown, fmt_ci, fmt_stat, fmt_value
from qbench.leaderboard.frame import TIMING_COLUMNS, RunsFrame

ARROW = {"min": "↓", "max": "↑"}
#: Provenance keys shown in the header of the page and of the Markdown.
HEADLINE_PROVENANCE = ("qbench_version", "torch_version", "python", "device", "matrix_hash", "git_commit")


def column_title(column: str, direction: str) -> str:
    return f"{column} {ARROW.get(direction, '')}".strip()


def status_text(row: pd.Series) -> str:
    parts = [f"{row['n_ok']} ok"]
    parts += [f"{row[f'n_{s}']} {s}" for s in ("diverged", "error") if row[f"n_{s}"]]
    return ", ".join(parts)


def dataset_rows(table: pd.DataFrame, frame: RunsFrame, label: str) -> tuple[list[str], list[list[str]]]:
    """Header and formatted cells of one dataset's ranked table (shared with the HTML page)."""
    info = frame.datasets[label]
    rows = table[table["dataset_label"] == label]
    columns = [info.primary_metric, *[c for c in info.value_columns if c != info.primary_metric]]
    columns = [c for c in columns if c not in TIMING_COLUMNS]
    header = ["rank", "quantizer", "cell", *[column_title(c, frame.directions[c]) for c in columns],
              "seeds", "full precision"]  # fmt: skip
    body = []
    for _, row in rows.iterrows():
        cells = ["" if pd.isna(row["rank"]) else str(row["rank"]), row["quantizer_label"], row["cell_label"]]
        cells += [fmt_stat(row[f"{c}_mean"], row[f"{c}_ci95"]) for c in columns]
        cells += [status_text(row), row["full_precision"] or ""]
        body.append(cells)
    return header, body


def paired_difference(mean: float, ci: float) -> str:
    text = fmt_value(mean, signed=True)
    return f"{text} ± {fmt_ci(ci)}" if ci == ci else text


def render_markdown(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str) -> str:
    runs = frame.runs
    counts = runs["status"].value_counts()
    lines = [f"# {escape_markdown(title)}", ""]
    lines.append(
        f"{len(runs)} runs: {counts.get('ok', 0)} ok, {counts.get('diverged', 0)} diverged, "
        f"{counts.get('error', 0)} error. Each row aggregates the ok seeds of one quantizer, cell and "
        "dataset: mean ± half-width of the 95% confidence interval (Student t); a column without ± "
        "has no interval (one seed, or the same value on every seed). ↓: lower is better, ↑: higher "
        "is better. *full precision*: parts of the model kept in float."
    )
    lines.append("")
    for key in HEADLINE_PROVENANCE:
        if key in frame.provenance:
            values = ", ".join(escape_markdown(v) for v in frame.provenance[key])
            lines.append(f"- {key}: {values}")
    lines.append("")
    for label, info in frame.datasets.items():
        lines.append(f"## {escape_markdown(label)}")
        lines.append("")
        sentence = f"Ranked by {info.primary_metric} ({'lower' if info.direction == 'min' else 'higher'} is better)."
        if info.licence:
            sentence += f" Dataset licence: {escape_markdown(info.licence)}."
        lines += [sentence, ""]
        header, body = dataset_rows(table, frame, label)
        plugin_columns = (1, 2, len(header) - 1)
        body = [[escape_markdown(c) if i in plugin_columns else c for i, c in enumerate(row)] for row in body]
        lines += [tabulate(body, headers=header, tablefmt="pipe", disable_numparse=True), ""]
        pairs = paired[paired["dataset_label"] == label] if len(paired) else paired
        if len(pairs):
            lines += ["### Against the float baseline (paired by cell and seed)", ""]
            rows = [[escape_markdown(r.quantizer_label), escape_markdown(r.cell_label), r.metric,
                     paired_difference(r.diff_mean, r.diff_ci95), str(r.n), r.verdict]
                    for r in pairs.itertuples(index=False)]  # fmt: skip
            header = ["quantizer", "cell", "metric", "difference to float", "n", "verdict"]
            lines += [tabulate(rows, headers=header, tablefmt="pipe", disable_numparse=True), ""]
    failures = runs[runs["status"] != "ok"]
    if len(failures):
        lines += ["## Failed and diverged runs", ""]
        shown = failures.head(200)
        rows = [[escape_markdown(r.case_id), r.status, int(r.seed), escape_markdown(r.error)[:200]]
                for r in shown.itertuples(index=False)]
        lines += [tabulate(rows, headers=["case", "status", "seed", "message"], tablefmt="pipe",
                           disable_numparse=True), ""]  # fmt: skip
        if len(failures) > len(shown):
            lines += [f"... and {len(failures) - len(shown)} more (see leaderboard.json).", ""]
    if frame.descriptions:
        lines += ["## Components", ""]
        lines += [f"- **{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in frame.descriptions.items()]
        lines.append("")
    return "\n".join(lines)
