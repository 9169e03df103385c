"""The ranked table and the paired table as text cells, shared by the Markdown and the HTML.

Column-major lists built with one comprehension per column: a store of 100,000 records makes
tens of thousands of rows, and per-row pandas access would dominate the rebuild.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from qbench.leaderboard.compute.curvenotes import curve_notes
from qbench.leaderboard.compute.formatting import escape_cell, fmt_ci, fmt_stat, fmt_value
from qbench.leaderboard.compute.frame import TIMING_COLUMNS, RunsFrame
from qbench.protocol import NO_BASELINE

ARROW = {"min": "↓", "max": "↑"}

#: What the pages say under a dataset when no quantizer is the baseline (no paired table).
NO_BASELINE_SENTENCE = NO_BASELINE[0].upper() + NO_BASELINE[1:] + "."


@dataclass
class Column:
    title: str
    cells: list[str]
    numeric: bool = False
    plugin_text: bool = False  # labels from a plugin or a matrix: escape in Markdown
    sort_values: list[str] | None = None  # numeric key for the HTML sort ("" when missing)
    titles: list[str] | None = None  # hover text in the HTML
    key: str = ""  # the value column shown, if any
    links: list[str | None] | None = None  # in the HTML, each cell a link to this address (None: none)


@dataclass
class DisplayTable:
    columns: list[Column]
    row_classes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.columns[0].cells) if self.columns else 0


def texts(series: pd.Series) -> list[str]:
    """A text column as a list (via numpy: iterating pandas' string arrays costs a call per cell)."""
    return series.to_numpy(dtype=object).tolist()


def column_title(column: str, direction: str) -> str:
    return f"{column} {ARROW.get(direction, '')}".strip()


def _number_key(values: list[float]) -> list[str]:
    return ["" if v is None or (isinstance(v, float) and math.isnan(v)) else repr(float(v)) for v in values]


def status_cells(rows: pd.DataFrame) -> list[str]:
    out = []
    for ok, diverged, error in zip(rows["n_ok"].tolist(), rows["n_diverged"].tolist(), rows["n_error"].tolist(),
                                   strict=True):  # fmt: skip
        text = f"{ok} ok"
        if diverged:
            text += f", {diverged} diverged"
        if error:
            text += f", {error} error"
        out.append(text)
    return out


def headline_view(display: DisplayTable, frame: RunsFrame) -> DisplayTable:
    """The Markdown's view: without timing columns (seconds and throughput measure the machine,
    not the method) and without the detail columns the backends' ``headline`` leaves out (as the
    records declare them), so that it fits a page."""
    hidden = set(TIMING_COLUMNS) | frame.declared.detail_columns
    keep = [c for c in display.columns if c.key not in hidden]
    return DisplayTable(keep, display.row_classes)


@dataclass
class Displays:
    """Every table of a leaderboard as text, built once for the Markdown and the HTML."""

    ranked: dict[str, DisplayTable]
    paired: dict[str, DisplayTable]
    selection: dict[str, DisplayTable] = field(default_factory=dict)
    seeds: dict[str, DisplayTable] = field(default_factory=dict)
    budget: dict[str, DisplayTable] = field(default_factory=dict)
    bracketing: dict[str, DisplayTable] = field(default_factory=dict)
    #: {dataset label: sentences flagging its unbracketed rows} (shown under the ranked table)
    unbracketed: dict[str, list[str]] = field(default_factory=dict)
    #: {dataset label: sentence saying which metrics' equivalence was not tested}
    untested: dict[str, str] = field(default_factory=dict)
    #: {dataset label: sentences of the comparisons whose differences have no spread or two groups}
    shapes: dict[str, list[str]] = field(default_factory=dict)
    #: {dataset label: sentences on curve points far above a working model's} (qbench.leaderboard.compute.curvenotes)
    curves: dict[str, list[str]] = field(default_factory=dict)
    protocol: list[str] = field(default_factory=list)
    baseline: str = ""  # "" when no quantizer is the baseline (no paired comparison)

    @classmethod
    def build(cls, frame: RunsFrame, table: pd.DataFrame, pairs: pd.DataFrame, fair: Any = None) -> Displays:
        show_configuration = fair is not None and bool(fair.protocol.grid)
        flags = bracket_flags(fair.bracketing) if fair is not None else {}
        ranked = {label: ranked_table(table, frame, label, show_configuration, flags) for label in frame.datasets}
        if fair is not None:
            baseline = fair.protocol.baseline
        else:
            baseline = frame.declared.baseline
        paired = {}
        if len(pairs):
            # The pages show the primary metric; leaderboard.json has every quality metric.
            primary = pairs["dataset_label"].map({k: v.primary_metric for k, v in frame.datasets.items()})
            shown = pairs[pairs["metric"] == primary]
            shapes: dict[str, list[str]] = {}
            for label, rows in shown.groupby("dataset_label", sort=False):
                paired[str(label)] = paired_table(rows, baseline)
                odd = rows[rows["shape"].astype(str) != ""]
                if len(odd):
                    shapes[str(label)] = texts(odd["sentence"])
        displays = cls(ranked, paired, baseline=baseline)
        displays.curves = curve_notes(frame, baseline)
        if len(pairs):
            displays.shapes = shapes
        for label in paired:
            primary = frame.datasets[label].primary_metric
            if fair is None or fair.protocol.margin_for(label, primary) is None:
                displays.untested[label] = (f"Equivalence was not tested: no margin is declared for {primary} (a "
                                            f"dataset's default, or the matrix's [compare] margin = {{ {primary} = ... "
                                            "}); a comparison without a difference is inconclusive, not a match.")
        if fair is not None:
            displays.protocol = fair.protocol.describe()
            displays.selection = _per_dataset(fair.selection, selection_table)
            displays.seeds = _per_dataset(fair.seeds, seed_table)
            displays.budget = _per_dataset(fair.budget, budget_table)
            displays.bracketing = _per_dataset(fair.bracketing, bracket_table)
            for (label, cell, quantizer), edges in flags.items():
                displays.unbracketed.setdefault(label, []).append(
                    f"Unbracketed: {quantizer} / {cell} chose {edges}; its optimum may lie beyond the grid, so it "
                    "may be under-tuned against the others (raise [tune] extend, or widen the grid).")
        return displays


def bracket_flags(bracketing: pd.DataFrame) -> dict[tuple[str, str, str], str]:
    """{method: its edges} of every tuned row whose choice sits at an edge of its grid."""
    if bracketing is None or not len(bracketing):
        return {}
    rows = bracketing[bracketing["bracket"] != "bracketed"]
    return {(str(d), str(c), str(q)): (str(e) or str(b)) for d, c, q, b, e in zip(
        rows["dataset_label"], rows["cell_label"], rows["quantizer_label"], rows["bracket"], rows["edges"],
        strict=True)}  # fmt: skip


def bracket_table(rows: pd.DataFrame) -> DisplayTable:
    """Whether the grid brackets each tuned row's choice, and how many points beyond it were tried."""
    columns = [
        Column("quantizer", texts(rows["quantizer_label"]), plugin_text=True),
        Column("cell", texts(rows["cell_label"]), plugin_text=True),
        Column("chosen configuration", texts(rows["configuration"]), plugin_text=True),
        Column("points beyond the grid", [str(n) for n in rows["extensions"].tolist()], numeric=True),
        Column("bracket", texts(rows["bracket"])),
        Column("at an edge", texts(rows["edges"]), plugin_text=True),
    ]  # fmt: skip
    return DisplayTable(columns, ["worse" if b != "bracketed" else "" for b in rows["bracket"].tolist()])


def _per_dataset(table: pd.DataFrame, build: Any) -> dict[str, DisplayTable]:
    if table is None or not len(table):
        return {}
    return {str(label): build(rows) for label, rows in table.groupby("dataset_label", sort=True)}


def selection_table(rows: pd.DataFrame) -> DisplayTable:
    """Every grid point of every method: its mean validation metric on the tuning seeds."""
    means = rows["mean"].astype(float).tolist()
    metric = str(rows["metric"].iloc[0]) if len(rows) else ""
    direction = str(rows["direction"].iloc[0]) if len(rows) else "min"
    chosen = rows["chosen"].tolist()
    columns = [
        Column("quantizer", texts(rows["quantizer_label"]), plugin_text=True),
        Column("cell", texts(rows["cell_label"]), plugin_text=True),
        Column("configuration", texts(rows["configuration"]), plugin_text=True),
        Column("grid", ["grid" if not e else f"extension {e}" for e in rows["extension"].tolist()]),
        Column(column_title(metric, direction) + " (tuning seeds)", [fmt_value(m) for m in means], numeric=True,
               sort_values=_number_key(means)),
        Column("ok / stored", [f"{a} / {b}" for a, b in zip(rows["n_ok"].tolist(), rows["n_stored"].tolist(),
                                                             strict=True)], numeric=True),
        Column("chosen", ["chosen" if c else "" for c in chosen]),
    ]  # fmt: skip
    return DisplayTable(columns, ["better" if c else "" for c in chosen])


def seed_table(rows: pd.DataFrame) -> DisplayTable:
    """Stein's decision for every comparison: the first stage's spread fixes the seeds."""
    halves = rows["half_width"].astype(float).tolist()
    stds = rows["first_stage_std"].astype(float).tolist()
    columns = [
        Column("quantizer", texts(rows["quantizer_label"]), plugin_text=True),
        Column("cell", texts(rows["cell_label"]), plugin_text=True),
        Column("first stage n", [str(n) for n in rows["first_stage_n"].tolist()], numeric=True),
        Column("first stage std", [fmt_value(s) for s in stds], numeric=True, sort_values=_number_key(stds)),
        Column("seeds", [str(n) for n in rows["seeds"].tolist()], numeric=True),
        Column("paired n", [str(n) for n in rows["paired_n"].tolist()], numeric=True),
        Column("half-width", [fmt_ci(h) if h == h else "" for h in halves], numeric=True,
               sort_values=_number_key(halves)),
        Column("decision", [reason if paired >= seeds or reason == "waiting for seeds"
                            else f"{reason}; {seeds - paired} of {seeds} seeds missing (failed, or not run yet)"
                            for reason, paired, seeds in zip(texts(rows["reason"]), rows["paired_n"].tolist(),
                                                             rows["seeds"].tolist(), strict=True)]),
    ]  # fmt: skip
    return DisplayTable(columns)


def budget_table(rows: pd.DataFrame) -> DisplayTable:
    """What each method cost, tuning and extensions included, in units that compare across
    machines; train seconds last, informational (they depend on the machine's load)."""
    steps, seconds = rows["train_steps"].astype(float).tolist(), rows["train_seconds"].astype(float).tolist()
    sequences, epochs = rows["train_sequences"].astype(float).tolist(), rows["train_epochs"].astype(float).tolist()

    def whole(values: list[float]) -> list[str]:
        return ["" if v != v else f"{v:.0f}" for v in values]

    columns = [
        Column("quantizer", texts(rows["quantizer_label"]), plugin_text=True),
        Column("cell", texts(rows["cell_label"]), plugin_text=True),
        Column("cases", [str(n) for n in rows["cases"].tolist()], numeric=True),
        Column("tuning runs", [str(n) for n in rows["tuning_cases"].tolist()], numeric=True),
        Column("of which beyond the grid", [str(n) for n in rows["extension_cases"].tolist()], numeric=True),
        Column("evaluation runs", [str(n) for n in rows["evaluation_cases"].tolist()], numeric=True),
        Column("training steps", whole(steps), numeric=True, sort_values=_number_key(steps)),
        Column("sequences", whole(sequences), numeric=True, sort_values=_number_key(sequences)),
        Column("epochs (recipe)", whole(epochs), numeric=True, sort_values=_number_key(epochs)),
        Column("train seconds (informational)", [fmt_value(s) for s in seconds], numeric=True,
               sort_values=_number_key(seconds)),
    ]  # fmt: skip
    return DisplayTable(columns)


def ranked_table(table: pd.DataFrame, frame: RunsFrame, label: str, configuration: bool = False,
                 flags: dict[tuple[str, str, str], str] | None = None) -> DisplayTable:  # fmt: skip
    """One dataset's rows, ranked, every value column (the Markdown drops the timing ones)."""
    info = frame.datasets[label]
    rows = table[table["dataset_label"] == label]
    # no primary metric when every case failed before reporting one: the table lists the failures
    value_columns = [c for c in [info.primary_metric, *info.value_columns] if c]
    value_columns = list(dict.fromkeys(value_columns))
    ranks = [None if r != r else int(r) for r in rows["rank"].to_numpy(dtype=float, na_value=float("nan")).tolist()]
    columns = [
        Column("rank", ["" if r is None else str(r) for r in ranks], numeric=True,
               sort_values=["" if r is None else str(r) for r in ranks]),
        Column("quantizer", texts(rows["quantizer_label"]), plugin_text=True),
        Column("cell", texts(rows["cell_label"]), plugin_text=True),
    ]  # fmt: skip
    if configuration:
        flags = flags or {}
        chosen = [f"{text} (unbracketed)" if (label, c, q) in flags else text for text, c, q in zip(
            texts(rows["configuration"]), texts(rows["cell_label"]), texts(rows["quantizer_label"]), strict=True)]
        columns.append(Column("chosen configuration", chosen, plugin_text=True))
    for name in value_columns:
        means, cis = rows[f"{name}_mean"].tolist(), rows[f"{name}_ci95"].tolist()
        stds, ns = rows[f"{name}_std"].tolist(), rows[f"{name}_n"].tolist()
        columns.append(Column(
            column_title(name, frame.directions[name]),
            [fmt_stat(m, c) for m, c in zip(means, cis, strict=True)],
            numeric=True,
            sort_values=_number_key(means),
            titles=[f"std {fmt_value(s) or '?'}, n {n}" for s, n in zip(stds, ns, strict=True)],
            key=name,
        ))  # fmt: skip
    columns.append(Column("seeds", status_cells(rows), numeric=True, sort_values=[str(n) for n in rows["n_ok"]]))
    columns.append(Column("full precision", texts(rows["full_precision"]), plugin_text=True))
    failed = (rows["n_diverged"] + rows["n_error"] > 0).tolist()
    classes = ["unranked" if r is None else "failed" if f else "" for r, f in zip(ranks, failed, strict=True)]
    return DisplayTable(columns, classes)


def paired_difference(mean: float, ci: float) -> str:
    """``+0.045 ± 0.0068``: the difference rounded to the digits its interval supports."""
    if ci == ci and ci > 0 and mean == mean:
        decimals = max(0, 1 - math.floor(math.log10(ci)))
        return f"{mean:+.{decimals}f} ± {fmt_ci(ci)}"
    return fmt_value(mean, signed=True)


def _p_text(p: float) -> str:
    if p != p:
        return ""
    return "<0.0001" if p < 1e-4 else f"{p:.2g}"


def paired_table(pairs: pd.DataFrame, baseline: str) -> DisplayTable:
    means, cis = pairs["diff_mean"].tolist(), pairs["diff_ci95"].tolist()
    effects, p_holm = pairs["effect_size"].astype(float).tolist(), pairs["p_holm"].astype(float).tolist()
    verdicts = texts(pairs["verdict"])
    margins, p_margin = pairs["margin"].astype(float).tolist(), pairs["p_margin_holm"].astype(float).tolist()
    columns = [
        Column("quantizer", texts(pairs["quantizer_label"]), plugin_text=True),
        Column("cell", texts(pairs["cell_label"]), plugin_text=True),
        Column("metric", texts(pairs["metric"])),
        Column(f"difference to {baseline}", [paired_difference(m, c) for m, c in zip(means, cis, strict=True)],
               numeric=True, sort_values=_number_key(means)),
        Column("n", [str(n) for n in pairs["n"].tolist()], numeric=True),
        Column("effect size d_z", [fmt_value(e, signed=True) if e == e else "" for e in effects], numeric=True,
               sort_values=_number_key(effects)),
        Column("test", texts(pairs["test"]), titles=[
            f"{why}; unadjusted p: t test {_p_text(t) or 'undefined'}, sign-flip {_p_text(f) or 'undefined'}"
            for why, t, f in zip(texts(pairs["test_reason"]), pairs["p_t"].astype(float).tolist(),
                                 pairs["p_sign_flip"].astype(float).tolist(), strict=True)]),
        Column("p (Holm)", [_p_text(p) for p in p_holm], numeric=True, sort_values=_number_key(p_holm)),
        Column("margin", [f"±{m:g}" if m == m else "none" for m in margins]),
        Column("margin p (Holm)", [_p_text(p) for p in p_margin], numeric=True, sort_values=_number_key(p_margin)),
        Column("verdict", verdicts, titles=texts(pairs["sentence"])),
    ]  # fmt: skip
    classes = [{"better": "better", "worse": "worse", "equivalent": "better", "non-inferior": "better"}.get(v, "muted")
               for v in verdicts]  # fmt: skip
    return DisplayTable(columns, classes)


def pipe_table(display: DisplayTable, escape) -> str:
    """A Markdown pipe table (tabulate's ``pipe`` layout), plugin text escaped with ``escape``.

    Titles and other text columns (metric names come from plugins too) get :func:`escape_cell`;
    number columns are qbench's own formatting and are left alone.
    """
    cells = [[escape(c) for c in col.cells] if col.plugin_text else col.cells if col.numeric
             else [escape_cell(c) for c in col.cells] for col in display.columns]  # fmt: skip
    titles = [escape_cell(col.title) for col in display.columns]
    widths = [max([len(title), 3, *map(len, texts)]) for title, texts in zip(titles, cells, strict=True)]
    lines = ["| " + " | ".join(title.ljust(w) for title, w in zip(titles, widths, strict=True)) + " |",
             "|" + "|".join(":" + "-" * (w + 1) for w in widths) + "|"]  # fmt: skip
    for row in zip(*cells, strict=True):
        lines.append("| " + " | ".join(text.ljust(w) for text, w in zip(row, widths, strict=True)) + " |")
    return "\n".join(lines)
