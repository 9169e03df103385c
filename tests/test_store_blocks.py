"""The store's blocks (qbench.storeblocks): the column table's rows column by column, read by a large rebuild.

What must hold: a store read through its blocks gives the frame its records give (and the frame the
column table alone gives), for every kind of value, a matrix or a selection of cases; a record
changed in any way (by qbench, by another writer, by hand, in the column table too) is never read
from a stale block; a block that cannot be read is read from the table; a blob is data only; a
store is changed only when qbench writes records to it.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from qbench import storeblocks
from qbench.leaderboard import rebuild_from_store
from qbench.leaderboard.compute.frame import load_runs
from qbench.leaderboard.compute.storeread import read_store
from qbench.store import Projection, Store
from tests.synthetic import make_many, make_records
from tests.test_store_columns import _odd_records


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 4 records: a small store has many (the size is the store's from its first write)."""
    monkeypatch.setattr(storeblocks, "BLOCK", 4)


def _records() -> list[dict]:
    records = [*_odd_records(), *make_many(30)]
    for record in records[::3]:
        record["matrix"] = "other"
    return records


def _store(path, records, batch: int = 7):
    with Store(path) as store:
        for start in range(0, len(records), batch):
            store.put_many(records[start : start + batch])
    return path


def _blocks(path) -> list[int]:
    db = sqlite3.connect(path)
    try:
        if not db.execute("SELECT 1 FROM sqlite_master WHERE name = 'record_blocks'").fetchone():
            return []  # none written yet (or the writes that would have made the table failed)
        return [block for (block,) in db.execute("SELECT block FROM record_blocks ORDER BY block")]
    finally:
        db.close()


def _without_blocks(monkeypatch, path, **selection):
    """The frame read from the column table alone."""
    with monkeypatch.context() as patch:
        patch.setattr(Projection, "blocks", lambda self, low=None, high=None: [])
        return read_store(path, **selection).runs


def _current(path) -> list[dict]:
    with Store.read_only(path) as store:
        return store.records()


def test_blocks_give_the_frame_the_records_give(tmp_path, small_blocks, monkeypatch):
    records = _records()
    path = _store(tmp_path / "qbench.sqlite", records)
    assert len(_blocks(path)) == (len(records) - 1) // 4  # every closed block, none for the open last one
    found = read_store(path)
    pd.testing.assert_frame_equal(found.runs, load_runs(records).runs)
    pd.testing.assert_frame_equal(found.runs, _without_blocks(monkeypatch, path))
    other = [r for r in records if r.get("matrix") == "other"]
    pd.testing.assert_frame_equal(read_store(path, "other").runs, load_runs(other).runs)
    subset = {r["case_id"] for r in records[1::4]}
    pd.testing.assert_frame_equal(read_store(path, case_ids=subset).runs,
                                  load_runs([r for r in records if r["case_id"] in subset]).runs)  # fmt: skip


def test_the_leaderboard_files_are_the_tables_files(tmp_path, small_blocks, monkeypatch):
    path = _store(tmp_path / "qbench.sqlite", make_records(seeds=3, datasets=("pydoc-char", "digits")))
    assert _blocks(path)
    rebuild_from_store(path, tmp_path / "blocks", "t", plots=False)
    with monkeypatch.context() as patch:
        patch.setattr(Projection, "blocks", lambda self, low=None, high=None: [])
        rebuild_from_store(path, tmp_path / "table", "t", plots=False)
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html"):
        assert (tmp_path / "blocks" / name).read_bytes() == (tmp_path / "table" / name).read_bytes(), name


