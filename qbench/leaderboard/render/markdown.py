"""``leaderboard.md``: one section per dataset, ranked table, paired comparison, failures.

Every string that comes from a plugin or a matrix (labels, descriptions, error messages) goes
through :func:`escape_markdown`, so it reads as text wherever the Markdown is rendered.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from qbench.leaderboard.compute.formatting import escape_cell, escape_markdown
from qbench.leaderboard.compute.frame import RunsFrame
from qbench.leaderboard.render.display import (
    NO_BASELINE_SENTENCE,
    Column,
    Displays,
    DisplayTable,
    headline_view,
    pipe_table,
)

#: Provenance keys shown in the header of the page and of the Markdown.
HEADLINE_PROVENANCE = ("qbench_version", "torch_version", "python", "device", "numerics", "matrix_hash", "git_commit")
#: Failed runs listed in full; the rest are counted (all of them are in leaderboard.json).
MAX_FAILURES_LISTED = 200
#: What the paired table shows (the Markdown and the HTML).
PAIRED_TEXT = ("Difference to {base} of the same cell and seed, mean ± 95% interval; effect size d_z; the test that "
               "decided (exact sign-flip or t, see the protocol); its p-value Holm-adjusted across the methods of the "
               "cell; the margin and the adjusted p-value of its test (equivalence or non-inferiority). Verdicts: "
               "better / worse, equivalent / non-inferior (within the margin), inconclusive (neither shown). Other "
               "metrics are in leaderboard.json.")
#: The protocol's tables, after the paired comparison: (heading, Displays attribute, sentence).
SECTIONS = (
    ("Selection (validation metric of every configuration)", "selection",
     "Mean validation metric on the tuning seeds; the chosen configuration is the tuned row above."),
    ("Bracketing", "bracketing", "Whether the grid brackets each tuned row's choice: a choice at an edge of an "
                                 "ordered grid axis may be short of the method's optimum."),
    ("Seed rule", "seeds", "Stein's two-stage procedure: the spread of the paired differences on the first-stage "
                           "seeds fixes how many seeds each comparison uses and the half-width of its interval."),
    ("Budget", "budget", "Cases, training steps, sequences (steps x batch) and the recipe's epochs per method, tuning "
                         "and points beyond the grid included (the chosen configuration's tuning run is also its "
                         "evaluation run on that seed); steps and sequences count what ran, early stopping included. "
                         "Train seconds are informational only: they depend on the load of the machine while "
                         "each case ran, not on the method."),
)  # fmt: skip


def render_markdown(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
                    displays: Displays | None = None, fair: Any = None, trends: Any = None) -> str:  # fmt: skip
    from qbench.leaderboard.render.trends import markdown_section

    displays = displays or Displays.build(frame, table, paired, fair)
    runs = frame.runs
    counts = runs["status"].value_counts()
    lines = [f"# {escape_markdown(title)}", ""]
    lines.append(
        f"{len(runs)} runs: {counts.get('ok', 0)} ok, {counts.get('diverged', 0)} diverged, "
        f"{counts.get('error', 0)} error. Each row aggregates the ok seeds of one quantizer, cell and "
        "dataset: mean ± half-width of the 95% confidence interval (Student t); a column without ± "
        "has no interval (one seed, or the same value on every seed). ↓: lower is better, ↑: higher "
        "is better. *full precision*: parts of the model kept in float. This page shows the quality "
        "metrics and the headline costs; leaderboard.csv and leaderboard.html have every column."
    )
    lines.append("")
    if displays.protocol:
        lines += ["**Protocol.** " + " ".join(escape_markdown(line) for line in displays.protocol), ""]
    for key in HEADLINE_PROVENANCE:
        if key in frame.provenance:
            values = ", ".join(escape_markdown(v) for v in frame.provenance[key])
            lines.append(f"- {key}: {values}")
    lines.append("")
    for label, info in frame.datasets.items():
        lines.append(f"## {escape_markdown(label)}")
        lines.append("")
        better = "lower" if info.direction == "min" else "higher"
        sentence = (f"Ranked by {escape_cell(info.primary_metric)} ({better} is better)." if info.primary_metric
                    else "Unranked: no case reported a metric (see the failures).")  # fmt: skip
        if info.licence:
            sentence += f" Dataset licence: {escape_markdown(info.licence)}."
        lines += [sentence, ""]
        lines += [pipe_table(headline_view(displays.ranked[label], frame), escape_markdown), ""]
        lines += [f"- {escape_markdown(flag)}" for flag in displays.unbracketed.get(label, [])]
        lines += [""] if label in displays.unbracketed else []
        lines += [f"- {escape_markdown(note)}" for note in displays.curves.get(label, [])]
        lines += [""] if label in displays.curves else []
        base = escape_markdown(displays.baseline)
        if label in displays.paired:
            lines += [f"### Against the {base} baseline (paired by cell and seed)", "",
                      PAIRED_TEXT.format(base=base), ""]  # fmt: skip
            lines += [pipe_table(displays.paired[label], escape_markdown), ""]
            notes = [displays.untested[label]] if label in displays.untested else []
            notes += displays.shapes.get(label, [])
            lines += [f"- {escape_markdown(note)}" for note in notes]
            lines += [""] if notes else []
        elif not displays.baseline:
            lines += [escape_markdown(NO_BASELINE_SENTENCE), ""]
        for heading, tables, text in SECTIONS:
            if label in getattr(displays, tables):
                lines += [f"### {heading}", "", text, ""]
                lines += [pipe_table(getattr(displays, tables)[label], escape_markdown), ""]
        if trends is not None:
            lines += markdown_section(trends, label, escape_markdown)
    for label in trends.datasets() if trends is not None else ():
        if label not in frame.datasets:  # a swept dataset parameter: the trend spans several sections
            lines += [f"## {escape_markdown(label)}: trends across its parameter", ""]
            lines += markdown_section(trends, label, escape_markdown)
    failures = runs[runs["status"] != "ok"]
    if len(failures):
        lines += ["## Failed and diverged runs", ""]
        shown = failures.head(MAX_FAILURES_LISTED)
        display = DisplayTable([
            Column("case", shown["case_id"].tolist(), plugin_text=True),
            Column("status", shown["status"].astype(str).tolist()),
            Column("seed", [str(s) for s in shown["seed"].tolist()], numeric=True),
            Column("message", [e[:200] for e in shown["error"].tolist()], plugin_text=True),
        ])  # fmt: skip
        lines += [pipe_table(display, escape_markdown), ""]
        if len(failures) > len(shown):
            lines += [f"... and {len(failures) - len(shown)} more (see leaderboard.json).", ""]
    if frame.descriptions:
        lines += ["## Components", ""]
        lines += [f"- **{escape_markdown(k)}**: {escape_markdown(v)}" for k, v in frame.descriptions.items()]
        lines.append("")
    return "\n".join(lines)
