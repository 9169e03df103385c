"""Records (flat dicts, :mod:`qbench.record`) -> one pandas DataFrame of runs.

Only the columns the leaderboard needs are copied: the group key, status, seed, the value
columns (every column named in a record's ``directions`` plus the cost columns every record
has) and a sha256 of each whole record, which is what makes a published row traceable to the
record it came from (``qbench validate``). Curves stay in a list beside the frame: they are
only read by the plots.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from qbench import record as R
from qbench.leaderboard.compute.declarations import Declared, gather, signature
from qbench.metrics import first_test_column

#: A leaderboard row aggregates the seeds of one (dataset, cell, quantizer) triple.
GROUP_KEY = (R.DATASET_LABEL, R.CELL_LABEL, R.QUANTIZER_LABEL)
STATUSES = R.STATUSES

#: Cost columns every record carries; their direction when the record does not say.
COST_DIRECTIONS = {
    R.WEIGHT_BITS: "min",
    R.WEIGHT_BYTES: "min",
    R.TRAIN_SECONDS: "min",
    R.TOKENS_PER_SECOND: "max",
}
#: Python types whose values ``np.array(values, dtype=float)`` converts as ``pd.to_numeric`` does
#: (None as NaN, a bool as 0 or 1); an int too large for a float is not among them (see build_runs).
_PLAIN_NUMBERS = frozenset((bool, float, type(None)))
#: Value columns whose names start like this measure quality (the rest are costs).
QUALITY_PREFIXES = ("test_", "valid_", "train_")


@dataclass
class DatasetInfo:
    """What the leaderboard says about one dataset section."""

    label: str
    primary_metric: str
    direction: str
    licence: str | None = None
    selection_metric: str = ""  # the validation column the dataset declared to choose with ("" undeclared)
    quality_columns: list[str] = field(default_factory=list)
    value_columns: list[str] = field(default_factory=list)

    @property
    def declaration(self) -> dict[str, str]:
        """What :func:`qbench.protocol.selection_metric` reads of a record's ``metrics``."""
        return {"primary": self.primary_metric, "selection": self.selection_metric} if self.selection_metric else {}


@dataclass
class RunsFrame:
    """Every record as one row, and what was gathered from the records on the way."""

    runs: pd.DataFrame
    curves: Sequence[list[dict[str, Any]]]
    directions: dict[str, str]
    value_columns: list[str]
    datasets: dict[str, DatasetInfo]
    descriptions: dict[str, str]
    provenance: dict[str, list[str]]
    cost_axes: list[str] = field(default_factory=list)
    #: what the components declared, from the records (baseline, detail and leading columns)
    declared: Declared = field(default_factory=Declared)

    @property
    def quality_columns(self) -> list[str]:
        return [c for c in self.value_columns if is_quality(c)]


#: The host's own cost columns, first among the costs; then the cost axes and the leading columns
#: the backends declare (:func:`cost_order`), then the rest alphabetically.
HOST_COST_ORDER = (R.WEIGHT_BITS, R.WEIGHT_BYTES)
#: Timing columns: in the CSV, JSON and HTML, left out of the Markdown (they measure the machine).
TIMING_COLUMNS = (R.TRAIN_SECONDS, R.TOKENS_PER_SECOND)


def cost_order(cost_axes: Iterable[str], leading: Iterable[str]) -> list[str]:
    """The costs a reader compares first, in order: the host's weight columns, the backends' cost
    axes, then the columns the backends declare as ``leading_columns`` (what a reader compares next)."""
    return list(dict.fromkeys([*HOST_COST_ORDER, *cost_axes, *leading]))


def column_sort_key(order: Sequence[str]) -> Callable[[str], tuple[int, int, str]]:
    """Quality columns first, then the costs of ``order`` in that order, the others alphabetically,
    the timing columns last."""
    rank = {column: index for index, column in enumerate(order)}

    def key(column: str) -> tuple[int, int, str]:
        if is_quality(column):
            return (0, 0, column)
        if column in rank:
            return (1, rank[column], column)
        return (3 if column in TIMING_COLUMNS else 2, 0, column)

    return key


