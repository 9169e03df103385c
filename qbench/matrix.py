"""Matrix files: read a TOML benchmark matrix, validate it, expand it into cases.

Expansion is a pure function: the product of the axes (component grids x seeds), minus the
excludes, in a stable order, with case ids that depend only on what the case computes. Every
error names the file, the key and what was expected.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from qbench.errors import MatrixError, UsageError
from qbench.trainconfig import resolve_limits, resolve_train

AXES = ("quantizer", "cell", "dataset", "hardware")
TOP_LEVEL_KEYS = {"name", "description", "seeds", "train", "limits", "exclude", *AXES}
REQUIRED_AXES = ("quantizer", "cell", "dataset")
EXCLUDE_KEYS = ("quantizer", "cell", "dataset", "seed")
MAX_SEED = 2**63 - 1


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)


@dataclass(frozen=True)
class Spec:
    """A component as a case uses it: its name and resolved parameters (defaults filled in)."""

    name: str
    params: Mapping[str, Any] = field(default_factory=dict)
    #: parameters the matrix set explicitly (the label shows only these)
    given: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        shown = {k: self.params[k] for k in self.given if k in self.params}
        if not shown:
            return self.name
        return f"{self.name}({','.join(f'{k}={json.dumps(v)}' for k, v in sorted(shown.items()))})"

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "params": dict(self.params)}

    def __reduce__(self) -> tuple[Any, ...]:  # mappingproxy-free pickling for process pools / Dask
        return (Spec, (self.name, dict(self.params), tuple(self.given)))


@dataclass(frozen=True)
class Case:
    """One unit of work: a quantizer, a cell, a dataset, a seed, the training recipe, the backends."""

    case_id: str
    matrix: str
    quantizer: Spec
    cell: Spec
    dataset: Spec
    hardware: tuple[Spec, ...]
    seed: int
    train: Mapping[str, Any]

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            Case,
            (self.case_id, self.matrix, self.quantizer, self.cell, self.dataset, self.hardware, self.seed,
             dict(self.train)),
        )


@dataclass(frozen=True)
class Matrix:
    """A validated matrix: component grids per axis, seeds, training recipe, excludes."""

    name: str
    path: str
    digest: str
    description: str
    quantizers: tuple[Spec, ...]
    cells: tuple[Spec, ...]
    datasets: tuple[Spec, ...]
    hardware: tuple[Spec, ...]
    seeds: tuple[int, ...]
    train: Mapping[str, Any]
    excludes: tuple[Mapping[str, Any], ...] = ()
    #: ``[limits] case_timeout``: seconds a case may run (None: no limit). Not part of any case id.
    case_timeout: float | None = None


def case_id_for(quantizer: Spec, cell: Spec, dataset: Spec, hardware: tuple[Spec, ...], seed: int,
                train: Mapping[str, Any]) -> str:
    """Stable id: a hash of everything that determines the case's result (not the matrix name)."""
    payload = {
        "quantizer": quantizer.as_dict(),
        "cell": cell.as_dict(),
        "dataset": dataset.as_dict(),
        "hardware": [h.as_dict() for h in hardware],
        "seed": seed,
        "train": dict(train),
    }
    return hashlib.sha256(_canonical(payload).encode()).hexdigest()[:16]


