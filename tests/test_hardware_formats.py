"""Fixed-point formats, rounding modes, saturation and the counter-based generator."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qbench_builtins.hardware.formats import (
    ROUNDING_MODES,
    QFormat,
    RandomKey,
    counter_bits,
    requantize,
    saturate,
    shift_round,
    wrap,
)
from qbench_builtins.hardware.reference import nonlinearity_float, requantize_float, round_float
from qbench_builtins.hardware.tables import Nonlinearity
from qbench_builtins.hardware.weights import encode_matrix

# x / 4 for x = -7..7 under each mode (2 bits dropped)
X = np.arange(-7, 8)
EXPECTED = {
    "floor": [-2, -2, -2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1],
    "half-up": [-2, -1, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 1, 2, 2],
    "half-away": [-2, -2, -1, -1, -1, -1, 0, 0, 0, 1, 1, 1, 1, 2, 2],
    "half-even": [-2, -2, -1, -1, -1, 0, 0, 0, 0, 0, 1, 1, 1, 2, 2],
}


@pytest.mark.parametrize("mode", sorted(EXPECTED))
def test_rounding_modes_on_every_quarter(mode: str) -> None:
    assert shift_round(X, 2, mode).tolist() == EXPECTED[mode]
    assert round_float(X * 0.25, 0, mode, drop=2).tolist() == EXPECTED[mode]


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.integers(-(2**40), 2**40), min_size=1, max_size=20),
    drop=st.integers(-3, 20),
    mode=st.sampled_from(ROUNDING_MODES),
    seed=st.integers(0, 2**31),
)
def test_integer_and_float64_rounding_agree(values: list[int], drop: int, mode: str, seed: int) -> None:
    x = np.array(values, dtype=np.int64)
    key = RandomKey(seed, 1, 2, 3)
    fmt = QFormat(30, 10)
    codes, sat = requantize(x, 10 + drop, fmt, mode, "saturate", key)
    floats, sat_f = requantize_float(x * 2.0 ** -(10 + drop), 10 + drop, fmt, mode, "saturate", key)
    assert np.array_equal(codes * 2.0**-10, floats) and sat == sat_f
    # the same on Python ints (wide formats)
    wide, _ = requantize(x.astype(object), 10 + drop, fmt, mode, "saturate", key)
    assert [int(v) for v in wide] == codes.tolist()


def test_stochastic_rounding_is_keyed_and_unbiased() -> None:
    x = np.full(20000, 5)  # 5 / 16 = 0.3125
    key = RandomKey(0, 0, 0, 0)
    first, again = shift_round(x, 4, "stochastic", key), shift_round(x, 4, "stochastic", key)
    assert np.array_equal(first, again)
    assert not np.array_equal(first, shift_round(x, 4, "stochastic", RandomKey(0, 0, 0, 1)))
    assert set(first.tolist()) == {0, 1}
    assert abs(first.mean() - 5 / 16) < 4 * np.sqrt(0.3125 * 0.6875 / len(x))


def test_counter_bits_depend_only_on_the_key() -> None:
    a = counter_bits(1, 2, 3, 4, np.arange(10), 12)
    b = counter_bits(1, 2, 3, 4, np.arange(10)[::-1], 12)[::-1]
    assert np.array_equal(a, b) and a.min() >= 0 and a.max() < 2**12
    assert not np.array_equal(a, counter_bits(1, 2, 3, 5, np.arange(10), 12))


def test_formats_saturation_and_wrap() -> None:
    fmt = QFormat.parse("Q2.3")
    assert (fmt.width, fmt.lo, fmt.hi, str(fmt)) == (5, -16, 15, "Q2.3")
    codes, count = saturate(np.array([-20, -16, 15, 16, 3]), fmt, "saturate")
    assert codes.tolist() == [-16, -16, 15, 15, 3] and count == 2
    codes, count = saturate(np.array([-17, 16, 3]), fmt, "wrap")
    assert codes.tolist() == [15, -16, 3] and count == 2
    assert wrap(np.array([128, -129, 127]), 8).tolist() == [-128, 127, 127]
    for bad in ("4.12", "Q4", "Q0.1", "Qa.b"):
        with pytest.raises(ValueError):
            QFormat.parse(bad)


def test_tables_are_integer_and_indexed_by_shifts() -> None:
    sig = Nonlinearity.build("sigmoid", "table", 12, QFormat(1, 15), 1024)
    assert sig.codes is not None and sig.codes.dtype == np.int64
    x = np.array([-(8 << 12) - 5, -(8 << 12), 0, (8 << 12) - 1, 9 << 12])
    y = sig(x, "half-away")
    assert y[0] == y[1] == sig.codes[0] and y[-1] == y[-2] == sig.codes[-1]
    assert y[2] == 2**14  # grid points include 0: sigmoid(0) = 1/2 exactly
    tanh = Nonlinearity.build("tanh", "table", 8, QFormat(1, 15), 1024)
    # entries every 2**-7, inputs every 2**-8: the nearest entry is read, so 0 -> tanh(0) = 0 and
    # grid points are exact and odd (+-2 codes = +-2**-7); -1 lies between 0 and -2**-7 (tie goes up)
    yt = tanh(np.array([-2, -1, 0, 2, 5]), "floor")
    expected = np.round(np.tanh(np.array([-2, 0, 0, 2, 6]) * 2.0**-8) * 2**15)
    assert yt.tolist() == expected.astype(int).tolist() and yt[0] == -yt[3] != 0
    assert np.array_equal(nonlinearity_float(sig, x * 2.0**-12, "half-away") * 2**15, y)
    with pytest.raises(ValueError):
        Nonlinearity.build("tanh", "table", 12, QFormat(1, 15), 1000)


def test_weight_encodings_are_verified_from_values() -> None:
    w0 = 0.123
    enc = encode_matrix(np.array([[w0, 0.0], [-w0, w0]]), 2, 16)
    assert enc.block_kinds == ["ternary"] and enc.block_scaled == [True]
    assert np.max(np.abs(enc.effective_values - np.array([[w0, 0], [-w0, w0]]))) < w0 * 2.0**-15
    enc = encode_matrix(np.array([[0.25, -1.0], [0.0, 2.0**-5]]), 1, 16)
    assert enc.block_kinds == ["pow2", "ternary"] and not any(enc.block_scaled)
    assert np.array_equal(enc.effective_values, np.array([[0.25, -1.0], [0.0, 2.0**-5]]))
    enc = encode_matrix(np.array([[0.5, -0.5]]), 1, 16)
    assert enc.block_kinds == ["binary"] and enc.codes.tolist() == [[1, -1]] and enc.frac == 1
    enc = encode_matrix(np.array([[3 * 2.0**-6, -5 * 2.0**-6]]), 1, 16)
    assert enc.block_kinds == ["fixed"] and enc.codes.tolist() == [[3, -5]] and enc.frac == 6