def is_quality(column: str) -> bool:
    return column.startswith(QUALITY_PREFIXES) and column not in TIMING_COLUMNS


def record_text(record: dict[str, Any]) -> str:
    """The record's canonical JSON: ``json.dumps(record, sort_keys=True, allow_nan=True)``.

    It is byte for byte what :meth:`qbench.store.Store.put` stores, so the hash of a stored
    record can be taken from the store's text without parsing it.
    """
    return json.dumps(record, sort_keys=True, allow_nan=True, default=str)


def record_sha256(record: dict[str, Any]) -> str:
    """sha256 (hex) of :func:`record_text`: what ties a published row to its record."""
    return hashlib.sha256(record_text(record).encode()).hexdigest()


def collect_provenance(provenances: Iterable[dict[str, Any] | None]) -> dict[str, list[str]]:
    """{key: sorted distinct values}, non-string values as JSON."""
    seen: dict[str, dict[str, str]] = {}
    for provenance in provenances:
        for key, value in (provenance or {}).items():
            if value is None:
                continue
            # repr first: cheap, and equal values (the common case) need no JSON encoding.
            by_repr = seen.setdefault(str(key), {})
            marker = repr(value)
            if marker not in by_repr:
                by_repr[marker] = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return {key: sorted(set(values.values())) for key, values in sorted(seen.items())}


@dataclass
class RawRuns:
    """What a source of records yields before the frame is built (records in memory or a store)."""

    raw: pd.DataFrame  # the wanted columns as found (values may be bools, None, strings)
    hashes: list[str]
    directions: dict[str, str]
    descriptions: dict[str, str]
    provenance: dict[str, list[str]]
    curves: Sequence[list[dict[str, Any]]]
    cost_axes: list[str] = field(default_factory=list)
    #: the records' distinct :func:`qbench.leaderboard.compute.declarations.signature` values
    declarations: Iterable[Any] = ()


def merge_directions(direction_maps: Iterable[dict[str, Any] | None]) -> dict[str, str]:
    """Every declared column's direction; ``""`` (a backend column that is neither better low nor
    high, e.g. whether the simulation was exact) stays ``""``: shown and aggregated, never ranked."""
    directions: dict[str, str] = {}
    for mapping in direction_maps:
        for column, direction in (mapping or {}).items():
            directions.setdefault(str(column), direction if direction in ("max", "") else "min")
    return directions


def merge_cost_axes(axis_lists: Iterable[Any]) -> list[str]:
    """The columns the backends declared as cost axes for the plots, in first-seen order."""
    axes: dict[str, None] = {}
    for listed in axis_lists:
        if isinstance(listed, str):  # a store gives the list as JSON text
            listed = json.loads(listed) if listed.startswith("[") else [listed]
        for axis in listed if isinstance(listed, list) else ():
            axes.setdefault(str(axis), None)
    return list(axes)


#: What a run was configured with (read by the protocol: grid points and superseded configurations).
CONFIG_COLUMNS = (R.TRAIN, R.QUANTIZER_PARAMS, R.CELL_PARAMS, R.DATASET_PARAMS, R.HARDWARE)


def wanted_columns(directions: dict[str, str]) -> list[str]:
    identity = [R.CASE_ID, R.MATRIX, R.STATUS, R.ERROR, R.SEED, R.FULL_PRECISION, R.DATASET_LICENCE, R.PRIMARY_METRIC,
                R.SELECTION_METRIC, R.TRAIN_STEPS, *CONFIG_COLUMNS]  # fmt: skip
    axes = [name for axis in R.AXES for name in (axis, f"{axis}_label")]
    return list(dict.fromkeys([*identity, *axes, *directions, *COST_DIRECTIONS]))


