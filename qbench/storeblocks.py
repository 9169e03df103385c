"""The column table's rows in blocks, column by column: what a large leaderboard reads.

Reading the column table (:mod:`qbench.storecolumns`) row by row makes every value a Python object
and then a DataFrame cell: for 100,000 records, two seconds of the rebuild's CPU. So the store
also keeps, for each closed block of ``BLOCK`` records by rowid (``(k * BLOCK, (k + 1) * BLOCK]``,
closed once a record with a higher rowid exists: new records never land in it again), the rows of
those records, joined with their ``stored`` time and matrix, column by column in one blob: float
columns as float64 bytes, text columns as one UTF-8 text with a separator, anything else as JSON.
A blob is a copy that may be missing but is never stale:

- triggers on ``records`` and ``record_columns`` delete the block of any row inserted, changed or
  deleted, by any writer (an older qbench, a merge, a hand edit included);
- :func:`build` writes the blocks that are closed and missing, in the writer's transaction (after
  each :meth:`qbench.store.Store.put_many`: one block in 5,000 records closes);
- :func:`decode` refuses (None) a blob it cannot read entirely; the reader then reads those
  records row by row. A blob holds no code: JSON and numbers only (stores are shared).
"""

from __future__ import annotations

import json
import sqlite3
import struct
from typing import Any

#: records a block holds (by rowid); the triggers a store is made with carry it, and so does its meta row
BLOCK = 5000
#: the meta key of the block size a store's triggers use
META_KEY = "record_blocks"
#: between the values of a text column: a value that holds it is written as JSON instead
SEPARATOR = "\x1f"
#: the columns of ``records`` a block holds beside the column table's
HEAD = ("rowid", "stored", "matrix")
_MAGIC = b"qbench-block-1\n"


def schema(size: int) -> list[str]:
    """The table and the triggers that keep every blob the copy of its records' current rows."""
    of = f"(({{row}}.rowid - 1) / {size})"
    by_case = f"(SELECT (rowid - 1) / {size} FROM records WHERE case_id = {{row}}.case_id)"
    statements = ["CREATE TABLE IF NOT EXISTS record_blocks (block INTEGER PRIMARY KEY, data BLOB NOT NULL)"]
    for table, block in (("records", of), ("record_columns", by_case)):
        for event, rows in (("INSERT", ("NEW",)), ("UPDATE", ("OLD", "NEW")), ("DELETE", ("OLD",))):
            body = " ".join(f"DELETE FROM record_blocks WHERE block = {block.format(row=row)};" for row in rows)
            statements.append(f"CREATE TRIGGER IF NOT EXISTS {table}_{event.lower()}_clears_block AFTER {event} "
                              f"ON {table} BEGIN {body} END")  # fmt: skip
    # INSERT OR REPLACE deletes the row it replaces without firing delete triggers (SQLite fires them
    # only with recursive triggers on): the block of the row that holds the case id is cleared first
    for event in ("INSERT", "UPDATE"):
        statements.append(f"CREATE TRIGGER IF NOT EXISTS records_{event.lower()}_replaces_block BEFORE {event} "
                          f"ON records BEGIN DELETE FROM record_blocks WHERE block = {by_case.format(row='NEW')}; END")
    return statements


def size_of(db: sqlite3.Connection) -> int | None:
    """The block size of the store's triggers (None: a store without blocks)."""
    found = db.execute("SELECT value FROM meta WHERE key = ?", (META_KEY,)).fetchone()
    return int(found[0]) if found is not None and str(found[0]).isdigit() and int(found[0]) > 0 else None


def _install(db: sqlite3.Connection) -> int:
    """The blocks' table and triggers, inside the caller's write transaction; the store's block size
    (set the first time: a store is changed only when qbench writes records to it)."""
    size = size_of(db)
    if size is None:
        size = BLOCK
        db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (META_KEY, str(size)))
    for statement in schema(size):
        db.execute(statement)
    return size


#: blocks one write of records builds at most (a large store of an older qbench gets its blocks
#: over several writes, or all at once when it is migrated: see :meth:`qbench.store.Store`)
PER_WRITE = 8


