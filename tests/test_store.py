"""The SQLite store: one transaction per record, idempotent puts, resume planning."""

from __future__ import annotations

import sqlite3

import pytest

from qbench import UsageError
from qbench.driver import plan
from qbench.matrix import Case, Spec
from qbench.store import Store


def record(case_id, status="ok", **extra):
    return {"case_id": case_id, "matrix": "m", "status": status, "test_bpc": 1.5, **extra}


def test_put_is_committed_and_idempotent(tmp_path):
    path = tmp_path / "qbench.sqlite"
    store = Store(path)
    assert store.put(record("a"))
    assert not store.put(record("a", test_bpc=9.0))  # a stored case is never overwritten by put
    # another connection sees the committed row at once: nothing waits for close()
    other = sqlite3.connect(path)
    assert other.execute("SELECT COUNT(*) FROM records").fetchone()[0] == 1
    other.close()
    store.replace(record("a", "error"))
    assert store.records()[0]["status"] == "error"
    assert store.stored_ids() == {"a"} and store.stored_ids(("ok",)) == set()
    store.close()


def test_records_round_trip_nan_and_nested(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        store.put(record("b", curve=[{"epoch": 1, "valid_bpc": float("nan")}], provenance={"x": [1, 2]}))
        (back,) = store.records()
    assert back["provenance"] == {"x": [1, 2]}
    assert back["curve"][0]["valid_bpc"] != back["curve"][0]["valid_bpc"]  # NaN survives


def test_records_filter_by_matrix(tmp_path):
    with Store(tmp_path / "s.sqlite") as store:
        store.put(record("a"))
        store.put({**record("b"), "matrix": "other"})
        assert [r["case_id"] for r in store.records("other")] == ["b"]
        assert len(store) == 2


def test_not_a_store_is_a_usage_error(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(UsageError, match="not a readable qbench store"):
        Store(junk)
    with pytest.raises(UsageError, match="no qbench store here"):
        Store(tmp_path / "missing.sqlite", create=False)


def _case(case_id):
    spec = Spec("x", {})
    return Case(case_id, "m", spec, spec, spec, (), 0, {})


def test_plan_skips_done_and_reruns_errors(tmp_path):
    cases = [_case(i) for i in "abcd"]
    with Store(tmp_path / "s.sqlite") as store:
        store.put(record("a"))
        store.put(record("b", "diverged"))
        store.put(record("c", "error"))
        done = store.statuses()
        assert store.count() == 3 and store.count("m") == 3 and store.matrices() == ["m"]
    assert [c.case_id for c in plan(cases, done).pending] == ["c", "d"]
    assert [c.case_id for c in plan(cases, done, resume=False).pending] == ["a", "b", "c", "d"]
