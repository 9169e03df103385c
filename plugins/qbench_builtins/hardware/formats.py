"""Fixed-point formats, rounding at requantization, saturation and the counter-based generator.

Every tensor of the integer program is an integer *code* times a power of two. A format
``Q(i.f)`` holds ``value = code * 2**-f`` in ``i + f`` bits of two's complement (``i`` counts the
sign bit), so its codes lie in ``[-2**(i+f-1), 2**(i+f-1) - 1]``.

The integer helpers below work on numpy ``int64`` arrays and on ``object`` arrays of Python
ints (used when a wide format could overflow 64 bits); ``>>`` is an arithmetic shift, i.e. it
rounds toward minus infinity, which is what ``floor`` rounding means.

Rounding modes at requantization (``shift`` fractional bits dropped):

* ``floor``: ``x >> s`` (free in hardware: drop the bits);
* ``half-up``: ``(x + 2**(s-1)) >> s``;
* ``half-away``: ``sign(x) * ((|x| + 2**(s-1)) >> s)`` (the paper's rounding);
* ``half-even``: round to nearest, ties to the even code;
* ``stochastic``: ``(x >> s) + [u < x mod 2**s]`` with ``u`` an ``s``-bit draw of
  :func:`counter_bits`, keyed by (seed, layer, site, step, element), so that the float64
  reference sees the same random numbers.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property

import numpy as np

from qbench_builtins.hardware.intops import reduce_max, reduce_min

ROUNDING_MODES = ("floor", "half-up", "half-away", "half-even", "stochastic")
OVERFLOW_POLICIES = ("saturate", "wrap")
_FORMAT = re.compile(r"^[Qq](\d+)\.(\d+)$")
_MASK64 = (1 << 64) - 1
#: the most fractional bits one stochastic rounding can drop (one 64-bit draw, sign-safe in int64)
STOCHASTIC_MAX_BITS = 62


@dataclass(frozen=True)
class QFormat:
    """``Q(int_bits.frac_bits)``: ``value = code * 2**-frac_bits``, width ``int_bits + frac_bits``."""

    int_bits: int
    frac_bits: int

    @classmethod
    def parse(cls, text: str) -> QFormat:
        """``"Q4.12"`` -> ``QFormat(4, 12)``; raises ValueError for anything else."""
        match = _FORMAT.match(text.strip())
        if match is None:
            raise ValueError(f"format {text!r} is not of the form 'Qi.f' (e.g. 'Q4.12')")
        fmt = cls(int(match.group(1)), int(match.group(2)))
        if fmt.width < 2:
            raise ValueError(f"format {text!r} needs at least 2 bits (sign included)")
        return fmt

    @property
    def width(self) -> int:
        return self.int_bits + self.frac_bits

    @cached_property
    def lo(self) -> int:
        return -(1 << (self.width - 1))

    @cached_property
    def hi(self) -> int:
        return (1 << (self.width - 1)) - 1

    def __str__(self) -> str:
        return f"Q{self.int_bits}.{self.frac_bits}"


# ---------------------------------------------------------------------------------------------
# counter-based generator (splitmix64 finaliser over a mixed key)
# ---------------------------------------------------------------------------------------------

_KEY_MULTIPLIERS = (0x9E3779B97F4A7C15, 0xBF58476D1CE4E5B9, 0x94D049BB133111EB, 0xD6E8FEB86659FD93)


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser on a uint64 array (wrapping arithmetic, arrays only)."""
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    return z ^ (z >> np.uint64(31))


