"""The two tables a leaderboard publishes: seed aggregates, and paired differences to the baseline.

Aggregates: one row per (dataset, cell label, quantizer label); for every value column
``<col>_mean``, ``<col>_std``, ``<col>_ci95``, ``<col>_n`` over the seeds whose status is
``ok`` (a diverged or failed seed has no trustworthy metrics: it is counted in ``n_diverged`` /
``n_error`` instead, so it stays visible). Rows are ordered by dataset, then by the dataset's
primary metric in its direction; groups without an ok seed come last, unranked.

Paired: for every method and quality metric, the per-seed difference method - baseline, where
the baseline is the protocol's baseline quantizer (the matrix's ``baseline``, else the quantizer
that declares ``baseline = True``; with neither there is no paired table) of
the same dataset, cell and seed; mean, std, ci95, n, the paired t test's p-value, its
Holm-Bonferroni adjustment across the methods of one dataset, cell and metric, the effect size
(Cohen's d_z) and the verdict taken from the adjusted p-value
(:func:`qbench.leaderboard.stats.adjusted_verdict`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.frame import GROUP_KEY, STATUSES, RunsFrame
from qbench.leaderboard.stats import adjusted_verdict, ci95_half_width
from qbench.stats import effect_size, holm, paired_p_value


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
                  "diff_mean", "diff_std", "diff_ci95", "n", "effect_size", "p_value", "p_holm", "verdict",
                  "sentence"]  # fmt: skip


def paired(frame: RunsFrame, baseline: str | None = None, alpha: float = 0.05) -> pd.DataFrame:
    """Per-seed differences of each method against the baseline of its dataset and cell (the
    quantizer named ``baseline``, by default the one the runs' records declare; none when "")."""
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
    parts = []
    for metric in quality:
        diff = merged[key].copy()
        diff["diff"] = merged[metric] - merged[f"{metric}_base"]
        g = diff.groupby(key, sort=False)["diff"]
        part = pd.DataFrame({"diff_mean": g.mean(), "diff_std": g.std(ddof=1), "n": g.count()}).reset_index()
        part = part[part["n"] > 0]
        part["metric"] = metric
        part["direction"] = frame.directions.get(metric, "min")
        part["diff_ci95"] = ci95_half_width(part["diff_std"].to_numpy(), part["n"].to_numpy())
        parts.append(part)
    table = pd.concat(parts, ignore_index=True)
    table = table.sort_values(["dataset_label", "metric", "cell_label", "quantizer_label"], kind="stable")
    table = table.reset_index(drop=True)
    means, stds = table["diff_mean"].astype(float).tolist(), table["diff_std"].astype(float).tolist()
    ns = [int(n) for n in table["n"].tolist()]
    table["p_value"] = [paired_p_value(m, s, n) for m, s, n in zip(means, stds, ns, strict=True)]
    table["effect_size"] = [effect_size(m, s) for m, s in zip(means, stds, strict=True)]
    adjusted = np.full(len(table), np.nan)
    for _, family in table.groupby(["dataset_label", "cell_label", "metric"], sort=False):
        adjusted[family.index.to_numpy()] = holm(family["p_value"].tolist())
    table["p_holm"] = adjusted
    table["verdict"] = [adjusted_verdict(m, p, n, str(d), alpha) for m, p, n, d in
                        zip(means, adjusted.tolist(), ns, table["direction"].tolist(), strict=True)]  # fmt: skip
    table["sentence"] = [_sentence(row) for row in table.itertuples(index=False)]
    return table[columns]


def _sentence(row: Any) -> str:
    from qbench.leaderboard.formatting import fmt_ci, fmt_value

    size = fmt_value(abs(row.diff_mean))
    if row.verdict in ("better", "worse"):
        return (
            f"{row.quantizer_label} is {size} ± {fmt_ci(row.diff_ci95)} {row.metric} {row.verdict} than "
            f"{row.baseline_label} (n={row.n}, Holm-adjusted p={row.p_holm:.2g})"
        )
    if row.verdict == "no significant difference":
        return (
            f"{row.quantizer_label}: no significant difference from {row.baseline_label} in {row.metric} "
            f"({fmt_value(row.diff_mean, signed=True)} ± {fmt_ci(row.diff_ci95)}, n={row.n}, "
            f"Holm-adjusted p={row.p_holm:.2g})"
        )
    return (
        f"{row.quantizer_label}: {fmt_value(row.diff_mean, signed=True)} {row.metric} against "
        f"{row.baseline_label} from one seed, no interval"
    )
