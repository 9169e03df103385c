"""The results store: one SQLite database per run directory, written by the driver only.

Each finished case is one committed transaction, so a killed driver loses nothing that was
stored. WAL mode and ``INSERT OR IGNORE`` on ``case_id`` let two drivers share a store without
corrupting it or storing a case twice. The same transaction writes the record's row of the
column table (:mod:`qbench.storecolumns`), which the leaderboard reads instead of the JSON.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from qbench import storeblocks, storecolumns
from qbench.errors import UsageError
from qbench.record import CASE_ID, MATRIX, SCHEMA, SCHEMA_VERSION, STATUS, check_version

STORE_FILENAME = "qbench.sqlite"
#: How long any statement waits for another process's lock on the store (seconds).
BUSY_TIMEOUT = 60.0

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    case_id  TEXT PRIMARY KEY,
    matrix   TEXT NOT NULL,
    status   TEXT NOT NULL,
    stored   REAL NOT NULL,
    record   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
""" + storecolumns.SCHEMA


class Store:
    """SQLite store of records keyed by case id."""

    def __init__(self, path: str | Path, create: bool = True, busy_timeout: float = BUSY_TIMEOUT) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UsageError(f"{self.path}: no qbench store here (expected a {STORE_FILENAME} written by qbench run)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = _open(self.path, busy_timeout)
        self._check_schema()
        self._columns = storecolumns.Columns(self._db)
        self._blocks_ready = False  # the blocks' table and triggers are in the store (installed once a connection)
        # A store written by an older qbench (or by plain SQL) gets its records' column rows now.
        if storecolumns.missing(self._db):
            storecolumns.fill(self._db, parse_record)
            with self._transaction():  # the blocks of a store written without them (an older qbench, a merge)
                self._write_blocks(limit=None)

    def _check_schema(self) -> None:
        """The schema version written with the store is one this qbench reads (written, and now read)."""
        _check_columns(self._db, self.path)
        found = self.get_meta("schema_version")
        try:
            version = int(found) if found is not None else SCHEMA_VERSION
        except ValueError:
            version = -1
        if version != SCHEMA_VERSION:
            self._db.close()
            newer = version > SCHEMA_VERSION
            raise UsageError(f"{self.path}: store schema version {found!r}, this qbench reads version "
                             f"{SCHEMA_VERSION}; " + ("upgrade qbench to read it" if newer else
                             "it was not written by qbench (or is damaged); use another --out"))  # fmt: skip

    def damaged(self, matrix: str | None = None) -> list[Damage]:
        """Every stored record that cannot be read back as a record (see :func:`find_damaged`)."""
        return find_damaged(self._db, matrix)

    @classmethod
    def read_only(cls, path: str | Path) -> Store:
        """Open an existing store for reading only: nothing is created, migrated or written.

        An empty or foreign file is refused (UsageError), never turned into a store.
        """
        store = cls.__new__(cls)
        store.path = Path(path)
        store._db = connect_read_only(store.path)
        return store

    @classmethod
    def in_dir(cls, out_dir: str | Path) -> Store:
        return cls(Path(out_dir) / STORE_FILENAME)

    def put(self, record: dict[str, Any]) -> bool:
        """Store one record in its own transaction; False if the case was already stored."""
        return self.put_many([record]) == 1

    def put_many(self, records: Iterable[dict[str, Any]]) -> int:
        """Store records in one transaction (those already stored are left as they are); how many were new."""
        added = 0
        with self._transaction():
            for record in records:
                payload = json.dumps(record, sort_keys=True, allow_nan=True)
                cursor = self._db.execute(
                    "INSERT OR IGNORE INTO records(case_id, matrix, status, stored, record) VALUES (?, ?, ?, ?, ?)",
                    (record[CASE_ID], record.get(MATRIX, ""), record.get(STATUS, ""), time.time(), payload),
                )
                if cursor.rowcount == 1:
                    added += 1
                    self._write_columns(record, payload)
            self._write_blocks()
        return added

    def replace(self, record: dict[str, Any]) -> None:
        """Store a record, overwriting a stored one (``--no-resume`` re-runs)."""
        payload = json.dumps(record, sort_keys=True, allow_nan=True)
        with self._transaction():
            self._db.execute(
                "INSERT OR REPLACE INTO records(case_id, matrix, status, stored, record) VALUES (?, ?, ?, ?, ?)",
                (record[CASE_ID], record.get(MATRIX, ""), record.get(STATUS, ""), time.time(), payload),
            )
            self._write_columns(record, payload)
            self._write_blocks()

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield
        except BaseException:
            self._db.execute("ROLLBACK")
            self._columns = storecolumns.Columns(self._db)  # it may name columns the rollback removed
            self._blocks_ready = False  # or the blocks' table it installed
            raise
        self._db.execute("COMMIT")

    def _write_columns(self, record: dict[str, Any], payload: str) -> None:
        """The record's row in the column table; where it cannot be written (a value SQLite refuses,
        too many columns) the record is stored without one and read from its JSON instead."""
        self._db.execute("SAVEPOINT record_columns")
        try:
            self._columns.write(record, payload)
        except (sqlite3.Error, OverflowError, ValueError, TypeError):
            self._db.execute("ROLLBACK TO record_columns")
            self._columns = storecolumns.Columns(self._db)
        self._db.execute("RELEASE record_columns")

    def _write_blocks(self, limit: int | None = storeblocks.PER_WRITE) -> None:
        """The blocks that the records just written closed (:mod:`qbench.storeblocks`); a block that
        cannot be written is left out (its records are read from the column table)."""
        self._db.execute("SAVEPOINT record_blocks")
        try:
            storeblocks.build(self._db, limit, install=not self._blocks_ready)
            self._blocks_ready = True
        except Exception:  # noqa: BLE001 - a block is a copy for speed: it must never cost the records written
            logging.getLogger(__name__).debug("store blocks not written", exc_info=True)
            self._db.execute("ROLLBACK TO record_blocks")
            self._blocks_ready = False
        self._db.execute("RELEASE record_blocks")

    def stored_ids(self, statuses: tuple[str, ...] | None = None) -> set[str]:
        """Ids of stored cases (optionally only those with one of ``statuses``)."""
        if statuses is None:
            rows = self._db.execute("SELECT case_id FROM records")
        else:
            marks = ",".join("?" * len(statuses))
            rows = self._db.execute(f"SELECT case_id FROM records WHERE status IN ({marks})", statuses)
        return {row[0] for row in rows}

    def records(self, matrix: str | None = None, skip_damaged: bool = False) -> list[dict[str, Any]]:
        """Every stored record, oldest first (optionally of one matrix).

        A damaged record raises :class:`DamagedRecords` naming every damaged one, or is left out
        with ``skip_damaged``.
        """
        if matrix is None:
            rows = self._db.execute("SELECT case_id, status, record FROM records ORDER BY stored, case_id")
        else:
            rows = self._db.execute("SELECT case_id, status, record FROM records WHERE matrix = ? "
                                    "ORDER BY stored, case_id", (matrix,))  # fmt: skip
        records: list[dict[str, Any]] = []
        damage: list[Damage] = []
        for case_id, status, text in rows:
            record, problem = parse_record(case_id, status, text)
            if problem is not None:
                damage.append(Damage(str(case_id), problem))
            else:
                records.append(record)
        if damage and not skip_damaged:
            raise DamagedRecords(self.path, damage)
        return records

    def records_for(self, case_ids: list[str]) -> dict[str, dict[str, Any]]:
        """The stored records of ``case_ids`` (absent ones are left out; so is a record that is not
        a readable JSON object, which the next run then computes again)."""
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(case_ids), 500):
            chunk = case_ids[start : start + 500]
            marks = ",".join("?" * len(chunk))
            for case_id, text in self._db.execute(f"SELECT case_id, record FROM records WHERE case_id IN ({marks})",
                                                  chunk):  # fmt: skip
                try:
                    record = json.loads(text)
                except (TypeError, ValueError):
                    continue
                if isinstance(record, dict):
                    check_version(record)
                    found[case_id] = record
        return found

    def set_meta(self, key: str, value: str) -> None:
        """Store one metadata value (the protocol of a matrix, say), replacing the old one."""
        self._db.execute("INSERT OR REPLACE INTO meta(key, value) VALUES (?, ?)", (key, value))

    def get_meta(self, key: str) -> str | None:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return None if row is None else str(row[0])

    def count(self, matrix: str | None = None) -> int:
        """How many records are stored (optionally of one matrix)."""
        if matrix is None:
            return int(self._db.execute("SELECT COUNT(*) FROM records").fetchone()[0])
        return int(self._db.execute("SELECT COUNT(*) FROM records WHERE matrix = ?", (matrix,)).fetchone()[0])

    def matrices(self) -> list[str]:
        """Names of the matrices that have records here, most records first."""
        rows = self._db.execute("SELECT matrix FROM records GROUP BY matrix ORDER BY COUNT(*) DESC, matrix")
        return [row[0] for row in rows]

    def statuses(self) -> dict[str, str]:
        """Stored status of every case id."""
        return dict(self._db.execute("SELECT case_id, status FROM records"))

    def __len__(self) -> int:
        return self.count()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_only_uri(path: str | Path) -> str:
    """SQLite URI that opens ``path`` read-only; ``immutable`` where the file or folder cannot be written.

    A read-only open of a WAL database still creates ``-shm`` beside it and leaves it there;
    ``immutable=1`` skips that (and all locking). It is used when the folder cannot be written,
    or when no ``-wal`` file exists: then no connection has the store open for writing (the last
    one to close removes it), so the file is complete. With a ``-wal`` present (a run is
    writing), the plain read-only open shares the writer's locks and sees committed records only.
    """
    path = Path(path).resolve()
    writable = os.access(path, os.W_OK) and os.access(path.parent, os.W_OK)
    live = Path(f"{path}-wal").exists()
    return f"{path.as_uri()}?mode=ro" + ("&immutable=1" if not writable or not live else "")


