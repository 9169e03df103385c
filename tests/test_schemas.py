"""qbench.schemas: the column-by-column check of a split table gives the answer of a check per row."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from qbench import schemas

ROOT = Path(__file__).resolve().parents[1]


def _runs() -> dict:
    return json.loads((ROOT / "results" / "quickstart@cpu-2core" / "leaderboard.json").read_text())["runs"]


def _per_row(table: dict) -> list[str]:
    """The reference: each row keyed by the columns, checked whole against #/$defs/run."""
    found = []
    for i, row in enumerate(table["rows"]):
        run = dict(zip(table["columns"], row, strict=True))
        found += [f"runs[{i}].{p}" for p in schemas.problems(run, "leaderboard", 1, "run")]
    return found


BREAKS = {
    "none": lambda rows, at: None,
    "status": lambda rows, at: rows[3].__setitem__(at["status"], "lost"),
    "sha": lambda rows, at: rows[2].__setitem__(at["record_sha256"], "ABC"),
    "seed a string": lambda rows, at: rows[5].__setitem__(at["seed"], "0"),
    "seed a bool": lambda rows, at: rows[5].__setitem__(at["seed"], True),
    "case id a list": lambda rows, at: rows[0].__setitem__(at["case_id"], ["a"]),
    "value a string": lambda rows, at: rows[7].__setitem__(at["test_bpc"], "4.0"),
    "value null": lambda rows, at: rows[7].__setitem__(at["test_bpc"], None),
}


@pytest.mark.parametrize("name", BREAKS)
def test_the_column_check_agrees_with_the_check_per_row(name):
    table = _runs()
    at = {c: i for i, c in enumerate(table["columns"])}
    BREAKS[name](table["rows"], at)
    per_row = _per_row(table)
    assert schemas.table_problems(table, "leaderboard", 1, "run", "runs") == per_row
    assert (per_row == []) == (name in ("none", "value null"))


def test_a_missing_fixed_column_is_named():
    table = _runs()
    at = table["columns"].index("seed")
    table = {"columns": table["columns"][:at] + table["columns"][at + 1:],
             "rows": [row[:at] + row[at + 1:] for row in table["rows"]]}  # fmt: skip
    assert schemas.table_problems(table, "leaderboard", 1, "run", "runs") == ["runs: column 'seed' is missing"]
