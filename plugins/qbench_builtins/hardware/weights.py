"""Exact integer encodings of quantized weight matrices, verified from the values themselves.

The quantizer's ``scheme`` is only a hint: each gate block (``h`` rows) of a matrix is
classified from its values, so a third-party ``custom`` quantizer whose values are all
``0 / ±s`` or ``±2**k`` simulates too.

Kinds of a block (``value = code * m * 2**-(frac + scale_frac)``, ``m`` one integer per row):

* ``binary`` / ``ternary``: one magnitude ``s`` (``±s``, plus zeros for ternary). If ``s`` is a
  power of two it is folded into the format (no scale operation); otherwise ``s`` is applied
  **once per output row as one counted multiply** by its mantissa ``m`` (``scale_bits``
  significant bits, the only approximation the simulator makes to a weight; the float64
  reference uses the same ``m``). Products are add / subtract / skip.
* ``pow2``: several power-of-two magnitudes (exponential quantizer). Codes are aligned at the
  smallest exponent of the matrix, so every product is an exact left shift and the sum is exact.
* ``fixed``: dyadic values ``code * 2**-f`` with codes of at most ``MAX_FIXED_CODE_BITS`` bits,
  or integers times a common non-power-of-two scale; products are multiplies.

Anything else (a float model) cannot be represented exactly: :func:`encode_matrix` raises
:class:`qbench.Unsupported`, unless ``requantize_bits`` > 0 asks to round it to a fixed format of
that many bits, which the record then labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

import qbench
from qbench_builtins.hardware.formats import round_half_away_float

MAX_FIXED_CODE_BITS = 24
MAX_FRAC_BITS = 60
SKIPPING_KINDS = ("ternary", "pow2")  # kinds whose zero products are skipped rather than multiplied


@dataclass
class EncodedMatrix:
    """Integer codes of one matrix ``[rows, cols]`` and how each gate block computes.

    :param codes: int64 ``[rows, cols]``.
    :param frac: fractional bits of the codes (may be negative for large powers of two).
    :param row_scale: int64 ``[rows]`` mantissas ``m`` (1 where a block needs no scale).
    :param scale_frac: fractional bits of ``row_scale``.
    :param block_kinds: kind of each gate block of ``block_rows`` rows.
    :param block_scaled: whether each block multiplies by a non-power-of-two scale.
    :param requantized: True when float weights were rounded to a fixed format (not exact).
    """

    codes: np.ndarray
    frac: int
    row_scale: np.ndarray
    scale_frac: int
    block_rows: int
    block_kinds: list[str]
    block_scaled: list[bool]
    requantized: bool = False
    nonzero_mask: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        self.nonzero_mask = self.codes != 0

    @property
    def effective_values(self) -> np.ndarray:
        """The float64 values the integer program computes with (equal to the weights if exact)."""
        return self.codes * (self.row_scale[:, None] * 2.0 ** -(self.frac + self.scale_frac))

    @property
    def code_bits(self) -> int:
        return int(np.max(np.abs(self.codes), initial=0)).bit_length() + 1

    def block_slices(self) -> list[slice]:
        return [slice(b * self.block_rows, (b + 1) * self.block_rows) for b in range(len(self.block_kinds))]

    @property
    def kind_label(self) -> str:
        labels = []
        for kind, scaled in zip(self.block_kinds, self.block_scaled, strict=True):
            labels.append(kind + ("*scale" if scaled else ""))
        unique = sorted(set(labels))
        return ("requantized-" if self.requantized else "") + "+".join(unique)


@dataclass
class _Block:
    kind: str
    codes: np.ndarray  # int64, value = codes * scale * 2**-frac
    frac: int
    scale: float | None  # None: power of two folded into frac


def _power_of_two_exponents(magnitudes: np.ndarray) -> np.ndarray | None:
    mantissa, exponent = np.frexp(magnitudes)
    if np.all(mantissa == 0.5):
        return exponent.astype(np.int64) - 1
    return None


def _dyadic_frac(values: np.ndarray) -> int | None:
    """Smallest f with every value * 2**f an integer of at most MAX_FIXED_CODE_BITS bits."""
    for frac in range(-8, MAX_FRAC_BITS + 1):
        scaled = values * 2.0**frac
        if np.all(scaled == np.floor(scaled)):
            if np.max(np.abs(scaled), initial=0.0) < 2.0 ** (MAX_FIXED_CODE_BITS - 1):
                return frac
            return None
    return None


def _classify_block(values: np.ndarray) -> _Block | None:
    nonzero = values[values != 0]
    has_zero = nonzero.size < values.size
    if nonzero.size == 0:
        return _Block("ternary", np.zeros(values.shape, np.int64), 0, None)
    magnitudes = np.abs(nonzero)
    exponents = _power_of_two_exponents(magnitudes)
    if exponents is not None:
        e_lo, e_hi = int(exponents.min()), int(exponents.max())
        sign = np.sign(values).astype(np.int64)
        if e_lo == e_hi:
            return _Block("ternary" if has_zero else "binary", sign, -e_lo, None)
        if e_hi - e_lo > 61:
            return None
        exps = _power_of_two_exponents(np.where(values == 0, 1.0, np.abs(values)))
        assert exps is not None
        return _Block("pow2", sign * (np.int64(1) << (exps - e_lo)), -e_lo, None)
    smallest = float(magnitudes.min())
    multiples = values / smallest
    if np.all(multiples == np.floor(multiples)) and np.all(multiples * smallest == values):
        top = float(np.max(np.abs(multiples)))
        if top < 2.0 ** (MAX_FIXED_CODE_BITS - 1):
            codes = multiples.astype(np.int64)
            if top == 1.0:
                return _Block("ternary" if has_zero else "binary", codes, 0, smallest)
            frac = _dyadic_frac(values)
            if frac is not None:
                return _Block("fixed", round_half_away_float(values * 2.0**frac).astype(np.int64), frac, None)
            return _Block("fixed", codes, 0, smallest)
    frac = _dyadic_frac(values)
    if frac is not None:
        return _Block("fixed", (values * 2.0**frac).astype(np.int64), frac, None)
    return None


def _scale_mantissa(scale: float, scale_bits: int) -> tuple[int, int]:
    """(m, fs) with m an integer of ``scale_bits`` significant bits and scale ~= m * 2**-fs."""
    _mantissa, exponent = np.frexp(scale)
    fs = scale_bits - int(exponent)
    return int(round_half_away_float(np.array([scale * 2.0**fs]))[0]), fs


def encode_matrix(
    values: np.ndarray, block_rows: int, scale_bits: int, requantize_bits: int = 0, what: str = "matrix"
) -> EncodedMatrix:
    """Encode ``values`` ``[rows, cols]`` block by block; raise :class:`qbench.Unsupported` if inexact."""
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2 or values.shape[0] % block_rows:
        raise ValueError(f"{what}: expected [G*{block_rows}, cols], got shape {values.shape}")
    if not np.all(np.isfinite(values)):
        raise qbench.Unsupported(f"{what} holds NaN or infinite values")
    n_blocks = values.shape[0] // block_rows
    blocks = [_classify_block(values[b * block_rows : (b + 1) * block_rows]) for b in range(n_blocks)]
    requantized = False
    if any(block is None for block in blocks):
        if requantize_bits <= 0:
            raise qbench.Unsupported(
                f"{what} has values that are not ternary, binary, powers of two or fixed point "
                f"(e.g. a float model); set shift-add's float_weight_bits to simulate it in fixed point"
            )
        top = float(np.max(np.abs(values)))
        frac = requantize_bits - 1 - (int(np.frexp(top)[1]) if top > 0 else 0)
        limit = (1 << (requantize_bits - 1)) - 1
        codes = np.clip(round_half_away_float(values * 2.0**frac), -limit, limit).astype(np.int64)
        blocks = [
            _Block("fixed", codes[b * block_rows : (b + 1) * block_rows], frac, None) for b in range(n_blocks)
        ]
        requantized = True
    assert all(block is not None for block in blocks)
    frac = max(block.frac for block in blocks if block is not None)
    scales = [
        _scale_mantissa(b.scale, scale_bits) if b is not None and b.scale is not None else None
        for b in blocks
    ]
    scale_frac = max((s[1] for s in scales if s is not None), default=0)
    codes = np.empty(values.shape, dtype=np.int64)
    row_scale = np.empty(values.shape[0], dtype=np.int64)
    for b, (block, scale) in enumerate(zip(blocks, scales, strict=True)):
        assert block is not None
        rows = slice(b * block_rows, (b + 1) * block_rows)
        codes[rows] = block.codes << (frac - block.frac)
        row_scale[rows] = (scale[0] << (scale_frac - scale[1])) if scale is not None else (1 << scale_frac)
    return EncodedMatrix(
        codes=codes,
        frac=frac,
        row_scale=row_scale,
        scale_frac=scale_frac,
        block_rows=block_rows,
        block_kinds=[block.kind for block in blocks if block is not None],
        block_scaled=[scale is not None for scale in scales],
        requantized=requantized,
    )


def fixed_point_constant(values: np.ndarray, frac: int) -> tuple[np.ndarray, bool]:
    """Integer codes of constants (biases, folded batch norm) at ``frac`` bits: (codes, exact)."""
    scaled = np.asarray(values, dtype=np.float64) * 2.0**frac
    codes = round_half_away_float(scaled)
    exact = bool(np.all(codes == scaled))
    if np.max(np.abs(codes), initial=0.0) < 2.0**62:
        return codes.astype(np.int64), exact
    # wide formats: exact Python ints (a float64 times a power of two is an integer here)
    return np.array([int(v) for v in codes.reshape(-1)], dtype=object).reshape(codes.shape), exact
