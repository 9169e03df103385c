"""The driver of ``qbench run``: matrix -> cases -> plan against the store -> executor -> store -> leaderboards.

Only this module writes the store, one transaction per finished case, so that a killed driver,
worker or case loses nothing already computed.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from qbench.errors import ExitCode, UsageError
from qbench.matrix import Case, Matrix, expand, load_matrix
from qbench.store import Store

#: Stored statuses that count as done; an ``error`` is re-run by the next run (it may be transient).
DONE_STATUSES = ("ok", "diverged")
FAILED_STATUSES = ("diverged", "error")


@dataclass
class RunOptions:
    out: Path | None = None
    workers: int | None = None  # None: one per available core, at most one per pending case
    executor: str = "local"
    scheduler: str | None = None
    device: str = "cpu"
    dry_run: bool = False
    resume: bool = True
    exitfirst: bool = False
    progress: bool = True
    lock_wait: float = 60.0  # how long to wait for another driver on the same output folder (seconds)
    case_timeout: float | None = None  # per-case time limit in seconds (None: the matrix's [limits], or none)


@dataclass
class Plan:
    """Cases of a matrix split by what the store already holds."""

    cases: list[Case]
    pending: list[Case]
    stored: dict[str, str] = field(default_factory=dict)  # case_id -> stored status


def plan(cases: Sequence[Case], done: dict[str, str], resume: bool = True) -> Plan:
    """Pure: which cases still need to run given ``done`` (case id -> stored status)."""
    if not resume:
        return Plan(list(cases), list(cases), done)
    pending = [case for case in cases if done.get(case.case_id) not in DONE_STATUSES]
    return Plan(list(cases), pending, done)


def auto_workers(pending: int) -> int:
    """One worker per core this process may use, but no more than there are cases to run."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, pending))


def default_out_dir(matrix: Matrix) -> Path:
    return Path("results") / matrix.name


def case_table(cases: Sequence[Case], stored: dict[str, str]) -> str:
    """The ``--dry-run`` table: one row per case with its stored status or ``pending``."""
    from tabulate import tabulate

    rows = [
        (c.case_id, c.dataset.label, c.cell.label, c.quantizer.label, c.seed, stored.get(c.case_id, "pending"))
        for c in cases
    ]
    return tabulate(rows, headers=("case", "dataset", "cell", "quantizer", "seed", "status"))


def check_datasets(matrix: Matrix, echo: Callable[[str], None]) -> dict[str, str]:
    """Prepare every dataset of the matrix in the driver, before any training (usage errors surface now)."""
    from qbench.datacache import cache_dir
    from qbench.host import default_host

    fingerprints: dict[str, str] = {}
    for spec in matrix.datasets:
        dataset = default_host().create("dataset", spec.name, **spec.params)
        echo(f"dataset {spec.label}: preparing / verifying")
        data = dataset.prepare(str(cache_dir()))
        fingerprints[spec.label] = data.fingerprint
    return fingerprints


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from qbench.atomicio import write_text

    write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def write_outputs(store: Store, out: Path, title: str, case_ids: set[str] | None) -> list[Path]:
    """Leaderboards from the store (only the matrix's current cases when ``case_ids`` is given).

    Damaged records were reported when the run started; they are left out here.
    """
    from qbench.leaderboard import rebuild_from_store

    present = store.done_ids()
    if not (present & case_ids if case_ids is not None else present):
        return []
    return list(rebuild_from_store(store.path, out, title, case_ids=case_ids, skip_damaged=True))


def report_damaged(store: Store, stored: dict[str, str], echo: Callable[[str], None]) -> dict[str, str]:
    """Name every damaged record and mark it ``damaged`` in ``stored``: the plan runs its case again,
    and its new record replaces the damaged row."""
    marked = dict(stored)
    for item in store.damaged():
        echo(f"store: the record of case {item.case_id} is damaged ({item.problem}); it is left out of the "
             "leaderboards and its case is run again")  # fmt: skip
        marked[item.case_id] = "damaged"
    return marked