def counter_bits(seed: int, layer: int, site: int, step: int, elements: np.ndarray, bits: int) -> np.ndarray:
    """``bits``-bit uniform integers (int64) for each element index, a pure function of the key.

    The same (seed, layer, site, step, element) always gives the same number, whatever the order
    of evaluation: the vectorised engine, the float64 reference and the scalar interpreter draw
    identical values.
    """
    if not 1 <= bits <= STOCHASTIC_MAX_BITS:
        raise ValueError(f"stochastic rounding can drop 1..{STOCHASTIC_MAX_BITS} bits at once, not {bits}")
    header = 0
    for value, mult in zip((seed, layer, site, step), _KEY_MULTIPLIERS, strict=True):
        header = ((header ^ (value & _MASK64)) * mult + 0x632BE59BD9B4E019) & _MASK64
    idx = np.atleast_1d(np.asarray(elements, dtype=np.uint64))
    z = _mix64(idx * np.uint64(0x9E3779B97F4A7C15) + np.full(idx.shape, header, dtype=np.uint64))
    z = _mix64(z)
    return (z >> np.uint64(64 - bits)).astype(np.int64)


# ---------------------------------------------------------------------------------------------
# integer requantization
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RandomKey:
    """Where a stochastic rounding happens: the element indices get the per-element part."""

    seed: int
    layer: int
    site: int
    step: int


def shift_round(x: np.ndarray, shift: int, mode: str, key: RandomKey | None = None) -> np.ndarray:
    """Drop ``shift`` fractional bits of integer codes ``x`` with rounding ``mode``.

    ``shift <= 0`` is an exact left shift (the target format is finer). For ``stochastic`` the
    element index of ``x.flat[k]`` is ``k`` and ``key`` names the site.
    """
    if shift <= 0:
        return x << (-shift) if shift else x
    if mode == "floor":
        return x >> shift
    half = 1 << (shift - 1)
    if mode == "half-up":
        return (x + half) >> shift
    if mode == "half-away":
        # negative x: ceil((x - half) / 2**s) == (x + half - 1) >> s
        return ((x + half) - (x < 0)) >> shift
    low = x >> shift
    remainder = x - (low << shift)
    if mode == "half-even":
        up = (remainder > half) | ((remainder == half) & ((low & 1) == 1))
        return low + up.astype(np.int64)
    if mode == "stochastic":
        if key is None:
            raise ValueError("stochastic rounding needs a RandomKey")
        draws = counter_bits(key.seed, key.layer, key.site, key.step, np.arange(np.size(x)), shift)
        return low + (draws.reshape(np.shape(x)) < remainder).astype(np.int64)
    raise ValueError(f"unknown rounding mode {mode!r}; use one of {', '.join(ROUNDING_MODES)}")


def saturate(x: np.ndarray, fmt: QFormat, policy: str) -> tuple[np.ndarray, int]:
    """Fit codes into ``fmt``: clip (``saturate``) or wrap; returns (codes, number out of range)."""
    if x.size == 0 or (reduce_min(x, axis=None) >= fmt.lo and reduce_max(x, axis=None) <= fmt.hi):
        return x, 0
    count = int(np.count_nonzero((x < fmt.lo) | (x > fmt.hi)))
    if policy == "saturate":
        return np.minimum(np.maximum(x, fmt.lo), fmt.hi), count
    return wrap(x, fmt.width), count


def wrap(x: np.ndarray, width: int) -> np.ndarray:
    """Two's complement wrap of integer codes to ``width`` bits (what a hardware adder does)."""
    span = 1 << width
    half = 1 << (width - 1)
    return ((x + half) % span) - half


def requantize(
    x: np.ndarray, from_frac: int, fmt: QFormat, mode: str, policy: str, key: RandomKey | None = None
) -> tuple[np.ndarray, int]:
    """Codes with ``from_frac`` fractional bits -> codes of ``fmt``; returns (codes, saturations)."""
    shift = from_frac - fmt.frac_bits
    if shift > 0 and mode == "half-away":  # the default, inlined: this runs several times per step
        y = ((x + (1 << (shift - 1))) - (x < 0)) >> shift
    else:
        y = shift_round(x, shift, mode, key)
    if y.size and reduce_min(y, axis=None) >= fmt.lo and reduce_max(y, axis=None) <= fmt.hi:
        return y, 0
    return saturate(y, fmt, policy)


def round_half_away_float(values: np.ndarray) -> np.ndarray:
    """Round float64 values half away from zero (used only to build tables and constants)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)
