"""Where ``qbench compare`` and ``qbench validate`` read records from.

A source is a run directory (holding the store ``qbench.sqlite`` or a published
``leaderboard.json``), a store file, or a ``leaderboard.json`` file. Records read back from a
leaderboard are its single-seed rows: key, seed, status and values, with the leaderboard's
directions; that is all the statistics need.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from qbench import record as R
from qbench.errors import UsageError
from qbench.protocol import Protocol
from qbench.store import STORE_FILENAME

LEADERBOARD_JSON = "leaderboard.json"


def read_leaderboard_json(path: Path, strict: bool = False) -> dict[str, Any]:
    """The document of a ``leaderboard.json`` (UsageError when it is not one).

    ``strict`` (what ``site`` and ``compare`` read): also of the schema version this qbench reads,
    valid against its JSON Schema, and every table's rows as long as its columns, so that nothing
    after this assumes a type a damaged file does not have. ``validate`` reads loosely and reports
    each of these as a problem of its own.
    """
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, RecursionError) as exc:
        raise UsageError(f"{path}: not a readable leaderboard.json ({exc})") from None
    runs = document.get("runs") if isinstance(document, dict) else None
    if (
        not isinstance(runs, dict)
        or not isinstance(runs.get("columns"), list)
        or not isinstance(runs.get("rows"), list)
    ):
        raise UsageError(f"{path}: not a qbench leaderboard.json (no 'runs' table with columns and rows)")
    if strict:
        _check_readable(path, document)
    return document


def _check_readable(path: Path, document: dict[str, Any]) -> None:
    from qbench import schemas

    version = schemas.leaderboard_version(document.get("schema"))
    if version != schemas.LEADERBOARD_VERSION:
        found = f"schema version {version}" if version is not None else f"schema {document.get('schema')!r}"
        fix = ("upgrade qbench to read it" if version is not None and version > schemas.LEADERBOARD_VERSION
               else "rebuild it from its store with qbench leaderboard --store")  # fmt: skip
        raise UsageError(f"{path}: leaderboard {found}; this qbench reads version {schemas.LEADERBOARD_VERSION} "
                         f"only; {fix}")  # fmt: skip
    found_problems = schemas.problems(document, "leaderboard", version)
    if found_problems:
        raise UsageError(f"{path}: does not match qbench/schemas/leaderboard-{version}.schema.json "
                         f"({found_problems[0]}); run qbench validate on its folder")  # fmt: skip
    for name, table in document.items():
        if not (isinstance(table, dict) and "columns" in table and "rows" in table):
            continue
        columns, rows = table["columns"], table["rows"]
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns) or not isinstance(rows, list):
            raise UsageError(f"{path}: table {name!r} needs a list of column names and a list of rows")
        for index, row in enumerate(rows):
            if not isinstance(row, list) or len(row) != len(columns):
                raise UsageError(f"{path}: table {name!r} row {index} does not have its {len(columns)} values; "
                                 "run qbench validate on its folder")  # fmt: skip


def records_from_leaderboard(document: dict[str, Any]) -> list[dict[str, Any]]:
    from qbench.leaderboard.render.writers import table_rows

    directions = document.get("directions") or {}
    records = []
    for run in table_rows(document["runs"]):
        if run.get("role", "evaluation") != "evaluation":
            continue  # tuning runs of other configurations and superseded runs make no tuned row
        record = {k: v for k, v in run.items() if v is not None and k != "record_sha256"}
        record[R.DIRECTIONS] = directions
        records.append(record)
    return records


def load_records(path: Path) -> tuple[list[dict[str, Any]], str]:
    """Records of a source and a word saying what was read (``store`` or ``leaderboard``)."""
    records, kind, _ = load_source(path)
    return records, kind


def load_source(path: Path) -> tuple[list[dict[str, Any]], str, Protocol | None]:
    """Records of a source, what was read, and the protocol that chose them.

    From a store: every record and the protocol ``qbench run`` recorded. From a leaderboard.json:
    the runs its tuned rows aggregate (already chosen, so no protocol is needed)."""
    path = Path(path)
    if not path.exists():
        raise UsageError(f"{path}: no such run directory, store or leaderboard.json")
    if path.is_dir():
        if (path / STORE_FILENAME).is_file():
            path = path / STORE_FILENAME
        elif (path / LEADERBOARD_JSON).is_file():
            path = path / LEADERBOARD_JSON
        else:
            raise UsageError(f"{path}: neither a {STORE_FILENAME} nor a {LEADERBOARD_JSON} in this directory")
    if path.suffix == ".json":
        return records_from_leaderboard(read_leaderboard_json(path, strict=True)), "leaderboard", None
    from qbench.leaderboard.compute.storeread import stored_protocol
    from qbench.store import Store

    with Store.read_only(path) as store:
        records = store.records()
    return records, "store", stored_protocol(path)
