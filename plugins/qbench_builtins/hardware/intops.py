"""Integer array helpers and the run's data-dependent facts, shared by the engine's two loops.

:mod:`.engine` (the general loop) and :mod:`.fused` (the fast loops it dispatches to) both build
on this module and on nothing of each other's, so that the dependency runs one way:
``engine -> fused -> intops``. The float64 referee (:mod:`.reference`) deliberately does not use
it: it shares nothing with the engine but the program it runs.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

#: whole-array min / max without ndarray.min's Python wrapper (they run several times per step)
reduce_min, reduce_max = np.minimum.reduce, np.maximum.reduce


@dataclass
class RunStats:
    """Data-dependent facts of one run."""

    saturations: dict[str, int] = field(default_factory=dict)
    overflows: int = 0
    acc_abs_max: int = 0
    input_saturations: int = 0

    def saturated(self, site: str, count: int) -> None:
        if count:
            self.saturations[site] = self.saturations.get(site, 0) + count

    @property
    def total_saturations(self) -> int:
        return sum(self.saturations.values()) + self.input_saturations

    @property
    def acc_bits_max(self) -> int:
        """Two's complement bits that hold every accumulator value seen."""
        return int(self.acc_abs_max).bit_length() + 1


def as_int(values: np.ndarray, dtype: type | str) -> np.ndarray:
    """Integer array in the arithmetic dtype (object arrays hold Python ints, never floats)."""
    if values.dtype != object:
        values = values.astype(np.int64)
    return values.astype(object) if dtype is object else values


def blas_product(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``: floats that hold integers exactly (the program's bounds guarantee it), or object ints.

    Some OpenBLAS kernels leave the floating-point 'invalid' flag set after a correct product (they
    compute on padding past the operands), which numpy reports as a RuntimeWarning now and then for
    the same inputs; the flag is ignored and the result itself checked instead.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        result = a @ b
    if result.dtype.kind == "f" and not np.isfinite(result).all():
        raise FloatingPointError("a BLAS product of exact integers was not finite")
    return result


def shl(x: np.ndarray, bits: int) -> np.ndarray:
    """``x << bits``, without an array pass when ``bits`` is 0."""
    return x << bits if bits else x


def row_scale(scale: np.ndarray, dtype: type | str) -> np.ndarray | None:
    """The per-row scale mantissas in ``dtype``; None when every mantissa is 1 (no multiply)."""
    return as_int(scale, dtype) if np.any(scale != 1) else None


def recurrent_multiplier(scale_mantissas: np.ndarray, shift: int, dtype: type | str) -> np.ndarray | None:
    """Row scale and alignment shift of the recurrent sums as one multiplier (None: neither).

    Takes the layer's recurrent row scale and shift rather than the layer itself: this module is
    the simulator's lowest floor and knows nothing of the program (not even its type).
    """
    scale = row_scale(scale_mantissas, dtype)
    if scale is None and not shift:
        return None
    ones = as_int(np.ones(len(scale_mantissas), np.int64), dtype)
    return (scale if scale is not None else ones) << shift


def abs_max(x: np.ndarray) -> int:
    """Largest ``|x|`` of a non-empty integer array, as a Python int."""
    return max(int(reduce_max(x, axis=None)), -int(reduce_min(x, axis=None)))

