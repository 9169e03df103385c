"""The record: one case's result, as stored (one JSON object per row of the store) and on the wire.

This is the one definition of it. :data:`FIELDS` is the table of the fixed fields the host
writes (name, JSON types, whether every record has it); :func:`new_record` is the constructor the
runner (and the test fixtures) build every record with, :func:`failed` turns one into a record of
a case that could not finish, and :func:`check_version` / :func:`from_json` read a stored
record's schema version. The published JSON Schema (``qbench/schemas/record-1.schema.json``) is
:func:`json_schema` written out; a test keeps the two equal.

The open part of a record is not listed here: metric columns (``test_bpc``, declared by the
dataset) and hardware columns (declared by backends) are top-level keys named in
``directions``; who may write which name is :mod:`qbench.columns`' business.

Records stay plain JSON-able dicts: they are pickled between worker processes and Dask, and
stored as canonical JSON (``json.dumps(record, sort_keys=True)``), so a typed object would only
be converted back and forth. The field-name constants below are what readers index them with.
No numpy, no torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qbench.errors import UsageError

#: The record format this qbench writes and reads. A record of version 1 does not carry it
#: (stores written before the version was read have none): absent means 1.
SCHEMA_VERSION = 1
#: Statuses of a finished case.
STATUSES = ("ok", "diverged", "error")

# ---- field names: readers index records with these, never with a spelled-out string ----------
SCHEMA = "schema"
CASE_ID = "case_id"
MATRIX = "matrix"
STATUS = "status"
ERROR = "error"
TRACEBACK = "traceback"
QUANTIZER = "quantizer"
QUANTIZER_PARAMS = "quantizer_params"
QUANTIZER_LABEL = "quantizer_label"
CELL = "cell"
CELL_PARAMS = "cell_params"
CELL_LABEL = "cell_label"
DATASET = "dataset"
DATASET_PARAMS = "dataset_params"
DATASET_LABEL = "dataset_label"
DATASET_LICENCE = "dataset_licence"
HARDWARE = "hardware"
HARDWARE_STATUS = "hardware_status"
SEED = "seed"
TRAIN = "train"
DIRECTIONS = "directions"
CURVE = "curve"
DESCRIPTIONS = "descriptions"
PROVENANCE = "provenance"
METRICS = "metrics"
PRIMARY_METRIC = "primary_metric"
SELECTION_METRIC = "selection_metric"
COST_AXES = "cost_axes"
DECLARATIONS = "declarations"
WEIGHT_BITS = "weight_bits"
WEIGHT_BYTES = "weight_bytes"
WEIGHT_COUNT = "weight_count"
TRAIN_SECONDS = "train_seconds"
TRAIN_STEPS = "train_steps"
TOKENS_PER_SECOND = "tokens_per_second"
FULL_PRECISION = "full_precision"
STARTED = "started"
FINISHED = "finished"

#: The three axes of a case: each has ``<axis>``, ``<axis>_params`` and ``<axis>_label`` fields.
AXES = (DATASET, CELL, QUANTIZER)
#: Fields that legitimately differ between two runs of the same case (timing and placement).
VOLATILE_FIELDS = (STARTED, FINISHED, TRAIN_SECONDS, TOKENS_PER_SECOND, PROVENANCE, "curve_seconds")


@dataclass(frozen=True)
class Field:
    """One fixed field: its JSON type(s), whether every record has it, and what it holds."""

    name: str
    types: tuple[str, ...]
    required: bool
    doc: str
    #: extra JSON Schema keywords (an enum, the type of a map's values or of a list's items)
    extra: tuple[tuple[str, Any], ...] = ()

    def schema(self) -> dict[str, Any]:
        kinds: dict[str, Any] = {"type": self.types[0] if len(self.types) == 1 else list(self.types)}
        if dict(self.extra).get("enum"):
            kinds = {}
        return {**kinds, **dict(self.extra), "description": self.doc}


_STRINGS = (("additionalProperties", {"type": "string"}),)
#: The fixed fields, in the order the schema lists them. ``required``: every record has it
#: (the rest are absent from a record of a case that failed before training, or from old ones).
FIELDS: tuple[Field, ...] = (
    Field(CASE_ID, ("string",), True, "the case's id (the store's key)", (("minLength", 1),)),
    Field(MATRIX, ("string",), True, "the matrix the case belongs to"),
    Field(STATUS, ("string",), True, "how the case ended", (("enum", list(STATUSES)),)),
    Field(ERROR, ("string", "null"), False, "why a case did not finish (null when it did)"),
    Field(TRACEBACK, ("string",), False, "the end of the traceback of a case that raised"),
    Field(QUANTIZER, ("string",), True, "the quantizer's component name"),
    Field(QUANTIZER_PARAMS, ("object",), False, "the quantizer's parameters"),
    Field(QUANTIZER_LABEL, ("string",), True, "the quantizer with its parameters, as the tables show it"),
    Field(CELL, ("string",), True, "the cell's component name"),
    Field(CELL_PARAMS, ("object",), False, "the cell's parameters"),
    Field(CELL_LABEL, ("string",), True, "the cell with its parameters"),
    Field(DATASET, ("string",), True, "the dataset's component name"),
    Field(DATASET_PARAMS, ("object",), False, "the dataset's parameters"),
    Field(DATASET_LABEL, ("string",), True, "the dataset with its parameters"),
    Field(DATASET_LICENCE, ("string",), False, "the licence the dataset declares"),
    Field(HARDWARE, ("array",), False, "labels of the case's hardware backends", (("items", {"type": "string"}),)),
    Field(HARDWARE_STATUS, ("object",), False, "per backend label: ok, 'unsupported: ...' or 'error: ...'",
          _STRINGS),  # fmt: skip
    Field(SEED, ("integer",), True, "the training seed"),
    Field(TRAIN, ("object",), True, "the training recipe"),
    Field(DIRECTIONS, ("object",), True,
          "every metric and hardware column of the record: min or max (better low or high) or '' (neither)",
          (("additionalProperties", {"enum": ["min", "max", ""]}),)),  # fmt: skip
    Field(CURVE, ("array",), False, "one object per epoch (train loss, validation metrics)",
          (("items", {"type": "object"}),)),  # fmt: skip
    Field(DESCRIPTIONS, ("object",), False, "per component label: its one-line description", _STRINGS),
    Field(PROVENANCE, ("object",), False, "versions, machine, plugins, matrix hash, dataset fingerprint"),
    Field(METRICS, ("object",), False, "the metrics the dataset declared (task, primary, selection, directions)"),
    Field(PRIMARY_METRIC, ("string",), False, "the column the dataset ranks by"),
    Field(SELECTION_METRIC, ("string",), False, "the validation column the dataset chooses with"),
    Field(COST_AXES, ("array",), False, "the columns the backends declare as cost axes for the plots",
          (("items", {"type": "string"}),)),  # fmt: skip
    Field(DECLARATIONS, ("object",), False,
          "what the case's components declare that the leaderboards show: whether the quantizer is the "
          "full-precision baseline, and per backend label its detail columns (those its headline leaves out "
          "of the Markdown) and leading columns, with the record's column suffix; so that a leaderboard is "
          "built from the records alone, without the plugins installed",
          (("properties", {
              "quantizer": {"type": "object", "required": ["name", "baseline"], "properties": {
                  "name": {"type": "string"}, "baseline": {"type": "boolean"}}},
              "hardware": {"type": "object", "additionalProperties": {
                  "type": "object", "required": ["backend", "detail_columns", "leading_columns"], "properties": {
                      "backend": {"type": "string"},
                      "detail_columns": {"type": "array", "items": {"type": "string"}},
                      "leading_columns": {"type": "array", "items": {"type": "string"}}}}},
          }),)),  # fmt: skip
    Field(WEIGHT_BITS, ("number",), False, "bits per weight the quantizer stores"),
    Field(WEIGHT_BYTES, ("number",), False, "bytes of the weights at that width"),
    Field(WEIGHT_COUNT, ("integer",), False, "weights of the model"),
    Field(TRAIN_SECONDS, ("number", "null"), False, "seconds of training"),
    Field(TRAIN_STEPS, ("integer",), False, "optimizer steps taken"),
    Field(TOKENS_PER_SECOND, ("number", "null"), False, "training throughput"),
    Field(FULL_PRECISION, ("array",), False, "the parts left in full precision",
          (("items", {"type": "string"}),)),  # fmt: skip
    Field(STARTED, ("string",), False, "when the case started (ISO 8601, UTC)"),
    Field(FINISHED, ("string",), False, "when the case finished (ISO 8601, UTC)"),
    Field(SCHEMA, ("integer",), False, f"the record format's version (absent: 1; this qbench writes {SCHEMA_VERSION})"),
)
FIELD_NAMES = tuple(f.name for f in FIELDS)
REQUIRED = tuple(f.name for f in FIELDS if f.required)
_FIXED = frozenset(FIELD_NAMES)


def open_columns(record: Mapping[str, Any]) -> dict[str, Any]:
    """The open part of a record: every value that is not a fixed field (the metric columns the
    dataset declares and the hardware columns the backends declare)."""
    return {key: value for key, value in record.items() if key not in _FIXED}


def new_record(
    *,
    case_id: str,
    matrix: str,
    axes: Mapping[str, tuple[str, Mapping[str, Any], str]],
    hardware: Sequence[str],
    seed: int,
    train: Mapping[str, Any],
) -> dict[str, Any]:
    """The configuration part of a record, the same for every outcome (status ``error`` until the
    runner says otherwise). ``axes``: ``{dataset|cell|quantizer: (name, params, label)}``."""
    record: dict[str, Any] = {CASE_ID: case_id, MATRIX: matrix, STATUS: "error", ERROR: None}
    for axis in (QUANTIZER, CELL, DATASET):
        name, params, label = axes[axis]
        record.update({axis: name, f"{axis}_params": dict(params), f"{axis}_label": label})
    record.update({
        HARDWARE: list(hardware), SEED: seed, TRAIN: dict(train), DIRECTIONS: {}, CURVE: [],
        HARDWARE_STATUS: {}, DESCRIPTIONS: {},
    })  # fmt: skip
    return record


def failed(record: dict[str, Any], message: str, status: str, when: str, provenance: Mapping[str, Any]) -> None:
    """Make ``record`` the record of a case that could not finish (``status`` ``error`` or ``diverged``)."""
    if status not in STATUSES or status == "ok":
        raise ValueError(f"a failed case's status is diverged or error, not {status!r}")
    record.update({STATUS: status, ERROR: message, STARTED: when, FINISHED: when, PROVENANCE: dict(provenance)})


def version_of(record: Mapping[str, Any]) -> int:
    """The record format version of a stored record (absent: 1); UsageError for one this qbench cannot read."""
    found = record.get(SCHEMA, 1)
    if isinstance(found, int) and not isinstance(found, bool) and found == SCHEMA_VERSION:
        return found
    where = f"record {record.get(CASE_ID)!r}"
    if isinstance(found, int) and not isinstance(found, bool) and found > SCHEMA_VERSION:
        raise UsageError(f"{where} has record format version {found}, newer than the version {SCHEMA_VERSION} "
                         "this qbench reads: upgrade qbench (pip install -U qbench) to read this store")  # fmt: skip
    raise UsageError(f"{where} has record format version {found!r}, which no qbench writes (this one reads "
                     f"{SCHEMA_VERSION}): the store was not written by qbench or is damaged; re-run the matrix "
                     "into a new --out")  # fmt: skip


def check_version(record: Mapping[str, Any]) -> None:
    """Raise UsageError unless ``record`` is of the format this qbench reads (see :func:`version_of`)."""
    version_of(record)


def from_json(text: str) -> dict[str, Any]:
    """A stored record from its JSON text, its version checked (ValueError: not a JSON object)."""
    record = json.loads(text)
    if not isinstance(record, dict):
        raise ValueError(f"the JSON is a {type(record).__name__}, not an object")
    check_version(record)
    return record


def json_schema() -> dict[str, Any]:
    """The published JSON Schema of a record (``qbench/schemas/record-<SCHEMA_VERSION>.schema.json``)."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"qbench-record/{SCHEMA_VERSION}",
        "title": f"qbench record (one case's result), store schema version {SCHEMA_VERSION}",
        "description": ("One row of the results store (one case's result), generated from qbench/record.py; "
                        "docs/architecture.md follows a case to its record. Metric and hardware columns are "
                        "further top-level values named in 'directions', declared by the dataset and the "
                        "backends."),  # fmt: skip
        "type": "object",
        "required": list(REQUIRED),
        "properties": {f.name: f.schema() for f in FIELDS},
    }


def main() -> None:  # pragma: no cover - a maintainer's tool: python -m qbench.record > the schema file
    print(json.dumps(json_schema(), indent=2))


if __name__ == "__main__":  # pragma: no cover
    main()
