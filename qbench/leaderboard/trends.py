"""Trend views: a method's paired difference to the baseline as a function of a swept parameter,
and the paired validation gap epoch by epoch.

A *sweep* is a numeric component parameter (``cell.hidden = [64, 128, 256, 512]``,
``quantizer.bits = [2, 4, 8]``, ``dataset.max_chars = [...]``) that takes two or more values for
the same method with everything else on its axis equal. Booleans and text are not sweeps (a
trend needs an order). A ``[train]`` value cannot be swept inside one leaderboard (a method's
runs share one recipe; older recipes are superseded), so the training-length trend is read from
the per-epoch curves the records hold: the epoch view.

Trend rows (``leaderboard.json`` ``trends``, one per dataset, parameter, context, method and value):
the per-seed difference ``method - baseline`` of the dataset's primary metric, paired as the
paired table pairs (same dataset label, cell label and seed; the baseline is the protocol's
baseline quantizer, its first label per dataset and cell), then mean, sample std, Student-t
95% half-width and n, and the case ids of both sides of every pair (``qbench validate``
recomputes each row from the published runs in plain Python). ``context`` is what the swept
axis holds besides the parameter (``gru(batch_norm=true)``); ``method`` the quantizer label, or
for a quantizer parameter the quantizer with its other parameters.

Contrast rows (``trend_contrasts``): for every two values ``a < b`` of one trend (dataset,
parameter, context, method), the per-seed change of the difference, ``diff_b(s) - diff_a(s)``
over the seeds both values have (a difference of differences: how much moving the parameter
from ``a`` to ``b`` moves the method's gap to the baseline), judged by :mod:`qbench.verdicts`
as the paired table judges a method (the same test choice; Holm across the contrasts of one
trend, difference and margin tests together; the dataset's margin for the metric when the
protocol has one): *rises* / *falls* when the change differs from zero, *no effect* when it
lies within the margin (both one-sided tests), *inconclusive* otherwise. Contrasts are read at a
fixed number of seeds (the seeds both values have), not through Stein's rule.

Epoch rows (``epoch_gaps``): for every paired method of a dataset that has a sweep, the same
difference of the validation value each epoch's curve point records (epochs both runs reached).
They are recomputed from the stored curves by ``qbench validate``'s rebuild (check 5).

Both tables are empty, and nothing is added to any page, when no dataset has a sweep: a
leaderboard without sweeps is byte for byte what it was before this module existed.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.formatting import fmt_ci, fmt_value
from qbench.leaderboard.frame import RunsFrame
from qbench.leaderboard.stats import ci95_half_width

#: the component axes a sweep can be on, and the run column holding that axis's parameters
AXES = (("cell", "cell_params"), ("quantizer", "quantizer_params"), ("dataset", "dataset_params"))
TREND_COLUMNS = ["dataset_label", "parameter", "context", "method", "baseline_label", "value", "metric",
                 "diff_mean", "diff_std", "diff_ci95", "n", "case_ids", "baseline_case_ids"]  # fmt: skip
CONTRAST_COLUMNS = ["dataset_label", "parameter", "context", "method", "metric", "from_value", "to_value",
                    "change_mean", "change_std", "change_ci95", "n", "test", "p_holm", "margin", "p_margin_holm",
                    "verdict"]  # fmt: skip
#: what a contrast's verdict is called: a change of a difference is neither better nor worse
CONTRAST_VERDICTS = {"better": "falls", "worse": "rises", "equivalent": "no effect"}
EPOCH_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "baseline_label", "metric", "epoch",
                 "diff_mean", "diff_std", "diff_ci95", "n"]  # fmt: skip


@dataclass
class Trends:
    """The long tables (``TREND_COLUMNS``, ``EPOCH_COLUMNS``, ``CONTRAST_COLUMNS``); all empty without a sweep."""

    rows: pd.DataFrame
    epochs: pd.DataFrame
    contrasts: pd.DataFrame = None  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.contrasts is None:
            self.contrasts = pd.DataFrame(columns=CONTRAST_COLUMNS)

    @property
    def empty(self) -> bool:
        return self.rows.empty

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(self.rows["dataset_label"].tolist()))


def _params(text: str) -> dict[str, Any]:
    value = json.loads(text) if text else {}
    return value if isinstance(value, dict) else {}


def _label(name: str, params: dict[str, Any]) -> str:
    if not params:
        return name
    return f"{name}({','.join(f'{k}={json.dumps(v)}' for k, v in sorted(params.items()))})"


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _baseline_runs(ok: pd.DataFrame, baseline: str) -> pd.DataFrame:
    """The baseline run of every (dataset label, cell label, seed): the paired table's choice."""
    base = ok[ok["quantizer"] == baseline]
    if base.empty:
        return base
    base = base.astype({"dataset_label": str, "cell_label": str, "quantizer_label": str})
    first = base.groupby(["dataset_label", "cell_label"])["quantizer_label"].transform("min")
    return base[base["quantizer_label"] == first].drop_duplicates(["dataset_label", "cell_label", "seed"],
                                                                   keep="last")  # fmt: skip


