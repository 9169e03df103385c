"""A table's rows as JSON text, column by column: the bytes ``json.dumps`` gives, several times faster.

``leaderboard.json``'s ``runs`` table has a row per record and some 70 columns; encoding it with
``json.dumps`` over row tuples is most of a large rebuild (the C encoder visits every cell and
formats every float). Here each column is turned into its cells' JSON texts at once, with the same
functions the C encoder calls (``float.__repr__``, ``int.__repr__``, the C string escaper), each
distinct value formatted once where a column repeats values (categories, labels, integer costs), and
the rows are joined in C. Floats, most of the cost, are formatted by orjson where it is installed
(a dependency of qbench; shortest round-trip digits like ``float.__repr__``, a tenth of the time),
and by ``float.__repr__`` where its text is not ``repr``'s (see :func:`float_texts`).
:func:`encode_rows` returns exactly ``json.dumps(rows, ensure_ascii=False, separators=(",", ":"),
allow_nan=False)[1:-1]`` for the same cells (NaN and NA written as ``null``,
an infinity raising json's ``ValueError``); ``tests/test_leaderboard_jsonrows.py`` holds it to that.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

try:
    import orjson
except ImportError:  # a platform without its wheel: repr formats every float, to the same text
    orjson = None  # type: ignore[assignment]

OPTIONS: dict[str, Any] = {"ensure_ascii": False, "separators": (",", ":"), "allow_nan": False}
#: the C escaper ``json.dumps(..., ensure_ascii=False)`` applies to every string
_STRING = json.encoder.encode_basestring  # type: ignore[attr-defined]
_NONE = type(None)
#: a float column is formatted per distinct value when its first rows repeat values this much
SAMPLE = 2048


def _dumps(value: Any) -> str:
    return json.dumps(value, **OPTIONS)


def _cell(value: Any) -> str:
    """One cell as ``json.dumps`` writes it inside a row (the common types without a call)."""
    kind = type(value)
    if kind is str:
        return _STRING(value)
    if value is None:
        return "null"
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite: NaN and infinities go to json (which raises)
        return float.__repr__(value)
    return _dumps(value)


def _text(value: str | None) -> str:
    return "null" if value is None else _STRING(value)


def _distinct(values: list[Any], encode: Any) -> list[str]:
    """``encode`` applied once per distinct value (the values are hashable and of one kind each)."""
    texts = {value: encode(value) for value in dict.fromkeys(values)}
    return list(map(texts.__getitem__, values))


def cells(values: list[Any]) -> list[str]:
    """JSON texts of a column of Python values (strings, None, numbers, anything json takes)."""
    kinds = set(map(type, values))
    if kinds <= {str, _NONE}:  # strings repeat (labels, roles, points): escape each once
        return _distinct(values, _text)
    return list(map(_cell, values))


def float_cells(array: np.ndarray) -> list[str]:
    """JSON texts of a float column: ``null`` for NaN, the float's repr otherwise."""
    array = np.ascontiguousarray(array, dtype=np.float64)
    missing = np.isnan(array)
    finite = np.isfinite(array)
    if not (finite | missing).all():
        _dumps(float(array[~(finite | missing)][0]))  # raises json's own ValueError for an infinity
    present = array[~missing] if missing.any() else array
    sample = present[:SAMPLE]
    # Formatting is the cost (a few hundred ns a float); a column of few values (integer costs,
    # flags) formats each distinct bit pattern once (by bits: -0.0 and 0.0 print differently).
    if len(present) > SAMPLE and len(np.unique(sample.view(np.int64))) * 2 < len(sample):
        keys, inverse = np.unique(present.view(np.int64), return_inverse=True)
        formatted = float_texts(keys.view(np.float64))[inverse.reshape(-1)]
    else:
        formatted = float_texts(present)
    if not missing.any():
        return formatted.tolist()
    out = np.full(len(array), "null", dtype=object)
    out[~missing] = formatted
    return out.tolist()


#: below this magnitude ``repr`` writes ``1e-05`` where orjson writes ``0.00001`` or ``1e-5``
_REPR_BELOW = 1e-4


def float_texts(array: np.ndarray) -> np.ndarray:
    """``float.__repr__`` of each finite value of a float64 array, as an object array of str.

    orjson writes the same shortest round-trip digits as ``repr`` and the same text for every
    finite float except those of magnitude below 1e-4 (``repr`` switches to an exponent with at
    least two digits there); those few are formatted by ``repr`` (``tests/test_leaderboard_jsonrows.py``
    checks the rule on random bit patterns). Without orjson, every value is formatted by ``repr``.
    """
    if orjson is None or not len(array):
        return np.array(list(map(float.__repr__, array.tolist())), dtype=object)
    array = np.ascontiguousarray(array, dtype=np.float64)
    texts = np.array(orjson.dumps(array, option=orjson.OPT_SERIALIZE_NUMPY).decode()[1:-1].split(","), dtype=object)
    magnitude = np.abs(array)
    small = np.flatnonzero((magnitude < _REPR_BELOW) & (magnitude > 0.0))
    if len(small):
        texts[small] = list(map(float.__repr__, array[small].tolist()))
    return texts


