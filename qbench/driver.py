"""The driver of ``qbench run``: the matrix expanded once, the store repaired, the executor started,
the rounds run (:mod:`qbench.rounds`), the leaderboards written and the exit code decided.
"""

from __future__ import annotations

import datetime as _dt
import json
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from qbench.errors import ExitCode, UsageError
from qbench.executors import executor_for
from qbench.executors.config import RunConfig, resolve_run_config
from qbench.expanded import ExpandedMatrix
from qbench.host import Host, get_host
from qbench.interrupts import sigterm_as_interrupt
from qbench.matrix import Case, Matrix, load_matrix
from qbench.outdir import claim_run_files, prepare_out_dir
from qbench.protocol import Protocol
from qbench.rounds import DONE_STATUSES, FAILED_STATUSES, Echo, Rounds
from qbench.runlock import DriverLock
from qbench.store import Store


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
    lock_wait: float = 600.0  # how long to wait for another driver on the same output folder (seconds)
    case_timeout: float | None = None  # per-case time limit in seconds (None: the matrix's [limits], or none)
    replace: bool = False  # write into an --out holding files qbench run did not write (outdir.claim_run_files)
    numerics: str | None = None  # native or portable kernels (None: the matrix's [numerics] mode)


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


def default_out_dir(matrix: Matrix) -> Path:
    return Path("results") / matrix.name


def case_table(cases: Sequence[Case], stored: dict[str, str]) -> str:
    """The ``--dry-run`` table: one row per case with its stored status or ``pending``."""
    from tabulate import tabulate

    tuned = any(c.tuned for c in cases)
    rows = [
        (c.case_id, c.dataset.label, c.cell.label, c.quantizer.label,
         *([", ".join(f"{k}={json.dumps(v)}" for k, v in c.tuned.items())] if tuned else []),
         c.seed, stored.get(c.case_id, "pending"))
        for c in cases
    ]  # fmt: skip
    headers = ("case", "dataset", "cell", "quantizer", *(["configuration"] if tuned else []), "seed", "status")
    return tabulate(rows, headers=headers)


def ensure_datasets_ready(matrix: Matrix, host: Host, echo: Echo) -> dict[str, Any]:
    """Prepare every dataset of the matrix in the driver, before any training (usage errors and
    downloads happen now, once): ``{dataset label: prepared data}``."""
    from qbench.datacache import cache_dir

    prepared: dict[str, Any] = {}
    for spec in matrix.datasets:
        dataset = host.create("dataset", spec.name, **spec.params)
        echo(f"dataset {spec.label}: preparing / verifying")
        prepared[spec.label] = dataset.prepare(str(cache_dir()))
    return prepared


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    from qbench.atomicio import write_text

    write_text(path, json.dumps(payload, indent=2, sort_keys=True))


def write_outputs(store: Store, out: Path, title: str, case_ids: set[str] | None,
                  protocol: Protocol | None = None) -> list[Path]:  # fmt: skip
    """Leaderboards from the store (only the matrix's current cases when ``case_ids`` is given).

    Damaged records were reported when the run started; they are left out here.
    """
    from qbench.leaderboard import rebuild_from_store

    present = store.stored_ids()
    if not (present & case_ids if case_ids is not None else present):
        return []
    return list(rebuild_from_store(store.path, out, title, case_ids=case_ids, protocol=protocol,
                                   skip_damaged=True))  # fmt: skip


PROTOCOL_META = "protocol:"  # store meta key prefix: the protocol of each matrix, for `qbench leaderboard`


def report_damaged(store: Store, echo: Echo) -> set[str]:
    """Name every damaged record; the ids returned are run again and their new records replace
    the damaged rows."""
    damaged = set()
    for item in store.damaged():
        echo(f"store: the record of case {item.case_id} is damaged ({item.problem}); it is left out of the "
             "leaderboards and its case is run again")  # fmt: skip
        damaged.add(item.case_id)
    return damaged


def stale_statuses(expanded: ExpandedMatrix, store: Store, stored: dict[str, str],
                   host: Host) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """``stored`` with every record made with another version of one of its components marked
    ``stale``, and ``{case id: what changed}``."""
    from qbench.planning import stale_cases

    # points beyond the grid included: a stored extension case is resumed like any other
    cases = [c for c in expanded.candidates(every_extension=True) if stored.get(c.case_id) in DONE_STATUSES]
    stale = stale_cases(cases, store.records_for([c.case_id for c in cases]), host) if cases else {}
    return {**stored, **dict.fromkeys(stale, "stale")}, stale


