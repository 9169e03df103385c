"""Repeated faults at random points, each round checked the same way (seeded: a failure reproduces).

A round starts a real driver on a tiny matrix and strikes once: SIGKILL to the driver, SIGKILL to
one worker, SIGINT to the process group (Ctrl-C), SIGTERM to the driver (a batch scheduler), or a
second driver on the same output folder. Strikes land at a random moment, or right after the last
case is stored, i.e. while the leaderboards are written. Then, every time: the store passes SQLite's
integrity check, holds only readable records of the matrix's cases, each once; the leaderboard set
on disk (if any) validates against the store; and the next run completes without re-running a
stored case. ``QBENCH_FAULT_ROUNDS=20`` runs more rounds by hand.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from qbench.cli import main
from tests.matrices import write_matrix_file

pytestmark = pytest.mark.slow

KINDS = ("kill-driver", "kill-worker", "sigint", "sigterm", "two-drivers")
ROUNDS = int(os.environ.get("QBENCH_FAULT_ROUNDS", "10"))
SEEDS = 3


def _matrix(directory: Path) -> Path:
    return write_matrix_file(directory, "rounds", seeds=range(SEEDS), epochs=1, batch=8, bptt=10, max_steps=10,
                             eval_tokens=100, hardware_tokens=50)  # fmt: skip


def _qbench(*args: str) -> list[str]:
    script = Path(sys.executable).with_name("qbench")
    return [str(script), *args] if script.exists() else [sys.executable, "-m", "qbench", *args]


def _start(matrix: Path, out: Path, *extra: str) -> subprocess.Popen:
    # a second driver waits for the first however loaded the machine is (the default wait is 600 s too)
    command = _qbench("run", "--matrix", str(matrix), "--out", str(out), "--no-progress", "--lock-wait", "600", *extra)
    return subprocess.Popen(command,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def _rows(out: Path) -> list[tuple[str, str]]:
    path = out / "qbench.sqlite"
    if not path.exists():
        return []
    try:
        with sqlite3.connect(path, timeout=10) as db:
            rows = list(db.execute("SELECT case_id, record FROM records"))
        db.close()
        return rows
    except sqlite3.OperationalError:  # the schema is being created
        return []


def _wait(condition, proc: subprocess.Popen, timeout: float = 60) -> bool:
    """Poll ``condition`` until it holds or the driver ends (False then)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None or time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


def _workers(proc: subprocess.Popen) -> list[psutil.Process]:
    """Pool workers: the children of the fork server, itself a child of the driver."""
    try:
        return [w for child in psutil.Process(proc.pid).children() for w in child.children()]
    except psutil.NoSuchProcess:
        return []


def _strike(kind: str, proc: subprocess.Popen, rng: random.Random, out: Path, matrix: Path) -> subprocess.Popen | None:
    if kind == "two-drivers":
        time.sleep(rng.uniform(0.0, 1.0))
        return _start(matrix, out)
    if kind == "kill-worker":
        _wait(lambda: bool(_workers(proc)), proc)
        time.sleep(rng.uniform(0.0, 0.8))
        workers = _workers(proc)
        if workers:
            rng.choice(workers).kill()
        return None
    if rng.random() < 0.5:  # while the leaderboards are written: right after the last record
        _wait(lambda: len(_rows(out)) >= SEEDS, proc)
    else:
        _wait(lambda: (out / "run.json").exists(), proc)
        time.sleep(rng.uniform(0.0, 1.5))
    if proc.poll() is None:
        if kind == "kill-driver":
            proc.kill()
        elif kind == "sigint":
            os.killpg(proc.pid, signal.SIGINT)
        else:
            proc.send_signal(signal.SIGTERM)
    return None


def _to_run(stderr: str) -> int:
    match = re.search(r"(\d+) to run", stderr)
    return int(match.group(1)) if match else 0


def _check_store(out: Path, case_ids: set[str]) -> dict[str, str]:
    with sqlite3.connect(out / "qbench.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = list(db.execute("SELECT case_id, status, record FROM records"))
    db.close()
    ids = [case_id for case_id, _, _ in rows]
    assert len(ids) == len(set(ids)), "a case stored twice"
    assert set(ids) <= case_ids, "a record of no case of the matrix"
    for case_id, status, text in rows:
        record = json.loads(text)
        assert record["case_id"] == case_id and record["status"] == status == "ok", record.get("error")
    return {case_id: text for case_id, _, text in rows}


def one_round(index: int, root: Path, capsys) -> str:
    from qbench.matrix import expand, load_matrix

    rng = random.Random(1500 + index)
    kind = KINDS[index % len(KINDS)]
    where = root / f"round{index}"
    where.mkdir()
    matrix = _matrix(where)
    case_ids = {c.case_id for c in expand(load_matrix(matrix))}
    out = where / "out"
    workers = "2" if kind in ("kill-worker", "sigint") or rng.random() < 0.5 else "1"
    proc = _start(matrix, out, "--workers", workers)
    twin = _strike(kind, proc, rng, out, matrix)
    drivers = [proc] if twin is None else [proc, twin]
    results = [p.communicate(timeout=600) for p in drivers]
    codes = [p.returncode for p in drivers]
    said = f"round {index} ({kind}): exit codes {codes}, stderr {[err for _, err in results]}"
    for _, err in results:
        assert "Traceback" not in err, said
    if kind == "kill-driver":
        assert codes[0] in (0, -signal.SIGKILL), said
    elif kind in ("sigint", "sigterm"):
        assert codes[0] in (0, 2), said
    else:
        assert set(codes) == {0}, said
    if kind == "two-drivers":
        assert sum(_to_run(err) for _, err in results) == SEEDS, f"a case trained twice: {said}"
    before = _check_store(out, case_ids)
    if (out / "leaderboard.json").exists():
        assert main(["validate", str(out)]) == 0, f"{said}: {capsys.readouterr()}"
    capsys.readouterr()
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0, said
    err = capsys.readouterr().err
    assert f"{len(before)} already stored" in err, said
    after = _check_store(out, case_ids)
    assert set(after) == case_ids, said
    assert all(after[case_id] == text for case_id, text in before.items()), f"a stored case was re-run: {said}"
    assert main(["validate", str(out)]) == 0, said
    assert not list(out.rglob(".qbench-tmp-*")), "a temporary file was left behind"
    return kind


def test_random_faults_lose_nothing_and_the_next_run_completes(tmp_path, data_cache, monkeypatch, capsys):
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    kinds = [one_round(index, tmp_path, capsys) for index in range(ROUNDS)]
    assert set(kinds) == set(KINDS) or ROUNDS < len(KINDS)


def test_two_drivers_on_one_folder_train_each_case_once(tmp_path, data_cache, monkeypatch, capsys):
    """Two drivers started together on one output folder, again and again.

    ``QBENCH_TWIN_ROUNDS`` rounds (2 by default: the random rounds above hold two more).
    """
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    for index in range(int(os.environ.get("QBENCH_TWIN_ROUNDS", "2"))):
        assert one_round(4 + index * len(KINDS), tmp_path, capsys) == "two-drivers"