def load_runs(records: list[dict[str, Any]]) -> RunsFrame:
    """Build the runs frame from records in memory; ``records`` are not modified."""
    directions = merge_directions(record.get(R.DIRECTIONS) for record in records)
    wanted = wanted_columns(directions)
    raw = pd.DataFrame.from_records(records, columns=wanted) if records else pd.DataFrame(columns=wanted)
    descriptions: dict[str, str] = {}
    for record in records:
        for label, text in (record.get(R.DESCRIPTIONS) or {}).items():
            descriptions.setdefault(str(label), str(text))
    return build_runs(RawRuns(
        raw=raw,
        hashes=[record_sha256(record) for record in records],
        directions=directions,
        descriptions=descriptions,
        provenance=collect_provenance(record.get(R.PROVENANCE) for record in records),
        curves=[curve if isinstance(curve := record.get(R.CURVE), list) else [] for record in records],
        cost_axes=merge_cost_axes(record.get(R.COST_AXES) for record in records),
        declarations={signature(record.get(R.DECLARATIONS), record.get(R.QUANTIZER), record.get(R.HARDWARE),
                                record.get(R.STATUS), record.get(R.COST_AXES)) for record in records},
    ))  # fmt: skip


def _parts(value: Any) -> str:
    if isinstance(value, str):  # a store gives the list as JSON text
        value = json.loads(value) if value.startswith("[") else [value]
    return ", ".join(map(str, value)) if isinstance(value, (list, tuple)) else ""


def _canonical_texts(values: list[Any]) -> list[str]:
    """Objects (or their JSON text, as a store gives them) as canonical JSON, each distinct value once."""
    if set(map(type, values)) <= {str, type(None)}:  # a store's texts: a dict lookup a run
        texts = {value: _canonical(value) for value in dict.fromkeys(values)}
        return list(map(texts.__getitem__, values))
    cache: dict[Any, str] = {}
    out = []
    for value in values:
        key = value if isinstance(value, str) else repr(value)
        text = cache.get(key)
        if text is None:
            text = cache[key] = _canonical(value)
        out.append(text)
    return out


def _canonical(value: Any) -> str:
    parsed = value
    if isinstance(value, str):
        try:
            parsed = json.loads(value)
        except ValueError:
            parsed = value
    if isinstance(parsed, float) and math.isnan(parsed):
        parsed = None
    return json.dumps(parsed, sort_keys=True, separators=(",", ":"), default=str)


