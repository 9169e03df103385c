"""Read a store straight into the leaderboard's frame, without a dict per record.

``Store.records()`` parses every record into a dict (about 40 us each) and the leaderboard then
hashes each one again; for a store of 100,000 records that is most of the rebuild. Here SQLite's
JSON functions extract only the columns the leaderboard needs, the hash of each record is taken
from the stored text (which is the record's canonical JSON, see
:func:`qbench.leaderboard.frame.record_text`), and curves are read only if a plot needs them.
The result is the same frame as ``load_runs(Store(path).records())``; when this SQLite lacks
the JSON functions (or a column name cannot be a JSON path) that slower path is taken instead.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from qbench.leaderboard.frame import (
    RawRuns,
    RunsFrame,
    build_runs,
    collect_provenance,
    load_runs,
    merge_directions,
    wanted_columns,
)

ORDER = "ORDER BY stored, case_id"  # Store.records()'s order


def _path(key: str) -> str:
    if '"' in key or "\\" in key:
        raise ValueError(key)
    return f'$."{key}"'


class _Query:
    def __init__(self, path: Path, matrix: str | None, case_ids: set[str] | None) -> None:
        self.path, self.matrix, self.case_ids = path, matrix, case_ids

    def connect(self) -> sqlite3.Connection:
        return sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True)

    def where(self) -> tuple[str, tuple[Any, ...]]:
        return ("WHERE matrix = ?", (self.matrix,)) if self.matrix is not None else ("", ())

    def distinct(self, db: sqlite3.Connection, key: str) -> list[Any]:
        where, args = self.where()
        rows = db.execute(f"SELECT DISTINCT json_extract(record, ?) FROM records {where}", (_path(key), *args))
        return [json.loads(text) for text in sorted(text for (text,) in rows if text)]


class _StoreCurves(Sequence):
    """The curves, read in one query the first time a plot asks for one."""

    def __init__(self, query: _Query, length: int) -> None:
        self._query, self._length, self._curves = query, length, None

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):  # type: ignore[override]
        if self._curves is None:
            where, args = self._query.where()
            with self._query.connect() as db:
                rows = db.execute(f"SELECT case_id, json_extract(record, '$.curve') FROM records {where} {ORDER}", args)
                curves = [json.loads(c) if c else [] for case_id, c in rows
                          if self._query.case_ids is None or case_id in self._query.case_ids]  # fmt: skip
            self._curves = [c if isinstance(c, list) else [] for c in curves]
        return self._curves[index]


def read_store(path: Path, matrix: str | None = None, case_ids: set[str] | None = None) -> RunsFrame:
    """The runs frame of a store (optionally one matrix's records, or only ``case_ids``)."""
    path = Path(path)
    query = _Query(path, matrix, case_ids)
    try:
        with query.connect() as db:
            return _read(db, query)
    except (sqlite3.OperationalError, ValueError):
        from qbench.store import Store

        with Store(path, create=False) as store:
            records = store.records(matrix)
        if case_ids is not None:
            records = [r for r in records if r.get("case_id") in case_ids]
        return load_runs(records)


def _read(db: sqlite3.Connection, query: _Query) -> RunsFrame:
    every_direction = merge_directions(query.distinct(db, "directions"))
    columns = wanted_columns(every_direction)
    nested = ("directions", "descriptions", "provenance")
    extract = ", ".join("json_extract(record, ?)" for _ in (*columns, *nested))
    where, args = query.where()
    cursor = db.execute(f"SELECT case_id, record, {extract} FROM records {where} {ORDER}",
                        (*[_path(c) for c in (*columns, *nested)], *args))  # fmt: skip
    hashes: list[str] = []
    rows: list[tuple[Any, ...]] = []
    texts: dict[str, set[str]] = {name: set() for name in nested}
    width = len(columns)
    for case_id, text, *values in cursor:
        if query.case_ids is not None and case_id not in query.case_ids:
            continue
        hashes.append(hashlib.sha256(text.encode()).hexdigest())
        rows.append(tuple(values[:width]))
        for name, value in zip(nested, values[width:], strict=True):
            if value:
                texts[name].add(value)
    decoded = {name: [json.loads(t) for t in sorted(found)] for name, found in texts.items()}
    directions = merge_directions(decoded["directions"])
    raw = pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    raw = raw[wanted_columns(directions)]  # JSON true/false arrive as 1/0: what the frame makes of booleans
    descriptions: dict[str, str] = {}
    for mapping in decoded["descriptions"]:
        for label, description in (mapping or {}).items():
            descriptions.setdefault(str(label), str(description))
    return build_runs(RawRuns(
        raw=raw,
        hashes=hashes,
        directions=directions,
        descriptions=descriptions,
        provenance=collect_provenance(decoded["provenance"]),
        curves=_StoreCurves(query, len(rows)),
    ))  # fmt: skip
