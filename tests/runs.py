"""Helpers shared by the tests that run cases: records by executor, the store as it is, a kill at a chosen point."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from qbench.executors import get_executor

#: The three ways of running cases whose records must be identical.
EXECUTORS = (("workers-1", "local", 1), ("workers-2", "local", 2), ("dask-2", "dask", 2))


def records_per_executor(cases: Sequence[Any]) -> dict[str, dict[str, dict]]:
    """{executor label: {case id: record}} for the same cases on 1 worker, 2 workers and Dask."""
    runs: dict[str, dict[str, dict]] = {}
    for label, name, workers in EXECUTORS:
        executor = get_executor(name, workers)
        try:
            runs[label] = {r["case_id"]: r for r in executor.run(cases)}
        finally:
            executor.close()
    return runs


def stored(out: Path) -> dict[str, dict]:
    """The records a run's store holds now ({} before the driver created it)."""
    if not (out / "qbench.sqlite").exists():
        return {}
    db = sqlite3.connect(out / "qbench.sqlite")
    try:
        return {case_id: json.loads(rec) for case_id, rec in db.execute("SELECT case_id, record FROM records")}
    except sqlite3.OperationalError:  # the driver has created the file but not yet the table
        return {}
    finally:
        db.close()


def kill_when(command: list[str], reached: Callable[[], bool], deadline: float = 240) -> None:
    """Start ``command`` in its own process group and SIGKILL the group once ``reached()`` holds."""
    proc = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        end = time.monotonic() + deadline
        while time.monotonic() < end:
            if reached():
                break
            if proc.poll() is not None:
                pytest.fail("the run finished before it could be killed; make the cases longer")
            time.sleep(0.05)
        else:
            pytest.fail("the run did not get far enough in time")
        os.killpg(proc.pid, signal.SIGKILL)
    finally:
        proc.wait(timeout=30)
