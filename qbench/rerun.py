"""Audit by re-execution: run stored cases again from the recipe in their records and compare.

``qbench validate`` recomputes every published value from the stored records, which catches any
inconsistency between the records and the pages, but not a record that was made up (or altered
in the store and every page alike). Running a few cases again does: a case is rebuilt from its
record alone (components, resolved parameters, seed, training recipe, backends), its rebuilt id
must equal the stored id (so the recipe is complete), and the fresh record is compared with the
stored one:

- both made in the portable numerics mode: every field must be identical, bit for bit, except the
  timing and placement fields (:data:`qbench.record.VOLATILE_FIELDS`, the curves' seconds);
- otherwise (a native record, or one from before qbench recorded its numerics): the status must be
  the same and every metric within a relative tolerance (:data:`DEFAULT_TOLERANCE`: two CPUs'
  native kernels were seen to move test bpc by up to 3.7% on the quickstart, docs/numerics.md).

Which cases: ``k`` drawn from the ``ok`` records by a seeded generator (the same seed draws the same
cases), or named ones.
"""

from __future__ import annotations

import json
import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qbench import record as R
from qbench.errors import UsageError
from qbench.matrix import Case, Spec, case_id_for
from qbench.numerics import NATIVE, PORTABLE

#: Relative tolerance on metrics when the two records cannot be compared bit for bit.
DEFAULT_TOLERANCE = 0.05

IDENTICAL = "identical"
WITHIN = "within tolerance"
DIFFERS = "differs"
NOT_REBUILT = "not rebuilt"


@dataclass(frozen=True)
class Verdict:
    case_id: str
    label: str  # "method, seed N"
    outcome: str  # IDENTICAL, WITHIN, DIFFERS or NOT_REBUILT
    detail: str

    @property
    def ok(self) -> bool:
        return self.outcome in (IDENTICAL, WITHIN)

    def line(self) -> str:
        return f"{self.case_id} ({self.label}): {self.outcome}" + (f": {self.detail}" if self.detail else "")


def choose(records: Mapping[str, Mapping[str, Any]], count: int | None, named: Sequence[str], seed: int) -> list[str]:
    """The case ids to run again: ``named`` ones (each must be stored) plus ``count`` drawn from the
    other ``ok`` records with ``random.Random(seed)`` (``count`` None: every ``ok`` record)."""
    unknown = [case_id for case_id in named if case_id not in records]
    if unknown:
        raise UsageError(f"--rerun-case {unknown[0]}: no such case in the store; `qbench run --dry-run` or the "
                         "leaderboard's runs list the case ids")  # fmt: skip
    chosen = list(dict.fromkeys(named))
    pool = sorted(cid for cid, rec in records.items() if rec.get(R.STATUS) == "ok" and cid not in chosen)
    if count is None:
        return chosen + pool
    return chosen + random.Random(seed).sample(pool, min(count, len(pool)))


def _label_params(label: str) -> dict[str, Any]:
    """The parameters a label shows: ``energy(node="45nm",bits=4)`` -> {node: "45nm", bits: 4}."""
    _, _, rest = label.partition("(")
    given: dict[str, Any] = {}
    for item in _split_params(rest.removesuffix(")")) if rest else []:
        key, _, text = item.partition("=")
        given[key] = json.loads(text)
    return given


def _spec_from_label(label: str, host: Any) -> Spec:
    """A hardware backend from its label (``energy`` or ``energy(node="45nm")``), defaults resolved."""
    given = _label_params(label)
    name = label.partition("(")[0]
    component = host.create("hardware", name, **given)
    return Spec(name, dict(component.config), tuple(given))


def _quantizer_spec(record: Mapping[str, Any], host: Any) -> Spec:
    """The quantizer of a record: a plain one from its name and resolved parameters, or a composition
    (``ternary+hidden=lsq(bits=4,hidden=true)``, the label of ``roles.ROLE`` in the matrix) whose
    role quantizers are rebuilt from their labels, defaults resolved by the host as the matrix does."""
    label = str(record[R.QUANTIZER_LABEL])
    parts = _split_top(label, "+")
    params = dict(record[R.QUANTIZER_PARAMS])
    if len(parts) == 1:
        return Spec(record[R.QUANTIZER], params, tuple(_label_params(label)))
    default, roles = parts[0], []
    for part in parts[1:]:
        role, _, role_label = part.partition("=")
        given = _label_params(role_label)
        component = host.create("quantizer", role_label.partition("(")[0], **given)
        roles.append((role, Spec(role_label.partition("(")[0], dict(component.config), tuple(given))))
    return Spec(default.partition("(")[0], params, tuple(_label_params(default)), tuple(roles))


