"""Read a store straight into the leaderboard's frame, without a dict per record.

``Store.records()`` parses every record into a dict (about 40 us each) and the leaderboard then
hashes each one again; for a store of 100,000 records that is most of the rebuild. Here SQLite's
JSON functions extract only the columns the leaderboard needs, the hash of each record is taken
from the stored text (which is the record's canonical JSON, see
:func:`qbench.leaderboard.compute.frame.record_text`), and curves are read only if a plot needs them.
The result is the same frame as ``load_runs(Store(path).records())``; when this SQLite lacks
the JSON functions (or a column name cannot be a JSON path) that slower path is taken instead.
The SQL itself is the store's (:class:`qbench.store.Projection`): the table layout lives in one module.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from qbench import record as R
from qbench import storeblocks, storecolumns
from qbench.leaderboard.compute import forking
from qbench.leaderboard.compute.declarations import signature
from qbench.leaderboard.compute.frame import (
    CONFIG_COLUMNS,
    RawRuns,
    RunsFrame,
    build_runs,
    collect_provenance,
    load_runs,
    merge_cost_axes,
    merge_directions,
    wanted_columns,
)
from qbench.store import Projection

if TYPE_CHECKING:
    from qbench.protocol import Protocol

#: rows decoded into one DataFrame block at a time (see :func:`_read`)
CHUNK = 20000

# Store.records()'s order is (stored, case_id). It is applied here in Python: an ORDER BY would
# make SQLite sort the extracted values of every row (and spill them to disk) before the first.


class _Query:
    def __init__(self, path: Path, matrix: str | None, case_ids: set[str] | None,
                 meanwhile: Callable[[], object] | None = None) -> None:  # fmt: skip
        self.path, self.matrix, self.case_ids = path, matrix, case_ids
        self.skip: set[str] = set()  # damaged rows, left out
        self._meanwhile = meanwhile

    def meanwhile(self) -> None:
        """The caller's work (see :func:`read_store`), done the first time this is called."""
        work, self._meanwhile = self._meanwhile, None
        if work is not None:
            work()

    def wanted(self, case_id: str) -> bool:
        return (self.case_ids is None or case_id in self.case_ids) and case_id not in self.skip

    def open(self) -> Projection:
        return Projection(self.path, self.matrix)

    def sample_directions(self, store: Projection, size: int = 2000) -> list[Any]:
        """Directions of the first and last records: a guess of the value columns, checked later."""
        return [json.loads(text) for text in sorted(store.sample(R.DIRECTIONS, size))]

    def column_values(self, store: Projection, columns: list[str]) -> list[list[Any]]:
        """Values of ``columns`` for every selected record, in the frame's order."""
        rows = sorted((row for row in store.fields(columns) if self.wanted(row[1])), key=lambda row: (row[0], row[1]))
        return [json.loads(values) for _, _, values in rows]