def _grid(where: str, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Expand list-valued parameters of one axis entry into a grid (in the file's key order)."""
    keys = [k for k in entry if k != "name"]
    choices = []
    for key in keys:
        value = entry[key]
        if isinstance(value, list):
            if not value:
                raise MatrixError(f"{where}: parameter {key!r} is an empty list; give at least one value")
            choices.append(value)
        else:
            choices.append([value])
    return [dict(zip(keys, combo, strict=True)) for combo in itertools.product(*choices)]


def _resolve_axis(where: str, kind: str, entries: Any, host: Any) -> tuple[Spec, ...]:
    if not isinstance(entries, list) or not entries:
        raise MatrixError(
            f"{where}: axis [[{kind}]] is empty or not a list of tables; add at least one "
            f'[[{kind}]] table with a name, e.g.\n  [[{kind}]]\n  name = "..."'
        )
    registry = host.registry(kind)
    specs: list[Spec] = []
    for index, entry in enumerate(entries):
        at = f"{where}: [[{kind}]] #{index + 1}"
        if not isinstance(entry, dict):
            raise MatrixError(f"{at} must be a table with a 'name' key, got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str):
            raise MatrixError(f"{at} needs a 'name' string (one of: {', '.join(registry) or 'none'})")
        if name not in registry:
            raise MatrixError(f"{at}: {registry.unknown_message(name)}")
        cls = registry.get(name).cls
        for params in _grid(at, entry):
            try:
                component = cls(**params)
            except UsageError as exc:
                raise MatrixError(f"{at}: {exc}") from None
            specs.append(Spec(name, dict(component.config), tuple(params)))
    seen: set[str] = set()
    for spec in specs:
        key = _canonical(spec.as_dict())
        if key in seen:
            raise MatrixError(f"{where}: [[{kind}]] lists {spec.label} twice; remove the duplicate")
        seen.add(key)
    return tuple(specs)


def load_matrix(path: str | Path, host: Any = None) -> Matrix:
    """Read, validate and resolve a matrix file (raises :class:`MatrixError`, a usage error)."""
    from qbench.host import default_host

    host = host or default_host()
    path = Path(path)
    try:
        raw_bytes = path.read_bytes()
    except FileNotFoundError:
        raise MatrixError(f"{path}: matrix file not found; check the path (see matrices/ for examples)") from None
    except OSError as exc:
        raise MatrixError(f"{path}: cannot read the matrix file: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(raw_bytes.decode("utf-8"))
    except UnicodeDecodeError:
        raise MatrixError(f"{path}: not a UTF-8 text file; a matrix is a TOML file") from None
    except tomllib.TOMLDecodeError as exc:
        raise MatrixError(f"{path}: malformed TOML: {exc}") from None
    return parse_matrix(raw, str(path), hashlib.sha256(raw_bytes).hexdigest(), host)


def parse_matrix(raw: Mapping[str, Any], where: str, digest: str, host: Any) -> Matrix:
    """Validate an already-parsed matrix mapping (``where`` names it in errors)."""
    unknown = sorted(set(raw) - TOP_LEVEL_KEYS)
    if unknown:
        import difflib

        hints = [difflib.get_close_matches(k, sorted(TOP_LEVEL_KEYS), n=1) for k in unknown]
        detail = "; ".join(
            f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in zip(unknown, hints, strict=True)
        )
        raise MatrixError(f"{where}: unknown top-level key {detail}; known keys: {', '.join(sorted(TOP_LEVEL_KEYS))}")
    name = raw.get("name", Path(where).stem)
    if not isinstance(name, str) or not name or "/" in name or name.startswith("."):
        raise MatrixError(f"{where}: 'name' must be a non-empty string without '/', got {name!r}")
    description = raw.get("description", "")
    if not isinstance(description, str):
        raise MatrixError(f"{where}: 'description' must be a string")
    seeds = raw.get("seeds", [0])
    if isinstance(seeds, int) and not isinstance(seeds, bool):
        seeds = [seeds]
    if (not isinstance(seeds, list) or not seeds
            or not all(isinstance(s, int) and not isinstance(s, bool) and s >= 0 for s in seeds)):
        raise MatrixError(f"{where}: 'seeds' must be a non-empty list of non-negative integers, got {seeds!r}")
    if any(s > MAX_SEED for s in seeds):
        raise MatrixError(f"{where}: 'seeds' must be at most 2**63 - 1 ({MAX_SEED}), the largest seed torch takes; "
                          f"got {max(seeds)}")  # fmt: skip
    if len(set(seeds)) != len(seeds):
        raise MatrixError(f"{where}: 'seeds' lists a seed twice: {seeds!r}")
    for axis in REQUIRED_AXES:
        if axis not in raw:
            raise MatrixError(f'{where}: missing axis [[{axis}]]; add at least one, e.g. [[{axis}]] name = "..."')
    train_table = raw.get("train", {})
    if not isinstance(train_table, dict):
        raise MatrixError(f"{where}: [train] must be a table")
    try:
        train = resolve_train(train_table)
    except UsageError as exc:
        raise MatrixError(f"{where}: {exc}") from None
    axes = {axis: _resolve_axis(where, axis, raw[axis], host) for axis in REQUIRED_AXES}
    hardware = _resolve_axis(where, "hardware", raw["hardware"], host) if "hardware" in raw else ()
    excludes = _check_excludes(where, raw.get("exclude", []), axes, seeds)
    limits = resolve_limits(where, raw.get("limits", {}))
    return Matrix(
        name=name, path=where, digest=digest, description=description,
        quantizers=axes["quantizer"], cells=axes["cell"], datasets=axes["dataset"], hardware=hardware,
        seeds=tuple(seeds), train=train, excludes=excludes, case_timeout=limits["case_timeout"],
    )


def _check_excludes(where: str, excludes: Any, axes: Mapping[str, tuple[Spec, ...]],
                    seeds: Any = ()) -> tuple[Mapping[str, Any], ...]:  # fmt: skip
    """Validate the ``[[exclude]]`` rules; a rule that can match no case is an error, not a silent no-op.

    The cases are the full product of the axes, so a rule matches some case exactly when each of
    its keys matches some value of its own axis: that is checked key by key.
    """
    if not isinstance(excludes, list):
        raise MatrixError(f"{where}: [[exclude]] must be a list of tables")
    for index, rule in enumerate(excludes):
        at = f"{where}: [[exclude]] #{index + 1}"
        if not isinstance(rule, dict) or not rule:
            raise MatrixError(f"{at} must be a non-empty table such as quantizer = \"binary\"")
        for key, value in rule.items():
            if key not in EXCLUDE_KEYS:
                raise MatrixError(f"{at}: unknown key {key!r}; use {', '.join(EXCLUDE_KEYS)}")
            if key == "seed":
                if not isinstance(value, int) or isinstance(value, bool):
                    raise MatrixError(f"{at}: seed must be an integer such as seed = 0, got {value!r}")
                if value not in seeds:
                    raise MatrixError(f"{at}: seed {value} is not one of the matrix's seeds {list(seeds)}; "
                                      "this rule would exclude nothing")  # fmt: skip
                continue
            names = {spec.name for spec in axes[key]}
            target = value.get("name") if isinstance(value, dict) else value
            if not isinstance(target, str):
                raise MatrixError(f"{at}: {key} must be a name or a table with 'name', got {value!r}")
            if target not in names:
                known = ", ".join(sorted(names))
                raise MatrixError(f"{at}: {key} {target!r} is not in the matrix's [[{key}]] axis ({known})")
            if not any(_matches({key: value}, {key: spec}) for spec in axes[key]):
                labels = ", ".join(spec.label for spec in axes[key] if spec.name == target)
                raise MatrixError(f"{at}: {key} {value!r} matches none of the matrix's {target!r} entries "
                                  f"({labels}): a parameter name or value that no entry has; "
                                  "this rule would exclude nothing")  # fmt: skip
    return tuple(excludes)


def _matches(rule: Mapping[str, Any], values: Mapping[str, Any]) -> bool:
    for key, wanted in rule.items():
        actual = values[key]
        if key == "seed":
            if actual != wanted:
                return False
            continue
        if isinstance(wanted, dict):
            if actual.name != wanted.get("name"):
                return False
            if any(actual.params.get(k) != v for k, v in wanted.items() if k != "name"):
                return False
        elif actual.name != wanted:
            return False
    return True


def expand(matrix: Matrix) -> list[Case]:
    """All cases of a matrix, in a stable order (dataset, cell, quantizer, seed), excludes removed."""
    cases: list[Case] = []
    for dataset, cell, quantizer, seed in itertools.product(
        matrix.datasets, matrix.cells, matrix.quantizers, matrix.seeds
    ):
        values = {"quantizer": quantizer, "cell": cell, "dataset": dataset, "seed": seed}
        if any(_matches(rule, values) for rule in matrix.excludes):
            continue
        case_id = case_id_for(quantizer, cell, dataset, matrix.hardware, seed, matrix.train)
        cases.append(Case(case_id, matrix.name, quantizer, cell, dataset, matrix.hardware, seed, matrix.train))
    return cases