def array_cells(array: np.ndarray) -> list[str]:
    """JSON texts of a numpy column of any dtype."""
    kind = array.dtype.kind
    if kind == "f":
        return float_cells(array)
    if kind == "b":
        return np.where(array, "true", "false").tolist()
    if kind in "iu":
        return list(map(int.__repr__, array.tolist()))
    return cells(python_values(array))


class Column:
    """A column to encode in slices: a categorical one formats its categories once."""

    def __init__(self, values: Any, python: bool = False) -> None:
        """``values``: a Series or array; ``python``: the cells are the column's Python values as
        :func:`qbench.leaderboard.render.writers` converts them (NaN / NA as None, numpy scalars as
        Python numbers), so integers of a float column stay integers."""
        self.codes: np.ndarray | None = None
        if isinstance(values, pd.Series) and isinstance(values.dtype, pd.CategoricalDtype):
            categories = values.cat.categories.to_numpy(dtype=object)
            self.texts = np.array([*cells(python_values(categories)), "null"], dtype=object)
            self.codes = values.cat.codes.to_numpy()  # -1 (missing) takes the "null" at the end
            return
        self.values = values.to_numpy(dtype=object if python else None) if isinstance(values, pd.Series) else values
        self.python = python

    def slice(self, start: int, stop: int) -> list[str]:
        if self.codes is not None:
            return self.texts[self.codes[start:stop]].tolist()
        part = self.values[start:stop]
        if self.python:
            return cells(python_values(part))
        return array_cells(part)


class FloatBlock:
    """Adjacent float columns encoded together: each row's cells as one comma-separated text.

    orjson formats a chunk's rows of the block in one call (``[[a,b],[c,d]]``, NaN as ``null``),
    and the rows are cut out of its text: the value columns of the runs table, most of its cells,
    cost no Python call per cell. A row holding a value that orjson writes otherwise than ``repr``
    (see :func:`float_texts`) is formatted cell by cell; an infinity raises json's ``ValueError``.
    """

    def __init__(self, arrays: Sequence[np.ndarray]) -> None:
        self.arrays = [np.asarray(array, dtype=np.float64) for array in arrays]

    def slice(self, start: int, stop: int) -> list[str]:
        if orjson is None:
            return list(map(",".join, zip(*(float_cells(a[start:stop]) for a in self.arrays), strict=True)))
        matrix = np.column_stack([array[start:stop] for array in self.arrays])
        infinite = np.isinf(matrix)
        if infinite.any():
            _dumps(float(matrix[infinite][0]))  # raises json's own ValueError
        rows = orjson.dumps(matrix, option=orjson.OPT_SERIALIZE_NUMPY).decode()[2:-2].split("],[")
        magnitude = np.abs(matrix)
        for at in np.flatnonzero(((magnitude < _REPR_BELOW) & (magnitude > 0.0)).any(axis=1)).tolist():
            rows[at] = ",".join(float_cells(matrix[at]))
        return rows


def columns_of(arrays: Sequence[Column | np.ndarray]) -> list[Column | FloatBlock]:
    """What :func:`encode_rows` takes: each float64 array joined to its float neighbours in a
    :class:`FloatBlock`, any other array a :class:`Column` (a Column stays as it is)."""
    out: list[Column | FloatBlock] = []
    run: list[np.ndarray] = []
    for found in [*arrays, None]:
        if isinstance(found, np.ndarray) and found.dtype == np.float64:
            run.append(found)
            continue
        if run:
            out.append(FloatBlock(run) if len(run) > 1 else Column(run[0]))
            run = []
        if found is not None:
            out.append(found if isinstance(found, Column) else Column(found))
    return out


def python_values(values: np.ndarray) -> list[Any]:
    """An object column as Python values: NaN / NA as None, numpy scalars as Python numbers."""
    boxed = np.asarray(values, dtype=object)
    missing = pd.isna(boxed)
    if missing.any():
        boxed = boxed.copy()
        boxed[missing] = None
    out = boxed.tolist()
    if any(issubclass(kind, np.generic) for kind in set(map(type, out))):  # few kinds: one pass in C
        out = [v.item() if isinstance(v, np.generic) else v for v in out]
    return out


def encode_rows(columns: Sequence[Column | FloatBlock], start: int, stop: int) -> str:
    """Rows ``start:stop`` of ``columns`` as ``json.dumps(rows, **OPTIONS)[1:-1]``: ``[a,b],[c,d]``."""
    if stop <= start:
        return ""
    parts = [column.slice(start, stop) for column in columns]
    return "[" + "],[".join(map(",".join, zip(*parts, strict=True))) + "]"
