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
