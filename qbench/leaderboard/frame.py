"""Records (flat dicts, see the architecture's section 5) -> one pandas DataFrame of runs.

Only the columns the leaderboard needs are copied: the group key, status, seed, the value
columns (every column named in a record's ``directions`` plus the cost columns every record
has) and a sha256 of each whole record, which is what makes a published row traceable to the
record it came from (``qbench validate``). Curves stay in a list beside the frame: they are
only read by the plots.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

#: A leaderboard row aggregates the seeds of one (dataset, cell, quantizer) triple.
GROUP_KEY = ("dataset_label", "cell_label", "quantizer_label")
STATUSES = ("ok", "diverged", "error")

#: Cost columns every record carries; their direction when the record does not say.
COST_DIRECTIONS = {
    "weight_bits": "min",
    "weight_bytes": "min",
    "train_seconds": "min",
    "tokens_per_second": "max",
}
#: Value columns whose names start like this measure quality (the rest are costs).
QUALITY_PREFIXES = ("test_", "valid_")
#: Preferred primary metric of a dataset, in order, when the records do not name one.
PRIMARY_PREFERENCE = ("test_bpc", "test_accuracy", "test_perplexity", "test_loss")


@dataclass
class DatasetInfo:
    """What the leaderboard says about one dataset section."""

    label: str
    primary_metric: str
    direction: str
    licence: str | None = None
    quality_columns: list[str] = field(default_factory=list)
    value_columns: list[str] = field(default_factory=list)


@dataclass
class RunsFrame:
    """Every record as one row, and what was gathered from the records on the way."""

    runs: pd.DataFrame
    curves: list[list[dict[str, Any]]]
    directions: dict[str, str]
    value_columns: list[str]
    datasets: dict[str, DatasetInfo]
    descriptions: dict[str, str]
    provenance: dict[str, list[str]]

    @property
    def quality_columns(self) -> list[str]:
        return [c for c in self.value_columns if is_quality(c)]


#: Cost columns first in this order (then the rest alphabetically): what a reader compares first.
COST_ORDER = ("weight_bits", "weight_bytes", "energy_pj_per_token", "mults", "adds", "shifts", "sim_exact",
              "sim_max_abs_error")  # fmt: skip
#: Timing columns: in the CSV, JSON and HTML, left out of the Markdown (they measure the machine).
TIMING_COLUMNS = ("train_seconds", "tokens_per_second")


def _column_order(column: str) -> tuple[int, int, str]:
    if is_quality(column):
        return (0, 0, column)
    if column in COST_ORDER:
        return (1, COST_ORDER.index(column), column)
    return (3 if column in TIMING_COLUMNS else 2, 0, column)


def is_quality(column: str) -> bool:
    return column.startswith(QUALITY_PREFIXES)


def record_sha256(record: dict[str, Any]) -> str:
    """sha256 of the record's canonical JSON (sorted keys, no spaces, non-JSON values as str)."""
    text = json.dumps(record, sort_keys=True, separators=(",", ":"), default=str, allow_nan=True)
    return hashlib.sha256(text.encode()).hexdigest()


def _number(value: Any) -> float:
    if value is None or isinstance(value, str):
        return math.nan
    try:
        return float(value)  # bools become 0/1: sim_exact aggregates to a fraction
    except (TypeError, ValueError):
        return math.nan


def _label(record: dict[str, Any], axis: str) -> str:
    label = record.get(f"{axis}_label") or record.get(axis)
    return str(label) if label is not None else "?"


