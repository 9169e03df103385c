"""Executors: one switch, one record per case as cases finish, the same record whatever the executor.

The mechanics tests use small module-level fake runners (picklable by reference, so spawned pool
workers and Dask workers import them from this module); the Done-when test runs real cases
(``float`` x ``rnn`` hidden 16 x a 20,000-character ``pydoc-char``, a few training steps) through the real runner.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from qbench.errors import UsageError
from qbench.executors import get_executor
from qbench.executors.inprocess import InProcessExecutor
from qbench.executors.pool import ProcessPoolExecutor
from qbench.executors.runner import CaseRunner
from qbench.matrix import Case, Spec

from .matrices import write_matrix_file
from .runs import records_per_executor

pytestmark = pytest.mark.slow

def write_matrix(directory: Path, name: str = "tiny", seeds: int = 3, epochs: int = 1, max_steps: int = 4) -> Path:
    """A real but cheap matrix: one small RNN, a few training steps, on the embedded Python docs."""
    return write_matrix_file(directory, name, seeds=range(seeds), epochs=epochs, batch=16, bptt=20,
                             max_steps=max_steps, eval_tokens=400, hardware_tokens=100)


def real_cases(directory: Path, **kwargs: int) -> list[Case]:
    from qbench.matrix import expand, load_matrix

    return expand(load_matrix(write_matrix(directory, **kwargs)))


def fake_cases(n: int) -> list[Case]:
    return [Case(f"case{i:02d}", "fake", Spec("float"), Spec("rnn", {"hidden": 16}, ("hidden",)),
                 Spec("digits-rows"), (), i, {"epochs": 1}) for i in range(n)]


def fake_run(case: Case, device: str) -> dict:
    """A deterministic, torch-using stand-in for run_case (a record per case, seeded by the case); it
    leaves torch's threads as the bound runner set them, and records them."""
    import torch

    from qbench.case_runner import base_record

    generator = torch.Generator().manual_seed(case.seed)
    x = torch.randn(64, 64, generator=generator)
    for _ in range(20):
        x = torch.sin(x @ x.T / 64.0) + 0.1
    record = base_record(case)
    record.update(status="ok", value=float(x.sum()), pid=os.getpid(), threads=torch.get_num_threads())
    return record


def fake_run_raising_on_seed_2(case: Case, device: str) -> dict:
    if case.seed == 2:
        raise ValueError("seed 2 is cursed")
    return fake_run(case, device)


def comparable(record: dict) -> dict:
    """A record without what may differ between executors: timing fields, host and executor."""
    volatile = ("started", "finished")
    out = {k: v for k, v in record.items() if k not in volatile and not k.endswith(("seconds", "per_second"))}
    out["curve"] = [{k: v for k, v in point.items() if not k.endswith("seconds")} for point in record.get("curve", [])]
    out["provenance"] = {k: v for k, v in record.get("provenance", {}).items()
                         if k not in ("host", "executor", "workers")}
    return out


def test_switch_picks_executor_by_name_and_worker_count():
    ex = get_executor("local", 1)
    assert isinstance(ex, InProcessExecutor)
    pool = get_executor("local", 3, "cpu")
    assert isinstance(pool, ProcessPoolExecutor) and pool.workers == 3
    pool.close()


@pytest.mark.parametrize(("args", "message"), [
    (("nope", 1), "unknown executor 'nope'"),
    (("local", 0), "--workers must be at least 1"),
    (("local", 2, "tpu"), "--device 'tpu'"),
    (("local", 2, "cpu", "tcp://x:8786"), "--scheduler ADDR is only meaningful with --executor dask"),
])
def test_switch_rejects_bad_choices_with_a_usage_error(args, message):
    with pytest.raises(UsageError, match=message.replace("(", r"\(")):
        get_executor(*args)


def test_pool_yields_every_case_once_and_matches_in_process():
    cases = fake_cases(6)
    expected = {r["case_id"]: r for r in InProcessExecutor(CaseRunner(run=fake_run)).run(cases)}
    pool = ProcessPoolExecutor(2, CaseRunner(run=fake_run))
    try:
        records = list(pool.run(cases))
        again = list(pool.run(cases[:2]))  # a pool is reusable after a complete run
    finally:
        pool.close()
    assert sorted(r["case_id"] for r in records) == sorted(expected)
    assert len({r["pid"] for r in records}) == 2, "both workers took cases"
    assert os.getpid() not in {r["pid"] for r in records}
    assert all(r["threads"] == 1 for r in records), "one torch thread per worker by default"
    for record in records + again:
        assert record["value"] == expected[record["case_id"]]["value"]


