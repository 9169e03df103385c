"""The energy / memory model: table anchors, linearity, per-sequence arithmetic, sizes, rankings."""

from __future__ import annotations

import math

import numpy as np
import pytest
from qbench_builtins.hardware.counters import bops_per_step
from qbench_builtins.hardware.energy_model import Ledger, MatrixInfo, weight_bytes
from qbench_builtins.hardware.energy_tables import (
    ALADDIN,
    HOROWITZ,
    fitted_add_pj,
    fitted_mult_pj,
    fitted_shift_pj,
    node_factors,
    sram_pj_per_bit,
    table_label,
)

import qbench
from qbench.data import CLASSIFICATION
from qbench.testing.hardware import random_exported_model, random_sample


def test_horowitz_anchors_are_reproduced() -> None:
    assert (HOROWITZ.add_pj(8), HOROWITZ.add_pj(32)) == (0.03, 0.1)
    assert (HOROWITZ.mult_pj(8, 8), HOROWITZ.mult_pj(32, 32)) == (0.2, 3.1)
    assert (HOROWITZ.add_pj(16, floating=True), HOROWITZ.mult_pj(16, 16, floating=True)) == (0.4, 1.1)
    assert (HOROWITZ.add_pj(32, floating=True), HOROWITZ.mult_pj(32, 32, floating=True)) == (0.9, 3.7)
    assert HOROWITZ.dram_pj_per_bit == 20.0 and HOROWITZ.register_pj_per_bit == 0.009
    assert (ALADDIN.add_pj(32), ALADDIN.mult_pj(32, 32)) == (0.21, 12.68)


def test_fitted_width_rules_pass_through_the_anchors() -> None:
    assert fitted_mult_pj(8, 8) == pytest.approx(0.2, rel=1e-3)
    assert fitted_mult_pj(32, 32) == pytest.approx(3.1, rel=1e-3)
    assert fitted_mult_pj(2, 32) == pytest.approx(fitted_mult_pj(8, 8), rel=1e-12)  # b = sqrt(b_w b_a)
    assert fitted_add_pj(32) == pytest.approx(0.1) and fitted_add_pj(16) == pytest.approx(0.05)
    assert (fitted_shift_pj(8), fitted_shift_pj(32)) == (pytest.approx(0.024), pytest.approx(0.13))
    for size_bytes, pj_per_64_bits in ((8 * 1024, 10.0), (32 * 1024, 20.0), (1024 * 1024, 100.0)):
        assert 64 * sram_pj_per_bit(size_bytes * 8) == pytest.approx(pj_per_64_bits, rel=0.015)
    assert sram_pj_per_bit(100) == sram_pj_per_bit(8 * 1024 * 8)  # smaller memories: an 8 KB macro


def test_node_scaling_and_labels() -> None:
    assert node_factors("horowitz-45nm", "native", "none") == (1.0, 1.0)
    assert node_factors("horowitz-45nm", "7nm-0.7v", "none") == (0.057, 1.0)
    logic, memory = node_factors("horowitz-45nm", "16nm", "sqrt")
    assert logic == 0.142 and memory == pytest.approx(math.sqrt(0.142))
    assert table_label("horowitz-45nm", "native") == "horowitz-45nm@45nm"
    assert table_label("aladdin-40nm", "7nm-0.8v") == "aladdin-40nm@7nm-0.8v"


def test_energy_is_linear_in_counts() -> None:
    ledger = Ledger()
    ledger.add("add", "add", 20, 1000)
    ledger.add("mult", "mult:2", 16, 300)
    ledger.add("shift", "shift", 24, 50)
    ledger.add("weights", "weight-bit", 0, 4096)
    other = Ledger()
    other.add("add", "add", 20, 7)
    other.add("state", "register-bit", 0, 99)
    price = {"table": HOROWITZ, "logic": 0.64, "memory": 1.0, "weight_pj_per_bit": 0.2}

    def total(led: Ledger) -> float:
        return sum(led.price(**price).values())

    assert total(ledger.scaled(3.0)) == pytest.approx(3 * total(ledger))
    assert total(ledger.merged(other)) == pytest.approx(total(ledger) + total(other))
    assert total(Ledger()) == 0.0


def _measure(model, sample, **params):
    return qbench.create("hardware", "energy", **params).measure(model, sample)


def test_per_sequence_is_per_token_times_length() -> None:
    lm = random_exported_model("gru", "ternary", hidden=8, input_size=6, seed=1)
    result = _measure(lm, random_sample(lm, length=37))
    assert result["energy_pj_per_sequence"] == pytest.approx(result["energy_pj_per_token"] * 37)
    assert result["energy_pj_per_token"] == pytest.approx(
        result["energy_arith_pj_per_token"] + result["energy_memory_pj_per_token"]
    )
    clf = random_exported_model(
        "lstm", "exponential", hidden=8, input_size=4, task=CLASSIFICATION, input_kind="features", seed=2
    )
    sample = random_sample(clf, length=10, sequences=5)
    result = _measure(clf, sample)
    mean_length = float(np.mean(sample.sequences.lengths))
    assert result["energy_pj_per_sequence"] == pytest.approx(result["energy_pj_per_token"] * mean_length)