def build(db: sqlite3.Connection, limit: int | None = PER_WRITE, install: bool = True) -> int:
    """Write the closed blocks that have no blob, at most ``limit`` (None: all), inside the caller's
    write transaction; how many. ``install``: put the table and triggers in first (a connection
    that did so once need not again)."""
    size = _install(db) if install else size_of(db)
    if size is None:
        return 0
    top = db.execute("SELECT max(rowid) FROM records").fetchone()[0]
    if top is None:
        return 0
    closed = (top - 1) // size
    if db.execute("SELECT count(*) FROM record_blocks WHERE block < ?", (closed,)).fetchone()[0] >= closed:
        return 0  # the common case, after most writes: every closed block is there
    have = {block for (block,) in db.execute("SELECT block FROM record_blocks")}
    names = [row[1] for row in db.execute("PRAGMA table_info(record_columns)")]
    select = ", ".join([f"r.{c}" for c in HEAD] + [f"c.{name}" for name in names])
    written, block = 0, 0
    while block < closed and (limit is None or written < limit):
        if block in have:
            block += 1
            continue
        rows = db.execute(f"SELECT {select} FROM records r JOIN record_columns c ON c.case_id = r.case_id "
                          "WHERE r.rowid > ? AND r.rowid <= ? ORDER BY r.rowid",
                          (block * size, (block + 1) * size)).fetchall()  # fmt: skip
        if not rows:  # no record there (rowids need not be dense): on to the next block that has one
            following = db.execute("SELECT min(rowid) FROM records WHERE rowid > ?", ((block + 1) * size,)).fetchone()
            block = max(block + 1, (following[0] - 1) // size) if following[0] is not None else closed
            continue
        data = encode([*HEAD, *names], rows, block * size, (block + 1) * size)
        if data is not None:
            db.execute("INSERT OR REPLACE INTO record_blocks(block, data) VALUES (?, ?)", (block, data))
            written += 1
        block += 1
    return written


def blocks(db: sqlite3.Connection, low: int | None, high: int | None) -> list[tuple[int, int, int]]:
    """``(rowid above, last rowid, block)`` of the blocks wholly in ``(low, high]`` (None: no bound), by rowid."""
    size = size_of(db)
    if size is None or not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'record_blocks'").fetchone():
        return []
    found = []
    for (block,) in db.execute("SELECT block FROM record_blocks ORDER BY block"):
        first, last = block * size, (block + 1) * size
        if (low is None or first >= low) and (high is None or last <= high):
            found.append((first, last, block))
    return found


def blob(db: sqlite3.Connection, block: int) -> bytes | None:
    """The blob of ``block`` (None if it has gone since it was listed)."""
    found = db.execute("SELECT data FROM record_blocks WHERE block = ?", (block,)).fetchone()
    return bytes(found[0]) if found is not None else None


def _kind(values: list[Any]) -> str:
    kinds = set(map(type, values))
    if kinds <= {float, type(None)} and float in kinds:
        return "f"  # SQLite holds no NaN: NaN here means NULL
    if kinds == {int} and all(-(1 << 63) <= v < (1 << 63) for v in values):
        return "i"
    if kinds <= {str, type(None)}:
        return "s"
    if kinds <= {str, int, float, type(None)}:
        return "j"
    return "?"  # bytes (a hand-written BLOB): no block


def encode(names: list[str], rows: list[tuple[Any, ...]], first: int, last: int) -> bytes | None:
    """The blob of ``rows`` (values in the order of ``names``); None where a value has no encoding."""
    import numpy as np  # here: ``import qbench.store`` stays without numpy

    header: dict[str, Any] = {"first": first, "last": last, "count": len(rows), "columns": []}
    parts: list[bytes] = []
    for name, values in zip(names, zip(*rows, strict=True) if rows else [() for _ in names], strict=True):
        values = list(values)
        kind = _kind(values) if values else "n"
        if kind == "s" and SEPARATOR in "".join(v for v in values if v is not None):
            kind = "j"
        if kind == "?":
            return None
        if kind == "f":
            data = np.array(values, dtype=np.float64).tobytes()
        elif kind == "i":
            data = np.array(values, dtype=np.int64).tobytes()
        elif kind == "s":
            missing = np.array([v is None for v in values], dtype=bool)
            text = SEPARATOR.join("" if v is None else v for v in values).encode("utf-8")
            data = np.packbits(missing).tobytes() + text
        elif kind == "j":
            data = json.dumps(values, allow_nan=False, ensure_ascii=False).encode("utf-8")
        else:
            data = b""
        header["columns"].append([name, kind, len(data)])
        parts.append(data)
    head = json.dumps(header).encode("utf-8")
    return _MAGIC + struct.pack("<Q", len(head)) + head + b"".join(parts)


def decode(blob: bytes) -> tuple[int, dict[str, Any]] | None:
    """``(count, {column: values})`` of a blob: float columns as float64 arrays (NaN for NULL),
    integer ones as int64 arrays, the rest as lists; None for a blob this qbench cannot read."""
    import numpy as np

    try:
        if not blob.startswith(_MAGIC):
            return None
        at = len(_MAGIC)
        (length,) = struct.unpack_from("<Q", blob, at)
        header = json.loads(blob[at + 8 : at + 8 + length])
        at += 8 + length
        count = int(header["count"])
        columns: dict[str, Any] = {}
        for name, kind, size in header["columns"]:
            data = blob[at : at + size]
            at += size
            if len(data) != size:
                return None
            if kind == "f":
                values: Any = np.frombuffer(data, dtype=np.float64)
            elif kind == "i":
                values = np.frombuffer(data, dtype=np.int64)
            elif kind == "s":
                flags = -(-count // 8)
                missing = np.unpackbits(np.frombuffer(data[:flags], dtype=np.uint8))[:count].astype(bool)
                values = data[flags:].decode("utf-8").split(SEPARATOR) if count else []
                for gone in np.flatnonzero(missing).tolist():
                    values[gone] = None
            elif kind == "j":
                values = json.loads(data)
            elif kind == "n":
                values = [None] * count
            else:
                return None
            if len(values) != count:
                return None
            columns[str(name)] = values
        return (count, columns) if at == len(blob) else None
    except (ValueError, KeyError, TypeError, struct.error, UnicodeDecodeError):
        return None
