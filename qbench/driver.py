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

from qbench import record as R
from qbench.errors import ExitCode, UsageError
from qbench.executors.config import RunConfig, resolve_run_config
from qbench.host import Host, get_host
from qbench.matrix import Case, Matrix, expand, load_matrix
from qbench.protocol import Protocol
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


def ensure_datasets_ready(matrix: Matrix, host: Host, echo: Callable[[str], None]) -> dict[str, Any]:
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


def report_damaged(store: Store, echo: Callable[[str], None]) -> set[str]:
    """Name every damaged record; the ids returned are run again and their new records replace
    the damaged rows."""
    damaged = set()
    for item in store.damaged():
        echo(f"store: the record of case {item.case_id} is damaged ({item.problem}); it is left out of the "
             "leaderboards and its case is run again")  # fmt: skip
        damaged.add(item.case_id)
    return damaged


def stale_statuses(matrix: Matrix, store: Store, stored: dict[str, str],
                   host: Host) -> tuple[dict[str, str], dict[str, str]]:  # fmt: skip
    """``stored`` with every record made with another version of one of its components marked
    ``stale``, and ``{case id: what changed}``."""
    from qbench.planning import candidate_cases, stale_cases

    # points beyond the grid included: a stored extension case is resumed like any other
    cases = [c for c in candidate_cases(matrix, every_extension=True) if stored.get(c.case_id) in DONE_STATUSES]
    stale = stale_cases(cases, store.records_for([c.case_id for c in cases]), host) if cases else {}
    return {**stored, **dict.fromkeys(stale, "stale")}, stale


def report_stale(matrix: Matrix, store: Store, stored: dict[str, str], host: Host,
                 echo: Callable[[str], None]) -> dict[str, str]:  # fmt: skip
    """Say which stored records are stale and mark them so: the run computes them again."""
    marked, stale = stale_statuses(matrix, store, stored, host)
    if stale:
        shown = sorted(set(stale.values()))
        echo(f"store: {len(stale)} stored record(s) were made with another version of a component "
             f"({'; '.join(shown[:3])}{'; ...' if len(shown) > 3 else ''}); they are run again and replaced")
    return marked