def _summary(diffs: list[float]) -> tuple[float, float, float, int]:
    array = np.asarray(diffs, dtype=float)
    n = len(array)
    mean = float(array.mean()) if n else math.nan
    std = float(array.std(ddof=1)) if n > 1 else math.nan
    ci = float(ci95_half_width(np.array([std]), np.array([n]))[0])
    return mean, std, ci, n


def _swept_keys(ok: pd.DataFrame, axis: str, column: str, baseline: str) -> list[str]:
    """Numeric parameters of ``axis`` with two or more values for one method, the rest of the axis equal."""
    others = {"cell": ["dataset_label", "quantizer_label"], "quantizer": ["dataset_label", "cell_label"],
              "dataset": ["cell_label", "quantizer_label"]}[axis]  # fmt: skip
    methods = ok[ok["quantizer"] != baseline]
    # distinct configurations only: a store of 100,000 runs has a few hundred
    distinct = methods[[*others, axis, column]].astype(str).drop_duplicates()
    seen: dict[tuple[Any, ...], set[Any]] = {}
    keys: list[str] = []
    for row in zip(*(distinct[c].tolist() for c in [*others, axis, column]), strict=True):
        params = _params(row[-1])
        for key, value in params.items():
            if not _numeric(value):
                continue
            rest = json.dumps({k: v for k, v in params.items() if k != key}, sort_keys=True)
            values = seen.setdefault((key, *row[:-1], rest), set())
            values.add(float(value))
            if len(values) > 1 and key not in keys:
                keys.append(key)
    return sorted(keys)


