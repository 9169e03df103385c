"""The results store: one SQLite database per run directory, written by the driver only.

Each finished case is one committed transaction, so a killed driver loses nothing that was
stored. WAL mode and ``INSERT OR IGNORE`` on ``case_id`` let two drivers share a store without
corrupting it or storing a case twice.
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

from qbench.errors import UsageError

STORE_FILENAME = "qbench.sqlite"
SCHEMA_VERSION = 1

_SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    case_id  TEXT PRIMARY KEY,
    matrix   TEXT NOT NULL,
    status   TEXT NOT NULL,
    stored   REAL NOT NULL,
    record   TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


class Store:
    """SQLite store of records keyed by case id."""

    def __init__(self, path: str | Path, create: bool = True) -> None:
        self.path = Path(path)
        if not create and not self.path.is_file():
            raise UsageError(f"{self.path}: no qbench store here (expected a {STORE_FILENAME} written by qbench run)")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._db = sqlite3.connect(str(self.path), timeout=60.0, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            self._db.execute(
                "INSERT OR IGNORE INTO meta(key, value) VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),)
            )
        except sqlite3.DatabaseError as exc:
            raise UsageError(f"{self.path}: not a readable qbench store ({exc}); give a {STORE_FILENAME}") from None

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
        payload = json.dumps(record, sort_keys=True, allow_nan=True)
        cursor = self._db.execute(
            "INSERT OR IGNORE INTO records(case_id, matrix, status, stored, record) VALUES (?, ?, ?, ?, ?)",
            (record["case_id"], record.get("matrix", ""), record.get("status", ""), time.time(), payload),
        )
        return cursor.rowcount == 1

    def replace(self, record: dict[str, Any]) -> None:
        """Store a record, overwriting a stored one (``--no-resume`` re-runs)."""
        payload = json.dumps(record, sort_keys=True, allow_nan=True)
        self._db.execute(
            "INSERT OR REPLACE INTO records(case_id, matrix, status, stored, record) VALUES (?, ?, ?, ?, ?)",
            (record["case_id"], record.get("matrix", ""), record.get("status", ""), time.time(), payload),
        )

    def done_ids(self, statuses: tuple[str, ...] | None = None) -> set[str]:
        """Ids of stored cases (optionally only those with one of ``statuses``)."""
        if statuses is None:
            rows = self._db.execute("SELECT case_id FROM records")
        else:
            marks = ",".join("?" * len(statuses))
            rows = self._db.execute(f"SELECT case_id FROM records WHERE status IN ({marks})", statuses)
        return {row[0] for row in rows}

    def records(self, matrix: str | None = None) -> list[dict[str, Any]]:
        """Every stored record, oldest first (optionally of one matrix)."""
        if matrix is None:
            rows = self._db.execute("SELECT record FROM records ORDER BY stored, case_id")
        else:
            rows = self._db.execute("SELECT record FROM records WHERE matrix = ? ORDER BY stored, case_id", (matrix,))
        return [json.loads(row[0]) for row in rows]

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
    if version is not None and version != str(SCHEMA_VERSION):
        db.close()
        raise UsageError(f"{path}: store schema version {version}, this qbench reads version {SCHEMA_VERSION}; "
                         "use the qbench release that wrote it")
    return db