def test_nothing_to_run_starts_no_worker():
    pool = ProcessPoolExecutor(2, CaseRunner(run=fake_run))
    assert list(pool.run([])) == [] and pool.pids == []
    pool.close()


def test_a_raising_case_is_an_error_record_and_the_others_go_on():
    pool = ProcessPoolExecutor(2, CaseRunner(run=fake_run_raising_on_seed_2))
    try:
        records = {r["seed"]: r for r in pool.run(fake_cases(4))}
    finally:
        pool.close()
    assert sorted(records) == [0, 1, 2, 3]
    assert records[2]["status"] == "error" and "seed 2 is cursed" in records[2]["error"]
    assert all(records[s]["status"] == "ok" for s in (0, 1, 3))


def test_same_case_and_seed_give_the_same_record_whatever_the_executor(tmp_path, data_cache, monkeypatch):
    """Done-when: identical records (except timing, host, executor) on 1 worker, on 2 processes, on Dask."""
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    cases = real_cases(tmp_path, seeds=3)
    runs = records_per_executor(cases)
    reference = runs["workers-1"]
    assert sorted(reference) == sorted(c.case_id for c in cases)
    assert all(r["status"] == "ok" for r in reference.values()), [r.get("error") for r in reference.values()]
    assert len({r["test_bpc"] for r in reference.values()}) == len(cases), "seeds give different models"
    for label, records in runs.items():
        assert sorted(records) == sorted(reference), label
        for case_id, record in records.items():
            assert comparable(record) == comparable(reference[case_id]), f"{label} differs on {case_id}"



def test_dask_runs_on_an_existing_scheduler_and_leaves_it_running(tmp_path, data_cache, monkeypatch):
    from dask.distributed import Client, LocalCluster

    from qbench.executors.dask_cluster import _fork_workers_from_server

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    cases = real_cases(tmp_path, seeds=2)
    _fork_workers_from_server()
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster:
        executor = get_executor("dask", 1, scheduler=cluster.scheduler_address)
        assert executor.cluster is None, "no cluster of its own when given a scheduler"
        try:
            records = list(executor.run(cases))
        finally:
            executor.close()
        assert sorted(r["case_id"] for r in records) == sorted(c.case_id for c in cases)
        assert all(r["status"] == "ok" for r in records)
        with Client(cluster) as client:  # closing the executor disconnected it, nothing more
            assert len(client.scheduler_info()["workers"]) == 1


def test_unreachable_scheduler_is_a_usage_error():
    from qbench.executors.dask_cluster import DaskExecutor

    with pytest.raises(UsageError, match="--scheduler tcp://127.0.0.1:9: cannot reach the Dask scheduler"):
        DaskExecutor(1, scheduler="tcp://127.0.0.1:9", connect_timeout=1)


def test_a_local_dask_cluster_starts_while_port_8787_is_taken(tmp_path, data_cache, monkeypatch):
    """Two qbench runs (or a notebook's cluster) on one machine must not collide on the scheduler's
    default HTTP port: it failed with 'Port 8787 is already in use'."""
    import socket

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    holder = socket.socket()
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        holder.bind(("127.0.0.1", 8787))
        holder.listen()
    except OSError:
        pass  # already taken by something else: the situation under test
    try:
        executor = get_executor("dask", 1)
        try:
            records = list(executor.run(real_cases(tmp_path, seeds=1)))
        finally:
            executor.close()
        assert [r["status"] for r in records] == ["ok"]
    finally:
        holder.close()


def test_a_bound_runner_prepares_each_dataset_once_for_all_its_cases(tmp_path, monkeypatch):
    """A worker prepared its dataset again for every case (reading the cache each time)."""
    from qbench.host import get_host

    cls = get_host().registry("dataset").get("pydoc-char").cls
    calls = []
    original = cls.prepare

    def counted(self, cache_dir):  # type: ignore[no-untyped-def]
        calls.append(cache_dir)
        return original(self, cache_dir)

    monkeypatch.setattr(cls, "prepare", counted)
    bound = CaseRunner().bind()
    records = [bound(case) for case in real_cases(tmp_path, seeds=2)]
    assert [r["status"] for r in records] == ["ok", "ok"]
    assert len(calls) == 1, "the second case reused what the first prepared"