def run(matrix_path: str | Path, options: RunOptions, stream: TextIO | None = None) -> ExitCode:
    """Run a matrix end to end and return the exit code (usage errors raise :class:`UsageError`)."""
    stream = stream or sys.stderr

    def echo(message: str) -> None:
        print(message, file=stream, flush=True)

    matrix = load_matrix(matrix_path)
    cases = expand(matrix)
    if not cases:
        raise UsageError(f"{matrix.path}: the excludes remove every case; nothing to run")
    out = options.out or default_out_dir(matrix)
    if options.workers is not None and options.workers < 1:
        raise UsageError(f"--workers must be at least 1, got {options.workers}")

    if options.dry_run:
        store_path = out / "qbench.sqlite"
        stored: dict[str, str] = {}
        if store_path.is_file():
            with Store(store_path) as store:
                stored = store.statuses()
        print(case_table(cases, stored), file=sys.stdout)
        pending = plan(cases, stored, options.resume).pending
        echo(f"{len(cases)} cases, {len(pending)} to run, {len(cases) - len(pending)} stored ({out})")
        return ExitCode.OK

    from qbench.executors import get_executor
    from qbench.interrupts import sigterm_as_interrupt
    from qbench.outdir import prepare_out_dir
    from qbench.runlock import DriverLock

    case_timeout = options.case_timeout if options.case_timeout is not None else matrix.case_timeout
    prepare_out_dir(out)  # before any dataset is prepared: a bad --out costs nothing
    with sigterm_as_interrupt(), DriverLock(out, options.lock_wait, echo):
        fingerprints = check_datasets(matrix, echo)
        store = Store.in_dir(out)
        executor = None
        try:
            the_plan = plan(cases, report_damaged(store, store.statuses(), echo), options.resume)
            options.workers = options.workers or auto_workers(len(the_plan.pending))
            executor = get_executor(options.executor, options.workers, options.device, options.scheduler,
                                    case_timeout=case_timeout)  # fmt: skip
            _write_json(out / "run.json", {
                "matrix": matrix.name, "matrix_path": str(matrix.path), "matrix_hash": matrix.digest,
                "description": matrix.description, "cases": len(cases), "case_ids": [c.case_id for c in cases],
                "dataset_fingerprints": fingerprints, "executor": options.executor, "workers": options.workers,
                "device": options.device, "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "case_timeout": case_timeout,
            })
            skipped, todo = len(cases) - len(the_plan.pending), len(the_plan.pending)
            echo(f"{matrix.name}: {len(cases)} cases, {skipped} already stored, {todo} to run -> {out}")
            code = _execute(the_plan, executor, store, matrix, options, echo)
            executor.close()  # workers stop before the leaderboards are written (a SIGTERM now finds none)
            try:
                written = write_outputs(store, out, matrix.name, {c.case_id for c in cases})
            except KeyboardInterrupt:
                echo("interrupted while writing the leaderboards: the previous set is left as it was; "
                     f"`qbench leaderboard --out {out}` rebuilds them from the store")  # fmt: skip
                return ExitCode.INTERRUPTED
            if written:
                echo(f"leaderboards: {', '.join(str(p) for p in written if p.parent == out)}")
            if code is not ExitCode.OK:
                return code
            statuses = store.statuses()
            failed = [c for c in cases if statuses.get(c.case_id) in FAILED_STATUSES]
            return ExitCode.CASES_FAILED if failed else ExitCode.OK
        finally:
            store.close()
            if executor is not None:
                executor.close()


def _execute(the_plan: Plan, executor: Any, store: Store, matrix: Matrix, options: RunOptions,
             echo: Callable[[str], None]) -> ExitCode:
    from tqdm import tqdm

    from qbench.interrupts import Terminated

    counts: Counter[str] = Counter()
    bar = tqdm(total=len(the_plan.pending), unit="case", disable=not options.progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for record in executor.run(the_plan.pending):
            record.setdefault("provenance", {})
            record["provenance"].update(matrix_hash=matrix.digest, executor=options.executor, workers=options.workers)
            if the_plan.stored.get(record["case_id"]) is not None:
                store.replace(record)
            else:
                store.put(record)
            counts[record["status"]] += 1
            bar.update(1)
            bar.set_postfix_str(_summary(record))
            if record["status"] == "error":
                bar.write(f"case {record['case_id']} ({record['quantizer_label']} / {record['cell_label']} / "
                          f"seed {record['seed']}) failed: {record.get('error')}")
            if options.exitfirst and record["status"] in FAILED_STATUSES:
                bar.write("stopping at the first failed case (-x)")
                break
    except KeyboardInterrupt as exc:
        bar.close()
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        echo(f"{how}: {sum(counts.values())} cases finished and stored; run again to resume")
        return ExitCode.INTERRUPTED
    bar.close()
    echo("finished: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) if counts
         else "finished: nothing to run")
    return ExitCode.OK


def _summary(record: dict[str, Any]) -> str:
    metric = next((k for k in ("test_bpc", "test_accuracy") if record.get(k) is not None), None)
    value = f" {metric}={record[metric]:.3f}" if metric else ""
    return f"{record['quantizer_label']} seed {record['seed']}: {record['status']}{value}"
