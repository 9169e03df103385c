"""The published JSON Schemas (``leaderboard.json`` and the record) and a small checker for them.

The schemas are JSON Schema (draft 2020-12) files shipped in the package, one per version:
``leaderboard-<N>.schema.json`` and ``record-<N>.schema.json``. :func:`check` implements the
subset they use (type, const, enum, required, properties, additionalProperties, items,
pattern, minLength, local ``$ref``), so no dependency is needed to validate against them; any
full JSON Schema validator gives the same answers.
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
_TYPES: dict[str, tuple[type, ...]] = {
    "object": (dict,), "array": (list,), "string": (str,), "integer": (int,), "number": (int, float),
    "boolean": (bool,), "null": (type(None),),
}  # fmt: skip


@cache
def load(kind: str, version: int) -> dict[str, Any]:
    """The schema ``kind`` ('leaderboard' or 'record') of ``version`` (KeyError if none is shipped)."""
    try:
        text = resources.files(__name__).joinpath(f"{kind}-{version}.schema.json").read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KeyError(f"{kind} schema version {version}") from None
    return dict(json.loads(text))


def _is(value: Any, name: str) -> bool:
    if name in ("integer", "number") and isinstance(value, bool):
        return False
    return isinstance(value, _TYPES[name])


def check(instance: Any, schema: dict[str, Any], root: dict[str, Any] | None = None, where: str = "") -> list[str]:
    """Every place where ``instance`` breaks ``schema``, as 'location: what is wrong' (empty: valid)."""
    root = root or schema
    here = where or "(top)"
    if "$ref" in schema:
        target: Any = root
        for part in schema["$ref"].lstrip("#/").split("/"):
            target = target[part]
        return check(instance, target, root, where)
    if "const" in schema and instance != schema["const"]:
        return [f"{here}: must be {schema['const']!r}, found {instance!r}"]
    if "enum" in schema and instance not in schema["enum"]:
        return [f"{here}: must be one of {', '.join(map(repr, schema['enum']))}, found {instance!r}"]
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        if not any(_is(instance, name) for name in names):
            return [f"{here}: must be {' or '.join(names)}, found {type(instance).__name__}"]
    problems: list[str] = []
    if isinstance(instance, str):
        if len(instance) < schema.get("minLength", 0):
            problems.append(f"{here}: must not be empty")
        if "pattern" in schema and not re.search(schema["pattern"], instance):
            problems.append(f"{here}: {instance!r} does not match {schema['pattern']}")
    if isinstance(instance, dict):
        extra_schema = schema.get("additionalProperties")
        if isinstance(extra_schema, dict) and set(extra_schema) == {"enum"} and not schema.get("properties"):
            # a map of enum values (directions): one set comparison instead of a call per value
            allowed = extra_schema["enum"]
            if all(v in allowed for v in instance.values()):
                return [f"{here}: '{key}' is missing" for key in schema.get("required", []) if key not in instance]
        for key in schema.get("required", []):
            if key not in instance:
                problems.append(f"{here}: '{key}' is missing")
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, value in instance.items():
            if key in properties:
                problems += check(value, properties[key], root, f"{where}.{key}" if where else key)
            elif extra is False:
                problems.append(f"{here}: unexpected '{key}'")
            elif isinstance(extra, dict):
                problems += check(value, extra, root, f"{where}.{key}" if where else key)
    if isinstance(instance, list) and "items" in schema:
        items = schema["items"]
        if set(items) == {"type"} and isinstance(items["type"], str) and all(_is(v, items["type"]) for v in instance):
            return problems  # a list of one plain type (the curve's points): no call per item
        for index, value in enumerate(instance):
            problems += check(value, schema["items"], root, f"{where}[{index}]")
    return problems


def leaderboard_version(schema_field: Any) -> int | None:
    """N of ``qbench-leaderboard/N`` (None when the field is not of that form)."""
    match = re.fullmatch(r"qbench-leaderboard/(\d+)", str(schema_field))
    return int(match.group(1)) if match else None


def problems(instance: Any, kind: str, version: int) -> list[str]:
    """:func:`check` against the shipped schema, with a compiled yes/no test first: a merge checks
    100,000 records and nearly all are valid, so the messages are worked out only for one that is not."""
    if _predicate_of(kind, version)(instance):
        return []
    return check(instance, load(kind, version))


@cache
def _predicate_of(kind: str, version: int) -> Callable[[Any], bool]:
    schema = load(kind, version)
    return _predicate(schema, schema, {})


def _predicate(schema: dict[str, Any], root: dict[str, Any], refs: dict[str, Any]) -> Callable[[Any], bool]:
    """True exactly where :func:`check` finds nothing (the same rules, decided once per schema node)."""
    if "$ref" in schema:
        ref = schema["$ref"]
        if ref not in refs:
            target: Any = root
            for part in ref.lstrip("#/").split("/"):
                target = target[part]
            refs[ref] = None  # a schema that refers to itself: the entry is filled before any call
            refs[ref] = _predicate(target, root, refs)
        return lambda value: bool(refs[ref](value))
    tests: list[Callable[[Any], bool]] = []
    if "const" in schema:
        const = schema["const"]
        tests.append(lambda value: bool(value == const))
    if "enum" in schema:
        enum = schema["enum"]
        tests.append(lambda value: value in enum)
    if "type" in schema:
        names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
        types = tuple(t for name in names for t in _TYPES[name])
        if {"integer", "number"} & set(names) and "boolean" not in names:  # a bool is an int to Python
            tests.append(lambda value: isinstance(value, types) and not isinstance(value, bool))
        else:
            tests.append(lambda value: isinstance(value, types))
    if "minLength" in schema or "pattern" in schema:
        shortest = schema.get("minLength", 0)
        pattern = re.compile(schema["pattern"]) if "pattern" in schema else None
        tests.append(lambda value: not isinstance(value, str) or (
            len(value) >= shortest and (pattern is None or pattern.search(value) is not None)))
    required = list(schema.get("required", []))
    properties = {key: _predicate(sub, root, refs) for key, sub in schema.get("properties", {}).items()}
    extra = schema.get("additionalProperties", True)
    extra_test = _predicate(extra, root, refs) if isinstance(extra, dict) else None

    def mapping_ok(value: Any) -> bool:
        if not isinstance(value, dict):
            return True
        if any(key not in value for key in required):
            return False
        for key, item in value.items():
            test = properties.get(key)
            if test is not None:
                if not test(item):
                    return False
            elif extra is False or (extra_test is not None and not extra_test(item)):
                return False
        return True

    if required or properties or extra is not True:
        tests.append(mapping_ok)
    if "items" in schema:
        item_test = _predicate(schema["items"], root, refs)
        tests.append(lambda value: not isinstance(value, list) or all(item_test(item) for item in value))
    if not tests:
        return lambda value: True
    if len(tests) == 1:
        return tests[0]
    if len(tests) == 2:
        first, second = tests
        return lambda value: first(value) and second(value)
    return lambda value: all(test(value) for test in tests)