def test_packed_dense_sparse_and_entropy_sizes() -> None:
    from qbench.export import ExportedTensor

    values = np.zeros((10, 10))
    values[0, :4] = [0.3, -0.3, 0.3, 0.3]  # 4 non-zeros of 100
    ternary = ExportedTensor(values, "recurrent", "ternary", 2.0)
    info = MatrixInfo(ternary, ["ternary"], [True], 10, values != 0, 2.0, 0)
    sizes = weight_bytes([info])
    assert sizes["dense"] == 25.0  # 100 weights x 2 bits
    assert sizes["packed"] == 20.0  # five ternary digits per byte
    # CSR: 4 x (1 sign bit + 4 index bits) + 11 row pointers x 3 bits
    assert sizes["sparse"] == (4 * (1 + 4) + 11 * 3) / 8
    p = np.array([96, 3, 1]) / 100
    assert sizes["entropy"] == pytest.approx(100 * float(-(p * np.log2(p)).sum()) / 8)
    assert sizes["entropy"] <= 100 * math.log2(3) / 8


def test_ternary_memory_is_sixteen_times_smaller_and_energy_ranks_below_float() -> None:
    results = {}
    for scheme in ("float", "ternary", "exponential"):
        model = random_exported_model("lstm", scheme, hidden=32, input_size=20, seed=0)
        model.layers[0].w_input.bits = model.layers[0].w_recurrent.bits = {
            "float": 32.0,
            "ternary": 2.0,
            "exponential": 4.0,
        }[scheme]
        for bias in (t for t in model.layers[0].tensors.values() if t.role == "bias"):  # lstm: one, as a run's
            bias.bits = model.layers[0].w_input.bits
        results[scheme] = _measure(model, random_sample(model, length=50))
    assert results["float"]["weight_bytes_dense"] == 16 * results["ternary"]["weight_bytes_dense"]
    assert results["ternary"]["weight_bytes_packed"] < results["ternary"]["weight_bytes_dense"]
    for scheme in ("ternary", "exponential"):
        assert results[scheme]["energy_pj_per_token"] < results["float"]["energy_pj_per_token"]
        assert results[scheme]["energy_arith_pj_per_token"] < results["float"]["energy_arith_pj_per_token"]
    assert results["float"]["datapath"] == "fp32" and results["ternary"]["datapath"] == "int16"


def test_memory_placement_and_node_scaling_change_what_they_should() -> None:
    model = random_exported_model("gru", "ternary", hidden=16, input_size=8, seed=3)
    sample = random_sample(model, length=20)
    by_place = {m: _measure(model, sample, memory=m) for m in ("hardwired", "registers", "sram", "dram")}
    weights = [by_place[m]["energy_weights_pj_per_token"] for m in ("hardwired", "registers", "sram", "dram")]
    assert weights[0] == 0.0 and weights == sorted(weights) and len(set(weights)) == 4
    base, small = _measure(model, sample), _measure(model, sample, node="7nm-0.7v")
    assert small["energy_arith_pj_per_token"] == pytest.approx(0.057 * base["energy_arith_pj_per_token"])
    assert small["energy_weights_pj_per_token"] == pytest.approx(base["energy_weights_pj_per_token"])
    assert small["energy_table"] == "horowitz-45nm@7nm-0.7v" and base["energy_table"] == "horowitz-45nm@45nm"
    aladdin = _measure(model, sample, table="aladdin-40nm")
    assert aladdin["energy_arith_pj_per_token"] > base["energy_arith_pj_per_token"]


def test_bops_follow_the_closed_form() -> None:
    model = random_exported_model(
        "lstm",
        "fixed",
        hidden=6,
        input_size=5,
        input_kind="features",
        task=CLASSIFICATION,
        seed=4,
        zero_fraction=0.0,
    )
    for tensor in (model.layers[0].w_input, model.layers[0].w_recurrent):
        tensor.values[tensor.values == 0] = 2.0**-8  # dense: p = 1
    sample = random_sample(model, length=8)
    result = _measure(model, sample)
    b_a, b_w, h, k = 16.0, 8.0, 6, 5 + 6
    recurrent = bops_per_step(4, h, 5, 1.0, b_a, b_w)
    assert recurrent == 4 * h * k * (b_a * b_w + b_a + b_w + math.log2(k))
    n_out = model.n_outputs
    p_out = np.count_nonzero(model.output_weight) / model.output_weight.size
    out = n_out * h * (p_out * b_a * 16 + b_a + 16 + math.log2(h))
    length = float(np.mean(sample.sequences.lengths))
    assert result["bops_per_token"] == pytest.approx(recurrent + out / length)


def test_hand_priced_two_unit_rnn() -> None:
    """Every term of the frozen 2-unit RNN (tests/test_hardware_simulator.py) priced by hand.

    Per step: 6 add/sub (the non-zeros of W_x and W_h) in a 20-bit accumulator (16 + ceil(log2 5)
    + 1), 2 tanh table reads of 16 bits, state traffic 2 x 2 x 16 + 2 x 16 bits in registers,
    and 24 weight bits (8 + 8 + two 2-bit biases of 2) from an SRAM priced as an 8 KB macro. The
    ternary output layer (2 adds at 16 + ceil(log2 3) + 1 = 19 bits, 12 weight bits) runs once
    per sequence of 3 steps.
    """
    from tests.test_hardware_simulator import _hand_model

    model, sample = _hand_model()
    result = _measure(model, sample)
    per_bit = sram_pj_per_bit(8 * 1024 * 8)
    recurrent = 6 * 20 * 0.003125 + 2 * 16 * 0.009 + (2 * 2 * 16 + 2 * 16) * 0.009 + 24 * per_bit
    output = 2 * 19 * 0.003125 + 12 * per_bit
    assert result["energy_pj_per_token"] == pytest.approx(recurrent + output / 3)
    assert result["energy_pj_per_sequence"] == pytest.approx(3 * (recurrent + output / 3))
    assert result["energy_shift_pj_per_token"] == 0.0 and result["energy_mult_pj_per_token"] == 0.0
    assert result["weight_bytes_dense"] == (4 + 4 + 2 + 2) * 2 / 8
    assert result["datapath"] == "int16"