def run_matrix(matrix_path: str | Path, options: RunOptions, stream: TextIO | None = None,
               host: Host | None = None) -> ExitCode:  # fmt: skip
    """Run a matrix end to end and return the exit code (usage errors raise :class:`UsageError`).

    ``host``: the plugin host every component is resolved from (default: the installed plugins,
    built once here); :func:`qbench.testing.registered_plugins` yields one with in-process plugins.

    The cases run in rounds (:func:`qbench.planning.next_cases`): the tuning grid, the points beyond
    an edge of it for the methods that chose one (``[tune] extend``), the chosen configurations'
    first-stage seeds, then the seeds Stein's rule asks for; each round is decided from the store,
    so an interrupted run resumes in whichever phase it stopped.
    """
    from qbench.planning import candidate_cases, extension_points, max_cases

    stream = stream or sys.stderr

    def echo(message: str) -> None:
        print(message, file=stream, flush=True)

    host = host if host is not None else get_host()
    matrix = load_matrix(matrix_path, host)
    cases = expand(matrix)
    if not cases:
        raise UsageError(f"{matrix.path}: the excludes remove every case; nothing to run")
    out = options.out or default_out_dir(matrix)
    case_timeout = options.case_timeout if options.case_timeout is not None else matrix.case_timeout
    # every executor setting is checked here, once, before anything is prepared or stored
    numerics = options.numerics or matrix.numerics
    config = resolve_run_config(options.executor, options.workers, options.device, options.scheduler,
                                case_timeout=case_timeout, host=host, numerics=numerics)  # fmt: skip

    if options.dry_run:
        return _dry_run(matrix, out, options, host, echo)

    from qbench.executors import executor_for
    from qbench.interrupts import sigterm_as_interrupt
    from qbench.outdir import claim_run_files, prepare_out_dir
    from qbench.runlock import DriverLock

    claim_run_files(out, "run", options.replace)  # never over a merge's, a site's or another program's files
    prepare_out_dir(out)  # before any dataset is prepared: a bad --out costs nothing
    with sigterm_as_interrupt(), DriverLock(out, options.lock_wait, echo):
        prepared = ensure_datasets_ready(matrix, host, echo)  # before the store: a dataset error leaves none
        fingerprints = {label: data.fingerprint for label, data in prepared.items()}
        store = Store.in_dir(out)
        executor = None
        protocol = matrix.fair
        try:
            damaged = report_damaged(store, echo)
            statuses = report_stale(matrix, store, store.statuses(), host, echo)
            damaged |= {cid for cid, status in statuses.items() if status == "stale"}
            first = _rounds(matrix, store, options, set(), damaged)
            config = config.sized_for(max(len(first.cases), 1))
            # only the driver's own process can use the prepared data; worker processes prepare their own
            executor = executor_for(config, host, prepared if config.in_process else None)
            del prepared
            # written once the run can start: a usage error above leaves the store as it was
            store.set_meta(PROTOCOL_META + matrix.name, json.dumps(protocol.as_dict(), sort_keys=True))
            _write_json(out / "run.json", {
                "matrix": matrix.name, "matrix_path": str(matrix.path), "matrix_hash": matrix.digest,
                "description": matrix.description, "cases": len(cases), "case_ids": [c.case_id for c in cases],
                "protocol": protocol.as_dict(), "max_cases": max_cases(matrix),
                "dataset_fingerprints": fingerprints, "executor": config.executor, "workers": config.workers,
                "device": config.device, "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
                "case_timeout": case_timeout, "numerics": config.numerics,
            })
            stored_before = sum(1 for c in cases
                                if statuses.get(c.case_id) in DONE_STATUSES and c.case_id not in damaged)
            bound = "" if protocol.trivial else f" (the protocol may add more, at most {max_cases(matrix)} in all)"
            echo(f"{matrix.name}: {len(cases)} cases, {stored_before} already stored, {len(first.cases)} to run"
                 f"{bound} -> {out} ({config.numerics} numerics)")  # fmt: skip
            code, attempted, the_round = ExitCode.OK, set(), first
            while the_round.cases:
                if not protocol.trivial:
                    echo(f"{the_round.phase}: {len(the_round.cases)} cases to run")
                plan_now = Plan(list(the_round.cases), list(the_round.cases), store.statuses())
                code = _execute(plan_now, executor, store, matrix, options, config, echo)
                attempted |= {c.case_id for c in the_round.cases}
                if code is not ExitCode.OK or (options.exitfirst and _any_failed(store, the_round.cases)):
                    break
                the_round = _rounds(matrix, store, options, attempted, damaged)
            executor.close()  # workers stop before the leaderboards are written (a SIGTERM now finds none)
            # the cases the leaderboard is built from: the grid, the extensions the protocol reached, the seeds
            final = _rounds(matrix, store, options, attempted, damaged)
            matrix_ids = {c.case_id for c in candidate_cases(matrix, extension_points(final.decisions))}
            try:
                _record_case_ids(out / "run.json", matrix_ids & store.stored_ids())
                written = write_outputs(store, out, matrix.name, matrix_ids, protocol)
            except KeyboardInterrupt:
                echo("interrupted while writing the leaderboards: the previous set is left as it was; "
                     f"`qbench leaderboard --out {out}` rebuilds them from the store")  # fmt: skip
                return ExitCode.INTERRUPTED
            if written:
                echo(f"leaderboards: {', '.join(str(p) for p in written if p.parent == out)}")
            if code is not ExitCode.OK:
                return code
            statuses = store.statuses()
            failed = [cid for cid in matrix_ids if statuses.get(cid) in FAILED_STATUSES]
            return ExitCode.CASES_FAILED if failed else ExitCode.OK
        finally:
            store.close()
            if executor is not None:
                executor.close()


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