def connect_read_only(path: str | Path) -> sqlite3.Connection:
    """A read-only connection to an existing qbench store (UsageError for anything else)."""
    path = Path(path)
    if not path.is_file():
        raise UsageError(f"{path}: no qbench store here (expected a {STORE_FILENAME} written by qbench run)")
    if path.stat().st_size == 0:
        raise UsageError(f"{path}: an empty file, not a qbench store (give the {STORE_FILENAME} qbench run wrote)")
    try:
        db = sqlite3.connect(read_only_uri(path), uri=True, timeout=60.0, isolation_level=None)
        tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        version = None
        if "meta" in tables:
            row = db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
            version = row[0] if row else None
    except sqlite3.DatabaseError as exc:
        raise UsageError(f"{path}: not a qbench store ({exc}); give the {STORE_FILENAME} qbench run wrote") from None
    if "records" not in tables:
        db.close()
        raise UsageError(f"{path}: an SQLite database but not a qbench store (no 'records' table)")
    _check_columns(db, path)
    if version is not None and version != str(SCHEMA_VERSION):
        db.close()
        raise UsageError(f"{path}: store schema version {version}, this qbench reads version {SCHEMA_VERSION}; "
                         "use the qbench release that wrote it")
    return db


#: The columns of qbench's ``records`` table (a foreign database may have a table of that name too).
RECORD_COLUMNS = ("case_id", "matrix", "status", "stored", "record")


