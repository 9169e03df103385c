"""``qbench compare A B``: two runs side by side; a regression past a threshold fails.

For every (dataset, cell, quantizer) row present in A and every compared metric (by default
each dataset's primary metric), ``change = mean_B - mean_A``. Rows are the tuned rows of the
leaderboards: each method's chosen configuration on its evaluation seeds (:mod:`qbench.protocol`).
The change counts as *worse* in the metric's direction (higher for a ``min`` metric). A row
**regresses** when it got worse by more than the threshold, or when A had ok seeds and B has
none (all diverged or failed).
Threshold forms: ``0.05`` (absolute, in the metric's unit) or ``2%`` (relative to ``|mean_A|``).
Rows only in A or only in B are listed and do not fail the comparison.

Beside the change, each side's verdict against its baseline is shown (``a_verdict``,
``b_verdict``): the leaderboard's own paired verdicts (:mod:`qbench.verdicts`, with each side's
protocol: its seed rule, margins and claim), so a comparison never judges a method differently
from the pages it compares.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import pandas as pd

from qbench.errors import UsageError
from qbench.leaderboard.compute.frame import GROUP_KEY, load_runs
from qbench.leaderboard.compute.tables import aggregate
from qbench.protocol import Protocol

DEFAULT_THRESHOLD = "1%"


@dataclass(frozen=True)
class Threshold:
    value: float
    relative: bool

    @classmethod
    def parse(cls, text: str) -> Threshold:
        raw = str(text).strip()
        relative = raw.endswith("%")
        try:
            value = float(raw[:-1] if relative else raw)
        except ValueError:
            raise UsageError(f"--threshold: expected a number (absolute, e.g. 0.05) or a percentage "
                             f"(relative, e.g. 2%), got {text!r}") from None  # fmt: skip
        if not math.isfinite(value) or value < 0:
            raise UsageError(f"--threshold must be a finite number >= 0, got {text!r}")
        return cls(value / 100 if relative else value, relative)

    def allowed(self, reference: float) -> float:
        return self.value * abs(reference) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value * 100:g}% of A" if self.relative else f"{self.value:g} absolute"


@dataclass
class Comparison:
    rows: pd.DataFrame  # one row per (group, metric)

    @property
    def regressions(self) -> pd.DataFrame:
        return self.rows[self.rows["verdict"] == "REGRESSION"]


def compare_records(records_a: list[dict[str, Any]], records_b: list[dict[str, Any]],
                    metrics: list[str] | None, threshold: Threshold,
                    protocols: tuple[Protocol | None, Protocol | None] = (None, None)) -> Comparison:  # fmt: skip
    from qbench.leaderboard.compute.fairness import apply_protocol

    fair_a, fair_b = (apply_protocol(load_runs(r), p) for r, p in zip((records_a, records_b), protocols, strict=True))
    frame_a, frame_b = fair_a.used, fair_b.used
    verdicts_a, verdicts_b = _verdicts(fair_a), _verdicts(fair_b)
    table_a, table_b = aggregate(frame_a), aggregate(frame_b)
    directions = {**frame_b.directions, **frame_a.directions}
    if metrics:
        unknown = [m for m in metrics if m not in directions]
        if unknown:
            raise UsageError(f"--metric {', '.join(unknown)}: not a column of these runs; "
                             f"available: {', '.join(sorted(directions))}")  # fmt: skip
    key = list(GROUP_KEY)
    merged = table_a.merge(table_b, on=key, how="outer", suffixes=("_a", "_b"), indicator=True)
    out = []
    for row in merged.to_dict("records"):
        label = row["dataset_label"]
        info = frame_a.datasets.get(label) or frame_b.datasets.get(label)
        for metric in metrics or ([info.primary_metric] if info else []):
            direction = directions.get(metric, "min")
            a = _stat(row, metric, "a")
            b = _stat(row, metric, "b")
            where = (*(str(row[k]) for k in key), metric)
            out.append({**{k: row[k] for k in key}, "metric": metric, "direction": direction,
                        **{f"a_{k}": v for k, v in a.items()}, **{f"b_{k}": v for k, v in b.items()},
                        **_judge(row["_merge"], a, b, direction, threshold),
                        "a_verdict": verdicts_a.get(where, ""), "b_verdict": verdicts_b.get(where, "")})  # fmt: skip
    columns = [*key, "metric", "direction", "a_mean", "a_ci95", "a_n", "b_mean", "b_ci95", "b_n", "change",
               "verdict", "a_verdict", "b_verdict"]  # fmt: skip
    rows = pd.DataFrame(out, columns=columns)
    return Comparison(rows.sort_values([*key, "metric"], kind="stable").reset_index(drop=True))


def _verdicts(fair: Any) -> dict[tuple[str, ...], str]:
    """{(dataset, cell, quantizer, metric): verdict against the baseline}, as the leaderboard publishes it."""
    from qbench.leaderboard.compute.tables import paired

    pairs = paired(fair.used, fair.protocol.baseline, fair.protocol.alpha, fair.protocol)
    keys = zip(*(pairs[k].astype(str).tolist() for k in (*GROUP_KEY, "metric")), strict=True)
    return dict(zip(keys, pairs["verdict"].astype(str).tolist(), strict=True))


def _stat(row: dict[str, Any], metric: str, side: str) -> dict[str, float]:
    def get(name: str) -> float:
        value = row.get(f"{metric}_{name}_{side}", row.get(f"{metric}_{name}"))
        return math.nan if value is None or pd.isna(value) else float(value)

    n = get("n")
    return {"mean": get("mean"), "ci95": get("ci95"), "n": 0 if math.isnan(n) else int(n)}


def _judge(presence: str, a: dict, b: dict, direction: str, threshold: Threshold) -> dict:
    if presence == "left_only":
        return {"change": math.nan, "verdict": "only in A"}
    if presence == "right_only":
        return {"change": math.nan, "verdict": "only in B"}
    if a["n"] == 0:
        return {"change": math.nan, "verdict": "no ok seed in A"}
    if b["n"] == 0:
        return {"change": math.nan, "verdict": "REGRESSION"}  # it ran in B and nothing succeeded
    change = b["mean"] - a["mean"]
    worse_by = change if direction == "min" else -change
    allowed = threshold.allowed(a["mean"])
    if worse_by > allowed:
        verdict = "REGRESSION"
    elif -worse_by > allowed:
        verdict = "improved"
    else:
        verdict = "within threshold"
    return {"change": change, "verdict": verdict}


def render_comparison(comparison: Comparison, name_a: str, name_b: str, threshold: Threshold) -> str:
    from tabulate import tabulate

    from qbench.leaderboard.compute.formatting import fmt_stat, fmt_value

    def side(mean: float, ci: float, n: int) -> str:
        return f"{fmt_stat(mean, ci)} (n={n})" if n else "no ok seed"

    def against(a: str, b: str) -> str:
        return "" if not a and not b else a if a == b else f"{a or '-'} -> {b or '-'}"

    body = [[r.dataset_label, r.cell_label, r.quantizer_label, r.metric,
             side(r.a_mean, r.a_ci95, r.a_n) if r.verdict != "only in B" else "-",
             side(r.b_mean, r.b_ci95, r.b_n) if r.verdict != "only in A" else "-",
             fmt_value(r.change, signed=True), r.verdict, against(r.a_verdict, r.b_verdict)]
            for r in comparison.rows.itertuples(index=False)]  # fmt: skip
    header = ["dataset", "cell", "quantizer", "metric", f"A: {name_a}", f"B: {name_b}", "B - A", "verdict",
              "against the baseline (A -> B)"]
    table = tabulate(body, headers=header, tablefmt="simple", disable_numparse=True)
    count = len(comparison.regressions)
    summary = (f"{count} regression(s) past the threshold ({threshold})" if count
               else f"no regression past the threshold ({threshold})")  # fmt: skip
    return f"{table}\n\n{summary}"


# -- gap changes: does B move a method's gap to the baseline, paired by seed? -----------------------

GAP_COLUMNS = ["quantizer_label", "a_dataset", "a_cell", "b_dataset", "b_cell", "metric", "a_gap", "b_gap",
               "change_mean", "change_ci95", "n", "test", "p_holm", "margin", "p_margin_holm", "verdict"]  # fmt: skip
MATCHES = ("labels", "quantizer")


def _gaps_by_seed(fair: Any) -> tuple[dict[tuple[str, str, str], dict[int, float]], dict[str, str]]:
    """{(dataset, cell, method): {seed: method - baseline}} of the primary metric, and each dataset's metric.

    The baseline run of a (dataset, cell, seed) is the protocol's baseline quantizer, its first label,
    as the paired table pairs."""
    runs = fair.used.runs
    runs = runs[runs["status"] == "ok"]
    baseline = fair.protocol.baseline
    metric_of = {label: info.primary_metric for label, info in fair.used.datasets.items()}
    values: dict[tuple[str, str, str], dict[int, float]] = {}
    for dataset, cell, label, name, seed, index in zip(runs["dataset_label"], runs["cell_label"],
                                                       runs["quantizer_label"], runs["quantizer"], runs["seed"],
                                                       runs.index, strict=True):  # fmt: skip
        metric = metric_of.get(str(dataset), "")
        value = float(runs.at[index, metric]) if metric in runs else math.nan
        if math.isfinite(value):
            key = (str(dataset), str(cell), str(label) if name != baseline else f"\0{label}")
            values.setdefault(key, {})[int(seed)] = value
    bases: dict[tuple[str, str], dict[int, float]] = {}
    for (dataset, cell, label), by_seed in sorted(values.items()):
        if label.startswith("\0"):
            bases.setdefault((dataset, cell), by_seed)  # the first baseline label of the group
    gaps = {}
    for (dataset, cell, label), by_seed in values.items():
        base = bases.get((dataset, cell))
        if label.startswith("\0") or base is None:
            continue
        gaps[(dataset, cell, label)] = {s: v - base[s] for s, v in by_seed.items() if s in base}
    return gaps, metric_of


def gap_changes(records_a: list[dict[str, Any]], records_b: list[dict[str, Any]], match: str = "labels",
                protocols: tuple[Protocol | None, Protocol | None] = (None, None)) -> pd.DataFrame:  # fmt: skip
    """For every method of both sides, how its gap to the baseline changes from A to B, paired by seed.

    ``match="labels"`` pairs rows with the same dataset, cell and quantizer labels; ``"quantizer"``
    pairs every row of A with every row of B that has the same quantizer label (the way to compare
    two arms of a study that differ in the dataset or the cell). The change ``gap_B(s) - gap_A(s)``
    over the seeds both gaps have is judged as the leaderboard judges a method (qbench.verdicts: the
    same test choice; Holm across one method's rows; A's margin for the metric, else B's): *rises* /
    *falls* when it differs from zero, *no effect* within the margin, *inconclusive* otherwise.
    """
    from qbench.leaderboard.compute.fairness import apply_protocol
    from qbench.leaderboard.compute.trends import CONTRAST_VERDICTS
    from qbench.verdicts import judge

    if match not in MATCHES:
        raise UsageError(f"--match {match!r}: expected one of {', '.join(MATCHES)}")
    fair_a, fair_b = (apply_protocol(load_runs(r), p) for r, p in zip((records_a, records_b), protocols, strict=True))
    for side, fair in (("A", fair_a), ("B", fair_b)):
        if not fair.protocol.baseline:
            raise UsageError(f"--gaps: {side} has no baseline quantizer to measure gaps against; set the "
                             "matrix's baseline (or a quantizer that declares baseline = True)")  # fmt: skip
    gaps_a, metrics_a = _gaps_by_seed(fair_a)
    gaps_b, metrics_b = _gaps_by_seed(fair_b)
    items, keys = [], []
    for ka, by_a in sorted(gaps_a.items()):
        for kb, by_b in sorted(gaps_b.items()):
            same = ka == kb if match == "labels" else ka[2] == kb[2]
            metric = metrics_a.get(ka[0], "")
            if not same or not metric or metric != metrics_b.get(kb[0]):
                continue
            seeds = sorted(set(by_a) & set(by_b))
            margin = fair_a.protocol.margin_for(ka[0], metric)
            if margin is None:
                margin = fair_b.protocol.margin_for(kb[0], metric)
            items.append((ka[2], [by_b[s] - by_a[s] for s in seeds], None, margin, "min"))
            keys.append((ka, kb, metric, sum(by_a.values()) / len(by_a), sum(by_b.values()) / len(by_b)))
    alpha = fair_a.protocol.alpha
    out = []
    for (ka, kb, metric, gap_a, gap_b), judged in zip(keys, judge(items, "equivalence", alpha), strict=True):
        ev = judged.evidence
        out.append([ka[2], ka[0], ka[1], kb[0], kb[1], metric, gap_a, gap_b, ev.mean, ev.ci95, ev.n, ev.test,
                    judged.p_holm, judged.margin if judged.margin is not None else math.nan, judged.p_margin_holm,
                    CONTRAST_VERDICTS.get(judged.verdict, judged.verdict)])  # fmt: skip
    return pd.DataFrame(out, columns=GAP_COLUMNS)


def render_gap_changes(table: pd.DataFrame, name_a: str, name_b: str) -> str:
    from tabulate import tabulate

    from qbench.leaderboard.compute.formatting import fmt_ci, fmt_value

    def p_text(p: float) -> str:
        return "" if p != p else f"{p:.3g}"

    if table.empty:
        return "gaps: no method has a gap to its baseline on both sides (try --match quantizer)"
    def change(mean: float, ci: float, n: int) -> str:
        return f"{fmt_value(mean, signed=True)}{'' if ci != ci else ' ± ' + fmt_ci(ci)} (n={n})"

    body = [[r.quantizer_label, f"{r.a_dataset} / {r.a_cell}", f"{r.b_dataset} / {r.b_cell}", r.metric,
             fmt_value(r.a_gap, signed=True), fmt_value(r.b_gap, signed=True),
             change(r.change_mean, r.change_ci95, r.n), r.test, p_text(r.p_holm),
             f"±{r.margin:g}" if r.margin == r.margin else "none", p_text(r.p_margin_holm), r.verdict]
            for r in table.itertuples(index=False)]  # fmt: skip
    header = ["quantizer", f"A: {name_a}", f"B: {name_b}", "metric", "gap A", "gap B",
              "change of the gap (B - A, paired by seed)", "test", "p (Holm)", "margin", "margin p (Holm)", "verdict"]
    return ("Gap to the baseline, A against B (each gap: method - baseline of the same dataset, cell and seed; "
            "the change is paired by seed and judged as the leaderboard judges a method; Holm across one "
            "method's rows)\n\n" + tabulate(body, headers=header, tablefmt="simple", disable_numparse=True))