def compute_trends(frame: RunsFrame, baseline: str, protocol: Any = None) -> Trends:
    """The trend rows, their contrasts and, for the datasets that have a sweep, the epoch rows.

    ``protocol`` (a :class:`qbench.protocol.Protocol`): its alpha and margins judge the contrasts."""
    metric_of = {label: info.primary_metric for label, info in frame.datasets.items()}
    wanted = ["case_id", "seed", "quantizer", "cell", "dataset", "quantizer_label", "cell_label", "dataset_label",
              *(column for _, column in AXES), *sorted({m for m in metric_of.values() if m})]  # fmt: skip
    # only the columns read here: copying the whole (wide) frame would cost more than the rest
    runs = frame.runs[[c for c in wanted if c in frame.runs]]
    ok = runs[(frame.runs["status"] == "ok").to_numpy()]
    empty = Trends(pd.DataFrame(columns=TREND_COLUMNS), pd.DataFrame(columns=EPOCH_COLUMNS))
    if not baseline or ok.empty:
        return empty
    sweeps = [(axis, column, key) for axis, column in AXES for key in _swept_keys(ok, axis, column, baseline)]
    if not sweeps:  # the common case: nothing more to compute
        return empty
    base = _baseline_runs(ok, baseline)
    if base.empty:
        return empty
    base_by = {(str(d), str(c), int(s)): i for d, c, s, i in
               zip(base["dataset_label"], base["cell_label"], base["seed"], base.index, strict=True)}  # fmt: skip
    methods = ok[ok["quantizer"] != baseline]
    rows: list[dict[str, Any]] = []
    by_seed: dict[tuple[Any, ...], dict[int, float]] = {}  # (trend key, value) -> {seed: difference}
    sections: set[str] = set()  # the dataset sections a sweep touches: they get the epoch view
    for axis, column, key in sweeps:
        groups: dict[tuple[str, ...], dict[str, Any]] = {}
        for index in methods.index:
            run = methods.loc[index]
            params = _params(str(run[column]))
            if not _numeric(params.get(key)):
                continue
            partner = base_by.get((str(run["dataset_label"]), str(run["cell_label"]), int(run["seed"])))
            metric = metric_of.get(str(run["dataset_label"]), "")
            if partner is None or not metric:
                continue
            # the parameters the label shows (those the matrix set), less the swept one
            shown = str(run[f"{axis}_label"])
            rest = _label(str(run[axis]), {k: v for k, v in params.items() if k != key and f"{k}=" in shown})
            dataset = rest if axis == "dataset" else str(run["dataset_label"])
            context = str(run["cell_label"]) if axis != "cell" else rest
            method = rest if axis == "quantizer" else str(run["quantizer_label"])
            value = float(params[key])
            own, other = float(run[metric]), float(runs.at[partner, metric])
            if not (math.isfinite(own) and math.isfinite(other)):
                continue
            group = groups.setdefault((dataset, context, method, repr(value)), {
                "dataset_label": dataset, "parameter": f"{axis}.{key}", "context": context, "method": method,
                "baseline_label": str(runs.at[partner, "quantizer_label"]), "value": value, "metric": metric,
                "diffs": [], "seeds": [], "case_ids": [], "baseline_case_ids": []})  # fmt: skip
            group["diffs"].append(own - other)
            group["seeds"].append(int(run["seed"]))
            sections.add(str(run["dataset_label"]))
            group["case_ids"].append(str(run["case_id"]))
            group["baseline_case_ids"].append(str(runs.at[partner, "case_id"]))
        for group in groups.values():
            by_seed[(group["dataset_label"], group["parameter"], group["context"], group["method"],
                     group["value"])] = dict(zip(group.pop("seeds"), group["diffs"], strict=True))  # fmt: skip
            mean, std, ci, n = _summary(group.pop("diffs"))
            rows.append({**group, "diff_mean": mean, "diff_std": std, "diff_ci95": ci, "n": n})
    if not rows:
        return empty
    table = pd.DataFrame(rows, columns=TREND_COLUMNS)
    table = table.sort_values(["dataset_label", "parameter", "context", "method", "value"], kind="stable")
    table = table.reset_index(drop=True)
    contrasts = contrast_rows(table, by_seed, protocol)
    return Trends(table, epoch_gaps(frame, base_by, methods, sections), contrasts)


def contrast_items(table: pd.DataFrame, by_seed: dict[tuple[Any, ...], dict[int, float]]) -> list[tuple[Any, ...]]:
    """(trend key, metric, from value, to value, per-seed changes) for every two values of a trend."""
    items = []
    for key, part in table.groupby(["dataset_label", "parameter", "context", "method"], sort=False):
        metric = str(part["metric"].iloc[0])
        values = sorted(set(float(v) for v in part["value"].tolist()))
        for i, low in enumerate(values):
            for high in values[i + 1:]:
                a, b = by_seed.get((*key, low), {}), by_seed.get((*key, high), {})
                seeds = sorted(set(a) & set(b))
                items.append((tuple(key), metric, low, high, [b[s] - a[s] for s in seeds]))
    return items


def judge_contrasts(items: list[tuple[Any, ...]], protocol: Any) -> list[Any]:
    """The :class:`qbench.verdicts.Judged` of every contrast item, Holm across each trend's contrasts."""
    from qbench.verdicts import judge

    alpha = float(getattr(protocol, "alpha", 0.05))
    margin_for = getattr(protocol, "margin_for", None)
    return judge([(key, changes, None, margin_for(key[0], metric) if margin_for else None, "min")
                  for key, metric, _, _, changes in items], "equivalence", alpha)  # fmt: skip


def contrast_rows(table: pd.DataFrame, by_seed: dict[tuple[Any, ...], dict[int, float]], protocol: Any) -> pd.DataFrame:
    items = contrast_items(table, by_seed)
    out = []
    for (key, metric, low, high, changes), judged in zip(items, judge_contrasts(items, protocol), strict=True):
        mean, std, ci, n = _summary(changes)
        ev = judged.evidence
        out.append([*key, metric, low, high, mean, std, ci, n, ev.test, judged.p_holm,
                    judged.margin if judged.margin is not None else math.nan, judged.p_margin_holm,
                    CONTRAST_VERDICTS.get(judged.verdict, judged.verdict)])  # fmt: skip
    return pd.DataFrame(out, columns=CONTRAST_COLUMNS)


