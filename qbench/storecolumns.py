"""The store's column table: every record's top-level values as SQLite columns, written with it.

A leaderboard reads a few dozen values of every record. Reading them out of the stored JSON
means parsing every record (in SQLite or in Python) on every rebuild: for 100,000 records most
of the rebuild. So :meth:`qbench.store.Store.put` also writes the record's values into the
``record_columns`` table, one row per record, in the same transaction:

- a value that SQLite holds exactly (a string that encodes as UTF-8, a 64-bit integer, a finite
  float that is not -0.0, null) goes into the key's *native* column as it is;
- any other value (an object, a list, a boolean, NaN, an integer too large for SQLite) is written
  as compact, key-sorted JSON (``json.loads`` gives back the same value, and the text is the one
  SQLite's ``json_extract`` gives of the stored record) into ``record_texts``, each distinct text
  once, and the key's *JSON* column holds that text's id: the directions, declarations and
  provenance that thousands of records share are stored once, and read once;
- the record's curve is left out (it is read from the record, only for the runs a plot draws),
  and the row carries the sha256 of the record's stored text (what a published row is traced by).

Which physical columns hold a key is the ``record_keys`` table's (columns are named ``c0``,
``c1``, ...: a record key need not be a valid, or case-distinct, SQLite name); a key seen for the
first time gets its column then. Triggers on ``records`` delete a record's row here whenever the
record is inserted, changed or deleted by anything else (an older qbench, a merge, a hand edit),
so a row here is always the row of its record's current text; a record without one is read from
its JSON (:func:`missing`, and :func:`fill` writes them: the migration of an older store).
"""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from collections.abc import Iterable, Iterator
from typing import Any

from qbench.record import CASE_ID, CURVE

SCHEMA = """
CREATE TABLE IF NOT EXISTS record_keys (key TEXT PRIMARY KEY, native TEXT, json TEXT);
CREATE TABLE IF NOT EXISTS record_columns (case_id TEXT PRIMARY KEY, sha256 TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS record_texts (id INTEGER PRIMARY KEY, text TEXT NOT NULL UNIQUE);
CREATE TRIGGER IF NOT EXISTS record_columns_on_insert AFTER INSERT ON records
BEGIN DELETE FROM record_columns WHERE case_id = NEW.case_id; END;
CREATE TRIGGER IF NOT EXISTS record_columns_on_update AFTER UPDATE ON records
BEGIN DELETE FROM record_columns WHERE case_id IN (OLD.case_id, NEW.case_id); END;
CREATE TRIGGER IF NOT EXISTS record_columns_on_delete AFTER DELETE ON records
BEGIN DELETE FROM record_columns WHERE case_id = OLD.case_id; END;
"""
#: what :func:`fill` decodes and writes at a time
FILL_CHUNK = 2000

_INT64 = (-(1 << 63), (1 << 63) - 1)


def compact(value: Any) -> str:
    """A value's JSON as the column table (and SQLite's ``json_extract``) write it."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), allow_nan=True)


def is_native(value: Any) -> bool:
    """Whether SQLite stores ``value`` so that it reads back equal and of the same Python type."""
    kind = type(value)
    if kind is str:
        return value.isascii() or _encodes(value)
    if kind is float:
        return math.isfinite(value) and not (value == 0.0 and math.copysign(1.0, value) < 0)
    if kind is int:
        return _INT64[0] <= value <= _INT64[1]
    return value is None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: JSON can hold it, SQLite's text cannot
        return False
    return True


class Columns:
    """Where each record key's values live, and writing one record's row (on a connection that
    is inside a write transaction: new columns are added in it)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db
        self._keys: dict[str, list[str | None]] = {}
        self._ids: dict[str, int] = {}

    def text_id(self, text: str) -> int:
        """The id of ``text`` in ``record_texts`` (added there if new)."""
        found = self._ids.get(text)
        if found is None:
            row = self._db.execute("SELECT id FROM record_texts WHERE text = ?", (text,)).fetchone()
            if row is None:
                row = (self._db.execute("INSERT INTO record_texts(text) VALUES (?)", (text,)).lastrowid,)
            found = self._ids[text] = int(row[0])
        return found

    def load(self) -> dict[str, tuple[str | None, str | None]]:
        """``{key: (native column, JSON column)}`` as the store has them now."""
        self._keys = {key: [native, text] for key, native, text in self._db.execute(
            "SELECT key, native, json FROM record_keys")}  # fmt: skip
        return {key: (found[0], found[1]) for key, found in self._keys.items()}

    def _column(self, key: str, kind: int) -> str:
        found = self._keys.get(key)
        if found is None or found[kind] is None:
            self.load()  # another writer may have added it since
            found = self._keys.get(key)
        if found is not None and found[kind] is not None:
            return found[kind]  # type: ignore[return-value]
        count = len(self._db.execute("PRAGMA table_info(record_columns)").fetchall())
        name = f"c{count}"
        self._db.execute(f"ALTER TABLE record_columns ADD COLUMN {name}")
        if found is None:
            found = self._keys[key] = [None, None]
            self._db.execute("INSERT INTO record_keys(key) VALUES (?)", (key,))
        found[kind] = name
        self._db.execute(f"UPDATE record_keys SET {('native', 'json')[kind]} = ? WHERE key = ?", (name, key))
        return name

    def write(self, record: dict[str, Any], text: str) -> None:
        """The row of ``record``, whose stored text is ``text``."""
        names, values = ["case_id", "sha256"], [record[CASE_ID], hashlib.sha256(text.encode()).hexdigest()]
        for key, value in record.items():
            if key == CURVE:
                continue
            if is_native(value):
                if value is None:
                    continue  # absent and null read the same
                names.append(self._column(key, 0))
                values.append(value)
            else:
                names.append(self._column(key, 1))
                values.append(self.text_id(compact(value)))
        marks = ", ".join("?" * len(names))
        self._db.execute(f"INSERT OR REPLACE INTO record_columns({', '.join(names)}) VALUES ({marks})", values)


