"""``qbench merge``: the comparable records of several bundles or run folders, in one leaderboard.

Each input is checked first for what the merge uses of it (:func:`qbench.leaderboard.audit.validate.
validate_merge_input`: the bundle's manifest and every file's hash, every record readable and of a
known schema version, every published run value its record's, the aggregates and paired
differences recomputed from them); an input that fails stops the merge before anything is
written. Its Markdown, CSV and HTML are not rebuilt (the merge discards them and writes its own
from the records): ``qbench validate`` is the full check of an input's files. Its records are the runs of its
published leaderboard, each keeping its origin (contributor and machine from the bundle's
``contributor.json``; a plain folder is "unknown").

Comparable means, per dataset label: the same dataset fingerprint, the same training recipe
(the record's ``train``), the same protocol (``protocol``, when records carry one) and the same
version of every component (``provenance.plugins``). The reference of a dataset is the
fingerprint/recipe/protocol shared by the most cases (ties: the first in sorted order), and for
each component the version most cases used; a record that differs is listed apart, with the
reason, and is not in the leaderboard.

Duplicates: the same case id with the same record hash is one record (its origins are all
kept); the same case id with different records (the same case run twice) keeps the record of
the smallest (contributor, machine, record hash) and lists the others apart.

Everything written depends only on the set of inputs, never on their order: records are stored
sorted by case id with one fixed ``stored`` time, inputs and origins are sorted.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench import record as R
from qbench.errors import UsageError
from qbench.numerics import numerics_signature
from qbench.store import STORE_FILENAME, Store

MERGE_JSON = "merge.json"
#: The fields of a record kept beside its text; comparability is kept as two strings (``setting``:
#: the canonical JSON of :func:`_setting`, ``versions``: the JSON of :func:`_versions`' pairs).
SUMMARY_KEYS = ("case_id", "matrix", "status", "dataset_label")
#: What must be equal for two records of one dataset to be compared, in the order reasons name them.
SETTING_KEYS = ("dataset fingerprint", "training recipe", "protocol")
UNKNOWN = "unknown"


@dataclass
class Source:
    """One input: its name, hash, who made it, and its records with their hashes."""

    name: str
    sha256: str
    by: str
    machine: str
    #: (record hash, stored text, the fields comparability needs): whole records are not kept as dicts
    records: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)

    def summary(self, record: dict[str, Any], shared: dict[str, str]) -> dict[str, Any]:
        """What merging needs of ``record``; its comparability strings are ``shared`` between the
        records that have the same (one object each: they cross the process boundary once and a
        merge of 100,000 records holds a few hundred of them, not 100,000)."""
        summary = {key: record.get(key) for key in SUMMARY_KEYS}
        setting = _canonical(_setting(record))
        versions = json.dumps(list(_versions(record).items()))
        summary["setting"] = shared.setdefault(setting, setting)
        # which kernels computed it, per configuration, for the note on mixed numerics
        method = f"{record.get(R.QUANTIZER_LABEL)} / {record.get(R.CELL_LABEL)} / {record.get(R.DATASET_LABEL)}"
        numerics = numerics_signature(record.get(R.PROVENANCE))
        summary["method"] = shared.setdefault(method, method)
        summary["numerics"] = shared.setdefault(numerics, numerics)
        summary["versions"] = shared.setdefault(versions, versions)
        return summary


@dataclass
class Merged:
    kept: dict[str, tuple[str, dict[str, Any]]]  # case id -> (stored text, summary)
    origins: dict[str, list[dict[str, str]]]
    excluded: list[dict[str, Any]]
    sources: list[Source]

    def drop_texts(self) -> None:
        """Forget the stored texts (once written): what is left says which records, not what they hold."""
        self.kept = {case_id: ("", summary) for case_id, (_text, summary) in self.kept.items()}
        for source in self.sources:
            source.records = [(digest, "", summary) for digest, _text, summary in source.records]


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _folder_sha256(folder: Path) -> str:
    path = folder / "leaderboard.json"
    return hashlib.sha256(path.read_bytes()).hexdigest()


def read_source(path: Path, scratch: Path) -> Source:
    """Validate one input and read its published records (UsageError when it is unreadable or invalid)."""
    from qbench.leaderboard.audit.validate import validate_merge_input
    from qbench.publish.bundle import extract, is_bundle

    path = Path(path)
    if is_bundle(path):
        bundle = extract(path, scratch)
        folder, digest, who, problems = bundle.folder, bundle.sha256, bundle.contributor, list(bundle.problems)
    elif path.is_dir():
        folder, digest, who, problems = path, "", {}, []
        contributor = path / "contributor.json"
        if contributor.is_file():
            try:
                who = {k: str(v) for k, v in json.loads(contributor.read_text(encoding="utf-8")).items()}
            except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
                problems.append("contributor.json is not readable JSON")
    else:
        raise UsageError(f"{path}: neither a bundle (.tar.gz, .tgz, .zip from qbench pack) nor a run folder")
    if not (folder / STORE_FILENAME).is_file():
        raise UsageError(f"{path}: no {STORE_FILENAME}; merge needs the stored records (pack the run folder)")
    report = validate_merge_input(folder)
    problems += report.problems
    if problems:
        listed = "; ".join(problems[:3]) + ("; ..." if len(problems) > 3 else "")
        raise UsageError(f"{path}: does not validate, not merged ({listed}); run qbench validate {path}")
    digest = digest or _folder_sha256(folder)
    source = Source(path.name, digest, who.get("by") or UNKNOWN, who.get("machine") or UNKNOWN)
    shared: dict[str, str] = {}
    # the published runs' records, read, hashed and parsed once by the check (sorted by case id)
    for _case_id, (record_hash, text, record) in sorted(report.traced_records.items()):
        source.records.append((record_hash, text, source.summary(record, shared)))
    return source


def read_sources(inputs: list[Path], scratch: Path) -> list[Source]:
    """:func:`read_source` of every input; several inputs are validated in parallel, one process per core."""
    import os

    # the cores this process may use (taskset, a container's cpuset), not the machine's count
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(inputs), cores)
    if workers < 2 or len(inputs) < 4:
        return [read_source(path, scratch / str(i)) for i, path in enumerate(inputs)]
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    # spawn: a fresh interpreter per worker (forking a process that may hold threads is unsafe).
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn")) as pool:
        return list(pool.map(read_source, inputs, [scratch / str(i) for i in range(len(inputs))]))


def _versions(record: dict[str, Any]) -> dict[str, str]:
    plugins = (record.get(R.PROVENANCE) or {}).get("plugins") or {}
    names = {axis: record.get(axis) for axis in (R.QUANTIZER, R.CELL, R.DATASET)}
    found = {}
    for kind, entry in plugins.items() if isinstance(plugins, dict) else ():
        if isinstance(entry, dict):
            found[f"{kind} {names.get(kind, '?')}"] = f"{entry.get('distribution')} {entry.get('version')}"
    return found


def _setting(record: dict[str, Any]) -> dict[str, str]:
    """What must be equal for two records of one dataset to be compared."""
    return {
        "dataset fingerprint": str((record.get(R.PROVENANCE) or {}).get("dataset_fingerprint")),
        "training recipe": _canonical(record.get(R.TRAIN)),
        "protocol": _canonical(record.get("protocol")),
    }


def _difference(value: str, reference: str) -> str:
    """The keys that differ between two canonical JSON objects ('lr 0.05, not 0.002'), else both values."""
    try:
        mine, theirs = json.loads(value), json.loads(reference)
    except json.JSONDecodeError:
        mine = theirs = None
    if isinstance(mine, dict) and isinstance(theirs, dict):
        keys = sorted(k for k in set(mine) | set(theirs) if mine.get(k) != theirs.get(k))
        return ", ".join(f"{k} {_canonical(mine.get(k))}, not {_canonical(theirs.get(k))}" for k in keys)
    return f"{value}, not {reference}"


def _most_common(counter: Counter[str]) -> str:
    return sorted(counter.items(), key=lambda item: (-item[1], item[0]))[0][0]


def merge_sources(sources: list[Source]) -> Merged:
    sources = sorted(sources, key=lambda s: (s.by, s.machine, s.sha256, s.name))
    candidates: dict[str, list[tuple[tuple[str, str, str], tuple[str, dict[str, Any]], dict[str, str]]]] = {}
    for source in sources:
        origin = {"by": source.by, "machine": source.machine, "source": source.name, "source_sha256": source.sha256}
        for digest, text, summary in source.records:
            candidates.setdefault(str(summary[R.CASE_ID]), []).append(((source.by, source.machine, digest),
                                                                      (text, summary), origin))  # fmt: skip
    chosen: dict[str, tuple[str, dict[str, Any]]] = {}
    origins: dict[str, list[dict[str, str]]] = {}
    excluded: list[dict[str, Any]] = []
    for case_id in sorted(candidates):
        entries = sorted(candidates[case_id], key=lambda e: (e[0], e[2]["source_sha256"]))
        first_key, first, _ = entries[0]
        chosen[case_id] = first
        origins[case_id] = [dict(o) for key, _r, o in entries if key[2] == first_key[2]]
        for key, _r, origin in entries:
            if key[2] != first_key[2]:
                excluded.append({"case_id": case_id, **origin, "reason": f"the same case with other results is kept "
                                 f"from {first_key[0]} on {first_key[1]}"})  # fmt: skip
    # The reference setting of each dataset, and the reference version of each component (the
    # records' comparability strings are counted as they are: a few hundred distinct ones).
    by_dataset: dict[str, Counter[str]] = {}
    version_lists: Counter[str] = Counter()
    for _text, summary in chosen.values():
        by_dataset.setdefault(str(summary.get("dataset_label")), Counter())[summary["setting"]] += 1
        version_lists[summary["versions"]] += 1
    versions: dict[str, Counter[str]] = {}
    for pairs, count in version_lists.items():
        for component, version in json.loads(pairs):
            versions.setdefault(component, Counter())[version] += count
    reference = {label: json.loads(_most_common(counter)) for label, counter in by_dataset.items()}
    reference_versions = {component: _most_common(counter) for component, counter in versions.items()}
    decoded: dict[str, Any] = {}

    def decode(text: str) -> Any:
        if text not in decoded:
            decoded[text] = json.loads(text)
        return decoded[text]

    kept: dict[str, tuple[str, dict[str, Any]]] = {}
    for case_id in sorted(chosen):
        text, record = chosen[case_id]
        reasons = []
        expected = reference[str(record.get("dataset_label"))]
        setting = decode(record["setting"])
        for what in SETTING_KEYS:
            value = setting[what]
            if value != expected[what]:
                reasons.append(f"{what} differs from the one most cases of {record.get(R.DATASET_LABEL)} share: "
                               + _difference(value, expected[what]))  # fmt: skip
        for component, version in decode(record["versions"]):
            if version != reference_versions[component]:
                reasons.append(f"{component} is {version}, most cases used {reference_versions[component]}")
        if reasons:
            for origin in origins.pop(case_id):
                excluded.append({"case_id": case_id, **origin, "reason": "not comparable: " + "; ".join(reasons)})
        else:
            kept[case_id] = (text, record)
    excluded.sort(key=lambda e: (e["case_id"], e["by"], e["machine"], e["source_sha256"]))
    return Merged(kept, origins, excluded, sources)


def write_store(records: dict[str, Any], path: Path) -> None:
    """A store of ``records`` sorted by case id, one fixed stored time, in one transaction, without a WAL.

    ``records``: case id -> record, or -> (its stored text, a dict with its matrix and status).
    """
    if path.exists():
        path.unlink()
    Store(path).close()  # the store's own tables
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=DELETE")
        db.execute("BEGIN")
        db.executemany(
            "INSERT INTO records(case_id, matrix, status, stored, record) VALUES (?, ?, ?, 0.0, ?)",
            _rows(records)
        )
        db.execute("COMMIT")
    finally:
        db.close()


def _rows(records: dict[str, Any]):  # type: ignore[no-untyped-def]
    from qbench.leaderboard.compute.frame import record_text

    for case_id, record in sorted(records.items()):
        if isinstance(record, tuple):  # already the stored text
            text, summary = record
            yield case_id, summary.get(R.MATRIX) or "", summary.get(R.STATUS) or "", text
        else:
            yield case_id, record.get(R.MATRIX, ""), record.get(R.STATUS, ""), record_text(record)


def summary_text(summary: dict[str, Any]) -> str:
    """``merge.json``: one line per top-level key and per record of ``origins`` and ``excluded``.

    (``json.dumps(indent=...)`` falls back to the pure-Python encoder: 3 s for the origins of
    100,000 records, a tenth of the whole merge; compact lines use the C encoder and stay readable.)
    """

    def dumps(value: Any) -> str:
        return json.dumps(value, sort_keys=True, ensure_ascii=False)

    lines = []
    for key, value in sorted(summary.items()):
        if key == "origins":
            inner = ",\n".join(f" {dumps(case_id)}: {dumps(value[case_id])}" for case_id in sorted(value))
            lines.append(f"{dumps(key)}: {{\n{inner}\n}}" if value else f"{dumps(key)}: {{}}")
        elif key == "excluded" and value:
            lines.append(f"{dumps(key)}: [\n" + ",\n".join(f" {dumps(item)}" for item in value) + "\n]")
        else:
            lines.append(f"{dumps(key)}: {dumps(value)}")
    return "{\n" + ",\n".join(lines) + "\n}\n"


def numerics_notes(merged: Merged) -> list[str]:
    """Configurations whose kept records come from different numerics (qbench.numerics), by contributor."""
    groups: dict[str, list[tuple[str, dict[str, str]]]] = {}
    for case_id, (_text, summary) in merged.kept.items():
        origin = merged.origins.get(case_id) or [{}]
        who = f"{origin[0].get('by', UNKNOWN)} on {origin[0].get('machine', UNKNOWN)}"
        groups.setdefault(str(summary.get("method")), []).append((who, summary))
    found = []
    for method, items in sorted(groups.items()):
        signatures: dict[str, set[str]] = {}
        for who, summary in items:
            signatures.setdefault(who, set()).add(str(summary.get("numerics")))
        if len(set().union(*signatures.values())) > 1:
            where = "; ".join(f"{who}: {', '.join(sorted(s))}" for who, s in sorted(signatures.items()))
            found.append(f"{method}: records from different numerics ({where})")
    return found


def merge(inputs: list[Path], out: Path, title: str, plots: bool = True, replace: bool = False) -> Merged:
    """Validate and merge ``inputs`` into the folder ``out``: store, leaderboards, merge.json, site.

    ``out`` is new, empty, or an earlier merge's: the files that merge wrote (listed with their
    hashes in its ``qbench-files.json``) are replaced while unchanged; a folder holding anything
    else is refused before any input is read, unless ``replace`` (then files of the same name are
    overwritten and the others left alone). Nothing is ever removed that a merge did not write.
    """
    from qbench.leaderboard import rebuild_from_store
    from qbench.outdir import claim_output, prepare_out_dir, shown
    from qbench.publish.site import write_site

    if not inputs:
        raise UsageError("give at least one bundle or run folder to merge")
    names = [Path(p).resolve() for p in inputs]
    if len(set(names)) != len(names):
        raise UsageError("the same input is given twice")
    out = Path(out)
    if any(out.resolve() == name or out.resolve() in name.parents for name in names):
        raise UsageError(f"--out {shown(out)}: is (or holds) an input of the merge; give another folder")
    claim = claim_output(out, "merge", replace)
    with tempfile.TemporaryDirectory(prefix="qbench-merge-") as scratch:
        sources = read_sources(inputs, Path(scratch))
    merged = merge_sources(sources)
    if not merged.kept:
        raise UsageError("no comparable records among the inputs; nothing to merge")
    prepare_out_dir(out)
    try:
        store = out / STORE_FILENAME
        write_store(merged.kept, store)
        read = [{"source": s.name, "sha256": s.sha256, "by": s.by, "machine": s.machine, "records": len(s.records)}
                for s in merged.sources]  # fmt: skip
        merged.drop_texts()  # they are in the store now; the leaderboard and the site need the memory
        written = [store, *rebuild_from_store(store, out, title, plots=plots)]
        summary = {
            "format": "qbench-merge/1",
            "title": title,
            "inputs": read,
            "records": len(merged.kept),
            "origins": merged.origins,
            "excluded": merged.excluded,
        }
        notes = numerics_notes(merged)
        if notes:
            summary["numerics_notes"] = notes
        (out / MERGE_JSON).write_text(summary_text(summary), encoding="utf-8")
        written += [out / MERGE_JSON, *write_site(out, out)]
        claim.finish(written)
    except OSError as exc:
        raise UsageError(f"--out {shown(out)}: cannot write the merge there ({exc.strerror or exc}); "
                         "give --out a folder you can write to") from None  # fmt: skip
    return merged
