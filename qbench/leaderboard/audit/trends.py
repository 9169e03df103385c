"""The published trend rows checked against the published runs (``qbench validate``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.compute.trends import CONTRAST_COLUMNS, contrast_rows


def check_trend_rows(document: dict[str, Any], runs: list[dict[str, Any]], protocol: Any = None) -> list[str]:
    """Every published trend row recomputed from the single-seed rows its case ids name (plain Python),
    then every contrast from those rows, judged with ``protocol`` (the published one).

    ``runs``: the published runs as validate reads them (a dict per run, its metrics under ``values``).
    """
    from qbench.leaderboard.render.writers import table_rows
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
    from qbench.leaderboard.render.writers import table_rows

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


