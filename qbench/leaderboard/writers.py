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


def json_document(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
                  files: dict[str, str], notes: list[str]) -> dict[str, Any]:  # fmt: skip
    from qbench import __version__

    columns = frame.value_columns
    stat_arrays = {(c, s): table[f"{c}_{s}"].to_numpy() for c in columns for s in STAT_SUFFIXES}
    descriptive = {name: table[name].tolist() for name in DESCRIPTIVE_COLUMNS}
    case_ids = table["case_ids"].tolist()
    aggregates = []
    for i in range(len(table)):
        row = {name: _clean(descriptive[name][i]) for name in DESCRIPTIVE_COLUMNS}
        row["stats"] = {
            c: {s: _clean(stat_arrays[(c, s)][i]) for s in STAT_SUFFIXES}
            for c in columns if stat_arrays[(c, "n")][i] > 0
        }  # fmt: skip
        row["case_ids"] = case_ids[i]
        aggregates.append(row)

    runs = frame.runs
    run_columns = ["case_id", "matrix", "status", "error", *GROUP_KEY, "quantizer", "cell", "dataset", "seed",
                   "record_sha256"]  # fmt: skip
    plain = {name: runs[name].astype(object).tolist() if name != "seed" else runs[name].tolist()
             for name in run_columns}  # fmt: skip
    value_arrays = [(c, runs[c].to_numpy()) for c in columns]
    run_rows = []
    for i in range(len(runs)):
        row = {name: plain[name][i] for name in run_columns}
        row["values"] = {c: float(a[i]) for c, a in value_arrays if a[i] == a[i]}
        run_rows.append(row)

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
        "aggregates": aggregates,
        "paired": [{k: _clean(v) for k, v in row.items()} for row in paired.to_dict("records")],
        "runs": run_rows,
        "files": files,
    }


def write_json(document: dict[str, Any], path: Path) -> None:
    with open(path, "w", encoding="utf-8") as handle:
        json.dump(document, handle, ensure_ascii=False, indent=None, separators=(",", ":"), allow_nan=False)
        handle.write("\n")
