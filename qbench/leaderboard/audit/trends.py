"""The published trend rows checked against the published runs (``qbench validate``)."""

from __future__ import annotations

import math
from typing import Any


def check_trend_rows(document: dict[str, Any], runs: list[dict[str, Any]]) -> list[str]:
    """Every published trend row recomputed from the single-seed rows its case ids name (plain Python).

    ``runs``: the published runs as validate reads them (a dict per run, its metrics under ``values``).
    """
    from qbench.leaderboard.render.writers import table_rows
    from qbench.stats import summarize

    section = document.get("trends")
    if section is None:
        return []
    problems = []
    by_id = {run["case_id"]: run for run in runs}
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
                same = (got is None and math.isnan(want)) or (
                    got is not None and math.isclose(got, want, rel_tol=1e-9, abs_tol=1e-12))
                if not same:
                    problems.append(f"{where}: {name} is {got}, the paired runs give {want}")
    return problems