def missing(db: sqlite3.Connection, where: str = "", args: tuple[Any, ...] = ()) -> int:
    """How many records (of ``where``, a condition on ``records``) have no row in the column table."""
    return int(db.execute(f"SELECT COUNT(*) FROM records WHERE {where + ' AND ' if where else ''}"
                          "case_id NOT IN (SELECT case_id FROM record_columns)", args).fetchone()[0])  # fmt: skip


def fill(db: sqlite3.Connection, parse: Any) -> int:
    """Write the rows of the records that have none (``parse(case_id, status, text)`` ->
    ``(record, problem)``; a damaged record gets none). Each chunk in its own transaction."""
    written, last = 0, None
    while True:
        rows = db.execute("SELECT case_id, status, record FROM records WHERE case_id NOT IN "
                          "(SELECT case_id FROM record_columns) AND (? IS NULL OR case_id > ?) ORDER BY case_id "
                          "LIMIT ?", (last, last, FILL_CHUNK)).fetchall()  # fmt: skip
        if not rows:
            return written
        db.execute("BEGIN IMMEDIATE")
        try:
            columns = Columns(db)
            columns.load()
            for case_id, status, text in rows:
                try:
                    record, problem = parse(case_id, status, text)
                except Exception:  # a record of a newer format: read where it is read, not here
                    continue
                if problem is None:
                    columns.write(record, text)
                    written += 1
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise
        last = rows[-1][0]


def have_table(db: sqlite3.Connection) -> bool:
    """Whether the store has a column table (an older qbench wrote none)."""
    found = db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'record_columns'").fetchone()
    return found is not None


def select(keys: dict[str, tuple[str | None, str | None]], wanted: Iterable[str], sparse: bool = False) -> list[str]:
    """The SQL expressions, two a key (native, JSON; NULL where the store has no such column);
    ``sparse``: only the columns that exist (see :func:`slots`)."""
    out = []
    for key in wanted:
        for column in keys.get(key, (None, None)):
            if column or not sparse:
                out.append(f"c.{column}" if column else "NULL")
    return out


def slots(keys: dict[str, tuple[str | None, str | None]], wanted: Iterable[str]) -> list[tuple[int | None, int | None]]:
    """Where each key's native and JSON value are in a row of ``select(keys, wanted, sparse=True)``."""
    out, at = [], 0
    for key in wanted:
        found: list[int | None] = []
        for column in keys.get(key, (None, None)):
            found.append(at if column else None)
            at += 1 if column else 0
        out.append((found[0], found[1]))
    return out


def merged(pairs: Iterator[tuple[Any, Any]], decode: Any) -> list[Any]:
    """One key's values from its (native, JSON text id) pairs: the JSON one decoded where there is one."""
    return [native if text is None else decode(text) for native, text in pairs]


def texts(db: sqlite3.Connection) -> dict[int, str]:
    """``{id: JSON text}`` of ``record_texts``."""
    return dict(db.execute("SELECT id, text FROM record_texts"))