def _split_top(text: str, separator: str) -> list[str]:
    """``a(x=1)+b=c(y="+")`` split at the separators outside brackets and quotes."""
    parts, depth, quoted, current = [], 0, False, ""
    for char in text:
        if char == '"' and not current.endswith("\\"):
            quoted = not quoted
        elif not quoted and char in "([{":
            depth += 1
        elif not quoted and char in ")]}":
            depth -= 1
        if char == separator and depth == 0 and not quoted:
            parts.append(current)
            current = ""
        else:
            current += char
    return [*parts, current]


def _split_params(text: str) -> list[str]:
    """``a=1,b=[1,2],c="x,y"`` split at the top-level commas."""
    parts = _split_top(text, ",")
    return parts if parts[-1] else parts[:-1]


def case_from_record(record: Mapping[str, Any], host: Any) -> Case:
    """The case a record was made from, rebuilt from the record alone; ``ValueError`` when the record
    does not hold its whole recipe (its rebuilt id differs from the stored one)."""
    try:
        axes = {}
        for axis in R.AXES:
            if axis == R.QUANTIZER:
                axes[axis] = _quantizer_spec(record, host)
                continue
            params = dict(record[f"{axis}_params"])
            given = tuple(_label_params(str(record[f"{axis}_label"])))
            axes[axis] = Spec(record[axis], params, given)
        hardware = tuple(_spec_from_label(label, host) for label in record.get(R.HARDWARE, []))
        seed, train = int(record[R.SEED]), dict(record[R.TRAIN])
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the record does not hold its recipe ({type(exc).__name__}: {exc})") from None
    case_id = case_id_for(axes[R.QUANTIZER], axes[R.CELL], axes[R.DATASET], hardware, seed, train)
    if case_id != record.get(R.CASE_ID):
        raise ValueError(f"its recipe rebuilds case {case_id}, not {record.get(R.CASE_ID)}: the record was altered "
                         "or made by another version of a component")  # fmt: skip
    return Case(case_id, str(record.get(R.MATRIX, "")), axes[R.QUANTIZER], axes[R.CELL], axes[R.DATASET], hardware,
                seed, train)  # fmt: skip


def _comparable(record: Mapping[str, Any]) -> dict[str, Any]:
    """The record without its timing and placement fields (and the curves without their seconds)."""
    kept = {k: v for k, v in record.items() if k not in R.VOLATILE_FIELDS}
    if isinstance(kept.get(R.CURVE), list):
        kept[R.CURVE] = [{k: v for k, v in point.items() if k != "seconds"} if isinstance(point, dict) else point
                         for point in kept[R.CURVE]]  # fmt: skip
    return kept


def numerics_of(record: Mapping[str, Any]) -> str | None:
    provenance = record.get(R.PROVENANCE)
    return provenance.get("numerics") if isinstance(provenance, dict) else None


