"""Reading a store straight into the leaderboard gives what the records themselves give."""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path

import pandas as pd
import pytest

from qbench.leaderboard import rebuild_from_store, write_leaderboards
from qbench.leaderboard.compute.frame import load_runs, record_sha256
from qbench.leaderboard.compute.storeread import read_store
from qbench.leaderboard.compute.tables import aggregate
from qbench.store import Store
from tests.synthetic import make_many, make_records


@pytest.fixture
def store(tmp_path):
    records = make_records(seeds=3, datasets=("pydoc-char", "digits")) + make_many(300)
    # A late record with a column no earlier record has: the sampled guess of columns misses it.
    late = make_records(seeds=1)[0]
    late.update(case_id="late", test_bleu=0.5, directions={**late["directions"], "test_bleu": "max"})
    records += [*make_many(4500)[300:], late]
    path = tmp_path / "qbench.sqlite"
    with Store(path) as db:
        for record in records:
            db.put(record)
    return path


def test_the_hash_of_the_stored_text_is_the_records_hash(store):
    # read_store hashes the store's text; that is only right while Store.put writes record_text.
    db = sqlite3.connect(store)
    for (text,) in db.execute("SELECT record FROM records LIMIT 50"):
        assert hashlib.sha256(text.encode()).hexdigest() == record_sha256(json.loads(text))
    db.close()


def test_store_frame_equals_the_frame_of_the_records(store):
    with Store(store) as db:
        records = db.records()
    expected, found = load_runs(records), read_store(store)
    pd.testing.assert_frame_equal(found.runs, expected.runs)
    assert "test_bleu" in found.value_columns and found.directions == expected.directions
    assert (found.descriptions, found.provenance) == (expected.descriptions, expected.provenance)
    assert [found.curves[i] for i in (0, 17, len(records) - 1)] == [expected.curves[i] for i in (0, 17, -1)]
    pd.testing.assert_frame_equal(aggregate(found), aggregate(expected))
    subset = {r["case_id"] for r in records[::3]}
    pd.testing.assert_frame_equal(
        read_store(store, case_ids=subset).runs, load_runs([r for r in records if r["case_id"] in subset]).runs
    )


def test_rebuild_from_store_writes_the_same_files(store, tmp_path):
    with Store(store) as db:
        records = db.records()
    a = write_leaderboards(records, tmp_path / "a", "same", plots=False)
    b = rebuild_from_store(store, tmp_path / "b", "same", plots=False)
    for path_a, path_b in zip(a, b, strict=True):
        assert path_a.name == path_b.name and path_a.read_bytes() == path_b.read_bytes(), path_a.name


def test_blocks_and_an_order_unlike_the_rows_give_the_records_frame(store, monkeypatch):
    """The store is read in blocks of CHUNK rows as they come; Store.records()' order (stored time,
    then case id) is restored afterwards, whatever order the rows come in."""
    import qbench.leaderboard.compute.storeread as storeread

    db = sqlite3.connect(store)
    with db:  # the newest rows first: the order of the rows is no longer that of the records
        db.execute("UPDATE records SET stored = 1e10 - stored")
    db.close()
    monkeypatch.setattr(storeread, "CHUNK", 997)
    with Store(store) as opened:
        records = opened.records()
    assert records[0]["case_id"] == "late"
    found, expected = read_store(store), load_runs(records)
    pd.testing.assert_frame_equal(found.runs, expected.runs)
    assert [found.curves[i] for i in (0, 1500, len(records) - 1)] == [expected.curves[i] for i in (0, 1500, -1)]


def test_two_processes_read_the_same_frame_as_one(store, monkeypatch):
    """A large store is read by a forked child (the upper part by rowid) and this process (the lower
    part); the frame is one reader's, also when the child fails (its part is then read here)."""
    import os

    import qbench.leaderboard.compute.storeread as storeread
    from qbench.leaderboard.compute import forking

    if not (hasattr(os, "fork") and hasattr(os, "memfd_create")):
        pytest.skip("no fork or memfd_create on this platform")
    monkeypatch.setattr(forking.sys, "platform", "linux")
    one = read_store(store)
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(forking.os, "fork", lambda: forks.append(1) or real_fork())
    monkeypatch.setattr(storeread, "PARALLEL_ROWS", 100)
    monkeypatch.setattr(storeread, "CHUNK", 997)
    calls = []  # the caller's work while the child reads: done once, here
    two = read_store(store, meanwhile=lambda: calls.append(os.getpid()))
    assert forks == [1] and calls == [os.getpid()]
    pd.testing.assert_frame_equal(two.runs, one.runs)
    assert (two.directions, two.value_columns, two.provenance) == (one.directions, one.value_columns, one.provenance)

    parent = os.getpid()
    real_read = storeread._ColumnRows.read

    def failing(self, db, rowids=(None, None)):
        if os.getpid() != parent:
            raise RuntimeError("the child fails")
        return real_read(self, db, rowids)

    monkeypatch.setattr(storeread._ColumnRows, "read", failing)
    pd.testing.assert_frame_equal(read_store(store).runs, one.runs)
    assert forks == [1, 1]
    Path(f"{store}-wal").write_bytes(b"")  # a writer has the store open: one reader, with SQLite's locks
    pd.testing.assert_frame_equal(read_store(store).runs, one.runs)
    assert forks == [1, 1]


def test_without_a_fork_or_a_memory_file_one_process_reads(store, monkeypatch):
    import os

    import qbench.leaderboard.compute.storeread as storeread
    from qbench.leaderboard.compute import forking

    if not hasattr(os, "memfd_create"):
        pytest.skip("no memfd_create on this platform")
    one = read_store(store)
    monkeypatch.setattr(forking.sys, "platform", "linux")
    monkeypatch.setattr(storeread, "PARALLEL_ROWS", 100)

    def refused(*args):
        raise OSError("refused")

    monkeypatch.setattr(forking.os, "fork", refused)  # no memory, too many processes
    calls = []
    pd.testing.assert_frame_equal(read_store(store, meanwhile=lambda: calls.append(1)).runs, one.runs)
    assert calls == [1]  # the caller's work is done all the same
    monkeypatch.setattr(storeread.os, "memfd_create", refused)  # a kernel or sandbox without it
    pd.testing.assert_frame_equal(read_store(store).runs, one.runs)
