"""The store's column table (qbench.storecolumns): written with each record, read by the leaderboard.

What must hold: a store read through the column table gives the frame its records give, whatever
the values (booleans, NaN, integers SQLite cannot hold, -0.0, text SQLite cannot hold, a key
only a late record has); a record changed behind qbench's back is never read from a stale row;
an older store gets its rows on a writable open and is read from its JSON until then; a record
whose row cannot be written is stored all the same.
"""

from __future__ import annotations

import json
import math
import sqlite3

import pandas as pd
import pytest

from qbench import storecolumns
from qbench.leaderboard import rebuild_from_store, write_leaderboards
from qbench.leaderboard.compute.frame import load_runs
from qbench.leaderboard.compute.storeread import read_store
from qbench.store import Projection, Store
from tests.synthetic import make_many, make_records


def _odd_records() -> list[dict]:
    records = make_records(seeds=3, datasets=("pydoc-char", "digits"))
    records[0]["test_bpc"] = math.nan  # NaN: no SQLite number holds it
    records[1]["adds"] = 1 << 70  # beyond SQLite's 64-bit integers
    records[2]["shifts"] = -0.0  # SQLite would give back 0.0
    records[3]["note"] = "lone \udc80 surrogate"  # JSON holds it, SQLite's text cannot
    records[4]["sim_exact"] = True  # a boolean must stay one (not SQLite's 1)
    records[5]["test_bpc"] = 7  # an int where the others have floats
    late = dict(records[-1], case_id="late", test_bleu=0.5)
    late["directions"] = {**late["directions"], "test_bleu": "max"}
    return [*records, late]


def _columns_ready(path) -> bool:
    with Projection(path) as projection:
        return projection.columns_ready()


def test_the_column_table_gives_the_frame_the_records_give(tmp_path):
    records = _odd_records()
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        assert store.put_many(records) == len(records)
        assert [json.dumps(r, sort_keys=True) for r in store.records()] == [json.dumps(r, sort_keys=True)
                                                                           for r in records]  # fmt: skip
    assert _columns_ready(path)
    found, expected = read_store(path), load_runs(records)
    pd.testing.assert_frame_equal(found.runs, expected.runs)
    assert "test_bleu" in found.value_columns and found.directions == expected.directions
    assert (found.descriptions, found.provenance) == (expected.descriptions, expected.provenance)
    assert [found.curves[i] for i in range(len(records))] == [r["curve"] for r in records]
    subset = {r["case_id"] for r in records[::2]}
    pd.testing.assert_frame_equal(read_store(path, case_ids=subset).runs,
                                  load_runs([r for r in records if r["case_id"] in subset]).runs)  # fmt: skip


def test_the_same_files_as_from_the_records(tmp_path):
    records = make_records(seeds=3, datasets=("pydoc-char", "digits")) + make_many(200)
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put_many(records)
    assert _columns_ready(path)
    a = write_leaderboards(records, tmp_path / "a", "same", plots=False)
    b = rebuild_from_store(path, tmp_path / "b", "same", plots=False)
    for path_a, path_b in zip(a, b, strict=True):
        assert path_a.read_bytes() == path_b.read_bytes(), path_a.name


def test_shared_json_values_are_stored_once(tmp_path):
    records = make_many(300)
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put_many(records)
    db = sqlite3.connect(path)
    texts = db.execute("SELECT COUNT(*) FROM record_texts").fetchone()[0]
    distinct = len({storecolumns.compact(r["directions"]) for r in records})
    db.close()
    assert distinct <= 3 and texts < 100  # directions, train recipes, parameters: a few each, not 300 of each


def test_a_record_changed_behind_qbench_is_read_from_its_json(tmp_path):
    records = make_records(seeds=2)
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put_many(records)
    changed = dict(records[0], test_bpc=9.5)
    db = sqlite3.connect(path)
    with db:  # what an older qbench, or a hand edit, does: no column row written
        db.execute("UPDATE records SET record = ? WHERE case_id = ?",
                   (json.dumps(changed, sort_keys=True), changed["case_id"]))  # fmt: skip
    db.close()
    assert not _columns_ready(path)  # the trigger removed the stale row
    expected = load_runs([changed, *records[1:]])
    pd.testing.assert_frame_equal(read_store(path).runs, expected.runs)
    with Store(path):  # a writable open writes the missing row
        pass
    assert _columns_ready(path)
    pd.testing.assert_frame_equal(read_store(path).runs, expected.runs)