def _curve_key(curves: list[list[dict[str, Any]]], metric: str) -> str | None:
    """The validation value the curves record for ``metric`` (``test_bpc`` -> ``valid_bpc``)."""
    wanted = f"valid_{metric.split('_', 1)[-1]}"
    for curve in curves:
        for point in curve[:1]:
            if wanted in point:
                return wanted
    return None


def epoch_gaps(frame: RunsFrame, base_by: dict[tuple[str, str, int], Any], methods: pd.DataFrame,
               datasets: set[str]) -> pd.DataFrame:  # fmt: skip
    """Per dataset (of ``datasets``), cell, method and epoch: the paired validation difference."""
    runs, curves = frame.runs, frame.curves
    groups: dict[tuple[str, str, str, str, int], list[float]] = {}
    keys: dict[str, str | None] = {}
    for index in methods.index:
        dataset = str(methods.at[index, "dataset_label"])
        if dataset not in datasets:
            continue
        partner = base_by.get((dataset, str(methods.at[index, "cell_label"]), int(methods.at[index, "seed"])))
        if partner is None:
            continue
        own, other = curves[int(index)], curves[int(partner)]
        if dataset not in keys:
            keys[dataset] = _curve_key([own, other], frame.datasets[dataset].primary_metric)
        key = keys[dataset]
        if key is None:
            continue
        theirs = {int(p["epoch"]): p.get(key) for p in other if "epoch" in p}
        for point in own:
            epoch = int(point.get("epoch", 0))
            a, b = point.get(key), theirs.get(epoch)
            if isinstance(a, (int, float)) and isinstance(b, (int, float)) and math.isfinite(a) and math.isfinite(b):
                group = (dataset, str(methods.at[index, "cell_label"]), str(methods.at[index, "quantizer_label"]),
                         str(runs.at[partner, "quantizer_label"]), key, epoch)  # fmt: skip
                groups.setdefault(group, []).append(float(a) - float(b))  # type: ignore[arg-type]
    rows = []
    for (dataset, cell, method, base, key, epoch), diffs in groups.items():
        mean, std, ci, n = _summary(diffs)
        rows.append([dataset, cell, method, base, key, epoch, mean, std, ci, n])
    table = pd.DataFrame(rows, columns=EPOCH_COLUMNS)
    order = sorted(range(len(rows)), key=lambda i: (rows[i][0], natural_key(rows[i][1]), rows[i][2], rows[i][5]))
    return table.iloc[order].reset_index(drop=True)


def natural_key(text: str) -> list[Any]:
    """``gru(hidden=64)`` before ``gru(hidden=128)``: numbers compare as numbers."""
    return [(0, float(part), "") if part.replace(".", "", 1).isdigit() else (1, 0.0, part)
            for part in re.split(r"(\d+(?:\.\d+)?)", text)]


# -- text -----------------------------------------------------------------------------------------


def cell_text(mean: float, ci: float, n: int) -> str:
    """``+0.12 ± 0.03 (n=3)``; without an interval ``+0.12 (n=1)``."""
    text = fmt_value(mean, signed=True)
    if not math.isnan(ci):
        text += f" ± {fmt_ci(ci)}"
    return f"{text} (n={n})"


