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
from typing import Any

import numpy as np
import pandas as pd

from qbench.components import component_label
from qbench.leaderboard.compute.frame import RunsFrame
from qbench.leaderboard.compute.stats import ci95_half_width

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
            rest = component_label(str(run[axis]), {k: v for k, v in params.items() if k != key and f"{k}=" in shown})
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