def test_an_older_store_is_migrated_on_a_writable_open_only(tmp_path):
    records = make_records(seeds=2)
    path = tmp_path / "qbench.sqlite"
    db = sqlite3.connect(path)  # the layout an older qbench wrote: no column table
    db.executescript("CREATE TABLE records (case_id TEXT PRIMARY KEY, matrix TEXT NOT NULL, status TEXT NOT NULL, "
                     "stored REAL NOT NULL, record TEXT NOT NULL); CREATE TABLE meta (key TEXT PRIMARY KEY, "
                     "value TEXT NOT NULL);")  # fmt: skip
    with db:
        db.executemany("INSERT INTO records VALUES (?, ?, ?, ?, ?)",
                       [(r["case_id"], r["matrix"], r["status"], i, json.dumps(r, sort_keys=True))
                        for i, r in enumerate(records)])  # fmt: skip
    db.close()
    expected = load_runs(records)
    pd.testing.assert_frame_equal(read_store(path).runs, expected.runs)  # read from the JSON
    assert not _columns_ready(path)  # and nothing written by reading
    with Store(path):
        pass
    assert _columns_ready(path)
    pd.testing.assert_frame_equal(read_store(path).runs, expected.runs)


def test_replace_rewrites_the_row(tmp_path):
    records = make_records(seeds=2)
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put_many(records)
        store.replace(dict(records[0], test_bpc=9.5))
    assert _columns_ready(path)
    assert read_store(path).runs.set_index("case_id").loc[records[0]["case_id"], "test_bpc"] == 9.5


def test_a_record_whose_row_cannot_be_written_is_stored_all_the_same(tmp_path, monkeypatch):
    records = make_records(seeds=2)
    path = tmp_path / "qbench.sqlite"

    def refuse(self, record, text):
        raise sqlite3.OperationalError("too many columns on record_columns")

    with Store(path) as store:
        store.put_many(records[:-1])
        monkeypatch.setattr(storecolumns.Columns, "write", refuse)
        assert store.put(records[-1])
        monkeypatch.undo()
        assert store.records() == records
    assert not _columns_ready(path)
    pd.testing.assert_frame_equal(read_store(path).runs, load_runs(records).runs)


@pytest.mark.parametrize("value", ["text", "", 3, -(1 << 63), 2.5, None, "é"])
def test_native_values(value):
    assert storecolumns.is_native(value)


@pytest.mark.parametrize("value", [True, math.nan, math.inf, -0.0, 1 << 63, "\udc80", [1], {"a": 1}])
def test_values_kept_as_json(value):
    assert not storecolumns.is_native(value)


def test_the_column_path_restores_the_records_order_across_blocks(tmp_path, monkeypatch):
    """Rows come in blocks of CHUNK in no particular order; the frame is in Store.records()' order."""
    import itertools

    import qbench.leaderboard.compute.storeread as storeread
    import qbench.store as store_module

    records = make_many(60)
    path = tmp_path / "qbench.sqlite"
    countdown = itertools.count(1e9, -1.0)  # each record stored "earlier" than the one before
    monkeypatch.setattr(store_module.time, "time", lambda: next(countdown))
    with Store(path) as store:
        store.put_many(records)
        in_order = store.records()
    monkeypatch.undo()
    assert in_order[0]["case_id"] == records[-1]["case_id"]
    monkeypatch.setattr(storeread, "CHUNK", 7)
    assert _columns_ready(path)
    found = read_store(path)
    pd.testing.assert_frame_equal(found.runs, load_runs(in_order).runs)
    assert [found.curves[i] for i in (0, 59)] == [in_order[0]["curve"], in_order[59]["curve"]]