def _rounds(matrix: Matrix, store: Store, options: RunOptions, attempted: set[str],
            damaged: frozenset[str] | set[str] = frozenset()) -> Any:  # fmt: skip
    """The next round of cases: a stored record counts if this run made it, or (resuming) if it is
    ``ok`` or ``diverged`` and not damaged; an ``error`` from an earlier run is run again."""
    from qbench.planning import next_cases

    def done(case_id: str, record: Any) -> bool:
        if case_id in attempted:
            return True
        return options.resume and case_id not in damaged and record.get("status") in DONE_STATUSES

    return next_cases(matrix, lambda cases: store.records_for([c.case_id for c in cases]), done)


def _any_failed(store: Store, cases: Sequence[Case]) -> bool:
    statuses = store.statuses()
    return any(statuses.get(c.case_id) in FAILED_STATUSES for c in cases)


def _dry_run(matrix: Matrix, out: Path, options: RunOptions, host: Host, echo: Callable[[str], None]) -> ExitCode:
    """The case table of what is known now, with stored statuses, and the most the matrix may cost."""
    from qbench.planning import bracket_lines, extension_points, max_cases

    store_path = out / "qbench.sqlite"
    stored: dict[str, str] = {}
    shown = expand(matrix)
    brackets: list[str] = []
    if store_path.is_file():
        with Store.read_only(store_path) as store:
            stored, stale = stale_statuses(matrix, store, store.statuses(), host)
            if stale:
                echo(f"{len(stale)} stored record(s) are stale (made with another version of a component); "
                     "`qbench run` runs them again")  # fmt: skip
            if not matrix.fair.trivial:
                from qbench.planning import candidate_cases

                known = {c.case_id: c for c in shown}
                the_round = _rounds(matrix, store, options, set(), set(stale))
                reached = extension_points(the_round.decisions)
                for case in [*(c for c in candidate_cases(matrix, reached) if c.case_id in stored), *the_round.cases]:
                    known.setdefault(case.case_id, case)
                shown = list(known.values())
                brackets = bracket_lines(the_round.decisions)
    print(case_table(shown, stored), file=sys.stdout)
    pending = plan(shown, stored, options.resume).pending
    echo(f"{len(shown)} cases known now, {len(pending)} to run, {len(shown) - len(pending)} stored ({out}); "
         f"at most {max_cases(matrix)} cases with the protocol")  # fmt: skip
    if not matrix.fair.trivial:
        for line in matrix.fair.describe()[:3]:
            echo(line)
    for line in brackets:
        echo(line)
    echo(f"numerics: {options.numerics or matrix.numerics}")
    return ExitCode.OK


def _execute(the_plan: Plan, executor: Any, store: Store, matrix: Matrix, options: RunOptions, config: RunConfig,
             echo: Callable[[str], None]) -> ExitCode:
    from tqdm import tqdm

    from qbench.interrupts import Terminated

    counts: Counter[str] = Counter()
    bar = tqdm(total=len(the_plan.pending), unit="case", disable=not options.progress, file=sys.stderr,
               dynamic_ncols=True)
    try:
        for record in executor.run(the_plan.pending):
            record.setdefault("provenance", {})
            record[R.PROVENANCE].update(matrix_hash=matrix.digest, executor=config.executor, workers=config.workers)
            if the_plan.stored.get(record[R.CASE_ID]) is not None:
                store.replace(record)
            else:
                store.put(record)
            counts[record[R.STATUS]] += 1
            bar.update(1)
            bar.set_postfix_str(_summary(record))
            if record[R.STATUS] == "error":
                bar.write(f"case {record['case_id']} ({record['quantizer_label']} / {record['cell_label']} / "
                          f"seed {record['seed']}) failed: {record.get('error')}")
            if options.exitfirst and record[R.STATUS] in FAILED_STATUSES:
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
    from qbench.protocol import primary_metric

    metric = primary_metric(record.get("directions") or {}, record.get("metrics")) or None
    metric = metric if metric and isinstance(record.get(metric), (int, float)) else None
    value = f" {metric}={record[metric]:.3f}" if metric else ""
    return f"{record['quantizer_label']} seed {record['seed']}: {record['status']}{value}"