def compare(stored: Mapping[str, Any], fresh: Mapping[str, Any], tolerance: float) -> tuple[str, str]:
    """(outcome, detail) of a fresh record against the stored one (see the module's docstring)."""
    if fresh.get(R.STATUS) != stored.get(R.STATUS):
        why = f" ({fresh.get(R.ERROR)})" if fresh.get(R.ERROR) else ""
        return DIFFERS, f"status {fresh.get(R.STATUS)}{why}, stored {stored.get(R.STATUS)}"
    a, b = _comparable(stored), _comparable(fresh)
    # a field the stored record lacks was added by a later qbench (say, the components'
    # declarations): the re-run cannot leave it out, and it says nothing about the stored numbers
    added = sorted(set(b) - set(a))
    changed = sorted(k for k in a if a.get(k) != b.get(k))
    if not changed:
        newer = f" (fields a later qbench writes, not compared: {', '.join(added)})" if added else ""
        return IDENTICAL, "every stored field bit for bit" + newer
    exact = numerics_of(stored) == PORTABLE and numerics_of(fresh) == PORTABLE
    if exact:
        return DIFFERS, f"both portable, yet {len(changed)} field(s) differ: {', '.join(changed[:6])}"
    metrics = sorted(k for k in a if k.startswith(("test_", "valid_", "train_")) and k != R.TRAIN_STEPS)
    worst, where = 0.0, ""
    for key in metrics:
        x, y = a.get(key), b.get(key)
        if not (_number(x) and _number(y)):
            if x != y:
                return DIFFERS, f"{key}: {y!r}, stored {x!r}"
            continue
        scale = max(abs(x), abs(y), 1e-12)
        rel = abs(x - y) / scale if not (math.isnan(x) and math.isnan(y)) else 0.0
        if rel > worst:
            worst, where = rel, f"{key}: {y:.6g}, stored {x:.6g}"
    if worst > tolerance:
        return DIFFERS, f"{where} ({worst:.2%} apart, tolerance {tolerance:.2%})"
    mode = f"{numerics_of(stored) or 'unrecorded'} numerics stored, {numerics_of(fresh) or 'unrecorded'} now"
    others = [k for k in changed if k not in metrics]
    fields = ""
    if others:
        fields = f"; other fields that differ: {', '.join(others[:6])}" + (" ..." if len(others) > 6 else "")
    return WITHIN, f"largest metric difference {worst:.3%} ({mode}; not bit for bit{fields})"


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def label_of(record: Mapping[str, Any]) -> str:
    return (f"{record.get(R.QUANTIZER_LABEL)}, {record.get(R.CELL_LABEL)}, {record.get(R.DATASET_LABEL)}, "
            f"seed {record.get(R.SEED)}")  # fmt: skip


def rerun(records: Mapping[str, Mapping[str, Any]], case_ids: Iterable[str], host: Any, workers: int,
          tolerance: float = DEFAULT_TOLERANCE, echo: Callable[[str], None] = print) -> list[Verdict]:
    """Run ``case_ids`` again (each in the numerics mode its record was made in) and compare."""
    from qbench.executors import get_executor

    verdicts: dict[str, Verdict] = {}
    by_mode: dict[str, list[Case]] = {}
    for case_id in case_ids:
        record = records[case_id]
        try:
            case = case_from_record(record, host)
        except (ValueError, UsageError) as exc:
            verdicts[case_id] = Verdict(case_id, label_of(record), NOT_REBUILT, str(exc))
            continue
        by_mode.setdefault(PORTABLE if numerics_of(record) == PORTABLE else NATIVE, []).append(case)
    for mode, cases in by_mode.items():
        echo(f"re-running {len(cases)} case(s) in the {mode} numerics mode")
        executor = get_executor("local", max(1, min(workers, len(cases))), host=host, numerics=mode)
        try:
            for fresh in executor.run(cases):
                stored = records[fresh[R.CASE_ID]]
                outcome, detail = compare(stored, fresh, tolerance)
                verdicts[fresh[R.CASE_ID]] = Verdict(fresh[R.CASE_ID], label_of(stored), outcome, detail)
        finally:
            executor.close()
    return [verdicts[cid] for cid in case_ids if cid in verdicts]


def audit_folder(store_path: Path, folder: Path, count: int | None, named: Sequence[str], seed: int,
                 tolerance: float | None, workers: int, host: Any, echo: Callable[[str], None] = print) -> list[str]:
    """Re-run cases of a run folder's store (``count`` drawn, None: all, plus ``named``): each verdict
    echoed, and a problem for each case that is not identical or within tolerance."""
    from qbench.store import Store

    if not Path(store_path).is_file():
        raise UsageError(f"{store_path}: no store to re-run cases from; --rerun needs the run's qbench.sqlite")
    with Store.read_only(store_path) as store:
        records = {r[R.CASE_ID]: r for r in store.records(skip_damaged=True)}
    try:  # only the cases the leaderboard was built from, when run.json names them
        published = set(json.loads((Path(folder) / "run.json").read_text())["case_ids"])
        records = {cid: r for cid, r in records.items() if cid in published or cid in named}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    chosen = choose(records, count, named, seed)
    if not chosen:
        return [f"{folder}: --rerun: the store has no ok case to re-run"]
    verdicts = rerun(records, chosen, host, workers, DEFAULT_TOLERANCE if tolerance is None else tolerance, echo)
    for verdict in verdicts:
        echo(f"rerun: {verdict.line()}")
    echo(f"rerun: {sum(v.ok for v in verdicts)} of {len(verdicts)} re-run case(s) reproduce their stored records")
    return [f"re-run of {v.case_id} ({v.label}): {v.outcome}: {v.detail}" for v in verdicts if not v.ok]