def load_runs(records: list[dict[str, Any]]) -> RunsFrame:
    """Build the runs frame; ``records`` are not modified."""
    directions: dict[str, str] = {}
    for record in records:
        for column, direction in (record.get("directions") or {}).items():
            directions.setdefault(str(column), "max" if direction == "max" else "min")
    for column, direction in COST_DIRECTIONS.items():
        if any(column in r for r in records[:1000]) or any(column in r for r in records[-1000:]):
            directions.setdefault(column, direction)
    value_columns = sorted(directions, key=_column_order)

    ident: dict[str, list[Any]] = {name: [] for name in (*GROUP_KEY, "quantizer", "cell", "dataset")}
    extra: dict[str, list[Any]] = {
        name: [] for name in ("case_id", "matrix", "status", "error", "seed", "full_precision", "licence")
    }
    values: dict[str, list[float]] = {c: [] for c in value_columns}
    hashes: list[str] = []
    curves: list[list[dict[str, Any]]] = []
    descriptions: dict[str, str] = {}
    provenance: dict[str, set[str]] = {}
    primary_named: dict[str, str] = {}

    for record in records:
        for axis in ("dataset", "cell", "quantizer"):
            ident[f"{axis}_label"].append(_label(record, axis))
            ident[axis].append(str(record.get(axis, "?")))
        extra["case_id"].append(str(record.get("case_id", "")))
        extra["matrix"].append(str(record.get("matrix", "")))
        status = record.get("status")
        extra["status"].append(status if status in STATUSES else "error")
        extra["error"].append(record.get("error") or "")
        seed = record.get("seed")
        extra["seed"].append(int(seed) if isinstance(seed, (int, float)) else -1)
        extra["full_precision"].append(", ".join(str(p) for p in record.get("full_precision") or ()))
        extra["licence"].append(record.get("dataset_licence") or "")
        for column in value_columns:
            values[column].append(_number(record.get(column)))
        hashes.append(record_sha256(record))
        curve = record.get("curve")
        curves.append(curve if isinstance(curve, list) else [])
        for label, text in (record.get("descriptions") or {}).items():
            descriptions.setdefault(str(label), str(text))
        for key, value in (record.get("provenance") or {}).items():
            if value is None:
                continue
            text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
            provenance.setdefault(str(key), set()).add(text)
        if record.get("primary_metric"):
            primary_named.setdefault(ident["dataset_label"][-1], str(record["primary_metric"]))

    columns: dict[str, Any] = {**ident, **extra}
    columns["seed"] = np.asarray(extra["seed"], dtype=np.int64)
    for column in value_columns:
        columns[column] = np.asarray(values[column], dtype=float)
    columns["record_sha256"] = hashes
    runs = pd.DataFrame(columns)
    for name in (*GROUP_KEY, "quantizer", "cell", "dataset", "status", "matrix"):
        runs[name] = runs[name].astype("category")

    datasets = {
        label: _dataset_info(label, runs[runs["dataset_label"] == label], value_columns, directions, primary_named)
        for label in sorted(runs["dataset_label"].cat.categories) if (runs["dataset_label"] == label).any()
    }
    return RunsFrame(
        runs=runs,
        curves=curves,
        directions=directions,
        value_columns=value_columns,
        datasets=datasets,
        descriptions=dict(sorted(descriptions.items())),
        provenance={k: sorted(v) for k, v in sorted(provenance.items())},
    )


def _dataset_info(
    label: str, rows: pd.DataFrame, value_columns: list[str], directions: dict[str, str], named: dict[str, str]
) -> DatasetInfo:
    present = [c for c in value_columns if rows[c].notna().any()]
    quality = [c for c in present if is_quality(c)]
    primary = named.get(label)
    if primary not in directions:
        candidates = [c for c in PRIMARY_PREFERENCE if c in quality]
        candidates += [c for c in quality if c.startswith("test_")] + quality + present + value_columns
        primary = candidates[0] if candidates else ""
    if primary and primary not in present:
        present = [primary, *present]
    licences = sorted({x for x in rows["licence"] if x})
    return DatasetInfo(
        label=label,
        primary_metric=primary,
        direction=directions.get(primary, "min"),
        licence="; ".join(licences) or None,
        quality_columns=[c for c in present if is_quality(c)],
        value_columns=present,
    )