def _check_columns(db: sqlite3.Connection, path: Path) -> None:
    """UsageError (the connection closed) when the ``records`` table lacks a column qbench's has."""
    try:
        present = {row[1] for row in db.execute("PRAGMA table_info(records)")}
    except sqlite3.DatabaseError as exc:
        db.close()
        raise UsageError(f"{path}: not a qbench store ({exc}); give the {STORE_FILENAME} qbench run wrote") from None
    missing = [c for c in RECORD_COLUMNS if c not in present]
    if missing:
        db.close()
        raise UsageError(f"{path}: an SQLite database but not a qbench store (its 'records' table has no "
                         f"{', '.join(missing)} column); give the {STORE_FILENAME} qbench run wrote")  # fmt: skip


# ---- opening, and records that cannot be read back -------------------------------------------------

def _open(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Connect with a busy timeout that covers every statement, the switch to WAL included.

    ``PRAGMA busy_timeout`` is set before anything touches the file; on a brand-new file two
    processes switching it to WAL at once can still get "database is locked" without the busy
    handler being called, so the opening statements are retried until ``busy_timeout`` is spent.
    """
    deadline = time.monotonic() + busy_timeout
    delay = 0.01
    while True:
        db = None
        try:
            db = sqlite3.connect(str(path), timeout=busy_timeout, isolation_level=None)
            db.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.executescript(_SCHEMA)
            db.execute("INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
            return db
        except sqlite3.OperationalError as exc:
            if db is not None:
                db.close()
            if _is_busy(exc):
                if time.monotonic() < deadline:
                    time.sleep(delay)
                    delay = min(delay * 2, 0.5)
                    continue
                raise UsageError(
                    f"{path}: the store stayed locked by another process for {busy_timeout:g} s ({exc}); "
                    "wait for the other qbench process to finish and try again"
                ) from None
            raise UsageError(f"{path}: cannot open the store ({exc}); check the file and its folder") from None
        except sqlite3.DatabaseError as exc:
            if db is not None:
                db.close()
            raise UsageError(f"{path}: not a readable qbench store ({exc}); give a {STORE_FILENAME}") from None


def _is_busy(exc: sqlite3.OperationalError) -> bool:
    text = str(exc).lower()
    return "locked" in text or "busy" in text


class Damage(NamedTuple):
    """A stored row that is not a readable record: its case id and what is wrong with it."""

    case_id: str
    problem: str


class DamagedRecords(UsageError):
    """Records in a store that cannot be read; a usage error naming each of them."""

    def __init__(self, path: Path, damage: list[Damage]) -> None:
        self.damage = damage
        shown = "; ".join(f"case {d.case_id}: {d.problem}" for d in damage[:5])
        more = f"; and {len(damage) - 5} more" if len(damage) > 5 else ""
        super().__init__(
            f"{path}: {len(damage)} damaged record(s) ({shown}{more}); `qbench run` on their matrix "
            "re-runs them (or delete those rows)"
        )


def parse_record(case_id: Any, status: Any, text: Any) -> tuple[dict[str, Any], str | None]:
    """``(record, None)`` for a readable stored row, ``({}, what is wrong)`` otherwise; a record of a
    format this qbench does not read raises UsageError (it is not damaged: another qbench wrote it)."""
    if not isinstance(text, str):
        return {}, f"the record is {type(text).__name__}, not JSON text"
    try:
        record = json.loads(text)
    except json.JSONDecodeError as exc:
        return {}, f"not valid JSON (truncated?): {exc.msg} at character {exc.pos} of {len(text)}"
    if not isinstance(record, dict):
        return {}, f"the JSON is a {type(record).__name__}, not an object"
    for key in (CASE_ID, STATUS):
        if not isinstance(record.get(key), str) or not record[key]:
            return {}, f"no {key!r} string in the record"
    if record[CASE_ID] != case_id:
        return {}, f"the record says case_id {record[CASE_ID]!r}, its row says {case_id!r}"
    if record[STATUS] != status:
        return {}, f"the record says status {record[STATUS]!r}, its row says {status!r}"
    check_version(record)
    return record, None


def find_damaged(db: sqlite3.Connection, matrix: str | None = None) -> list[Damage]:
    """Damaged rows of a store, found by SQLite's JSON functions; Python checks only the suspects.

    SQLite (before 3.42) does not read NaN/Infinity, which records may hold: such rows are
    suspects that :func:`parse_record` clears. Without the JSON functions every row is parsed.
    """
    where, args = ("WHERE matrix = ?", (matrix,)) if matrix is not None else ("", ())
    # a record that states its format version is a suspect too: parse_record checks the version
    suspect = ("CASE WHEN json_valid(record) THEN (json_type(record) != 'object' "
               f"OR json_extract(record, '$.{CASE_ID}') IS NOT case_id "
               f"OR json_extract(record, '$.{STATUS}') IS NOT status "
               f"OR json_type(record, '$.{STATUS}') IS NOT 'text' OR json_type(record, '$.{SCHEMA}') IS NOT NULL) "
               "ELSE 1 END")  # fmt: skip
    try:
        rows = db.execute(f"SELECT case_id, status, record FROM records {where} "
                          f"{'AND' if where else 'WHERE'} ({suspect}) ORDER BY case_id", args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such function" not in str(exc):
            raise
        rows = db.execute(f"SELECT case_id, status, record FROM records {where} ORDER BY case_id", args).fetchall()
    damage = []
    for case_id, status, text in rows:
        _, problem = parse_record(case_id, status, text)
        if problem is not None:
            damage.append(Damage(str(case_id), problem))
    return damage


# ---- the leaderboard's projection -------------------------------------------------------------------


def json_path(key: str) -> str:
    """The SQLite JSON path of a top-level record key (ValueError for a name that cannot be one)."""
    if '"' in key or "\\" in key:
        raise ValueError(key)
    return f'$."{key}"'


class Projection:
    """Chosen fields of every stored record without a dict per record: from the column table
    (:mod:`qbench.storecolumns`, the ``column_*`` methods) where every selected record has its
    row there, else extracted from the JSON by SQLite's JSON functions.

    ``Store.records()`` parses every record into a dict (about 40 us each); a reader that needs a
    few fields of 100,000 records (the leaderboard) asks for them here instead. The rows come in
    no particular order (sorting them is the caller's, in Python: an ORDER BY would make SQLite
    sort every extracted row first). Read only. ``sqlite3.OperationalError`` where this SQLite
    lacks the JSON functions, ``ValueError`` for a field name that cannot be a JSON path: the
    caller then reads ``Store.records()`` instead.
    """

    def __init__(self, path: str | Path, matrix: str | None = None) -> None:
        self.path, self.matrix = Path(path), matrix
        self._db = connect_read_only(self.path)

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Projection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _where(self) -> tuple[str, tuple[Any, ...]]:
        return ("WHERE matrix = ?", (self.matrix,)) if self.matrix is not None else ("", ())

    def damaged(self) -> list[Damage]:
        """The selected rows that are not readable records (see :func:`find_damaged`)."""
        return find_damaged(self._db, self.matrix)

    def sample(self, key: str, size: int) -> set[str]:
        """The distinct JSON texts of ``key`` in the first and the last ``size`` records stored."""
        where, args = self._where()
        texts: set[str] = set()
        for order in ("ASC", "DESC"):
            rows = self._db.execute(f"SELECT json_extract(record, ?) FROM records {where} ORDER BY rowid {order} "
                                    "LIMIT ?", (json_path(key), *args, size))  # fmt: skip
            texts.update(text for (text,) in rows if text)
        return texts

    def fields(self, keys: list[str], objects: tuple[str, ...] = (), text: bool = False) -> Any:
        """``(stored, case_id, [record text,] values, *objects)`` per selected record: ``values`` is
        the JSON array of ``keys``' values, each of ``objects`` the JSON text of that key (None when
        absent); with ``text`` the record's stored text too (its canonical JSON, to hash)."""
        where, args = self._where()
        columns = [f"json_extract(record, {', '.join('?' for _ in keys)})" if keys else "NULL",
                   *("json_extract(record, ?)" for _ in objects)]  # fmt: skip
        record = "record, " if text else ""
        paths = (*(json_path(k) for k in keys), *(json_path(k) for k in objects))
        return self._db.execute(f"SELECT stored, case_id, {record}{', '.join(columns)} FROM records {where}",
                                (*paths, *args))  # fmt: skip

    def columns_ready(self) -> bool:
        """Whether every selected record has its row in the column table (:mod:`qbench.storecolumns`)."""
        if not storecolumns.have_table(self._db):
            return False
        where, args = self._where()
        return storecolumns.missing(self._db, where[len("WHERE "):], args) == 0

    def column_keys(self) -> dict[str, tuple[str | None, str | None]]:
        """``{record key: (native column, JSON column)}`` of the column table."""
        return storecolumns.Columns(self._db).load()

    def column_rows(self, keys: list[str], with_ids: bool = True, sparse: bool = False,
                    rowids: tuple[int | None, int | None] = (None, None)) -> sqlite3.Cursor:  # fmt: skip
        """Per selected record with a row in the column table: ``(stored, case_id, sha256, *pairs)``
        with ``with_ids``, else ``pairs`` only with DISTINCT; each of ``keys`` as two values, the
        native one and the JSON text id (see :func:`qbench.storecolumns.merged`); ``sparse``: only the
        columns that exist (:func:`qbench.storecolumns.slots` says where each key's are); ``rowids``:
        only the records whose rowid is above the first bound and at most the second (None: no bound),
        a part of the store for one of several readers (see :meth:`split_rowid`)."""
        where, args = self._where()
        where = where.replace("matrix", "r.matrix")
        for bound, test in zip(rowids, ("r.rowid > ?", "r.rowid <= ?"), strict=True):
            if bound is not None:
                where, args = f"{where} {'AND' if where else 'WHERE'} {test}", (*args, bound)
        pairs = ", ".join(storecolumns.select(self.column_keys(), keys, sparse)) or "NULL"
        head = "r.stored, r.case_id, c.sha256, " if with_ids else "DISTINCT "
        return self._db.execute(f"SELECT {head}{pairs} FROM records r JOIN record_columns c ON c.case_id = r.case_id "
                                f"{where}", args)  # fmt: skip

    def split_rowid(self, fraction: float = 0.5) -> tuple[int, int | None]:
        """How many records are selected, and the rowid at or below which ``fraction`` of them lie
        (None for none): where to split them between two readers."""
        where, args = self._where()
        count = self._db.execute(f"SELECT count(*) FROM records {where}", args).fetchone()[0]
        row = self._db.execute(f"SELECT rowid FROM records {where} ORDER BY rowid LIMIT 1 OFFSET ?",
                               (*args, max(int(count * fraction) - 1, 0))).fetchone()  # fmt: skip
        return count, row[0] if row else None

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees the store at one moment, though a writer commits meanwhile (a read
        transaction: the leaderboard's read is many statements, its blocks' and its table's)."""
        self._db.execute("BEGIN")
        try:
            yield
        finally:
            self._db.execute("COMMIT")

    def blocks(self, low: int | None = None, high: int | None = None) -> list[tuple[int, int, int]]:
        """``(rowid above, last rowid, block)`` of the store's blocks wholly in ``(low, high]``
        (:mod:`qbench.storeblocks`), by rowid; none in a store made before them."""
        return storeblocks.blocks(self._db, low, high)

    def block(self, block: int) -> bytes | None:
        """The blob of one of :meth:`blocks` (read one at a time: together they are a tenth of the store)."""
        return storeblocks.blob(self._db, block)

    def block_size(self) -> int | None:
        """Records a block holds in this store (None: a store without blocks)."""
        return storeblocks.size_of(self._db)

    def immutable(self) -> bool:
        """Whether this connection reads the store without locks (no writer has it open: see
        :func:`read_only_uri`): then another process may open it too at any moment, a fork included."""
        return "immutable=1" in read_only_uri(self.path)

    def stated(self, key: str) -> list[tuple[str, Any, Any]]:
        """``(case_id, native, JSON text id)`` of the selected records that have ``key``, by case id."""
        native, text = self.column_keys().get(key, (None, None))
        if native is None and text is None:
            return []
        where, args = self._where()
        where = where.replace("matrix", "r.matrix")
        pair = ", ".join(storecolumns.select({key: (native, text)}, [key]))
        present = " OR ".join(f"c.{c} IS NOT NULL" for c in (native, text) if c)
        return self._db.execute(f"SELECT r.case_id, {pair} FROM records r JOIN record_columns c ON c.case_id = "
                                f"r.case_id {where} {'AND' if where else 'WHERE'} ({present}) ORDER BY r.case_id",
                                args).fetchall()  # fmt: skip

    def column_texts(self) -> dict[int, str]:
        """``{id: JSON text}``: what the column table's JSON columns hold the ids of."""
        return storecolumns.texts(self._db)

    def record_of(self, case_id: str) -> dict[str, Any] | None:
        """One stored record, parsed (None where there is none, or it is not a JSON object)."""
        row = self._db.execute("SELECT record FROM records WHERE case_id = ?", (case_id,)).fetchone()
        try:
            record = json.loads(row[0]) if row is not None else None
        except (TypeError, ValueError):
            return None
        return record if isinstance(record, dict) else None

    def texts(self) -> dict[str, str]:
        """``{case_id: stored text}`` of the selected records (the text a published row's hash is of)."""
        where, args = self._where()
        return dict(self._db.execute(f"SELECT case_id, record FROM records {where}", args))

    def protocols(self) -> dict[str, str]:
        """``{matrix: protocol JSON}`` that ``qbench run`` recorded."""
        rows = self._db.execute("SELECT key, value FROM meta WHERE key LIKE 'protocol:%' ORDER BY key")
        return {key[len("protocol:"):]: value for key, value in rows}