class _StoreCurves(Sequence):
    """The curves, read in one query the first time a plot asks for one, each decoded when asked for
    (the plots draw the curves of the tuned rows' runs: a few of a large store's records)."""

    def __init__(self, query: _Query, length: int) -> None:
        self._query, self._length = query, length
        self._texts: list[str | None] | None = None
        self._decoded: dict[int, list[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index):  # type: ignore[override]
        if self._texts is None:
            with self._query.open() as store:
                rows = sorted((row for row in store.fields([], (R.CURVE,)) if self._query.wanted(row[1])),
                              key=lambda row: (row[0], row[1]))  # fmt: skip
            self._texts = [curve for *_, curve in rows]
        index = range(self._length)[index]
        found = self._decoded.get(index)
        if found is None:
            text = self._texts[index]
            curve = json.loads(text) if text else []
            found = self._decoded[index] = curve if isinstance(curve, list) else []
        return found


def read_store(path: Path, matrix: str | None = None, case_ids: set[str] | None = None,
               skip_damaged: bool = False, meanwhile: Callable[[], object] | None = None) -> RunsFrame:  # fmt: skip
    """The runs frame of a store (optionally one matrix's records, or only ``case_ids``).

    A damaged record (see :func:`qbench.store.find_damaged`) raises
    :class:`qbench.store.DamagedRecords`, or is left out with ``skip_damaged``. ``meanwhile``: the
    caller's work that does not need the frame (an import), done once, at a time when this process
    would otherwise wait for the child reading part of a large store (see :func:`_read_in_two`).
    """
    query = _Query(Path(path), matrix, case_ids, meanwhile)
    frame = _read_any(query, skip_damaged)
    query.meanwhile()  # where no child read: now
    return frame


def _read_any(query: _Query, skip_damaged: bool) -> RunsFrame:
    from qbench.store import DamagedRecords, Store

    path, matrix, case_ids = query.path, query.matrix, query.case_ids
    try:
        with query.open() as store, store.snapshot():
            if store.columns_ready():  # every record's values are columns already: nothing to parse
                return _read_columns(store, query)
            damage = [d for d in store.damaged() if case_ids is None or d.case_id in case_ids]
            if damage and not skip_damaged:
                raise DamagedRecords(path, damage)
            query.skip = {d.case_id for d in damage}
            return _read(store, query)
    except (sqlite3.OperationalError, ValueError):
        with Store.read_only(path) as store:
            records = store.records(matrix, skip_damaged=True)
            damage = store.damaged(matrix)
        if case_ids is not None:
            records = [r for r in records if r.get(R.CASE_ID) in case_ids]
            damage = [d for d in damage if d.case_id in case_ids]
        if damage and not skip_damaged:
            raise DamagedRecords(path, damage) from None
        return load_runs(records)


def _read(store: Projection, query: _Query) -> RunsFrame:
    # The value columns are the keys of every record's directions; a sample of the records
    # names them all in practice, and a second, narrow pass fetches any the sample missed.
    columns = wanted_columns(merge_directions(query.sample_directions(store)))
    nested = (R.DIRECTIONS, R.DESCRIPTIONS, R.PROVENANCE, R.COST_AXES, R.DECLARATIONS)
    # One json_extract with every path parses each record once and returns a JSON array. The nested
    # objects are gathered as they come (few distinct texts), never held per record.
    texts: dict[str, set[str]] = {name: set() for name in nested}
    decode = json.JSONDecoder().decode
    at = [columns.index(name) for name in (R.QUANTIZER, R.HARDWARE, R.STATUS)]
    keys: list[tuple[float, str]] = []
    hashes: list[str] = []
    signatures: set[Any] = set()
    # Each record is decoded as it arrives and its rows become DataFrame blocks CHUNK at a time:
    # holding 100,000 records' JSON texts, or their values as Python lists, until the end would be
    # most of the peak memory. The frame is put in Store.records()' order afterwards.
    rows: list[list[Any]] = []
    blocks: list[pd.DataFrame] = []
    for stored, case_id, text, values_text, *objects in store.fields(columns, nested, text=True):
        if not query.wanted(case_id):
            continue
        for name, value in zip(nested, objects, strict=True):
            if value:
                texts[name].add(value)
        values = decode(values_text)
        keys.append((stored, case_id))
        hashes.append(hashlib.sha256(text.encode()).hexdigest())
        signatures.add(signature(objects[4], values[at[0]], values[at[1]], values[at[2]], objects[3]))
        rows.append(values)
        if len(rows) == CHUNK:
            blocks.append(pd.DataFrame.from_records(rows, columns=columns))
            rows = []
    if rows or not blocks:
        blocks.append(pd.DataFrame.from_records(rows, columns=columns) if rows else pd.DataFrame(columns=columns))
    del rows
    order = sorted(range(len(keys)), key=keys.__getitem__)
    del keys
    decoded = {name: [json.loads(t) for t in sorted(found)] for name, found in texts.items()}
    directions = merge_directions(decoded[R.DIRECTIONS])
    raw = blocks[0] if len(blocks) == 1 else pd.concat(blocks, ignore_index=True)
    del blocks
    if order != list(range(len(order))):
        raw = raw.take(order).reset_index(drop=True)
        hashes = [hashes[i] for i in order]
    missed = [c for c in wanted_columns(directions) if c not in columns]
    if missed:
        extra = pd.DataFrame.from_records(query.column_values(store, missed), columns=missed) if hashes else None
        raw = pd.concat([raw, extra if extra is not None else pd.DataFrame(columns=missed)], axis=1)
    raw = raw[wanted_columns(directions)]
    descriptions: dict[str, str] = {}
    for mapping in decoded[R.DESCRIPTIONS]:
        for label, description in (mapping or {}).items():
            descriptions.setdefault(str(label), str(description))
    return build_runs(RawRuns(
        raw=raw,
        hashes=hashes,
        directions=directions,
        descriptions=descriptions,
        provenance=collect_provenance(decoded[R.PROVENANCE]),
        curves=_StoreCurves(query, len(hashes)),
        cost_axes=merge_cost_axes(decoded[R.COST_AXES]),
        declarations=signatures,
    ))  # fmt: skip


class _RecordCurves(Sequence):
    """The curves of the runs in the frame's order, each read from its record when a plot asks for it."""

    def __init__(self, path: Path, case_ids: list[str]) -> None:
        self._path, self._case_ids = path, case_ids
        self._store: Projection | None = None
        self._decoded: dict[int, list[dict[str, Any]]] = {}

    def __len__(self) -> int:
        return len(self._case_ids)

    def __getitem__(self, index):  # type: ignore[override]
        index = range(len(self._case_ids))[index]
        found = self._decoded.get(index)
        if found is None:
            if self._store is None:
                self._store = Projection(self._path)
                weakref.finalize(self, self._store.close)
            curve = (self._store.record_of(self._case_ids[index]) or {}).get(R.CURVE)
            found = self._decoded[index] = curve if isinstance(curve, list) else []
        return found


NESTED = (R.DIRECTIONS, R.DESCRIPTIONS, R.PROVENANCE, R.COST_AXES, R.DECLARATIONS)
#: columns that :func:`qbench.leaderboard.compute.frame.build_runs` reads as JSON text or as objects alike
AS_TEXT = frozenset((*CONFIG_COLUMNS, R.FULL_PRECISION))


def _read_columns(store: Projection, query: _Query) -> RunsFrame:
    """:func:`_read` for a store whose records all have their row in the column table
    (:mod:`qbench.storecolumns`): values come as SQLite gives them, the nested objects' distinct
    texts (SQL DISTINCT) are decoded once, the hashes were taken when the records were stored."""
    keys = store.column_keys()
    by_id = store.column_texts()
    cache: dict[int, Any] = {}

    def decode(text_id: int) -> Any:
        found = cache.get(text_id, cache)
        if found is cache:
            found = cache[text_id] = json.loads(by_id[text_id])
        return found

    def raw(pair: tuple[Any, Any]) -> Any:  # a nested object as the JSON-extract path saw it: text
        return pair[0] if pair[1] is None else by_id[pair[1]]

    for case_id, native, text_id in store.stated(R.SCHEMA):  # a record of another format: UsageError
        if query.wanted(case_id):
            R.check_version({R.CASE_ID: case_id, R.SCHEMA: native if text_id is None else decode(text_id)})
    # What the records declare, once per distinct combination (a case_ids selection is filtered here).
    kinds = [*NESTED, R.QUANTIZER, R.HARDWARE, R.STATUS]
    texts: dict[str, set[str]] = {name: set() for name in NESTED}
    signatures: set[Any] = set()
    if query.case_ids is None and not query.skip:
        found = store.column_rows(kinds, with_ids=False)
    else:
        found = (row[3:] for row in store.column_rows(kinds) if query.wanted(row[1]))
    for row in found:
        pairs = [(row[2 * i], row[2 * i + 1]) for i in range(len(kinds))]
        for name, pair in zip(NESTED, pairs, strict=False):
            value = raw(pair)
            if value:
                texts[name].add(value)
        quantizer, hardware, status = storecolumns.merged(iter(pairs[len(NESTED) :]), decode)
        signatures.add(signature(raw(pairs[4]), quantizer, hardware, status, raw(pairs[3])))
    decoded = {name: [json.loads(t) for t in sorted(found)] for name, found in texts.items()}
    directions = merge_directions(decoded[R.DIRECTIONS])
    columns = wanted_columns(directions)
    where = storecolumns.slots(keys, columns)

    rows = _ColumnRows(columns, where, by_id, decode, query, [keys.get(c, (None, None)) for c in columns])
    order_keys, hashes, raw_frame = _read_in_two(store, query, rows) or rows.read(store)
    order = sorted(range(len(order_keys)), key=order_keys.__getitem__)
    case_ids = [order_keys[i][1] for i in order]
    del order_keys
    if order != list(range(len(order))):
        raw_frame = raw_frame.take(order).reset_index(drop=True)
        hashes = [hashes[i] for i in order]
    descriptions: dict[str, str] = {}
    for mapping in decoded[R.DESCRIPTIONS]:
        for label, description in (mapping or {}).items():
            descriptions.setdefault(str(label), str(description))
    return build_runs(RawRuns(
        raw=raw_frame,
        hashes=hashes,
        directions=directions,
        descriptions=descriptions,
        provenance=collect_provenance(decoded[R.PROVENANCE]),
        curves=_RecordCurves(store.path, case_ids),
        cost_axes=merge_cost_axes(decoded[R.COST_AXES]),
        declarations=signatures,
    ))  # fmt: skip


class _ColumnRows:
    """The column table's rows of the selected records (or of the records in a rowid range) as the
    raw frame's columns, with their (stored, case_id) keys and hashes: from the store's blocks
    (:mod:`qbench.storeblocks`) where it has them, CHUNK rows at a time from the table elsewhere."""

    def __init__(self, columns: list[str], where: list[tuple[int | None, int | None]], by_id: dict[int, str],
                 decode: Any, query: _Query,
                 physical: list[tuple[str | None, str | None]] | None = None) -> None:  # fmt: skip
        self.columns, self.where, self.by_id, self.decode, self.query = columns, where, by_id, decode, query
        self.physical = physical  # each column's (native, JSON) column of the table: where a block has it

    def read(self, store: Projection, rowids: tuple[int | None, int | None] = (None, None),
             ) -> tuple[list[tuple[float, str]], list[str], pd.DataFrame]:  # fmt: skip
        columns, by_id, decode = self.columns, self.by_id, self.decode
        order_keys: list[tuple[float, str]] = []
        hashes: list[str] = []
        blocks: list[pd.DataFrame] = []
        for stored, case_ids, sha256s, slots in self._chunks(store, rowids):
            order_keys += zip(stored, case_ids, strict=True)
            hashes += sha256s
            data = {}
            nothing = (None,) * len(case_ids)
            for name, (native, ids) in zip(columns, slots, strict=True):
                if ids is None:  # no JSON column: the values as SQLite gives them
                    data[name] = nothing if native is None else native
                    continue
                # the configuration columns are read as JSON text (build_runs writes them as canonical text)
                lookup = by_id if name in AS_TEXT else {i: decode(i) for i in set(ids) if i is not None}
                if native is None:
                    data[name] = list(map(lookup.get, ids))
                else:
                    data[name] = [n if i is None else lookup[i] for n, i in zip(_values(native), ids, strict=True)]
            blocks.append(pd.DataFrame(data, columns=columns))
            del data
        if not blocks:
            blocks.append(pd.DataFrame(columns=columns))
        frame = blocks[0] if len(blocks) == 1 else pd.concat(blocks, ignore_index=True)
        return order_keys, hashes, frame

    def _chunks(self, store: Projection, rowids: tuple[int | None, int | None]) -> Any:
        """``(stored, case_ids, sha256s, [(native values, JSON text ids) per column])`` of the selected
        records in ``rowids``, in rowid order: a block's records at once, the others CHUNK at a time."""
        low, high = rowids
        for first, last, block in [*(store.blocks(low, high) if self.physical is not None else []), (0, 0, None)]:
            if block is None:
                yield from self._table_chunks(store, (low, high))
                return
            blob = store.block(block)
            found = storeblocks.decode(blob) if blob is not None else None
            if found is None:
                continue  # gone or unreadable: its records are read from the table with the next gap's
            yield from self._table_chunks(store, (low, first))
            yield from self._block_chunk(*found)
            low = last

    def _table_chunks(self, store: Projection, rowids: tuple[int | None, int | None]) -> Any:
        if rowids[0] is not None and rowids[1] is not None and rowids[1] <= rowids[0]:
            return
        query = self.query
        cursor = store.column_rows(self.columns, sparse=True, rowids=rowids)
        while rows := cursor.fetchmany(CHUNK):
            if query.case_ids is not None or query.skip:
                rows = [row for row in rows if query.wanted(row[1])]
                if not rows:
                    continue
            transposed = list(zip(*rows, strict=True))
            del rows
            slots = [(transposed[3 + n] if n is not None else None, transposed[3 + t] if t is not None else None)
                     for n, t in self.where]  # fmt: skip
            yield transposed[0], transposed[1], transposed[2], slots

    def _block_chunk(self, count: int, found: dict[str, Any]) -> Any:
        query = self.query
        keep: list[int] | None = None
        if query.matrix is not None:
            keep = [i for i, matrix in enumerate(found["matrix"]) if matrix == query.matrix]
        if query.case_ids is not None or query.skip:
            case_ids = found["case_id"]
            keep = [i for i in (range(count) if keep is None else keep) if query.wanted(case_ids[i])]
        if keep is not None and not keep:
            return

        def column(name: str | None) -> Any:
            """The kept rows' values of the table's column ``name``; None where the block has no such
            column (added to the table after the block was written: NULL in its rows)."""
            if name is None or name not in found:
                return None
            values = found[name]
            if keep is None:
                return values
            return values[keep] if isinstance(values, np.ndarray) else [values[i] for i in keep]

        assert self.physical is not None
        slots = [(column(native), _values(column(text))) for native, text in self.physical]
        yield _values(column("stored")), column("case_id"), column("sha256"), slots


def _values(values: Any) -> Any:
    """Python values of a block's column (a float array's NaN is a NULL: None)."""
    if not isinstance(values, np.ndarray):
        return values
    out = values.tolist()
    if values.dtype.kind == "f" and np.isnan(values).any():
        out = [None if v != v else v for v in out]
    return out


#: selected records from which two processes read the column table (see :func:`_read_in_two`)
PARALLEL_ROWS = 40000
#: the part this process reads: half (the child also pickles its part; this process, meanwhile, imports)
PARENT_SHARE = 0.5


def _read_in_two(store: Projection, query: _Query,
                 rows: _ColumnRows) -> tuple[list[tuple[float, str]], list[str], pd.DataFrame] | None:  # fmt: skip
    """The rows read by two processes, each about half the store by rowid, on Linux for a large store
    read without locks (no writer has it open); None where that does not apply (read in one).

    SQLite's rows become Python values and DataFrame blocks at about 25 us a record, most of a
    large read and all on one core; a forked child reads the upper part on its own connection
    (opened after the fork: none is carried across it, and an immutable store takes no locks) and
    hands it back pickled in an anonymous memory file, while this process reads the lower part.
    The parts are joined in the same order as one reader's (the frame is sorted afterwards
    anyway). A child that fails, or takes far longer than this process's part did (a lock another
    thread held at the fork), is stopped and its part read here: the same frame, later.
    """
    if not (forking.available() and hasattr(os, "memfd_create")):
        return None
    if query.case_ids is not None or query.skip or not store.immutable():
        return None
    count, middle = store.split_rowid(PARENT_SHARE)
    if count < PARALLEL_ROWS or middle is None:
        return None
    if size := store.block_size():  # on a block's edge: a block across it would be read from the table
        middle = max(size, round(middle / size) * size)
    import pickle
    import time

    try:
        memory = os.memfd_create("qbench-leaderboard-read")
    except OSError:  # a kernel or sandbox without it: one reader
        return None

    def child() -> None:  # its own connection, opened after the fork
        with query.open() as mine, open(memory, "wb", closefd=False) as out:
            pickle.dump(rows.read(mine, (middle, None)), out, protocol=pickle.HIGHEST_PROTOCOL)

    pid: int | None = None
    second = None
    try:
        pid = forking.start(child)
        started = time.monotonic()
        first = rows.read(store, (None, middle))
        query.meanwhile()  # the child has a little more to do: its part is pickled
        waited, pid = pid, None
        if waited is not None and forking.finished(waited, max(30.0, 4 * (time.monotonic() - started))):
            os.lseek(memory, 0, os.SEEK_SET)
            with open(memory, "rb", closefd=False) as part:
                second = pickle.load(part)
    finally:
        if pid is not None:  # interrupted: the child must not outlive the read
            forking.stop(pid)
        os.close(memory)
    if second is None:
        second = rows.read(store, (middle, None))
    parts = [part[2] for part in (first, second) if part[0]] or [first[2]]
    frame = parts[0] if len(parts) == 1 else pd.concat(parts, ignore_index=True)
    return first[0] + second[0], first[1] + second[1], frame


def stored_protocol(path: Path, matrix: str | None = None) -> Protocol | None:
    """The protocol ``qbench run`` recorded for ``matrix`` (or for the store's only matrix)."""
    from qbench.protocol import Protocol

    try:
        with Projection(Path(path)) as store:
            found = store.protocols()
    except sqlite3.Error:
        return None
    text = found.get(matrix) if matrix is not None else (next(iter(found.values())) if len(found) == 1 else None)
    if text is None:
        return None
    try:
        return Protocol.from_dict(json.loads(text))
    except (ValueError, KeyError, TypeError):
        return None
