"""``qbench validate DIR``: is a published leaderboard what its records say?

Checks, each reported as one line naming what is wrong:

1. schema: ``leaderboard.json`` is what ``qbench/schemas/leaderboard-1.schema.json`` (the one
   statement of its shape) says, every row of its ``runs`` table included;
2. hashes: every file listed under ``files`` exists and has its sha256, and the Markdown, CSV
   and HTML are listed; no plot in ``plots/`` is unlisted;
3. arithmetic: every aggregate is recomputed from the single-seed rows with the plain-Python
   reference :func:`qbench.leaderboard.compute.stats.summarize` (mean, std, ci95, n, status counts),
   every run belongs to exactly one aggregate, and the CSV rows are the aggregates;
4. traceability: when the store (``qbench.sqlite``) is beside the leaderboard or given, every
   run's ``record_sha256`` is the hash of the stored record with that case id;
5. recomputation: with the store, the whole leaderboard is built again from the stored records
   (the matrix's cases when ``run.json`` lists them) and every published cell of every format is
   compared with the rebuild (:mod:`qbench.leaderboard.audit.recompute`); the first difference of each
   file is reported with its location and both values.

``qbench merge`` checks each input with :func:`validate_merge_input`: checks 1-4 and every
published run's values against its record, not check 5 (it rebuilds every table from the
records and discards the input's). The store is only ever opened read-only.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench import record as R
from qbench.atomicio import file_sha256
from qbench.leaderboard.audit.sources import LEADERBOARD_JSON, read_leaderboard_json
from qbench.leaderboard.compute.frame import GROUP_KEY, STATUSES
from qbench.leaderboard.compute.stats import summarize
from qbench.leaderboard.render.runrows import RUN_COLUMNS
from qbench.leaderboard.render.writers import SCHEMA, STAT_SUFFIXES, table_rows

RENDERED = ("leaderboard.md", "leaderboard.csv", "leaderboard.html")


@dataclass
class Report:
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    runs: int = 0
    aggregates: int = 0
    traced: int = 0
    recomputed: bool = False
    #: no store was found: nothing is traced to a record (one of the problems says so)
    untraced: bool = False
    #: :func:`validate_merge_input` only: case id -> (sha256, stored text, record) of every traced run,
    #: so that the merge reads and parses each record once.
    traced_records: dict[str, tuple[str, str, dict[str, Any]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def _close(a: float | None, b: float | None, scale: float = 0.0) -> bool:
    """Equal up to rounding; ``scale`` (the size of the mean) bounds the rounding of a spread."""
    if a is None or b is None:
        return a is None and b is None
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12 + 1e-9 * abs(scale))


def validate_directory(directory: Path, store_path: Path | None = None) -> Report:
    """Validate the leaderboard in ``directory`` (raises UsageError when there is none): every check above."""
    return _validate(Path(directory), store_path, full=True)


def validate_merge_input(directory: Path) -> Report:
    """What ``qbench merge`` needs of an input: the checks of what it uses, not of what it discards.

    A merge keeps an input's records and rebuilds every table from them, so it checks: the schema
    and every listed file's hash (1, 2); each aggregate and paired difference recomputed from the
    published runs in plain Python (3); every stored record readable, of a known schema version,
    and the one its run's ``record_sha256`` names (4); and every published run's status, seed,
    labels and values equal to its record's (so the published runs are the records'). It does not
    rebuild the input's Markdown, CSV and HTML (check 5): ``qbench validate`` is the full check.
    """
    directory = Path(directory)
    if not (directory / "qbench.sqlite").is_file():
        from qbench.errors import UsageError

        raise UsageError(f"{directory}: no qbench.sqlite; a merge needs the stored records")
    return _validate(directory, None, full=False)


def _validate(directory: Path, store_path: Path | None, full: bool) -> Report:
    from qbench.errors import UsageError

    directory = Path(directory)
    if not directory.is_dir():
        raise UsageError(f"{directory}: not a directory (give the folder holding {LEADERBOARD_JSON})")
    if not (directory / LEADERBOARD_JSON).is_file():
        raise UsageError(f"{directory}: no {LEADERBOARD_JSON} here; is this a published qbench leaderboard?")
    report = Report()
    try:
        document = read_leaderboard_json(directory / LEADERBOARD_JSON)
    except UsageError as exc:
        report.problems.append(str(exc))
        return report
    if not _check_schema(document, report):
        return report
    _check_files(document, directory, report)
    _check_matrix(directory, report)
    _check_arithmetic(document, report)
    _check_paired(document, report)
    from qbench.leaderboard.audit.trends import check_trend_rows
    from qbench.protocol import Protocol

    stated = document.get("protocol")
    report.problems += check_trend_rows(document, document["runs"],
                                        Protocol.from_dict(stated) if isinstance(stated, dict) else None)
    if full:
        _check_csv(document, directory, report)
    store_path = store_path or directory / "qbench.sqlite"
    if store_path.is_file():
        _refuse_damaged(store_path)
        _check_store(document, store_path, report, values=not full)
        if full:
            _check_recomputed(document, directory, store_path, report)
    else:
        # A folder whose store was removed (or replaced by a folder) is not certified, whatever its tables say.
        report.untraced = True
        report.problems.append(f"store: no store file at {store_path}: no published value is traced to a stored "
                               "record (the tables were checked for consistency only), so the folder cannot be "
                               "certified; give --store PATH, the qbench.sqlite it was built from")  # fmt: skip
    return report


def _check_matrix(directory: Path, report: Report) -> None:
    """A matrix.toml beside the leaderboard (a bundle's) must be the matrix the run read: run.json's matrix_hash."""
    import hashlib

    path = directory / "matrix.toml"
    if not path.exists():
        return
    try:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        expected = json.loads((directory / "run.json").read_text(encoding="utf-8")).get("matrix_hash")
    except (OSError, UnicodeDecodeError, ValueError, AttributeError):
        expected, digest = None, ""
    if digest != expected:
        report.problems.append("matrix.toml: not the matrix the run read (its sha256 is not run.json's matrix_hash)")


def _selection(document: dict[str, Any], directory: Path, stored: set[str], report: Report) -> set[str]:
    """The case ids the leaderboard was built from: the run's matrix when ``run.json`` says, else the published runs."""
    published = {run["case_id"] for run in document["runs"]}
    run_json = directory / "run.json"
    if run_json.is_file():
        try:
            planned = json.loads(run_json.read_text(encoding="utf-8")).get("case_ids")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            planned = None
        if isinstance(planned, list):
            return {str(c) for c in planned} & stored
        report.notes.append("run.json names no case_ids: the published runs are taken as the selection")
    extra = len(stored - published)
    if extra:
        report.notes.append(f"{extra} stored record(s) are not in this leaderboard (another matrix, or left out)")
    return published


def _protocol(document: dict[str, Any], directory: Path, store_path: Path, report: Report) -> Any:
    """The protocol to recompute with: the one ``qbench run`` recorded in the store for the run's
    matrix (a published protocol that differs from it is a problem), else the published one. The
    selection, the seed rule's decisions and the Holm-adjusted verdicts are then recomputed from
    the records with it and compared like every other published number."""
    from qbench.leaderboard.compute.storeread import stored_protocol
    from qbench.protocol import Protocol

    matrix = None
    try:
        matrix = json.loads((directory / "run.json").read_text(encoding="utf-8")).get("matrix")
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
        pass
    recorded = stored_protocol(store_path, matrix if isinstance(matrix, str) else None)
    published = document.get("protocol")
    try:
        claimed = Protocol.from_dict(published) if isinstance(published, dict) else None
    except (KeyError, TypeError, ValueError) as exc:
        report.problems.append(f"leaderboard.json: protocol is not readable ({exc})")
        claimed = None
    if recorded is not None and claimed is not None and recorded != claimed:
        report.problems.append(f"leaderboard.json: protocol {claimed.as_dict()} is not the one the store recorded "
                               f"for this run {recorded.as_dict()}")  # fmt: skip
    return recorded or claimed


def _check_recomputed(document: dict[str, Any], directory: Path, store_path: Path, report: Report) -> None:
    """Build the leaderboard again from the stored records and compare every published cell with it."""
    import tempfile

    from qbench.leaderboard import write_frame
    from qbench.leaderboard.audit.recompute import compare_folders
    from qbench.leaderboard.compute.storeread import read_store
    from qbench.store import Store

    with Store.read_only(store_path) as store:
        stored = store.stored_ids()
    selection = _selection(document, directory, stored, report)
    protocol = _protocol(document, directory, store_path, report)
    plots = any(name.startswith("plots/") for name in document["files"])
    with tempfile.TemporaryDirectory(prefix="qbench-validate-") as scratch:
        rebuilt = Path(scratch)
        try:
            write_frame(read_store(store_path, None, selection), rebuilt, str(document["title"]), plots, protocol)
        except (ValueError, KeyError, TypeError, AttributeError) as exc:  # records no leaderboard can come from
            report.problems.append(f"recomputed: the stored records do not give a leaderboard "
                                   f"({type(exc).__name__}: {exc}); the folder cannot be certified")  # fmt: skip
            return
        for mismatch in compare_folders(directory, rebuilt):
            report.problems.append(f"recomputed: {mismatch}")
    report.recomputed = not any(p.startswith("recomputed:") for p in report.problems)


def _rows_fit_columns(document: dict[str, Any], report: Report) -> bool:
    for name in ("aggregates", "paired", "runs"):
        section = document[name]
        columns, rows = section["columns"], section["rows"]  # lists: the schema checked them
        bad = [i for i, row in enumerate(rows) if not isinstance(row, list) or len(row) != len(columns)]
        if bad:
            report.problems.append(f"schema: {name} row {bad[0]} does not have {len(columns)} values")
            return False
    return True


def _check_run_rows(document: dict[str, Any], version: int, report: Report) -> None:
    """Every row of ``runs`` against the schema's ``#/$defs/run``; no case id twice."""
    from qbench import schemas

    found = schemas.table_problems(document["runs"], "leaderboard", version, "run", "runs")
    report.problems += found
    if found:
        return
    seen: set[str] = set()
    at = document["runs"]["columns"].index("case_id")
    for i, case_id in enumerate(row[at] for row in document["runs"]["rows"]):
        if case_id in seen:
            report.problems.append(f"runs[{i}]: case {case_id!r} appears twice")
        seen.add(case_id)


def _unsplit(document: dict[str, Any]) -> None:
    """Turn the split tables into the row dicts the checks read (runs get ``values``, aggregates ``stats``)."""
    runs = []
    value_columns = [c for c in document["runs"]["columns"] if c not in RUN_COLUMNS]
    for row in table_rows(document["runs"]):
        run = {k: row.get(k) for k in RUN_COLUMNS}
        run["values"] = {c: row[c] for c in value_columns if row[c] is not None}
        runs.append(run)
    aggregates = []
    present = set(document["aggregates"]["columns"])
    stat_columns = [c for c in document["directions"] if f"{c}_mean" in present]
    stat_names = {f"{c}_{s}" for c in stat_columns for s in STAT_SUFFIXES}
    for row in table_rows(document["aggregates"]):
        aggregate = {k: v for k, v in row.items() if k not in stat_names}
        aggregate["stats"] = {c: {s: row.get(f"{c}_{s}") for s in STAT_SUFFIXES} for c in stat_columns
                              if row.get(f"{c}_n")}  # fmt: skip
        aggregates.append(aggregate)
    document["runs"], document["aggregates"] = runs, aggregates


def _check_schema(document: dict[str, Any], report: Report) -> bool:
    from qbench import schemas

    version = schemas.leaderboard_version(document.get("schema"))
    if version is not None and version != schemas.LEADERBOARD_VERSION:
        age = "newer" if version > schemas.LEADERBOARD_VERSION else "older"
        report.problems.append(
            f"schema: leaderboard schema version {version} is {age} than the version this qbench reads "
            f"({schemas.LEADERBOARD_VERSION}); " + ("upgrade qbench to check it" if age == "newer" else
            "rebuild it from its store with qbench leaderboard --store"))  # fmt: skip
        return False
    if document.get("schema") != SCHEMA:
        report.problems.append(f"schema: expected {SCHEMA!r}, found {document.get('schema')!r}")
    # the shape (required keys, their types) is stated once, in the shipped schema
    version = version or schemas.LEADERBOARD_VERSION
    found = schemas.problems(document, "leaderboard", version)
    report.problems += [f"schema (qbench/schemas/leaderboard-{version}.schema.json): {p}" for p in found[:5]]
    if report.problems or not _rows_fit_columns(document, report):
        return False
    # each run row's shape (its fixed columns' types, numbers in the value columns) is the schema's too
    _check_run_rows(document, version, report)
    _unsplit(document)
    report.runs, report.aggregates = len(document["runs"]), len(document["aggregates"])
    return not report.problems


def _check_files(document: dict[str, Any], directory: Path, report: Report) -> None:
    files: dict[str, str] = document["files"]
    for name in RENDERED:
        if name not in files:
            report.problems.append(f"files: {name} is not listed with a hash")
    for name, digest in files.items():
        path = directory / name
        if ".." in Path(name).parts or Path(name).is_absolute():
            report.problems.append(f"files: {name!r} points outside the leaderboard directory")
        elif not path.is_file():
            report.problems.append(f"files: {name} is listed but missing")
        elif file_sha256(path) != digest:
            report.problems.append(f"files: {name} does not match its sha256 (edited after it was written?)")
    plot_dir = directory / "plots"
    if plot_dir.is_dir():
        from qbench.atomicio import is_temp_name

        for path in sorted(plot_dir.iterdir()):
            name = path.relative_to(directory).as_posix()
            if name in files:
                continue
            if is_temp_name(path.name) and path.is_file() and not path.is_symlink():
                # a killed writer's leftover, not published content: named, not held against the folder
                report.notes.append(f"{name}: a temporary file a killed leaderboard writer left (not published; "
                                    "the next qbench leaderboard or run removes it)")  # fmt: skip
                continue
            report.problems.append(f"files: {name} is not listed")


def _check_arithmetic(document: dict[str, Any], report: Report) -> None:
    runs = {run["case_id"]: run for run in document["runs"]}
    owner: dict[str, int] = {}
    for i, row in enumerate(document["aggregates"]):
        where = f"aggregate {row.get('dataset_label')} / {row.get('cell_label')} / {row.get('quantizer_label')}"
        members = []
        for case_id in row["case_ids"]:
            if case_id not in runs:
                report.problems.append(f"{where}: case {case_id!r} is not among the runs")
                continue
            if case_id in owner:
                report.problems.append(f"{where}: case {case_id!r} also belongs to another aggregate")
            owner[case_id] = i
            run = runs[case_id]
            if any(run[k] != row.get(k) for k in GROUP_KEY):
                report.problems.append(f"{where}: case {case_id!r} has a different dataset, cell or quantizer")
            members.append(run)
        for status in STATUSES:
            expected = sum(1 for run in members if run["status"] == status)
            if row.get(f"n_{status}") != expected:
                report.problems.append(f"{where}: n_{status} is {row.get(f'n_{status}')}, the runs say {expected}")
        ok = [run for run in members if run["status"] == "ok"]
        columns = set(row["stats"]) | {c for run in ok for c in run["values"]}
        for column in sorted(columns):
            reference = summarize([run["values"].get(column) for run in ok])
            stated = row["stats"].get(column, {})
            for name in STAT_SUFFIXES:
                value = stated.get(name)
                value = math.nan if value is None and name != "n" else value
                if name == "n" and value is None:
                    value = 0
                scale = 0.0 if math.isnan(reference["mean"]) else reference["mean"]
                if not _close(value, reference[name], scale):
                    report.problems.append(f"{where}: {column} {name} is {value}, the runs give {reference[name]}")
    for case_id, run in runs.items():
        # Tuning runs of other configurations and superseded runs are published but aggregated nowhere.
        if case_id not in owner and run.get("role", "evaluation") == "evaluation":
            report.problems.append(f"run {case_id!r} belongs to no aggregate")


def _check_paired(document: dict[str, Any], report: Report) -> None:
    """Every paired difference recomputed from the single-seed rows it pairs, and judged again with
    the published protocol (its seed rule's first stage, margins and claim): the test chosen, the
    p-values and their Holm adjustment, the margin test and the verdict (:mod:`qbench.verdicts`)."""
    from qbench.protocol import Protocol
    from qbench.verdicts import first_stage_of, judge, ordered_differences

    by_method: dict[tuple[Any, ...], dict[int, dict[str, float]]] = {}
    stated_protocol = document.get("protocol")
    protocol = Protocol.from_dict(stated_protocol) if isinstance(stated_protocol, dict) else None
    alpha = protocol.alpha if protocol is not None else 0.05
    for run in document["runs"]:
        if run["status"] == "ok" and run.get("role", "evaluation") == "evaluation":
            key = (run["dataset_label"], run["cell_label"], run["quantizer_label"])
            by_method.setdefault(key, {})[run["seed"]] = run["values"]
    rows = table_rows(document["paired"])
    order = tuple(protocol.seeds) if protocol is not None else ()
    first_stage = first_stage_of(protocol)
    items = []
    for row in rows:
        method = by_method.get((row.get("dataset_label"), row.get("cell_label"), row.get("quantizer_label")), {})
        base = by_method.get((row.get("dataset_label"), row.get("cell_label"), row.get("baseline_label")), {})
        metric = row.get("metric")
        by_seed = {seed: values[metric] - base[seed][metric] for seed, values in method.items()
                   if metric in values and seed in base and metric in base[seed]}  # fmt: skip
        diffs, first = ordered_differences(by_seed, order, first_stage)
        margin = protocol.margin_for(str(row.get("dataset_label")), str(metric)) if protocol is not None else None
        items.append(((row.get("dataset_label"), row.get("cell_label"), metric), diffs, first, margin,
                      row.get("direction", "min")))  # fmt: skip
    claim = protocol.claim if protocol is not None else "equivalence"
    for row, judged in zip(rows, judge(items, claim, alpha), strict=True):
        where = f"paired {row.get('quantizer_label')} / {row.get('cell_label')} / {row.get('metric')}"
        ev = judged.evidence
        scale = 0.0 if math.isnan(ev.mean) else ev.mean
        for name, value in (("diff_mean", ev.mean), ("diff_std", ev.std), ("diff_ci95", ev.ci95), ("n", ev.n),
                            ("p_t", ev.p_t), ("p_sign_flip", ev.p_sign_flip), ("p_value", ev.p),
                            ("p_holm", judged.p_holm), ("p_margin", ev.p_equiv),
                            ("p_margin_holm", judged.p_margin_holm),
                            ("margin", judged.margin if judged.margin is not None else math.nan)):  # fmt: skip
            if name not in row:
                continue
            stated = math.nan if row.get(name) is None else row.get(name)
            if not _close(stated, value, scale if name.startswith("diff") else 0.0):
                report.problems.append(f"{where}: {name} is {row.get(name)}, the runs give {value}")
        for name, value in (("test", ev.test), ("shape", ev.shape), ("verdict", judged.verdict)):
            if name in row and row.get(name) != value:
                report.problems.append(f"{where}: {name} {row.get(name)!r}, the runs give {value!r}")


def _check_csv(document: dict[str, Any], directory: Path, report: Report) -> None:
    path = directory / "leaderboard.csv"
    if not path.is_file():
        report.problems.append("leaderboard.csv is missing")
        return
    with open(path, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    aggregates = document["aggregates"]
    if len(rows) != len(aggregates):
        report.problems.append(f"leaderboard.csv has {len(rows)} rows, the JSON {len(aggregates)} aggregates")
        return
    for i, (line, row) in enumerate(zip(rows, aggregates, strict=True)):
        if any(line.get(k) != row.get(k) for k in GROUP_KEY):
            report.problems.append(f"leaderboard.csv row {i + 2}: not the JSON's aggregate {i}")
            continue
        for column, stats in row["stats"].items():
            text = line.get(f"{column}_mean", "")
            try:
                value = float(text) if text else None
            except (TypeError, ValueError):
                report.problems.append(f"leaderboard.csv row {i + 2}: {column}_mean {text!r} is not a number")
                continue
            if not _close(value, stats.get("mean")):
                report.problems.append(f"leaderboard.csv row {i + 2}: {column}_mean {text!r} != {stats.get('mean')}")


def _refuse_damaged(store_path: Path) -> None:
    """A store with unreadable records cannot certify anything: a usage error naming them (exit 4)."""
    from qbench.store import DamagedRecords, Store

    with Store.read_only(store_path) as store:
        damage = store.damaged()
    if damage:
        raise DamagedRecords(store_path, damage)


def _check_store(document: dict[str, Any], store_path: Path, report: Report, values: bool = False) -> None:
    """Each run traced to its stored record by hash; ``values``: and its published values equal to the record's."""
    import hashlib

    from qbench.record import from_json
    from qbench.store import Projection

    # The hash of a stored record is the hash of its stored text (its canonical JSON, see
    # qbench.leaderboard.compute.frame.record_text): no re-encoding of every record.
    with Projection(store_path) as projection:
        texts = projection.texts()
    stored = {case_id: from_json(text) for case_id, text in texts.items()}
    digests = {case_id: hashlib.sha256(text.encode()).hexdigest() for case_id, text in texts.items()}
    from qbench import schemas

    for case_id, stored_record in stored.items():
        found = schemas.problems(stored_record, "record", schemas.RECORD_VERSION)
        if found:
            report.problems.append(f"record {case_id!r} breaks qbench/schemas/record-{schemas.RECORD_VERSION}"
                                   f".schema.json: {found[0]}")  # fmt: skip
            break
    value_columns = sorted(set(document["directions"]).union(*(run["values"] for run in document["runs"])))
    for run in document["runs"]:
        record = stored.get(run["case_id"])
        if record is None:
            report.problems.append(f"run {run['case_id']!r}: no such record in {store_path}")
        elif digests[run["case_id"]] != run["record_sha256"]:
            report.problems.append(f"run {run['case_id']!r}: record_sha256 does not match the stored record")
        else:
            report.traced += 1
            if values:
                report.traced_records[run["case_id"]] = (digests[run["case_id"]], texts[run["case_id"]], record)
                if difference := _run_difference(run, record, value_columns):
                    report.problems.append(f"leaderboard.json run {run['case_id']!r}: {difference}")
                    values = False  # the first difference says enough: the published runs are not the records'


def _record_number(value: Any) -> float | None:
    """A record's value as the leaderboard's run value: a number (a bool as 0/1), else none (NaN is none)."""
    if isinstance(value, (bool, int, float)):
        number = float(value)
        return None if math.isnan(number) else number
    return None


def _record_label(record: dict[str, Any], axis: str) -> str:
    name = "?" if record.get(axis) is None else str(record.get(axis))
    label = record.get(f"{axis}_label")
    return name if label is None or label == "" else str(label)


def _run_difference(run: dict[str, Any], record: dict[str, Any], value_columns: list[str]) -> str:
    """How a published run differs from its stored record (the frame's reading of it), "" when it does not."""
    status = record.get(R.STATUS) if record.get(R.STATUS) in STATUSES else "error"
    seed = record.get(R.SEED)
    seed = int(seed) if isinstance(seed, (int, float)) and not isinstance(seed, bool) and math.isfinite(seed) else -1
    expected: dict[str, Any] = {"status": status, "seed": seed}
    expected.update({key: _record_label(record, key.removesuffix("_label")) for key in GROUP_KEY})
    for key, value in expected.items():
        if run.get(key) != value:
            return f"{key} is {run.get(key)!r}, its record says {value!r}"
    for column in value_columns:
        published, stored = run["values"].get(column), _record_number(record.get(column))
        if not _close(published, stored):
            return f"{column} is {published!r}, its record says {stored!r}"
    return ""
