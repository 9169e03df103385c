"""The two tables a leaderboard publishes: seed aggregates, and paired differences to the baseline.

Aggregates: one row per (dataset, cell label, quantizer label); for every value column
``<col>_mean``, ``<col>_std``, ``<col>_ci95``, ``<col>_n`` over the seeds whose status is
``ok`` (a diverged or failed seed has no trustworthy metrics: it is counted in ``n_diverged`` /
``n_error`` instead, so it stays visible). Rows are ordered by dataset, then by the dataset's
primary metric in its direction; groups without an ok seed come last, unranked.

Paired: for every method and quality metric, the per-seed difference method - baseline, where
the baseline is the protocol's baseline quantizer (the matrix's ``baseline``, else the quantizer
that declares ``baseline = True``; with neither there is no paired table) of
the same dataset, cell and seed; mean, std, ci95 (Stein's under a seed rule), n, the test that
decides and why, its p-value, the margin test's (equivalence or non-inferiority, where the
protocol has a margin), their Holm-Bonferroni adjustment across the methods of one dataset, cell
and metric, the effect size (Cohen's d_z), the shape of the differences and the verdict
(:mod:`qbench.verdicts`), with its sentence.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.compute.frame import GROUP_KEY, STATUSES, RunsFrame
from qbench.leaderboard.compute.stats import ci95_half_width
from qbench.stats import effect_size


def aggregate(frame: RunsFrame) -> pd.DataFrame:
    runs = frame.runs
    key = list(GROUP_KEY)
    groups = runs.groupby(key, observed=True, sort=False)
    table = groups.agg(
        quantizer=("quantizer", "first"),
        cell=("cell", "first"),
        dataset=("dataset", "first"),
        full_precision=("full_precision", "first"),
        licence=("licence", "first"),
        case_ids=("case_id", list),
    )
    counts = runs.groupby([*key, "status"], observed=True).size().unstack("status", fill_value=0)
    for status in STATUSES:
        table[f"n_{status}"] = counts[status] if status in counts else 0
    table[[f"n_{s}" for s in STATUSES]] = table[[f"n_{s}" for s in STATUSES]].fillna(0).astype(np.int64)

    ok = runs[runs["status"] == "ok"]
    columns = frame.value_columns
    if len(ok):
        ok_groups = ok.groupby(key, observed=True, sort=False)[columns]
        mean, std, count = ok_groups.mean(), ok_groups.std(ddof=1), ok_groups.count()
    else:
        mean = std = count = pd.DataFrame(columns=columns)
    stats = {}
    for column in columns:
        m = mean[column].reindex(table.index).astype(float)
        s = std[column].reindex(table.index).astype(float)
        n = count[column].reindex(table.index).fillna(0).astype(np.int64)
        stats[f"{column}_mean"] = m
        stats[f"{column}_std"] = s
        stats[f"{column}_ci95"] = pd.Series(ci95_half_width(s.to_numpy(), n.to_numpy()), index=table.index)
        stats[f"{column}_n"] = n
    table = pd.concat([table, pd.DataFrame(stats, index=table.index)], axis=1).reset_index()
    for name in (*key, "quantizer", "cell", "dataset"):
        table[name] = table[name].astype(str)
    return _rank(table, frame)


def _rank(table: pd.DataFrame, frame: RunsFrame) -> pd.DataFrame:
    sort_value = np.full(len(table), np.nan)
    for label, info in frame.datasets.items():
        rows = (table["dataset_label"] == label).to_numpy()
        column = f"{info.primary_metric}_mean"
        if column in table:
            values = table.loc[rows, column].to_numpy(dtype=float)
            sort_value[rows] = values if info.direction == "min" else -values
    table["_unranked"] = np.isnan(sort_value)
    table["_sort"] = np.nan_to_num(sort_value, nan=0.0)
    table = table.sort_values(
        ["dataset_label", "_unranked", "_sort", "quantizer_label", "cell_label"], kind="stable"
    ).reset_index(drop=True)
    rank = table.groupby("dataset_label", sort=False).cumcount() + 1
    table.insert(0, "rank", rank.where(~table["_unranked"]).astype("Int64"))
    return table.drop(columns=["_unranked", "_sort"])


PAIRED_COLUMNS = ["dataset_label", "cell_label", "quantizer_label", "baseline_label", "metric", "direction",
                  "diff_mean", "diff_std", "diff_ci95", "n", "first_stage_n", "effect_size", "test", "test_reason",
                  "p_t", "p_sign_flip", "p_value", "p_holm", "margin", "p_margin", "p_margin_holm", "shape", "verdict",
                  "sentence"]  # fmt: skip


def paired(frame: RunsFrame, baseline: str | None = None, alpha: float = 0.05, protocol: Any = None) -> pd.DataFrame:
    """Per-seed differences of each method against the baseline of its dataset and cell (the
    quantizer named ``baseline``, by default the one the runs' records declare; none when ""),
    judged by :mod:`qbench.verdicts` with the ``protocol``'s margins, claim and seed rule."""
    from qbench.verdicts import first_stage_of, judge, ordered_differences

    runs = frame.runs
    if baseline is None:
        baseline = frame.declared.baseline
    quality = frame.quality_columns
    columns = PAIRED_COLUMNS
    ok = runs[runs["status"] == "ok"]
    base = ok[ok["quantizer"] == baseline]
    if not baseline or base.empty or not quality:
        return pd.DataFrame(columns=columns)
    cols = ["dataset_label", "cell_label", "seed"]
    # One baseline per (dataset, cell): the first float label, so that float variants are compared too.
    base = base.astype({"dataset_label": str, "cell_label": str, "quantizer_label": str})
    first_label = base.groupby(["dataset_label", "cell_label"])["quantizer_label"].transform("min")
    base = base[base["quantizer_label"] == first_label].drop_duplicates(cols, keep="last")
    base = base[[*cols, "quantizer_label", *quality]].rename(columns={"quantizer_label": "baseline_label"})
    methods = ok.astype({"dataset_label": str, "cell_label": str, "quantizer_label": str})
    merged = methods[[*cols, "quantizer_label", *quality]].merge(base, on=cols, suffixes=("", "_base"))
    merged = merged[merged["quantizer_label"] != merged["baseline_label"]]
    if merged.empty:
        return pd.DataFrame(columns=columns)
    key = ["dataset_label", "cell_label", "quantizer_label", "baseline_label"]
    order = tuple(protocol.seeds) if protocol is not None else ()
    first_stage = first_stage_of(protocol)
    claim = getattr(protocol, "claim", "equivalence")
    rows, items = [], []
    for metric in quality:
        direction = frame.directions.get(metric, "min")
        values = (merged[metric] - merged[f"{metric}_base"]).to_numpy(dtype=float).tolist()
        groups: dict[tuple[str, ...], dict[int, float]] = {}
        for k, seed, value in zip(zip(*(merged[c].tolist() for c in key), strict=True), merged["seed"].tolist(),
                                  values, strict=True):  # fmt: skip
            if value == value:
                groups.setdefault(k, {})[int(seed)] = value
        for k, by_seed in groups.items():
            diffs, first = ordered_differences(by_seed, order, first_stage)
            margin = protocol.margin_for(k[0], metric) if protocol is not None else None
            rows.append([*k, metric, direction])
            items.append(((k[0], k[1], metric), diffs, first, margin, direction))
    if not rows:
        return pd.DataFrame(columns=columns)
    judged = judge(items, claim, alpha)
    table = pd.DataFrame(rows, columns=[*key, "metric", "direction"])
    ev = [j.evidence for j in judged]
    table["diff_mean"] = [e.mean for e in ev]
    table["diff_std"] = [e.std for e in ev]
    table["diff_ci95"] = [e.ci95 for e in ev]
    table["n"] = np.array([e.n for e in ev], dtype=np.int64)
    table["first_stage_n"] = [float(item[2]) if item[2] is not None else math.nan for item in items]
    table["effect_size"] = [effect_size(e.mean, e.std) for e in ev]
    table["test"] = [e.test for e in ev]
    table["test_reason"] = [e.why for e in ev]
    table["p_t"] = [e.p_t for e in ev]
    table["p_sign_flip"] = [e.p_sign_flip for e in ev]
    table["p_value"] = [e.p for e in ev]
    table["p_holm"] = [j.p_holm for j in judged]
    table["margin"] = [j.margin if j.margin is not None else math.nan for j in judged]
    table["p_margin"] = [e.p_equiv for e in ev]
    table["p_margin_holm"] = [j.p_margin_holm for j in judged]
    table["shape"] = [e.shape for e in ev]
    table["verdict"] = [j.verdict for j in judged]
    table = table.sort_values(["dataset_label", "metric", "cell_label", "quantizer_label"], kind="stable")
    table = table.reset_index(drop=True)
    table["sentence"] = [sentence(row, claim) for row in table.itertuples(index=False)]
    return table[columns]


def sentence(row: Any, claim: str = "equivalence") -> str:
    """The verdict of one comparison in words, naming the test that decided it."""
    from qbench.leaderboard.compute.formatting import fmt_ci, fmt_value

    if row.n < 2:
        if row.n == 0:
            return f"{row.quantizer_label}: no seed paired with {row.baseline_label}"
        return (f"{row.quantizer_label}: {fmt_value(row.diff_mean, signed=True)} {row.metric} against "
                f"{row.baseline_label} from one seed, no interval")  # fmt: skip
    test = "exact sign-flip test" if row.test == "sign-flip" else "t test"
    p = f"Holm-adjusted p={row.p_holm:.2g}, {test}: {row.test_reason}"
    difference = f"{fmt_value(row.diff_mean, signed=True)} ± {fmt_ci(row.diff_ci95)}"
    if row.shape == "zero spread":
        detail = (f"every one of the {row.n} seeds differs by exactly {fmt_value(row.diff_mean, signed=True)} "
                  f"{row.metric}: there is no spread, so no interval or t test; the {test} gives p={row.p_value:.2g}, "
                  f"the smallest {row.n} seeds can give")  # fmt: skip
    elif row.shape == "two groups":
        detail = (f"the {row.n} differences fall into two separate groups (one gap between them is more than "
                  f"four times all the others): a mean ± interval ({difference}) describes neither group; the {test} "
                  f"decides, Holm-adjusted p={row.p_holm:.2g}")  # fmt: skip
    else:
        detail = f"{difference} {row.metric}, n={row.n}, {p}"
    margin = row.margin if row.margin == row.margin else None
    if row.verdict in ("better", "worse"):
        head = f"{row.quantizer_label} is {row.verdict} than {row.baseline_label}"
    elif row.verdict == "equivalent":
        head = f"{row.quantizer_label} is equivalent to {row.baseline_label} within ±{margin:g}"
    elif row.verdict == "non-inferior":
        head = f"{row.quantizer_label} is non-inferior to {row.baseline_label} (margin {margin:g})"
    elif margin is None:
        head = (f"{row.quantizer_label}: inconclusive against {row.baseline_label}; equivalence was not tested "
                f"(no margin for {row.metric})")  # fmt: skip
    else:
        shown = "equivalence" if claim == "equivalence" else "non-inferiority"
        head = (f"{row.quantizer_label}: inconclusive against {row.baseline_label}: neither a difference nor "
                f"{shown} within {margin:g} is shown (margin test p={row.p_margin_holm:.2g} adjusted)")  # fmt: skip
    return f"{head} ({detail})"