def repair_store(expanded: ExpandedMatrix, store: Store, host: Host, echo: Echo) -> tuple[dict[str, str], set[str]]:
    """The stored statuses, stale records marked ``stale``, and the ids of the stored records that do
    not count (damaged or stale): each is named, run again, and its new record replaces it."""
    redo = report_damaged(store, echo)
    marked, stale = stale_statuses(expanded, store, store.statuses(), host)
    if stale:
        shown = sorted(set(stale.values()))
        echo(f"store: {len(stale)} stored record(s) were made with another version of a component "
             f"({'; '.join(shown[:3])}{'; ...' if len(shown) > 3 else ''}); they are run again and replaced")
    return marked, redo | set(stale)


def run_matrix(matrix_path: str | Path, options: RunOptions, stream: TextIO | None = None,
               host: Host | None = None) -> ExitCode:  # fmt: skip
    """Run a matrix end to end and return the exit code (usage errors raise :class:`UsageError`).

    ``host``: the plugin host every component is resolved from (default: the installed plugins,
    built once here); :func:`qbench.testing.registered_plugins` yields one with in-process plugins.
    The cases run in rounds (:class:`qbench.rounds.Rounds`), each decided from the store, so an
    interrupted run resumes in whichever phase it stopped.
    """
    echo = _echo_to(stream or sys.stderr)
    host = host if host is not None else get_host()
    expanded = ExpandedMatrix.of(load_matrix(matrix_path, host))  # the only expansion of this run
    if not expanded.cases:
        raise UsageError(f"{expanded.matrix.path}: the excludes remove every case; nothing to run")
    out = options.out or default_out_dir(expanded.matrix)
    config = run_config(options, expanded.matrix, host)  # checked once, before anything is prepared or stored
    if options.dry_run:
        return dry_run(expanded, out, options, host, echo)
    claim_run_files(out, "run", options.replace)  # never over a merge's, a site's or another program's files
    prepare_out_dir(out)  # before any dataset is prepared: a bad --out costs nothing
    with sigterm_as_interrupt(), DriverLock(out, options.lock_wait, echo):
        prepared = ensure_datasets_ready(expanded.matrix, host, echo)  # before the store: a dataset error leaves none
        fingerprints = {label: data.fingerprint for label, data in prepared.items()}
        store, executor = Store.in_dir(out), None
        try:
            statuses, redo = repair_store(expanded, store, host, echo)
            rounds = Rounds(expanded, store, options.resume, redo)
            first = rounds.next()
            config = config.sized_for(max(len(first.cases), 1))
            # only the driver's own process can use the prepared data; worker processes prepare their own
            executor = executor_for(config, host, prepared if config.in_process else None)
            del prepared
            start_run(store, out, expanded, config, fingerprints)
            echo(run_summary(expanded, statuses, redo, len(first.cases), out, config))
            code = rounds.run(first, executor, provenance_stamp(expanded.matrix, config), echo, options.exitfirst,
                              options.progress)  # fmt: skip
            executor.close()  # workers stop before the leaderboards are written (a SIGTERM now finds none)
            return finish_run(rounds, out, code, echo)
        finally:
            store.close()
            if executor is not None:
                executor.close()


def run_config(options: RunOptions, matrix: Matrix, host: Host) -> RunConfig:
    """Every executor setting of the run, the matrix's ``[limits]`` and ``[numerics]`` under the flags, checked."""
    case_timeout = options.case_timeout if options.case_timeout is not None else matrix.case_timeout
    return resolve_run_config(options.executor, options.workers, options.device, options.scheduler,
                              case_timeout=case_timeout, host=host, numerics=options.numerics or matrix.numerics)


def run_summary(expanded: ExpandedMatrix, statuses: dict[str, str], redo: set[str], to_run: int, out: Path,
                config: RunConfig) -> str:  # fmt: skip
    """The line a run starts with: how many cases, how many stored already, how many to run now."""
    stored = sum(1 for c in expanded.cases if statuses.get(c.case_id) in DONE_STATUSES and c.case_id not in redo)
    bound = "" if expanded.protocol.trivial else f" (the protocol may add more, at most {expanded.max_cases} in all)"
    return (f"{expanded.matrix.name}: {len(expanded.cases)} cases, {stored} already stored, {to_run} to run{bound} "
            f"-> {out} ({config.numerics} numerics)")


def provenance_stamp(matrix: Matrix, config: RunConfig) -> dict[str, Any]:
    """What every record of the run gets in its provenance: the matrix it ran for and where it ran."""
    return {"matrix_hash": matrix.digest, "executor": config.executor, "workers": config.workers}