def test_a_record_changed_in_any_way_is_never_read_from_a_stale_block(tmp_path, small_blocks, monkeypatch):
    records = _records()
    path = _store(tmp_path / "qbench.sqlite", records)
    before = set(_blocks(path))
    changed = dict(records[5], test_bpc=9.5)
    with Store(path) as store:  # qbench replaces a record (a new rowid: its old block is cleared, then rebuilt)
        store.replace(changed)
    pd.testing.assert_frame_equal(read_store(path).runs, load_runs(_current(path)).runs)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        # another writer changes a record's text: its block goes with its column row
        row = db.execute("SELECT rowid, record FROM records WHERE case_id = ?", (records[9]["case_id"],)).fetchone()
        text = json.loads(row[1])
        text["test_bpc"] = 1.25
        db.execute("UPDATE records SET record = ? WHERE rowid = ?", (json.dumps(text, sort_keys=True), row[0]))
        assert (row[0] - 1) // 4 not in _blocks(path)
        # a hand edit of the column table itself clears the block it belongs to
        row = db.execute("SELECT rowid, case_id FROM records WHERE rowid = 2").fetchone()
        db.execute("UPDATE record_columns SET sha256 = 'x' WHERE case_id = ?", (row[1],))
        assert 0 not in _blocks(path)
        # a deleted record takes its block along
        db.execute("DELETE FROM records WHERE rowid = 7")
        assert 1 not in _blocks(path)
    finally:
        db.close()
    assert before - set(_blocks(path))
    # what is left is read from the blocks, the rest from the table and the JSON: the records' frame
    with Store.read_only(path) as store:
        current = store.records(skip_damaged=True)
    found = read_store(path).runs
    assert len(found) == len(current)
    pd.testing.assert_frame_equal(found, _without_blocks(monkeypatch, path))


def test_an_unreadable_block_is_read_from_the_table(tmp_path, small_blocks, monkeypatch):
    records = _records()
    path = _store(tmp_path / "qbench.sqlite", records)
    db = sqlite3.connect(path, isolation_level=None)
    try:
        blobs = dict(db.execute("SELECT block, data FROM record_blocks"))
        db.execute("UPDATE record_blocks SET data = ? WHERE block = 1", (b"not a block",))
        db.execute("UPDATE record_blocks SET data = ? WHERE block = 2", (blobs[2][:-5],))  # truncated
        db.execute("UPDATE record_blocks SET data = ? WHERE block = 3", (blobs[3] + b"tail",))
    finally:
        db.close()
    pd.testing.assert_frame_equal(read_store(path).runs, load_runs(records).runs)


def test_two_processes_read_the_blocks_to_the_same_frame(tmp_path, small_blocks, monkeypatch):
    import os

    import qbench.leaderboard.compute.storeread as storeread
    from qbench.leaderboard.compute import forking

    if not (hasattr(os, "fork") and hasattr(os, "memfd_create")):
        pytest.skip("no fork or memfd_create on this platform")
    records = _records()
    path = _store(tmp_path / "qbench.sqlite", records)
    monkeypatch.setattr(forking.sys, "platform", "linux")
    monkeypatch.setattr(storeread, "PARALLEL_ROWS", 10)
    for share in (0.5, 0.33):  # split on the block edge nearest to the share
        monkeypatch.setattr(storeread, "PARENT_SHARE", share)
        pd.testing.assert_frame_equal(read_store(path).runs, load_runs(records).runs)


def test_a_store_is_changed_only_by_writing_records(tmp_path, small_blocks):
    path = tmp_path / "qbench.sqlite"
    Store(path).close()
    db = sqlite3.connect(path)
    names = {name for (name,) in db.execute("SELECT name FROM sqlite_master")}
    db.close()
    assert "record_blocks" not in names  # opened and closed: nothing of the blocks yet
    before = path.read_bytes()
    with Store.read_only(path) as store:
        store.records()
    assert path.read_bytes() == before
    _store(path, make_many(9))
    assert _blocks(path) == [0, 1]
    with Store(path) as store:  # the size is the store's: a qbench with another default keeps it
        assert storeblocks.size_of(store._db) == 4


