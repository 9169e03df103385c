"""Reliability units: the driver lock, atomic writes, the store's busy timeout and damaged records,
string values in a value column, NaN parameters, exclude rules, and the per-case time limit.

The end-to-end faults (kills, signals, two drivers) are in ``test_fault_rounds.py``; the bad
inputs (exit 4, one message, store unchanged) in ``test_bad_inputs.py``.
"""

from __future__ import annotations

import json
import math
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from qbench.atomicio import TEMP_PREFIX, StagedFiles, write_text
from qbench.errors import ParamError, UsageError
from qbench.params import Param
from qbench.runlock import DriverLock
from qbench.store import DamagedRecords, Store
from tests.matrices import matrix_toml, write_matrix_file


def _record(case_id: str, seed: int, **values) -> dict:
    return {"case_id": case_id, "matrix": "m", "status": "ok", "seed": seed, "dataset": "d", "cell": "rnn",
            "quantizer": "float", "test_bpc": 2.0 + seed, "directions": {"test_bpc": "min"}, **values}  # fmt: skip


# ---- 1. one driver per folder, unique temporary names, a busy timeout that covers WAL --------------

def test_a_second_driver_lock_names_the_holder_and_gives_up_after_its_wait(tmp_path):
    with DriverLock(tmp_path):
        with pytest.raises(UsageError) as caught:
            DriverLock(tmp_path, wait=0).acquire()
    message = str(caught.value)
    assert f"pid {os.getpid()}" in message and "started" in message and "another qbench run" in message
    DriverLock(tmp_path, wait=0).acquire()  # released at the end of the block: free again


def test_a_waiting_driver_says_so_once_and_takes_the_lock_when_it_is_free(tmp_path):
    first = DriverLock(tmp_path)
    first.acquire()
    said: list[str] = []
    second = DriverLock(tmp_path, wait=30, echo=said.append, poll=0.01)
    calls = 0

    def sleep_then_release(seconds: float) -> None:  # the holder finishes while the second one waits
        nonlocal calls
        calls += 1
        if calls == 3:
            first.release()

    import qbench.runlock as runlock

    real_sleep = runlock.time.sleep
    runlock.time.sleep = sleep_then_release  # type: ignore[assignment]
    try:
        second.acquire()
    finally:
        runlock.time.sleep = real_sleep  # type: ignore[assignment]
        second.release()
    assert len(said) == 1 and "waiting up to 30 s" in said[0]


def test_two_writers_never_share_a_temporary_name(tmp_path, monkeypatch):
    target = tmp_path / "run.json"
    seen: list[str] = []
    real_replace = os.replace

    def spy(src, dst):
        seen.append(str(src))
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", spy)
    write_text(target, "one")
    write_text(target, "two")
    assert target.read_text() == "two"
    assert len(set(seen)) == 2 and all(Path(s).name.startswith(TEMP_PREFIX) for s in seen)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_store_locked_by_another_process_is_not_called_unreadable(tmp_path):
    path = tmp_path / "qbench.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # a fresh file, locked before the store could switch it to WAL
    try:
        with pytest.raises(UsageError) as caught:
            Store(path, busy_timeout=0.3)
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert "locked by another process" in str(caught.value)
    assert "not a readable" not in str(caught.value)
    with Store(path) as store:  # free again: it opens
        assert len(store) == 0


# ---- 2. damaged records ---------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "problem"), [
    ('{"case_id": "b", "sta', "not valid JSON"),
    ("[1, 2]", "the JSON is a list"),
    ('"just text"', "the JSON is a str"),
    ('{"status": "ok"}', "no 'case_id'"),
    ('{"case_id": "b"}', "no 'status'"),
    ('{"case_id": "zz", "status": "ok"}', "its row says 'b'"),
])  # fmt: skip
def test_a_damaged_record_is_named_and_can_be_skipped(tmp_path, text, problem):
    with Store(tmp_path / "qbench.sqlite") as store:
        store.put(_record("a", 0))
        store.put(_record("b", 1))
        store.put(_record("c", 2, test_bpc=math.nan))  # NaN: readable, not damaged
        store._db.execute("UPDATE records SET record = ? WHERE case_id = 'b'", (text,))
        damage = store.damaged()
        assert [d.case_id for d in damage] == ["b"] and problem in damage[0].problem
        with pytest.raises(DamagedRecords, match="case b"):
            store.records()
        assert [r["case_id"] for r in store.records(skip_damaged=True)] == ["a", "c"]


