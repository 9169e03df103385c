"""Declared parameters of components, and their validation.

Every component class declares ``params: dict[str, Param]``. The matrix loader and
:func:`qbench.create` check user values against these declarations before any case runs, so
that a misspelled or ill-typed parameter is a usage error, not a failure in the middle of a run.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from typing import Any

from qbench.errors import ParamError


class _Required:
    def __repr__(self) -> str:
        return "REQUIRED"


REQUIRED: Any = _Required()


@dataclass(frozen=True)
class Param:
    """One declared parameter.

    :param type: accepted Python type or tuple of types (``float`` also accepts ``int``;
        ``bool`` is never accepted for ``int``/``float``).
    :param default: value used when the matrix omits the parameter; :data:`REQUIRED` makes it
        mandatory.
    :param help: one line for ``qbench list`` and error messages.
    :param choices: allowed values, if the parameter is an enumeration.
    :param min: inclusive lower bound for numbers.
    :param max: inclusive upper bound for numbers.
    """

    type: type | tuple[type, ...]
    default: Any = REQUIRED
    help: str = ""
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None

    @property
    def required(self) -> bool:
        return self.default is REQUIRED

    def type_name(self) -> str:
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        return " or ".join("none" if t is type(None) else t.__name__ for t in types)

    def check(self, owner: str, key: str, value: Any) -> Any:
        """Return ``value`` converted to the declared type, or raise :class:`ParamError`."""
        types = self.type if isinstance(self.type, tuple) else (self.type,)
        ok = False
        for t in types:
            if t is float and isinstance(value, int) and not isinstance(value, bool):
                value, ok = float(value), True
                break
            if t in (int, float) and isinstance(value, bool):
                continue
            if isinstance(value, t):
                ok = True
                break
        if not ok:
            raise ParamError(
                f"{owner}: parameter {key!r} must be {self.type_name()}, "
                f"got {value!r} ({type(value).__name__})"
            )
        if self.choices is not None and value not in self.choices:
            raise ParamError(
                f"{owner}: parameter {key!r} must be one of "
                f"{', '.join(repr(c) for c in self.choices)}; got {value!r}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise ParamError(f"{owner}: parameter {key!r} must be a finite number, got {value!r}")
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if self.min is not None and value < self.min:
                raise ParamError(f"{owner}: parameter {key!r} must be >= {self.min}, got {value!r}")
            if self.max is not None and value > self.max:
                raise ParamError(f"{owner}: parameter {key!r} must be <= {self.max}, got {value!r}")
        return value


def resolve_params(owner: str, declared: dict[str, Param], given: dict[str, Any]) -> dict[str, Any]:
    """Check ``given`` against ``declared`` and fill in defaults.

    Raises :class:`ParamError` naming the component, the key and what was expected.
    """
    for key in given:
        if key not in declared:
            hint = difflib.get_close_matches(key, list(declared), n=1)
            known = ", ".join(sorted(declared)) or "none"
            did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
            raise ParamError(
                f"{owner}: unknown parameter {key!r}{did_you_mean}; known parameters: {known}"
            )
    resolved: dict[str, Any] = {}
    for key, spec in declared.items():
        if key in given:
            resolved[key] = spec.check(owner, key, given[key])
        elif spec.required:
            raise ParamError(f"{owner}: missing required parameter {key!r} ({spec.help or spec.type_name()})")
        else:
            resolved[key] = spec.default
    return resolved