@pytest.mark.parametrize("values", [
    [1.5, None, -0.0, 1e300, 5e-324],  # floats (NULL as NaN inside)
    [1, -(1 << 63), (1 << 63) - 1],  # integers
    ["a", None, "", "ünï \"q\" \n", "x"],  # text
    ["has \x1f the separator", "b", None],  # text holding the separator: JSON
    [1, 2.5, "three", None],  # mixed kinds: JSON
    [None, None],  # nothing
])  # fmt: skip
def test_a_block_gives_back_its_values(values):
    names = ["rowid", "value"]
    rows = [(i + 1, v) for i, v in enumerate(values)]
    count, columns = storeblocks.decode(storeblocks.encode(names, rows, 0, len(rows)))
    assert count == len(values)
    found = columns["value"]
    found = found.tolist() if isinstance(found, np.ndarray) else found
    expected = [v for v in values]
    if isinstance(columns["value"], np.ndarray) and columns["value"].dtype.kind == "f":
        found = [None if v != v else v for v in found]
    assert [json.dumps(v) for v in found] == [json.dumps(v) for v in expected]
    assert columns["rowid"].tolist() == list(range(1, len(values) + 1))


def test_a_block_holds_no_code_and_refuses_what_it_cannot_hold():
    assert storeblocks.encode(["rowid", "value"], [(1, b"bytes")], 0, 1) is None  # a hand-written BLOB
    blob = storeblocks.encode(["rowid"], [(1,), (2,)], 0, 2)
    assert b"pickle" not in blob and storeblocks.decode(blob) is not None
    for broken in (b"", b"junk", blob[:-1], blob + b"x", blob.replace(b'"count": 2', b'"count": 3')):
        assert storeblocks.decode(broken) is None
    assert storeblocks.decode(storeblocks.encode(["rowid"], [], 0, 4)) == (0, {"rowid": []})


def test_rowids_far_apart_make_no_empty_blocks(tmp_path, small_blocks, monkeypatch):
    records = make_many(12)
    path = _store(tmp_path / "qbench.sqlite", records[:6])
    db = sqlite3.connect(path, isolation_level=None)
    try:  # another writer puts a record at rowid 4,001 (SQLite numbers the next ones from there)
        db.execute("UPDATE records SET rowid = 4001 WHERE rowid = 6")
    finally:
        db.close()
    _store(path, records[6:])
    assert _blocks(path) == [0, 1, 1000]  # the closed blocks that hold records (rowid 5; 4,001-4,004), none of the gap
    pd.testing.assert_frame_equal(read_store(path).runs, _without_blocks(monkeypatch, path))
    pd.testing.assert_frame_equal(read_store(path).runs, load_runs(_current(path)).runs)


def test_a_read_sees_one_moment_while_a_writer_commits(tmp_path, small_blocks):
    """The read is many statements (blocks, then the table between them): a record replaced while it
    runs is read once, as it was when the read began."""
    records = _records()
    path = _store(tmp_path / "qbench.sqlite", records)
    with Store(path) as writer:  # open for writing: the reader shares SQLite's locks (no immutable read)
        assert Path(f"{path}-wal").exists()
        real_decode = storeblocks.decode
        written = []

        def decode_then_write(blob):
            if not written:  # the first block is being read: another process replaces a record of it
                writer.replace(dict(records[1], test_bpc=4.5))
                written.append(1)
            return real_decode(blob)

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(storeblocks, "decode", decode_then_write)
            found = read_store(path).runs
        assert written
        pd.testing.assert_frame_equal(found, load_runs(records).runs)


def test_a_block_that_fails_to_be_written_costs_no_record(tmp_path, small_blocks, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug in the blocks")

    monkeypatch.setattr(storeblocks, "encode", broken)
    records = make_many(10)
    path = _store(tmp_path / "qbench.sqlite", records)
    assert _blocks(path) == [] and len(_current(path)) == 10  # every record stored, no block
    pd.testing.assert_frame_equal(read_store(path).runs, load_runs(records).runs)
