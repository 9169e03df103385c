"""``leaderboard.csv`` and ``leaderboard.json`` (the machine-readable forms).

JSON schema ``qbench-leaderboard/1`` (what ``qbench validate`` checks):

- ``title``, ``generator`` (qbench version), ``provenance`` ({key: [distinct values]}),
  ``directions`` ({column: "min"|"max"}), ``datasets`` ({label: primary metric, direction,
  licence, value columns}), ``descriptions`` ({component label: text}), ``notes``;
- ``aggregates``: the CSV's rows, with ``stats`` {column: {mean, std, ci95, n}} and the
  ``case_ids`` of every run in the group;
- ``paired``: the paired comparison against float;
- ``runs``: every single-seed row: key, seed, status, error, ``values`` and the
  ``record_sha256`` of the full record it came from;
- ``files``: {relative path: sha256} of every other file written (Markdown, CSV, HTML, plots).

Missing values are ``null``.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.frame import GROUP_KEY, STATUSES, RunsFrame

SCHEMA = "qbench-leaderboard/1"
DESCRIPTIVE_COLUMNS = ["rank", *GROUP_KEY, "quantizer", "cell", "dataset",
                       *[f"n_{s}" for s in STATUSES], "full_precision", "licence"]  # fmt: skip
STAT_SUFFIXES = ("mean", "std", "ci95", "n")


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def csv_columns(frame: RunsFrame) -> list[str]:
    return DESCRIPTIVE_COLUMNS + [f"{c}_{s}" for c in frame.value_columns for s in STAT_SUFFIXES]


def write_csv(frame: RunsFrame, table: pd.DataFrame, path: Path) -> None:
    table[csv_columns(frame)].to_csv(path, index=False, lineterminator="\n")


def _clean(value: Any) -> Any:
    if isinstance(value, (float, np.floating)):
        return None if math.isnan(value) else float(value)
    if isinstance(value, (np.integer,)):
        return int(value)
    if value is pd.NA:
        return None
    return value


def _as_json_list(values: Any) -> list[Any]:
    """A column as Python values, NaN / NA as None (floats in one numpy pass, not per cell)."""
    array = np.asarray(values)
    if array.dtype.kind == "f":
        return np.where(np.isnan(array), None, array).tolist()
    return [_clean(v) for v in array.astype(object).tolist()]


def _aggregate_rows(frame: RunsFrame, table: pd.DataFrame) -> list[dict[str, Any]]:
    columns = frame.value_columns
    stats = {(c, s): _as_json_list(table[f"{c}_{s}"].to_numpy()) for c in columns for s in STAT_SUFFIXES}
    descriptive = {name: _as_json_list(table[name].astype(object).to_numpy()) for name in DESCRIPTIVE_COLUMNS}
    case_ids = table["case_ids"].tolist()
    rows = []
    for i in range(len(table)):
        row = {name: descriptive[name][i] for name in DESCRIPTIVE_COLUMNS}
        row["stats"] = {c: {s: stats[(c, s)][i] for s in STAT_SUFFIXES} for c in columns if stats[(c, "n")][i]}
        row["case_ids"] = case_ids[i]
        rows.append(row)
    return rows


RUN_COLUMNS = ["case_id", "matrix", "status", "error", *GROUP_KEY, "quantizer", "cell", "dataset", "seed",
               "record_sha256"]  # fmt: skip


def _run_rows(frame: RunsFrame, start: int, stop: int) -> list[dict[str, Any]]:
    runs = frame.runs.iloc[start:stop]
    plain = {name: runs[name].astype(object).tolist() for name in RUN_COLUMNS}
    values = [(c, runs[c].tolist()) for c in frame.value_columns]
    rows = []
    for i in range(len(runs)):
        row = {name: plain[name][i] for name in RUN_COLUMNS}
        row["values"] = {c: column[i] for c, column in values if column[i] == column[i]}
        rows.append(row)
    return rows


def json_head(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
              files: dict[str, str], notes: list[str]) -> dict[str, Any]:  # fmt: skip
    """Everything but the single-seed rows, which :func:`write_json` streams in chunks."""
    from qbench import __version__

    return {
        "schema": SCHEMA,
        "title": title,
        "generator": f"qbench {__version__}",
        "provenance": frame.provenance,
        "directions": frame.directions,
        "datasets": {
            label: {"primary_metric": info.primary_metric, "direction": info.direction,
                    "licence": info.licence, "value_columns": info.value_columns}
            for label, info in frame.datasets.items()
        },  # fmt: skip
        "descriptions": frame.descriptions,
        "notes": notes,
        "files": files,
        "aggregates": _aggregate_rows(frame, table),
        "paired": [{k: _clean(v) for k, v in row.items()} for row in paired.to_dict("records")],
    }


def write_json(head: dict[str, Any], frame: RunsFrame, path: Path, chunk: int = 5000) -> None:
    """``head`` plus ``"runs"``, written in chunks so that a huge store never exists twice as text.

    ``json.dumps`` (one shot, C encoder) is used throughout: ``json.dump`` would take the
    pure-Python encoder, ten times slower.
    """
    options = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(head, **options)[:-1])
        handle.write(',"runs":[')
        for start in range(0, len(frame.runs), chunk):
            if start:
                handle.write(",")
            handle.write(json.dumps(_run_rows(frame, start, start + chunk), **options)[1:-1])
        handle.write("]}\n")