def _echo_to(stream: TextIO) -> Echo:
    def echo(message: str) -> None:
        print(message, file=stream, flush=True)

    return echo


def start_run(store: Store, out: Path, expanded: ExpandedMatrix, config: RunConfig,
              fingerprints: dict[str, str]) -> None:  # fmt: skip
    """The run's protocol in the store (for ``qbench leaderboard``) and its ``run.json``, written once
    the run can start: a usage error before leaves the store and the folder as they were."""
    matrix, protocol = expanded.matrix, expanded.protocol
    store.set_meta(PROTOCOL_META + matrix.name, json.dumps(protocol.as_dict(), sort_keys=True))
    _write_json(out / "run.json", {
        "matrix": matrix.name, "matrix_path": str(matrix.path), "matrix_hash": matrix.digest,
        "description": matrix.description, "cases": len(expanded.cases),
        "case_ids": [c.case_id for c in expanded.cases], "protocol": protocol.as_dict(),
        "max_cases": expanded.max_cases, "dataset_fingerprints": fingerprints, "executor": config.executor,
        "workers": config.workers, "device": config.device,
        "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "case_timeout": config.case_timeout,
        "numerics": config.numerics,
    })


def finish_run(rounds: Rounds, out: Path, code: ExitCode, echo: Echo) -> ExitCode:
    """Name the leaderboard's cases in run.json, write the leaderboards, and the run's exit code:
    ``code`` if the rounds stopped early, else CASES_FAILED when a leaderboard case failed."""
    store, matrix = rounds.store, rounds.expanded.matrix
    matrix_ids = rounds.leaderboard_ids()
    try:
        _record_case_ids(out / "run.json", matrix_ids & store.stored_ids())
        written = write_outputs(store, out, matrix.name, matrix_ids, matrix.protocol)
    except KeyboardInterrupt:
        echo("interrupted while writing the leaderboards: the previous set is left as it was; "
             f"`qbench leaderboard --out {out}` rebuilds them from the store")  # fmt: skip
        return ExitCode.INTERRUPTED
    if written:
        echo(f"leaderboards: {', '.join(str(p) for p in written if p.parent == out)}")
    if code is not ExitCode.OK:
        return code
    statuses = store.statuses()
    return ExitCode.CASES_FAILED if any(statuses.get(cid) in FAILED_STATUSES for cid in matrix_ids) else ExitCode.OK


def _record_case_ids(run_json: Path, case_ids: set[str]) -> None:
    """run.json names the cases the leaderboard is built from (tuning runs and the seeds the rule
    added included), so that ``qbench validate`` rebuilds exactly those."""
    try:
        payload = json.loads(run_json.read_text())
    except (OSError, ValueError):
        return
    payload["case_ids"] = sorted(case_ids)
    payload["cases"] = len(case_ids)
    _write_json(run_json, payload)


def dry_run(expanded: ExpandedMatrix, out: Path, options: RunOptions, host: Host, echo: Echo) -> ExitCode:
    """The case table of what is known now, with stored statuses, and the most the matrix may cost."""
    from qbench.planning import bracket_lines

    matrix, protocol = expanded.matrix, expanded.protocol
    store_path = out / "qbench.sqlite"
    stored: dict[str, str] = {}
    shown = list(expanded.cases)
    brackets: list[str] = []
    if store_path.is_file():
        with Store.read_only(store_path) as store:
            stored, stale = stale_statuses(expanded, store, store.statuses(), host)
            if stale:
                echo(f"{len(stale)} stored record(s) are stale (made with another version of a component); "
                     "`qbench run` runs them again")  # fmt: skip
            if not protocol.trivial:
                # what `qbench run` would ask planning now: the same rounds, on the store as it is
                rounds = Rounds(expanded, store, options.resume, stale)
                the_round = rounds.next()
                known = {c.case_id: c for c in shown}
                for case in [*(c for c in rounds.reached(the_round) if c.case_id in stored), *the_round.cases]:
                    known.setdefault(case.case_id, case)
                shown = list(known.values())
                brackets = bracket_lines(the_round.decisions)
    print(case_table(shown, stored), file=sys.stdout)
    pending = plan(shown, stored, options.resume).pending
    echo(f"{len(shown)} cases known now, {len(pending)} to run, {len(shown) - len(pending)} stored ({out}); "
         f"at most {expanded.max_cases} cases with the protocol")  # fmt: skip
    for line in [*(protocol.describe()[:3] if not protocol.trivial else []), *brackets]:
        echo(line)
    echo(f"numerics: {options.numerics or matrix.numerics}")
    return ExitCode.OK
