"""sigmoid and tanh of the integer program: lookup tables, hard (power-of-two slope) or exact.

``table`` (default): ``size`` entries over ``[lo, hi)`` (sigmoid [-8, 8), tanh [-4, 4)); the
entry width ``2**-t = (hi - lo) / size`` must be a power of two so that the index is a shift
of the input code. Entry ``k`` holds the function at the grid point ``lo + k 2**-t`` (so that
tanh(0) = 0 and sigmoid(0) = 1/2 exactly), rounded half away from zero into the output format;
the nearest entry is read: ``index = clamp((code - lo 2**f_in + 2**(s-1)) >> s, 0, size - 1)``
with ``s = f_in - t`` (the half step is part of the constant offset). Tables are built once in
float64 and then only their integer codes are used. Inputs beyond the domain read the end
entries. (Sampling at entry midpoints instead would give tanh(0) = tanh(2**-t / 2) != 0, a
bias the recurrence integrates.)

``hard``: hard sigmoid ``clip(x / 4 + 1/2, 0, 1)`` and hard tanh ``clip(x, -1, 1)``: slopes
are powers of two, so they are shifts and a clip (rounded with the program's rounding mode).

``exact``: ``f(code * 2**-f_in)`` evaluated in float64 and rounded half away from zero. Not an
integer circuit: it exists for the wide-format limit check, and is labelled as such.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from qbench_builtins.hardware.formats import QFormat, round_half_away_float, shift_round

NONLINEARITIES = ("table", "hard", "exact")
DOMAINS = {"sigmoid": (-8.0, 8.0), "tanh": (-4.0, 4.0)}


def _sigmoid(values: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-values))


FUNCTIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {"sigmoid": _sigmoid, "tanh": np.tanh}


@dataclass
class Nonlinearity:
    """One activation function from an input format's fractional bits to an output format."""

    function: str
    kind: str
    in_frac: int
    out: QFormat
    size: int = 1024
    codes: np.ndarray | None = None
    offset_code: int = 0  # subtracted before the shift: lo * 2**in_frac minus half a step
    index_shift: int = 0  # positive: right shift of (code - offset_code); negative: left shift
    #: the same lookup over every code of a saturated input format, indexed by
    #: ``code >> wrapped_shift`` modulo its length (one shift and one gather per lookup)
    wrapped: np.ndarray | None = None
    wrapped_shift: int = 0

    @classmethod
    def build(cls, function: str, kind: str, in_frac: int, out: QFormat, size: int) -> Nonlinearity:
        nl = cls(function, kind, in_frac, out, size)
        if kind == "table":
            lo, hi = DOMAINS[function]
            entry_bits = math.log2(size / (hi - lo))  # 2**-entry_bits is the entry width
            if entry_bits != int(entry_bits):
                raise ValueError(
                    f"{function} table: {size} entries over [{lo}, {hi}) is not a power-of-two step"
                )
            t = int(entry_bits)
            grid = lo + np.arange(size, dtype=np.float64) * 2.0**-t
            codes = round_half_away_float(FUNCTIONS[function](grid) * 2.0**out.frac_bits)
            nl.codes = np.clip(codes, out.lo, out.hi).astype(np.int64)
            nl.index_shift = in_frac - t
            half_step = (1 << (nl.index_shift - 1)) if nl.index_shift > 0 else 0
            nl.offset_code = int(lo * 2**in_frac) - half_step
        return nl

    @property
    def table_bytes(self) -> float:
        return self.size * self.out.width / 8 if self.kind == "table" else 0.0

    def index(self, x: np.ndarray) -> np.ndarray:
        """Unclipped table index of codes ``x`` (``take(..., mode="clip")`` clamps it)."""
        offset = x - self.offset_code
        raw = offset >> self.index_shift if self.index_shift >= 0 else offset << (-self.index_shift)
        if raw.dtype == object:
            raw = np.clip(raw, -1, self.size).astype(np.int64)
        return raw

    def covers_domain(self, fmt: QFormat) -> bool:
        """True when ``fmt``'s range reaches both end entries: saturating first changes nothing."""
        if self.kind != "table":
            return False
        first, last = self.index(np.array([fmt.lo, fmt.hi], dtype=np.int64)).tolist()
        return first <= 0 and last >= self.size - 1

    def clamped(self, x: np.ndarray) -> np.ndarray:
        """Table lookup of unsaturated int64 codes (the index clamps to the end entries)."""
        assert self.codes is not None
        return self.codes.take(self.index(x), mode="clip")

    def cover(self, fmt: QFormat) -> None:
        """Precompute :attr:`wrapped` for inputs already saturated or wrapped into ``fmt``.

        Codes that share ``code >> max(s - 1, 0)`` share their nearest entry (the offset is a
        multiple of that group), so one entry per group over the format's range suffices.
        """
        group = max(self.index_shift - 1, 0)
        if self.kind != "table" or fmt.width - group > 16 or self.offset_code % (1 << group):
            return
        span = 1 << (fmt.width - group)
        starts = np.arange(-(span // 2), span // 2, dtype=np.int64)
        wrapped = np.empty(span, dtype=np.int64)
        wrapped[starts % span] = self.clamped(starts << group)
        self.wrapped, self.wrapped_shift = wrapped, group

    def __call__(self, x: np.ndarray, mode: str) -> np.ndarray:
        """Integer codes in ``in_frac`` -> codes of ``out`` (same dtype family as ``x``)."""
        if self.wrapped is not None and x.dtype != object:
            return self.wrapped.take(x >> self.wrapped_shift if self.wrapped_shift else x, mode="wrap")
        if self.kind == "table":
            assert self.codes is not None
            result = self.codes.take(self.index(x), mode="clip")
            return result.astype(object) if x.dtype == object else result
        if self.kind == "hard":
            return self._hard(x, mode)
        values = x.astype(np.float64) * 2.0**-self.in_frac
        codes = round_half_away_float(FUNCTIONS[self.function](values) * 2.0**self.out.frac_bits)
        codes = np.clip(codes, self.out.lo, self.out.hi)
        codes = codes.astype(np.int64)
        return codes.astype(object) if x.dtype == object else codes

    def _hard(self, x: np.ndarray, mode: str) -> np.ndarray:
        one = 1 << self.out.frac_bits
        if self.function == "sigmoid":
            # x / 4 + 1/2: drop two more bits than the format change, add one half
            y = shift_round(x, self.in_frac + 2 - self.out.frac_bits, hard_rounding(mode)) + (one >> 1)
            return np.clip(y, 0, min(one, self.out.hi))
        y = shift_round(x, self.in_frac - self.out.frac_bits, hard_rounding(mode))
        return np.clip(y, max(-one, self.out.lo), min(one, self.out.hi))


def hard_rounding(mode: str) -> str:
    """The rounding of the hard nonlinearities: deterministic (no random key at that site)."""
    return "half-away" if mode == "stochastic" else mode
