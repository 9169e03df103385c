"""The published JSON Schemas (``leaderboard.json`` and the record), checked by a compiled validator.

The schemas are JSON Schema files shipped in the package, one per version:
``leaderboard-<N>.schema.json`` (the one statement of the leaderboard JSON's shape) and
``record-<N>.schema.json`` (generated from :mod:`qbench.record`). They are checked with
``fastjsonschema``, which compiles each schema once into Python code: a merge checks 100,000
records, nearly all valid, so the yes/no answer must cost little. It stops at the first place a
document breaks, which :func:`problems` turns into messages that name the field.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

from qbench.record import SCHEMA_VERSION

LEADERBOARD_VERSION = 1
#: the record format's version: :data:`qbench.record.SCHEMA_VERSION`, its one definition
RECORD_VERSION = SCHEMA_VERSION
_JSON_TYPES = {dict: "object", list: "array", str: "string", bool: "boolean", int: "integer", float: "number",
               type(None): "null"}  # fmt: skip


@cache
def load(kind: str, version: int) -> dict[str, Any]:
    """The schema ``kind`` ('leaderboard' or 'record') of ``version`` (KeyError if none is shipped)."""
    try:
        text = resources.files(__name__).joinpath(f"{kind}-{version}.schema.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"{kind} schema version {version}") from None
    return dict(json.loads(text))


def leaderboard_version(schema_field: Any) -> int | None:
    """N of ``qbench-leaderboard/N`` (None when the field is not of that form)."""
    match = re.fullmatch(r"qbench-leaderboard/(\d+)", str(schema_field))
    return int(match.group(1)) if match else None


def problems(instance: Any, kind: str, version: int, part: str = "") -> list[str]:
    """Where ``instance`` breaks the shipped schema, as 'location: what is wrong' (empty: valid).

    ``part``: check against the schema's ``$defs`` entry of that name instead (``run``: one row of
    the leaderboard's runs table keyed by its columns). The validator stops at the first broken
    place, so this names one place (all the keys missing from one object in one message); fix it
    and check again to see the next.
    """
    import fastjsonschema

    try:
        _validator(kind, version, part)(instance)
    except fastjsonschema.JsonSchemaValueException as broken:
        return _messages(broken)
    return []


def table_problems(table: dict[str, Any], kind: str, version: int, part: str, name: str, limit: int = 5) -> list[str]:
    """Where the rows of a split ``table`` (``columns``, ``rows`` of equal length) break ``#/$defs/<part>``.

    The answer of checking each row, keyed by the columns, against that definition (the first
    broken row of each column, at most ``limit`` places, ``name`` prefixing them: ``runs[3].seed:
    must be integer, found string``), computed column by column: a column whose definition states
    only a type is checked once per distinct Python type of its values (a JSON type is a Python
    type), any other column once per distinct value. 100,000 runs take a fraction of a second,
    where a compiled check per row takes seconds.
    """
    import fastjsonschema

    schema = load(kind, version)
    definition = schema["$defs"][part]
    columns, rows = table["columns"], table["rows"]
    missing = [repr(k) for k in definition.get("required", []) if k not in columns]
    found = [f"{name}: column {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"] if missing else []
    for column, values in zip(columns, zip(*rows, strict=True), strict=True) if rows else ():
        rule = definition.get("properties", {}).get(column, definition.get("additionalProperties", {}))
        validate = _compiled(json.dumps({"$schema": schema["$schema"], **rule}, sort_keys=True))
        by_type = set(rule) <= {"type", "description"}
        try:  # what decides the answer: the distinct types, or the distinct (type, value) pairs (C loops)
            keys = set(map(type, values)) if by_type else set(zip(map(type, values), values, strict=True))
        except TypeError:  # an unhashable value (a list where a string belongs): each value is its own key
            keys, by_type = set(), False
            rows_of: Any = [(i, v) for i, v in enumerate(values)]
        else:
            rows_of = None
        broken_rows = []
        for key in keys if rows_of is None else ():
            match = (lambda v, k=key: type(v) is k) if by_type else (lambda v, k=key: type(v) is k[0] and v == k[1])
            value = next(v for v in values if match(v)) if by_type else key[1]
            try:
                validate(value)
            except fastjsonschema.JsonSchemaValueException as broken:
                broken_rows.append((next(i for i, v in enumerate(values) if match(v)), broken))
        for i, value in rows_of or ():
            try:
                validate(value)
            except fastjsonschema.JsonSchemaValueException as broken:
                broken_rows.append((i, broken))
                break
        if broken_rows:  # the first broken row of the column, as a check per row names it
            row, broken = min(broken_rows, key=lambda pair: pair[0])
            found += [f"{name}[{row}].{column}: {m.removeprefix('(top): ')}" for m in _messages(broken)]
        if len(found) >= limit:
            break
    return found[:limit]


def check(instance: Any, schema: dict[str, Any]) -> list[str]:
    """:func:`problems` against a schema given as a dict (compiled once per distinct schema text)."""
    import fastjsonschema

    try:
        _compiled(json.dumps(schema, sort_keys=True))(instance)
    except fastjsonschema.JsonSchemaValueException as broken:
        return _messages(broken)
    return []


@cache
def _validator(kind: str, version: int, part: str = "") -> Callable[[Any], Any]:
    schema = load(kind, version)
    if part:  # the whole schema's definitions, entered at one of them (KeyError when it has none of that name)
        schema["$defs"][part]
        schema = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{part}"}
    return _compiled(json.dumps(schema, sort_keys=True))


@cache
def _compiled(schema_text: str) -> Callable[[Any], Any]:
    import fastjsonschema

    schema = json.loads(schema_text)
    # "$id" is a name ("qbench-record/1"), not a URL: fastjsonschema would take it as the base that
    # local references ("#/$defs/table") resolve against, and try to fetch it.
    schema.pop("$id", None)
    return fastjsonschema.compile(schema)  # type: ignore[no-any-return]


def _messages(broken: Any) -> list[str]:
    """fastjsonschema's ``data.seed must be integer`` as ``seed: must be integer, found str``."""
    path = [str(part) for part in broken.path[1:]]
    where = "".join(f"[{p}]" if p.isdigit() and i else (f".{p}" if i else p) for i, p in enumerate(path)) or "(top)"
    if broken.rule == "required" and isinstance(broken.value, dict):
        missing = [repr(key) for key in broken.rule_definition if key not in broken.value]
        return [f"{where}: {', '.join(missing)} {'is' if len(missing) == 1 else 'are'} missing"]
    if broken.rule == "additionalProperties" and isinstance(broken.value, dict):
        extra = sorted(set(broken.value) - set(broken.definition.get("properties", {})))
        return [f"{where}: unexpected {', '.join(map(repr, extra))}"]
    what = broken.message.removeprefix(broken.name).strip()
    if broken.rule == "type":
        what += f", found {_JSON_TYPES.get(type(broken.value), type(broken.value).__name__)}"
    elif broken.rule == "minLength" and broken.rule_definition == 1:
        what = "must not be empty"
    elif broken.rule in ("const", "enum", "pattern"):
        what += f", found {broken.value!r}"
    return [f"{where}: {what}"]