def wide_tables(trends: Trends, dataset: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of every trend table of ``dataset``: a method per row, a value per column."""
    out = []
    rows = trends.rows[trends.rows["dataset_label"] == dataset]
    for (parameter, context, metric), part in rows.groupby(["parameter", "context", "metric"], sort=False):
        values = sorted(set(part["value"].tolist()))
        header = ["method", *[f"{parameter.split('.', 1)[1]}={fmt_value(v)}" for v in values]]
        body = []
        for method, lines in part.groupby("method", sort=False):
            by_value = {float(r.value): cell_text(r.diff_mean, r.diff_ci95, r.n) for r in lines.itertuples()}
            body.append([str(method), *[by_value.get(v, "") for v in values]])
        base = str(part["baseline_label"].iloc[0])
        out.append((f"{metric} difference to {base} against {parameter} ({context})", header, body))
    out += contrast_tables(trends, dataset)
    gaps = trends.epochs[trends.epochs["dataset_label"] == dataset]
    for (cell, key), part in gaps.groupby(["cell_label", "metric"], sort=False):
        epochs = sorted(set(int(e) for e in part["epoch"].tolist()))
        header = ["method", *[f"epoch {e}" for e in epochs]]
        body = []
        for method, lines in part.groupby("quantizer_label", sort=False):
            by_epoch = {int(r.epoch): cell_text(r.diff_mean, r.diff_ci95, r.n) for r in lines.itertuples()}
            body.append([str(method), *[by_epoch.get(e, "") for e in epochs]])
        base = str(part["baseline_label"].iloc[0])
        out.append((f"{key} difference to {base} by epoch ({cell})", header, body))
    return out


def _p_text(p: float) -> str:
    return "" if p != p else f"{p:.3g}"


def contrast_tables(trends: Trends, dataset: str) -> list[tuple[str, list[str], list[list[str]]]]:
    """(heading, header, rows) of the contrasts of ``dataset``: one table per parameter and context."""
    out = []
    rows = trends.contrasts[trends.contrasts["dataset_label"] == dataset]
    for (parameter, context, metric), part in rows.groupby(["parameter", "context", "metric"], sort=False):
        name = parameter.split(".", 1)[1]
        body = [[str(r.method), f"{name}={fmt_value(r.from_value)} to {fmt_value(r.to_value)}",
                 cell_text(r.change_mean, r.change_ci95, r.n), r.test or "", _p_text(r.p_holm),
                 f"±{r.margin:g}" if r.margin == r.margin else "none", _p_text(r.p_margin_holm), str(r.verdict)]
                for r in part.itertuples()]  # fmt: skip
        header = ["method", "values", "change of the difference", "test", "p (Holm)", "margin",
                  "margin p (Holm)", "verdict"]  # fmt: skip
        out.append((f"Contrasts: how moving {parameter} changes the {metric} difference ({context})", header, body))
    return out


TREND_SENTENCE = ("Each cell: the method's difference to the baseline of the same cell and seed, mean ± 95% "
                  "interval (Student t) over the paired seeds, and the number of pairs. A parameter is shown when "
                  "the matrix swept it; the epoch tables read the validation value each run recorded after every "
                  "epoch (epochs both runs of a pair reached). A contrast is the change of a method's difference between "
                  "two values of the parameter, paired by seed (the seeds both values have), judged as the paired "
                  "table judges a method (the same test choice; Holm across the contrasts of one method and "
                  "parameter): rises / falls when the change differs from zero, no effect when it lies within the "
                  "dataset's margin, inconclusive otherwise.")  # fmt: skip


def markdown_section(trends: Trends, dataset: str, escape: Any) -> list[str]:
    """The ``### Trends`` lines of one dataset section (none without a sweep)."""
    tables = wide_tables(trends, dataset)
    if not tables:
        return []
    lines = ["### Trends", "", TREND_SENTENCE, ""]
    for heading, header, body in tables:
        lines += [f"**{escape(heading)}**", ""]
        lines.append("| " + " | ".join(escape(h) for h in header) + " |")
        lines.append("|" + "|".join(["---", *["---:"] * (len(header) - 1)]) + "|")
        lines += ["| " + " | ".join(escape(c) for c in row) + " |" for row in body]
        lines.append("")
    return lines


def html_section(trends: Trends, dataset: str) -> str:
    """The trend tables of one dataset section as HTML ("" without a sweep)."""
    from html import escape

    tables = wide_tables(trends, dataset)
    if not tables:
        return ""
    parts = [f"<h3>Trends</h3><p>{escape(TREND_SENTENCE)}</p>"]
    for heading, header, body in tables:
        head = "".join(f'<th scope="col">{escape(h)}</th>' for h in header)
        text = ' class="text"'
        rows = "".join("<tr>" + "".join(f"<td{text if i == 0 else ''}>{escape(c)}</td>" for i, c in enumerate(row))
                       + "</tr>" for row in body)  # fmt: skip
        parts.append(f'<p><strong>{escape(heading)}</strong></p><div class="scroll"><table class="trend">'
                     f"<thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table></div>")
    return "".join(parts)


# -- plots ----------------------------------------------------------------------------------------


def save_figure(fig: Any, stem: Path, staged: Any = None) -> list[Path]:
    """PNG and SVG of ``fig`` at ``stem`` (through ``staged`` when given), as the other plots are saved."""
    paths = [stem.with_suffix(".png"), stem.with_suffix(".svg")]
    write = staged.path if staged is not None else (lambda path: path)
    fig.savefig(write(paths[0]), format="png", dpi=110, metadata={"Software": None})
    fig.savefig(write(paths[1]), format="svg", metadata={"Date": None, "Creator": None})
    return paths


def write_trend_plots(trends: Trends, plot_dir: Path, staged: Any = None) -> list[Path]:
    """One plot per swept parameter and context, one per cell of the epoch gaps; PNG and SVG each.

    Named ``<dataset>-trend-...`` so that the HTML shows them in their dataset's section.
    """
    if trends.empty:
        return []
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from qbench.leaderboard.plots import MARGINS, plain, slug

    written: list[Path] = []
    plot_dir.mkdir(parents=True, exist_ok=True)
    with matplotlib.rc_context({"svg.hashsalt": "qbench", "svg.fonttype": "none", "font.size": 8}):
        for (dataset, parameter, context, metric), part in trends.rows.groupby(
                ["dataset_label", "parameter", "context", "metric"], sort=False):  # fmt: skip
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            fig.subplots_adjust(**{**MARGINS, "top": 0.87})  # a two-line title
            for method, lines in part.groupby("method", sort=False):
                x = lines["value"].to_numpy(float)
                y = lines["diff_mean"].to_numpy(float)
                err = np.nan_to_num(lines["diff_ci95"].to_numpy(float), nan=0.0)
                ax.errorbar(x, y, yerr=err, marker="o", ms=4, capsize=3, label=plain(method))
            values = part["value"].to_numpy(float)
            if np.all(values > 0) and values.max() / values.min() >= 8:
                ax.set_xscale("log", base=2)
            ax.axhline(0.0, color="#444", lw=0.8)
            ax.set_xlabel(plain(parameter))
            ax.set_ylabel(plain(f"{metric}: method - {part['baseline_label'].iloc[0]} (mean ± 95% CI)"))
            ax.set_title(plain(f"{dataset}: difference to the baseline against {parameter}\n{context}"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="best")
            name = f"{slug(dataset)}-trend-{slug(parameter)}-{slug(context)}"
            written += save_figure(fig, plot_dir / name, staged)
            plt.close(fig)
        for (dataset, cell, key), part in trends.epochs.groupby(["dataset_label", "cell_label", "metric"], sort=False):
            fig, ax = plt.subplots(figsize=(6.4, 4.2))
            fig.subplots_adjust(**{**MARGINS, "top": 0.87})  # a two-line title
            for method, lines in part.groupby("quantizer_label", sort=False):
                err = np.nan_to_num(lines["diff_ci95"].to_numpy(float), nan=0.0)
                ax.errorbar(lines["epoch"].to_numpy(float), lines["diff_mean"].to_numpy(float), yerr=err,
                            marker="o", ms=4, capsize=3, label=plain(method))  # fmt: skip
            ax.axhline(0.0, color="#444", lw=0.8)
            from matplotlib.ticker import MaxNLocator

            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.set_xlabel("epoch")
            ax.set_ylabel(plain(f"{key}: method - {part['baseline_label'].iloc[0]} (mean ± 95% CI)"))
            ax.set_title(plain(f"{dataset}: validation gap by epoch\n{cell}"))
            ax.grid(alpha=0.3)
            ax.legend(fontsize=6, loc="best")
            written += save_figure(fig, plot_dir / f"{slug(dataset)}-trend-epochs-{slug(cell)}", staged)
            plt.close(fig)
    return written


# -- validate -------------------------------------------------------------------------------------


def check_trend_rows(document: dict[str, Any], runs: list[dict[str, Any]], protocol: Any = None) -> list[str]:
    """Every published trend row recomputed from the single-seed rows its case ids name (plain Python),
    then every contrast from those rows, judged with ``protocol`` (the published one).

    ``runs``: the published runs as validate reads them (a dict per run, its metrics under ``values``).
    """
    from qbench.leaderboard.writers import table_rows
    from qbench.stats import summarize

    section = document.get("trends")
    if section is None:
        return []
    problems = []
    by_id = {run["case_id"]: run for run in runs}
    by_seed: dict[tuple[Any, ...], dict[int, float]] = {}
    metrics: dict[tuple[Any, ...], str] = {}
    for row in table_rows(section):
        where = f"trends: {row['dataset_label']} / {row['parameter']}={row['value']} / {row['method']}"
        ids, base_ids = row["case_ids"], row["baseline_case_ids"]
        if len(ids) != len(base_ids) or len(ids) != row["n"]:
            problems.append(f"{where}: {len(ids)} case ids, {len(base_ids)} baseline case ids, n={row['n']}")
            continue
        diffs = []
        for own, other in zip(ids, base_ids, strict=True):
            a, b = by_id.get(own), by_id.get(other)
            if a is None or b is None:
                problems.append(f"{where}: case {own if a is None else other} is not among the published runs")
                break
            if a["seed"] != b["seed"] or a["dataset_label"] != b["dataset_label"] or a["cell_label"] != b["cell_label"]:
                problems.append(f"{where}: {own} and {other} are not a pair (same dataset, cell and seed)")
                break
            values = (a.get("values") or {}).get(row["metric"]), (b.get("values") or {}).get(row["metric"])
            if values[0] is None or values[1] is None:
                problems.append(f"{where}: {own} or {other} has no {row['metric']}")
                break
            diffs.append(values[0] - values[1])
        else:
            stats = summarize(diffs)
            for name, want in (("diff_mean", stats["mean"]), ("diff_std", stats["std"]), ("diff_ci95", stats["ci95"])):
                got = row[name]
                if not _same(got, want):
                    problems.append(f"{where}: {name} is {got}, the paired runs give {want}")
            key = (row["dataset_label"], row["parameter"], row["context"], row["method"], float(row["value"]))
            by_seed[key] = {by_id[own]["seed"]: d for own, d in zip(ids, diffs, strict=True)}
            metrics[key[:4]] = row["metric"]
    return problems + _check_contrasts(document, by_seed, metrics, protocol)


def _same(got: Any, want: float) -> bool:
    if isinstance(want, str):
        return got == want
    return (got is None and math.isnan(want)) or (
        got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12))


def _check_contrasts(document: dict[str, Any], by_seed: dict[tuple[Any, ...], dict[int, float]],
                     metrics: dict[tuple[Any, ...], str], protocol: Any) -> list[str]:  # fmt: skip
    """Every published contrast recomputed from the trend rows' paired runs (and none left out)."""
    from qbench.leaderboard.writers import table_rows

    table = pd.DataFrame([[*key[:4], metrics[key[:4]], key[4]] for key in by_seed],
                         columns=["dataset_label", "parameter", "context", "method", "metric", "value"])  # fmt: skip
    want = contrast_rows(table, by_seed, protocol) if len(table) else pd.DataFrame(columns=CONTRAST_COLUMNS)
    published = table_rows(document["trend_contrasts"]) if "trend_contrasts" in document else []
    if len(published) != len(want):
        return [f"trend_contrasts: {len(published)} rows published, the trend rows give {len(want)}"]
    problems = []
    for got, row in zip(published, want.to_dict("records"), strict=True):
        where = (f"trend_contrasts: {row['dataset_label']} / {row['method']} / {row['parameter']} "
                 f"{row['from_value']:g} -> {row['to_value']:g}")  # fmt: skip
        for name in CONTRAST_COLUMNS:
            value = row[name]
            if isinstance(value, (float, np.floating)) or name in ("n",):
                ok = _same(got.get(name), float(value))
            else:
                ok = got.get(name) == value
            if not ok:
                problems.append(f"{where}: {name} is {got.get(name)!r}, the paired runs give {value!r}")
    return problems


# -- JSON -----------------------------------------------------------------------------------------


def _json_value(value: Any) -> Any:
    if isinstance(value, list):
        return [str(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    return value


def json_tables(trends: Trends) -> dict[str, Any]:
    """``trends``, ``trend_contrasts`` and ``epoch_gaps`` as split tables for ``leaderboard.json``; {} without
    a sweep."""
    if trends.empty:
        return {}
    out = {}
    for name, table, columns in (("trends", trends.rows, TREND_COLUMNS),
                                 ("trend_contrasts", trends.contrasts, CONTRAST_COLUMNS),
                                 ("epoch_gaps", trends.epochs, EPOCH_COLUMNS)):  # fmt: skip
        rows = [[_json_value(v) for v in row] for row in table[columns].itertuples(index=False, name=None)]
        out[name] = {"columns": columns, "rows": rows}
    return out
