"""Which cases of a matrix run next, given what is stored: the protocol applied to the store.

The rounds of a run (:class:`qbench.rounds.Rounds`) call :func:`next_cases` with the matrix
expanded once (:class:`qbench.expanded.ExpandedMatrix`): first the tuning grid of every method, then the
points beyond an edge of the grid for the methods whose choice sits there (``[tune] extend``, one
step a round), then the chosen configuration's first seeds (the first stage of Stein's
procedure), then the seeds that stage asks for. Every decision is a pure function of the stored records
(:func:`qbench.protocol.decide`), so a run that was killed in any phase resumes exactly where
it stopped, and ``qbench validate`` can recompute the same decisions from the records.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from qbench.errors import UsageError
from qbench.expanded import ExpandedMatrix, labels
from qbench.matrix import Case, Matrix
from qbench.protocol import (
    Decisions,
    Method,
    Observation,
    canonical,
    decide,
    primary_metric,
    selection_metric,
)


@dataclass
class Round:
    """The cases to run now and the decisions that chose them."""

    cases: list[Case]
    decisions: Decisions | None
    phase: str  # "tuning" | "extension" | "evaluation" | "done"


def observation(case: Case, record: Mapping[str, Any], matrix: Matrix) -> tuple[Observation, str, str]:
    """The protocol's view of one stored record, with the dataset's selection metric direction."""
    directions = record.get("directions") or {}
    declaration = record.get("metrics")
    primary = primary_metric(directions, declaration)
    chosen_by = selection_metric(primary, directions, matrix.protocol, declaration)

    def value(key: str) -> float:
        raw = record.get(key) if key else None
        return float(raw) if isinstance(raw, (int, float)) and not isinstance(raw, bool) else math.nan

    obs = Observation(
        method=case.method, quantizer=case.quantizer.identity, point=canonical(dict(case.tuned)), seed=case.seed,
        status=str(record.get("status", "error")), valid=value(chosen_by), primary=value(primary),
        case_id=case.case_id,
    )  # fmt: skip
    return obs, case.dataset.label, str(directions.get(chosen_by, "min"))


def stale_cases(cases: list[Case], records: Mapping[str, Mapping[str, Any]], host: Any) -> dict[str, str]:
    """``{case id: why}`` for the stored records made with another distribution or version of one of
    their case's components than the one installed now (hardware backends included).

    Case ids leave versions out (stores of long reproductions stay valid while their plugins do
    not change); this comparison is what keeps a re-versioned plugin's old results from being
    resumed. A record without versions (an executor's error record) is never stale: it re-runs anyway.
    """
    from qbench.provenance import component_versions

    stale: dict[str, str] = {}
    moved: dict[tuple[str, str, str], list[Case]] = {}
    for case in cases:
        record = records.get(case.case_id)
        provenance = record.get("provenance") if record else None
        recorded = provenance.get("plugins") if isinstance(provenance, Mapping) else None
        if not isinstance(recorded, Mapping) or not recorded:
            continue
        try:
            now = component_versions(case, host)
        except Exception:  # noqa: BLE001 - an uninstalled component: the run itself reports it
            continue
        changes = []
        for key, current in now.items():
            old = recorded.get(key)
            if not isinstance(old, Mapping):  # recorded before hardware versions were: nothing to compare
                continue
            if old.get("distribution") and current["distribution"] and old.get("distribution") != current[
                    "distribution"]:  # fmt: skip
                moved.setdefault((key, str(old.get("distribution")), current["distribution"]), []).append(case)
                continue
            if (old.get("distribution"), old.get("version")) != (current["distribution"], current["version"]):
                changes.append(f"{key.split(':')[0]} {current['plugin']!r}: {old.get('distribution') or '?'} "
                               f"{old.get('version') or '?'} -> {current['distribution']} {current['version']}")
        if changes:
            stale[case.case_id] = "; ".join(changes)
    if moved:
        raise UsageError(_moved_message(moved))
    return stale


def _moved_message(moved: Mapping[tuple[str, str, str], list[Case]]) -> str:
    """A component name that now resolves to another distribution's component: another model, not a
    new version of the same, so its stored records are neither resumed nor replaced."""
    parts = []
    for (key, before, now), cases in sorted(moved.items()):
        kind = key.split(":")[0]
        spec = next((s for s in cases[0].hardware if f"hardware:{s.label}" == key), None) if kind == "hardware" \
            else getattr(cases[0], kind)  # fmt: skip
        name = spec.name if spec is not None else key
        parts.append(f"{kind} {name!r} of {len(cases)} stored case(s) came from {before}, and {name!r} now names "
                     f"{now}'s component, another one")  # fmt: skip
    return ("; ".join(parts) + ". The stored results are kept and not replaced: install the distribution they came "
            "from again, or name the component you want by its qualified name (e.g. 'DIST:name', see `qbench list`; "
            "that makes new cases), or run into another --out")


def extension_points(decisions: Decisions | None) -> dict[Method, list[str]]:
    """The points beyond the grid that each method reached (tried or waiting), from the decisions."""
    if decisions is None:
        return {}
    return {method: [s.point for s in selection.points if s.extension] + list(selection.pending)
            for method, selection in decisions.selections.items()
            if selection.pending or any(s.extension for s in selection.points)}  # fmt: skip


def next_cases(expanded: ExpandedMatrix, lookup: Callable[[list[Case]], Mapping[str, Mapping[str, Any]]],
               done: Callable[[str, Mapping[str, Any]], bool]) -> Round:  # fmt: skip
    """The cases to run now.

    ``lookup(cases)`` returns the stored records of those cases (by case id); ``done(case_id,
    record)`` says whether a stored record counts (an ``error`` stored by an earlier run does
    not: it is re-run; one stored by this run does).
    """
    protocol = expanded.protocol
    if protocol.trivial:
        cases = list(expanded.cases)
        stored = lookup(cases)
        return Round([c for c in cases if not (c.case_id in stored and done(c.case_id, stored[c.case_id]))], None,
                     "evaluation")  # fmt: skip
    tuning = list(expanded.cases) if protocol.grid else []
    stored = dict(lookup(tuning))
    pending = [c for c in tuning if not (c.case_id in stored and done(c.case_id, stored[c.case_id]))]
    if pending:
        return Round(pending, None, "tuning")
    known = {c.case_id: c for c in tuning}
    # each pass can only add cases (an extension step or seeds); bounded by the steps and the maximum
    for _ in range(protocol.max_seeds + protocol.extend + 2):
        decisions = _decisions(expanded, known, stored, done)
        wanted, extending = [], []
        for index, method in enumerate(expanded.methods):
            selection = decisions.selections.get(labels(method))
            for point in selection.pending if selection is not None else ():
                for seed in protocol.tuning_seed_list:
                    case = expanded.case_for(index, json.loads(point), seed)
                    if case is not None:
                        extending.append(case)
            chosen = selection.chosen if selection is not None else canonical({})
            if chosen is None or (selection is not None and selection.bracket == "extending"):
                continue  # no configuration trained on every tuning seed, or its extension runs first
            count = decisions.seeds.get(labels(method), protocol.min_seeds)
            for seed in protocol.seeds[:count]:
                case = expanded.case_for(index, json.loads(chosen), seed)
                if case is not None:
                    wanted.append(case)
        fresh = [c for c in (*extending, *wanted) if c.case_id not in known]
        for case in fresh:
            known[case.case_id] = case
        if fresh:
            stored.update(lookup(fresh))
        # the extension steps of some methods and the seeds of the others run in one round
        pending = [c for c in (*extending, *wanted) if not (c.case_id in stored and done(c.case_id, stored[c.case_id]))]
        if pending:
            phase = "extension" if any(c in extending for c in pending) else "evaluation"
            return Round(pending, decisions, phase)
        if not fresh:
            return Round([], decisions, "done")
    return Round([], decisions, "done")


def _decisions(expanded: ExpandedMatrix, known: dict[str, Case], stored: Mapping[str, Mapping[str, Any]],
               done: Callable[[str, Mapping[str, Any]], bool]) -> Decisions:  # fmt: skip
    observations: list[Observation] = []
    directions: dict[str, str] = {}
    for case_id, case in known.items():
        record = stored.get(case_id)
        if record is None or not done(case_id, record):
            continue
        obs, dataset, direction = observation(case, record, expanded.matrix)
        observations.append(obs)
        directions.setdefault(dataset, direction)
    return decide(observations, expanded.protocol, directions, list(expanded.grid))


def bracket_lines(decisions: Decisions | None) -> list[str]:
    """One line per tuned row whose choice is not bracketed by the grid (``--dry-run`` prints them)."""
    lines = []
    for method, selection in sorted((decisions.selections if decisions else {}).items()):
        where = " / ".join(method)
        if selection.bracket == "unbracketed":
            lines.append(f"unbracketed: {where}: chose {', '.join(selection.edges)}; its optimum may lie beyond "
                         "the grid (raise [tune] extend, or widen the grid)")  # fmt: skip
        elif selection.bracket == "extending":
            lines.append(f"extending: {where}: the grid is being extended beyond its edge "
                         f"({len(selection.pending)} point(s) to tune)")  # fmt: skip
    return lines