def test_the_leaderboard_fast_path_leaves_damaged_rows_out_when_asked(tmp_path):
    from qbench.leaderboard.compute.storeread import read_store

    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        for i in range(3):
            store.put(_record(f"r{i}", i))
        store._db.execute("UPDATE records SET record = substr(record, 1, 30) WHERE case_id = 'r1'")
    with pytest.raises(DamagedRecords, match="case r1"):
        read_store(path)
    assert read_store(path, skip_damaged=True).runs["case_id"].tolist() == ["r0", "r2"]


@pytest.mark.slow
def test_the_next_run_reports_a_damaged_record_and_runs_its_case_again(tmp_path, data_cache, monkeypatch, capsys):
    from qbench.cli import main

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    matrix = write_matrix_file(tmp_path, "damaged", seeds=[0, 1], epochs=1, batch=8, bptt=10, max_steps=2,
                               eval_tokens=100, hardware_tokens=50)  # fmt: skip
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    with sqlite3.connect(out / "qbench.sqlite") as db:
        victim, good = [row[0] for row in db.execute("SELECT case_id FROM records ORDER BY case_id")]
        kept = db.execute("SELECT record FROM records WHERE case_id = ?", (good,)).fetchone()[0]
        db.execute("UPDATE records SET record = substr(record, 1, 50) WHERE case_id = ?", (victim,))
    db.close()
    capsys.readouterr()
    assert main(["leaderboard", "--store", str(out)]) == 4
    assert f"case {victim}: not valid JSON" in capsys.readouterr().err
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert f"the record of case {victim} is damaged" in err and "1 already stored, 1 to run" in err
    with Store(out / "qbench.sqlite") as store:
        assert not store.damaged()
        records = {r["case_id"]: r for r in store.records()}
    assert records[victim]["status"] == "ok"
    assert json.dumps(records[good], sort_keys=True, allow_nan=True) == kept, "the good record was not re-run"
    assert main(["validate", str(out)]) == 0


# ---- 4. a string in a value column (pandas 3's str dtype) ------------------------------------------

def test_a_string_in_a_value_column_is_a_missing_value_not_a_crash(tmp_path):
    from qbench.leaderboard import load_runs, write_leaderboards

    records = [_record("a", 0, test_bpc="oops"), _record("b", 1, test_bpc="n/a")]  # every value a string
    frame = load_runs(records)
    assert frame.runs["test_bpc"].isna().all()
    mixed = load_runs([_record("a", 0), _record("b", 1, test_bpc="oops")])
    assert mixed.runs["test_bpc"].tolist()[0] == 2.0 and math.isnan(mixed.runs["test_bpc"].tolist()[1])
    assert write_leaderboards(records, tmp_path, "strings", plots=False)


# ---- 6. the leaderboard set is written as one --------------------------------------------------------