def build_runs(source: RawRuns) -> RunsFrame:
    raw = source.raw
    directions = dict(source.directions)
    for column, direction in COST_DIRECTIONS.items():
        if raw[column].notna().any():
            directions.setdefault(column, direction)
    declared = gather(source.declarations, source.cost_axes)
    cost_axes = list(declared.cost_axes)
    value_columns = sorted(directions, key=column_sort_key(cost_order(cost_axes, declared.leading_columns)))

    columns: dict[str, Any] = {}
    for axis in R.AXES:
        name = raw[axis].where(raw[axis].notna(), "?").astype(str)
        label = raw[f"{axis}_label"]
        columns[f"{axis}_label"] = label.where(label.notna() & (label != ""), name).astype(str)
        columns[axis] = name
    for name in (R.CASE_ID, R.MATRIX):
        columns[name] = raw[name].where(raw[name].notna(), "").astype(str)
    status = raw[R.STATUS]
    columns[R.STATUS] = status.where(status.isin(STATUSES), "error").astype(str)
    columns[R.ERROR] = raw[R.ERROR].where(raw[R.ERROR].notna(), "").astype(str)
    columns[R.SEED] = pd.to_numeric(raw[R.SEED], errors="coerce").fillna(-1).astype(np.int64)
    parts: dict[str, str] = {}  # few distinct values: format each once
    full_precision = []
    for value in raw[R.FULL_PRECISION].tolist():
        key = value if isinstance(value, str) else repr(value)
        if key not in parts:
            parts[key] = _parts(value)
        full_precision.append(parts[key])
    columns[R.FULL_PRECISION] = full_precision
    licence = raw[R.DATASET_LICENCE]
    columns["licence"] = licence.where(licence.notna(), "").astype(str)
    for name in CONFIG_COLUMNS:
        columns[name] = _canonical_texts(raw[name].tolist())
    columns[R.TRAIN_STEPS] = pd.to_numeric(raw[R.TRAIN_STEPS], errors="coerce").astype(float)
    for column in value_columns:
        values = raw[column]
        if not pd.api.types.is_numeric_dtype(values.dtype):  # object, or pandas 3's str dtype
            # a string is no number, even one that reads as one
            if isinstance(values.dtype, pd.StringDtype):  # text or missing only: no number at all
                columns[column] = np.full(len(values), math.nan)
                continue
            numbers = values.astype(object).tolist()
            kinds = set(map(type, numbers))  # few kinds: one pass
            if kinds <= _PLAIN_NUMBERS:  # bools, numbers and None (simulator flags): numpy converts them at once
                columns[column] = np.array(numbers, dtype=float)
                continue
            if any(issubclass(kind, str) for kind in kinds):
                numbers = [None if isinstance(v, str) else v for v in numbers]
            values = pd.to_numeric(pd.Series(numbers, dtype=object, index=values.index), errors="coerce")
        columns[column] = values.astype(float)  # bools become 0/1: sim_exact aggregates to a fraction
    # a "" column of text (a label such as the number formats used) has no number to aggregate
    text_only = [c for c in value_columns if directions.get(c) == "" and not np.isfinite(columns[c]).any()
                 and raw[c].notna().any()]  # fmt: skip
    value_columns = [c for c in value_columns if c not in text_only]
    for column in text_only:
        del columns[column]
        del directions[column]
    columns["record_sha256"] = source.hashes
    runs = pd.DataFrame(columns, index=pd.RangeIndex(len(raw)))
    for name in (*GROUP_KEY, *R.AXES, R.STATUS, R.MATRIX):
        runs[name] = runs[name].astype("category")
    primary_named = _named(runs[R.DATASET_LABEL], raw[R.PRIMARY_METRIC])
    selection_named = _named(runs[R.DATASET_LABEL], raw[R.SELECTION_METRIC])
    datasets = {
        label: _dataset_info(label, runs[runs["dataset_label"] == label], value_columns, directions, primary_named,
                             selection_named.get(label, ""))  # fmt: skip
        for label in sorted(runs["dataset_label"].unique())
    }
    return RunsFrame(
        runs=runs,
        curves=source.curves,
        directions=dict(sorted(directions.items())),
        value_columns=value_columns,
        datasets=datasets,
        descriptions=dict(sorted(source.descriptions.items())),
        provenance=source.provenance,
        cost_axes=[c for c in cost_axes if c in directions],
        declared=declared,
    )


def _named(labels: pd.Series, metrics: pd.Series) -> dict[str, str]:
    """{dataset label: the metric its records declare} (the first declaration of each label)."""
    named: dict[str, str] = {}
    texts = labels.astype(str).to_numpy(dtype=object)
    try:  # the distinct pairs, in order of first appearance: what a pass over every row would find first
        pairs = pd.DataFrame({"label": texts, "metric": metrics.to_numpy(dtype=object)}).drop_duplicates()
        found = zip(pairs["label"].tolist(), pairs["metric"].tolist(), strict=True)
    except TypeError:  # an unhashable value (a malformed record): every row
        found = zip(texts.tolist(), metrics.tolist(), strict=True)
    for label, metric in found:
        if isinstance(metric, str) and metric:
            named.setdefault(label, metric)
    return named


def _dataset_info(
    label: str, rows: pd.DataFrame, value_columns: list[str], directions: dict[str, str], named: dict[str, str],
    selection: str = "",
) -> DatasetInfo:
    present = [c for c in value_columns if rows[c].notna().any()]
    quality = [c for c in present if is_quality(c)]
    primary = named.get(label)
    if primary not in directions:  # a record made before datasets declared their metrics
        candidates = [first_test_column(quality)] if first_test_column(quality) else []
        candidates += quality + present + value_columns
        primary = candidates[0] if candidates else ""
    if primary and primary not in present:
        present = [primary, *present]
    licences = sorted(x for x in rows["licence"].unique() if x)
    return DatasetInfo(
        label=label,
        primary_metric=primary,
        direction=directions.get(primary, "min"),
        licence="; ".join(licences) or None,
        selection_metric=selection if selection in directions else "",
        quality_columns=[c for c in present if is_quality(c)],
        value_columns=present,
    )
