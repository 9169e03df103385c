"""``leaderboard.csv`` and ``leaderboard.json`` (the machine-readable forms).

The JSON's shape is stated once, in ``qbench/schemas/leaderboard-1.schema.json`` (what ``qbench
validate`` checks, with a description of every part); :func:`table_rows` turns one of its split
tables back into dicts.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from qbench.leaderboard.compute.fairness import (
    BRACKET_COLUMNS,
    BUDGET_COLUMNS,
    SEED_COLUMNS,
    SELECTION_COLUMNS,
    FairView,
)
from qbench.leaderboard.compute.frame import GROUP_KEY, STATUSES, RunsFrame
from qbench.leaderboard.compute.tables import PAIRED_COLUMNS
from qbench.leaderboard.render.jsonrows import OPTIONS
from qbench.leaderboard.render.runrows import RunRows, run_columns

SCHEMA = "qbench-leaderboard/1"
DESCRIPTIVE_COLUMNS = ["rank", *GROUP_KEY, "configuration", "quantizer", "cell", "dataset",
                       *[f"n_{s}" for s in STATUSES], "full_precision", "licence"]  # fmt: skip
STAT_SUFFIXES = ("mean", "std", "ci95", "n")


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


def _as_json_list(values: Any, text: bool = False) -> list[Any]:
    """A column as Python values, NaN / NA as None (in numpy passes, not per cell).

    ``text``: the column holds strings (or NA) only, so no numpy scalar needs converting.
    """
    array = np.asarray(values)
    if array.dtype.kind in "iub":
        return array.tolist()
    if array.dtype.kind == "f":
        boxed = array.astype(object)
        boxed[np.isnan(array)] = None
        return boxed.tolist()
    boxed = array.astype(object)
    boxed[pd.isna(boxed)] = None
    if text:
        return boxed.tolist()
    return [_clean(v) if isinstance(v, (np.generic, float)) else v for v in boxed.tolist()]


def table_rows(section: dict[str, Any]) -> list[dict[str, Any]]:
    """A split table of ``leaderboard.json`` as one dict per row."""
    columns = section["columns"]
    return [dict(zip(columns, row, strict=True)) for row in section["rows"]]


def _split(table: pd.DataFrame, columns: list[str]) -> dict[str, Any]:
    lists = [_as_json_list(table[c].to_numpy(dtype=object if table[c].dtype.kind not in "iufb" else None))
             if c != "case_ids" else table[c].tolist() for c in columns]  # fmt: skip
    return {"columns": columns, "rows": list(zip(*lists, strict=True))}


def json_head(frame: RunsFrame, table: pd.DataFrame, paired: pd.DataFrame, title: str,
              files: dict[str, str], notes: list[str]) -> dict[str, Any]:  # fmt: skip
    """Everything but the single-seed rows, which :func:`write_json` streams in chunks."""
    from qbench.version import __version__

    return {
        "schema": SCHEMA,
        "title": title,
        "generator": f"qbench {__version__}",
        "provenance": frame.provenance,
        "directions": frame.directions,
        "datasets": {
            label: {
                "primary_metric": info.primary_metric,
                "direction": info.direction,
                "licence": info.licence,
                "value_columns": info.value_columns,
            }
            for label, info in frame.datasets.items()
        },  # fmt: skip
        "descriptions": frame.descriptions,
        "notes": notes,
        "files": files,
        "aggregates": _split(table, [*csv_columns(frame), "case_ids"]),
        "paired": _split(paired, PAIRED_COLUMNS),
    }


def fairness_head(fair: FairView) -> dict[str, Any]:
    """The protocol, the selection table, the seed rule's decisions and the budget, for the JSON."""
    return {
        "protocol": fair.protocol.as_dict(),
        "protocol_text": fair.protocol.describe(),
        "selection": _split(fair.selection, SELECTION_COLUMNS),
        "seed_rule": _split(fair.seeds, SEED_COLUMNS),
        "budget": _split(fair.budget, BUDGET_COLUMNS),
        "bracketing": _split(fair.bracketing, BRACKET_COLUMNS),
    }


def write_json(head: dict[str, Any], frame: RunsFrame, path: Path, rows: RunRows | None = None) -> None:
    """``head`` plus the ``runs`` table, whose rows ``rows`` gives (encoded here when not given).

    ``json.dumps`` (one shot, C encoder) writes the head: ``json.dump`` would take the pure-Python
    encoder, ten times slower. The runs table, most of the file, is encoded column by column
    (:mod:`qbench.leaderboard.render.jsonrows`), to the same bytes.
    """
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(head, **OPTIONS)[:-1])
        handle.write(',"runs":{"columns":' + json.dumps(run_columns(frame), **OPTIONS) + ',"rows":[')
        (rows if rows is not None else RunRows(frame)).write_into(handle)
        handle.write("]}}\n")