def test_an_interrupted_leaderboard_write_leaves_the_previous_set_whole(tmp_path, monkeypatch):
    from qbench.leaderboard import write_leaderboards
    from qbench.leaderboard.audit.validate import validate_directory
    from qbench.leaderboard.render import writers

    write_leaderboards([_record("a", 0), _record("b", 1)], tmp_path, "first", plots=False)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(writers, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_leaderboards([_record("a", 0), _record("b", 1), _record("c", 2)], tmp_path, "second", plots=False)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before, "old set intact, no temporary file"
    report = validate_directory(tmp_path)  # no store here: consistent, and said to be untraced (issue 26)
    assert report.untraced and [p for p in report.problems if not p.startswith("store: no store file")] == []


def test_staged_files_rename_together_or_not_at_all(tmp_path):
    with StagedFiles() as staged:
        staged.path(tmp_path / "a.txt").write_text("a")
        assert staged.source(tmp_path / "a.txt").read_text() == "a"
        assert not (tmp_path / "a.txt").exists()
    assert list(tmp_path.iterdir()) == [], "discarded without commit"
    with StagedFiles() as staged:
        staged.path(tmp_path / "a.txt").write_text("a")
        staged.path(tmp_path / "b.txt").write_text("b")
        staged.commit()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


# ---- 7. NaN and infinities ---------------------------------------------------------------------------

@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_bounded_float_parameter_rejects_nan_and_infinities(value):
    with pytest.raises(ParamError, match="finite number"):
        Param(float, 1.0, min=0.0).check("[train]", "lr", value)
    with pytest.raises(ParamError, match="finite number"):
        Param(float, 1.0).check("[train]", "grad_clip", value)


# ---- 11. the per-case time limit ----------------------------------------------------------------------

def test_limits_table_sets_the_case_timeout_without_changing_case_ids(tmp_path):
    from qbench.matrix import expand, load_matrix

    plain = tmp_path / "plain.toml"
    plain.write_text(matrix_toml("lim", seeds=[0, 1]))
    limited = tmp_path / "limited.toml"
    limited.write_text(matrix_toml("lim", seeds=[0, 1]) + "\n[limits]\ncase_timeout = 600\n")
    assert load_matrix(plain).case_timeout is None
    assert load_matrix(limited).case_timeout == 600.0
    assert [c.case_id for c in expand(load_matrix(plain))] == [c.case_id for c in expand(load_matrix(limited))]


def hang_on_seed_1(case, device: str) -> dict:
    """Seed 1 hangs (sleeps far past any limit); the others finish at once."""
    from qbench.case_runner import base_record

    if case.seed == 1:
        time.sleep(600)
    record = base_record(case)
    record.update(status="ok", pid=os.getpid())
    return record


def _hanging_runner(case_timeout: float):  # type: ignore[no-untyped-def]
    from qbench.executors.policy import CasePolicy
    from qbench.executors.runner import CaseRunner

    return CaseRunner(run=hang_on_seed_1, policy=CasePolicy(case_timeout=case_timeout))


def _fake_cases(n: int):
    from tests.test_executors import fake_cases

    return fake_cases(n)


def test_in_process_time_limit_records_a_timeout_and_goes_on():
    from qbench.executors.inprocess import InProcessExecutor

    records = list(InProcessExecutor(_hanging_runner(0.5)).run(_fake_cases(3)))
    by_seed = {r["seed"]: r for r in records}
    assert by_seed[1]["status"] == "error" and by_seed[1]["error"].startswith("timeout:")
    assert by_seed[0]["status"] == by_seed[2]["status"] == "ok"


@pytest.mark.slow
def test_pool_time_limit_kills_the_worker_and_replaces_it():
    from qbench.executors.pool import ProcessPoolExecutor

    pool = ProcessPoolExecutor(2, _hanging_runner(3.0))
    try:
        records = list(pool.run(_fake_cases(4)))
    finally:
        pool.close()
    by_seed = {r["seed"]: r for r in records}
    assert sorted(by_seed) == [0, 1, 2, 3]
    assert by_seed[1]["status"] == "error" and "timeout" in by_seed[1]["error"] and "replaced" in by_seed[1]["error"]
    assert all(by_seed[s]["status"] == "ok" for s in (0, 2, 3))



def _alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    return "\nState:\tZ" not in status  # a zombie is dead, waiting to be reaped


@pytest.mark.slow
def test_dask_time_limit_cancels_the_case_and_restarts_its_worker():
    """It was a usage error ('not supported with --executor dask'): a hung case held its worker forever."""
    from qbench.executors.dask_cluster import DaskExecutor

    executor = DaskExecutor(2, _hanging_runner(3.0))
    try:
        before = executor.pids
        records = list(executor.run(_fake_cases(4)))
        after = executor.pids
    finally:
        executor.close()
    by_seed = {r["seed"]: r for r in records}
    assert sorted(by_seed) == [0, 1, 2, 3]
    assert by_seed[1]["status"] == "error" and by_seed[1]["error"].startswith("timeout:")
    assert "3 s limit" in by_seed[1]["error"] and "was restarted" in by_seed[1]["error"]
    assert all(by_seed[s]["status"] == "ok" for s in (0, 2, 3))
    assert len(set(before) - set(after)) == 1, "the worker that ran the hung case is replaced, the other kept"
    assert not any(_alive(pid) for pid in {*before, *after}), "no worker process is left behind"

# ---- 5. SIGTERM like Ctrl-C -----------------------------------------------------------------------------

@pytest.mark.slow
def test_sigterm_stops_the_driver_like_ctrl_c(tmp_path, data_cache):
    matrix = write_matrix_file(tmp_path, "term", seeds=range(6), epochs=4, batch=16, bptt=20, max_steps=60,
                               eval_tokens=400, hardware_tokens=100)  # fmt: skip
    out = tmp_path / "out"
    script = Path(sys.executable).with_name("qbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "qbench"]
    proc = subprocess.Popen([*command, "run", "--matrix", str(matrix), "--out", str(out), "--workers", "2",
                             "--no-progress"], env={**os.environ, "QBENCH_DATA": str(data_cache)},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while True:
        try:
            with sqlite3.connect(out / "qbench.sqlite", timeout=10) as db:
                if db.execute("SELECT COUNT(*) FROM records").fetchone()[0]:
                    break
        except sqlite3.OperationalError:
            pass
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2, stderr
    assert "terminated (SIGTERM)" in stderr and "Traceback" not in stderr
    assert (out / "leaderboard.json").is_file(), "leaderboards written for the finished cases"
    from qbench.cli import main

    assert main(["validate", str(out)]) == 0
