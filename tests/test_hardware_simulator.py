"""The shift-add simulator proves itself (docs/hardware.md, "How it proves itself", checks 1-5)."""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from qbench_builtins.hardware import counters, engine, float_model, fused
from qbench_builtins.hardware.formats import QFormat
from qbench_builtins.hardware.program import SimConfig, build_program
from qbench_builtins.hardware.reference import exact_in_float64, run_reference
from qbench_builtins.hardware.simulate import sample_inputs

import qbench
from qbench.data import CLASSIFICATION, LANGUAGE_MODEL, EvalSample, SequenceSplit
from qbench.export import ExportedLayer, ExportedModel, ExportedTensor
from qbench.testing.hardware import random_exported_model, random_sample
from tests.hardware_interpreter import Interpreter

CELLS = ("rnn", "gru", "lstm")
SCHEMES = ("binary", "ternary", "pow2-ternary", "exponential", "fixed")
ROUNDINGS = ("floor", "half-up", "half-away", "half-even", "stochastic")


def _inputs(model: ExportedModel, sample: EvalSample):
    inputs, lengths, _targets, _pred = sample_inputs(sample)
    return inputs, lengths


def _same_run(a: engine.RunResult, b: engine.RunResult) -> None:
    assert np.array_equal(np.asarray(a.logits, dtype=object), np.asarray(b.logits, dtype=object))
    for ha, hb in zip(a.hidden, b.hidden, strict=True):
        assert np.array_equal(np.asarray(ha, dtype=object), np.asarray(hb, dtype=object))
    assert a.stats.saturations == b.stats.saturations
    assert a.stats.overflows == b.stats.overflows


# ---- check 1: bit-exact agreement with the float64 reference ---------------------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_engine_equals_float64_reference_over_seeds(cell: str, scheme: str) -> None:
    for seed in range(4):
        rng = np.random.default_rng(seed)
        kind, task = [
            ("one-hot", LANGUAGE_MODEL),
            ("features", CLASSIFICATION),
            ("embedding", LANGUAGE_MODEL),
        ][seed % 3]
        model = random_exported_model(
            cell,
            scheme,
            hidden=int(rng.integers(1, 7)),  # tiny sizes included: one unit, one input
            input_size=int(rng.integers(1, 6)),
            layers=1 + seed % 2,
            input_kind=kind,
            task=task,
            seed=seed,
            batch_norm=seed == 3,
            biases=seed != 2,
        )
        config = SimConfig(
            rounding=ROUNDINGS[seed % len(ROUNDINGS)],
            nonlinearity=("table", "hard")[seed % 2],
            overflow=("saturate", "wrap")[seed % 2],
            acc_bits=14 if seed == 1 else 0,
            seed=seed,
        )
        program = build_program(model, config)
        assert exact_in_float64(program)
        inputs, lengths = _inputs(model, random_sample(model, length=int(rng.integers(1, 9)), seed=seed))
        _same_run(engine.run(program, inputs, lengths), run_reference(program, inputs, lengths))


def test_narrow_formats_saturate_and_wrap_identically() -> None:
    narrow = QFormat(2, 3)
    model = random_exported_model("lstm", "exponential", hidden=6, input_size=4, seed=7)
    inputs, lengths = _inputs(model, random_sample(model, length=10))
    for overflow, acc_bits in (("saturate", 0), ("wrap", 9)):
        config = SimConfig(
            activation=narrow,
            preact=QFormat(1, 2),
            cell=QFormat(1, 4),
            gate=QFormat(1, 4),
            overflow=overflow,
            acc_bits=acc_bits,
        )
        program = build_program(model, config)
        run = engine.run(program, inputs, lengths)
        assert run.stats.total_saturations > 0 or overflow == "wrap"
        assert (run.stats.overflows > 0) == (acc_bits > 0)
        _same_run(run, run_reference(program, inputs, lengths))


# ---- check 2: the scalar interpreter gives the same outputs and counters ---------------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_scalar_interpreter_matches_engine_and_counters(cell: str, scheme: str) -> None:
    for seed, (kind, task) in enumerate([("one-hot", LANGUAGE_MODEL), ("features", CLASSIFICATION)]):
        model = random_exported_model(
            cell,
            scheme,
            hidden=3,
            input_size=4,
            layers=2,
            input_kind=kind,
            task=task,
            seed=seed,
            batch_norm=seed == 1,
        )
        sample = random_sample(model, length=5, sequences=2, seed=seed)
        inputs, lengths = _inputs(model, sample)
        config = SimConfig(rounding=ROUNDINGS[(seed + len(scheme)) % len(ROUNDINGS)], acc_bits=13 * seed)
        program = build_program(model, config)
        fast = engine.run(program, inputs, lengths)
        slow = Interpreter(program).run(inputs, lengths)
        assert np.array_equal(np.asarray(fast.logits, dtype=object), np.array(slow.logits, dtype=object))
        assert np.array_equal(fast.hidden[-1], np.array(slow.hidden[-1]))
        assert fast.stats.saturations == slow.saturations
        assert fast.stats.overflows == slow.counts.get("overflows", 0)
        steps, batch = inputs.shape[0], inputs.shape[1]
        ids = inputs[:, 0] if program.layers[0].one_hot else None
        closed = Counter({k: v * batch for k, v in counters.program_counts(program, steps, ids).items()})
        walked = Counter({k: v for k, v in slow.counts.items() if k != "overflows"})
        assert +closed == +walked
        assert +counters.output_counts(program) == +slow.output_counts


# ---- check 3: counters equal the closed forms ------------------------------------------------

ELEMENTWISE = {"rnn": (0, 0, 0, 1), "gru": (2, 3, 2, 1), "lstm": (3, 1, 3, 2)}  # mults, adds, sigmoids, tanhs


@pytest.mark.parametrize("cell", CELLS)
def test_counters_equal_closed_forms(cell: str) -> None:
    n, h, gates = 5, 4, {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    P = gates * h * (n + h)
    mults, adds, sigmoids, tanhs = ELEMENTWISE[cell]
    for scheme in ("fixed", "binary", "ternary", "pow2-ternary", "exponential"):
        zero_fraction = 0.0 if scheme in ("fixed", "binary") else 0.4
        model = random_exported_model(
            cell,
            scheme,
            hidden=h,
            input_size=n,
            input_kind="features",
            task=CLASSIFICATION,
            seed=3,
            zero_fraction=zero_fraction,
        )
        program = build_program(model, SimConfig())
        layer = model.layers[0]
        nnz = layer.w_input.nnz + layer.w_recurrent.nnz
        c = counters.program_counts(program, 1)
        assert c["sigmoids"] == sigmoids * h and c["tanhs"] == tanhs * h
        assert c["table_lookups"] == (sigmoids + tanhs) * h
        scaled_rows = 2 * gates * h if scheme in ("binary", "ternary") else 0  # W0 is not a power of two
        if scheme == "fixed":
            assert (c["adds"], c["skips"], c["shifts"]) == (P + adds * h, 0, 0)
            assert c["mults"] == P + mults * h
        else:
            assert c["adds"] == nnz + adds * h, "add/sub = non-zeros"
            assert c["skips"] == P - nnz, "skips = zeros"
            assert c["shifts"] == (nnz if scheme == "exponential" else 0)
            assert c["scale_mults"] == scaled_rows
            assert c["mults"] == mults * h + scaled_rows
        if scheme == "binary":
            assert nnz == P


def test_one_hot_counts_only_the_selected_column() -> None:
    model = random_exported_model("gru", "ternary", hidden=4, input_size=6, seed=1)
    program = build_program(model, SimConfig())
    tokens = np.array([0, 3, 3, 5])
    c = counters.program_counts(program, len(tokens), tokens)
    w = model.layers[0].w_input.values
    column_nnz = sum(int(np.count_nonzero(w[:, t])) for t in tokens)
    recurrent_nnz = model.layers[0].w_recurrent.nnz
    assert c["adds"] == column_nnz + len(tokens) * (recurrent_nnz + 3 * 4)


# ---- check 4: the wide-format limit equals the float model -----------------------------------


@pytest.mark.parametrize("cell", CELLS)
def test_wide_formats_match_the_float_quantized_model(cell: str) -> None:
    wide = QFormat(12, 40)
    config = SimConfig(
        activation=wide,
        preact=wide,
        gate=wide,
        cell=wide,
        nonlinearity="exact",
        scale_bits=40,
        output_bits=40,
    )
    for scheme, kind in [
        ("exponential", "one-hot"),
        ("pow2-ternary", "features"),
        ("fixed", "embedding"),
        ("ternary", "one-hot"),
    ]:
        task = CLASSIFICATION if kind == "features" else LANGUAGE_MODEL
        model = random_exported_model(
            cell, scheme, hidden=4, input_size=3, layers=2, input_kind=kind, task=task, seed=11
        )
        inputs, lengths = _inputs(model, random_sample(model, length=6))
        program = build_program(model, config)
        run = engine.run(program, inputs, lengths)
        simulated = (
            np.array([float(v) for v in np.asarray(run.logits).reshape(-1)]) * 2.0**-program.output.acc_frac
        )
        expected = float_model.forward(model, inputs, lengths).reshape(-1)
        assert np.max(np.abs(simulated - expected)) < 1e-9


def test_default_formats_are_close_to_the_float_model() -> None:
    model = random_exported_model("lstm", "ternary", hidden=16, input_size=8, seed=2)
    sample = random_sample(model, length=30)
    result = qbench.create("hardware", "shift-add").measure(model, sample)
    assert result["sim_exact"] is True
    assert result["sim_max_abs_error"] < 0.05
    assert result["sim_agreement"] > 0.9
    assert abs(result["sim_metric"] - result["float64_metric"]) < 0.05


# ---- check 5: a frozen, hand-computed example ------------------------------------------------


def _hand_model() -> tuple[ExportedModel, EvalSample]:
    def t(values: list, role: str) -> ExportedTensor:
        return ExportedTensor(np.array(values, dtype=np.float64), role, "pow2-ternary", 2.0)

    layer = ExportedLayer(
        cell="rnn",
        input_size=2,
        hidden_size=2,
        w_input=t([[0.5, 0.0], [-0.5, 0.5]], "input"),
        w_recurrent=t([[0.0, 0.5], [0.5, 0.5]], "recurrent"),
        b_input=t([0.5, 0.0], "bias"),
        b_recurrent=t([0.0, 0.0], "bias"),
    )
    model = ExportedModel(
        cell="rnn",
        task=CLASSIFICATION,
        input_kind="features",
        input_size=2,
        layers=[layer],
        output_weight=np.array([[0.5, 0.0], [0.0, -0.5]]),
        output_bias=np.array([0.0, 0.25]),
        output_scheme="pow2-ternary",
    )
    x = np.array([[[1.0, 0.5], [-0.75, 1.0], [0.25, -1.0]]], dtype=np.float32)
    sample = EvalSample(
        CLASSIFICATION,
        sequences=SequenceSplit(x, np.array([3]), np.array([0])),
        float_metrics={"test_accuracy": 1.0},
        float_predictions=np.array([0]),
    )
    return model, sample


def test_frozen_hand_computed_rnn() -> None:
    """2-unit RNN, ternary {0, +-1/2} weights, 4-bit Q2.2 activations, hard tanh, 3 steps.

    Codes: W_x [[1, 0], [-1, 1]], W_h [[0, 1], [1, 1]] (2**-1); x in Q2.2: [4, 2], [-3, 4], [1, -4].
    Accumulator at 3 fractional bits, bias_x [4, 0]. Pre-activations Q3.2 (half away), hard tanh
    clips to [-4, 4] (+-1.0):
      t1: acc = [4+4, 0-2] = [8, -2]            -> pre [4, -1]  -> h1 [4, -1]
      t2: acc = [4-3-1, 0+7+3] = [0, 10]        -> pre [0, 5]   -> h2 [0, 4]
      t3: acc = [4+1+4, 0-5+4] = [9, -1]        -> pre [5, -1]  -> h3 [4, -1]
    Output codes [[1, 0], [0, -1]] (2**-1), bias [0, 2] at 3 bits: logits [4 + 0, 1 + 2] = [4, 3].
    """
    model, sample = _hand_model()
    config = SimConfig(
        activation=QFormat(2, 2),
        preact=QFormat(3, 2),
        gate=QFormat(2, 2),
        rounding="half-away",
        nonlinearity="hard",
    )
    program = build_program(model, config)
    layer = program.layers[0]
    assert layer.wx.codes.tolist() == [[1, 0], [-1, 1]] and layer.wx.frac == 1
    assert layer.wh.codes.tolist() == [[0, 1], [1, 1]] and layer.wh.frac == 1
    assert layer.acc_frac == 3 and layer.bias_x.tolist() == [4, 0] and layer.bias_h.tolist() == [0, 0]
    inputs, lengths = _inputs(model, sample)
    assert program.input_codes(inputs)[0][:, 0].tolist() == [[4, 2], [-3, 4], [1, -4]]
    for run in (engine.run(program, inputs, lengths), run_reference(program, inputs, lengths)):
        assert run.hidden[0][:, 0].tolist() == [[4, -1], [0, 4], [4, -1]]
        assert run.logits.tolist() == [[4, 3]]
        assert run.stats.total_saturations == 0 and run.stats.acc_abs_max == 10
    slow = Interpreter(program).run(inputs, lengths)
    assert slow.logits == [[4, 3]]
    assert dict(slow.counts) == {"adds": 18, "skips": 6, "table_lookups": 6, "tanhs": 6}
    assert dict(slow.output_counts) == {"adds": 2, "skips": 2}


def test_frozen_example_through_the_backend() -> None:
    model, sample = _hand_model()
    backend = qbench.create(
        "hardware",
        "shift-add",
        activation_format="Q2.2",
        preact_format="Q3.2",
        gate_format="Q2.2",
        nonlinearity="hard",
    )
    result = backend.measure(model, sample)
    assert (result["adds"], result["skips"], result["shifts"], result["mults"]) == (6, 2, 0, 0)
    assert (result["output_adds"], result["output_mults"], result["table_lookups"]) == (2, 0, 2)
    assert result["sim_exact"] is True and result["sim_accuracy"] == 1.0 and result["sim_agreement"] == 1.0
    assert result["acc_bits_max"] == 5  # |10| needs 4 magnitude bits and a sign
    assert result["adder_bits_max"] == 4  # raw sums W_x x: [4, -2], [-3, 7], [1, -5]; W_h h: [-1, 3], [4, 4]
    assert result["sim_output_requantized"] is False


# ---- representability: verified from the values, unsupported otherwise -----------------------


def test_float_model_is_unsupported_unless_asked_to_requantize() -> None:
    model = random_exported_model("gru", "float", hidden=4, input_size=3, seed=0)
    sample = random_sample(model, length=6)
    with pytest.raises(qbench.Unsupported, match="float_weight_bits"):
        qbench.create("hardware", "shift-add").measure(model, sample)
    result = qbench.create("hardware", "shift-add", float_weight_bits=12).measure(model, sample)
    assert result["sim_requantized"] is True and result["sim_exact"] is True
    assert result["mults"] > 0 and result["skips"] == 0


def test_custom_scheme_hint_is_verified_from_values() -> None:
    model = random_exported_model("lstm", "exponential", hidden=3, input_size=3, seed=4)
    for layer in model.layers:
        for tensor in layer.tensors.values():
            tensor.scheme, tensor.encoding = "custom", {}
    result = qbench.create("hardware", "shift-add").measure(model, random_sample(model, length=5))
    assert "pow2" in result["sim_weight_kinds"] and result["shifts"] > 0 and result["sim_exact"] is True


def test_non_finite_weights_are_unsupported() -> None:
    model = random_exported_model("rnn", "ternary", hidden=3, input_size=3, seed=4)
    model.layers[0].w_recurrent.values[0, 0] = np.nan
    with pytest.raises(qbench.Unsupported, match="NaN"):
        build_program(model, SimConfig())


def test_automatic_accumulator_never_overflows_and_narrow_one_does() -> None:
    model = random_exported_model("gru", "exponential", hidden=8, input_size=5, seed=9)
    sample = random_sample(model, length=12)
    auto = qbench.create("hardware", "shift-add").measure(model, sample)
    assert auto["overflows"] == 0 and auto["acc_bits_max"] <= auto["acc_bits_bound"]
    narrow = qbench.create("hardware", "shift-add", acc_bits=auto["acc_bits_max"] - 3).measure(model, sample)
    assert narrow["overflows"] > 0 and narrow["sim_exact"] is True


def test_invalid_parameters_are_rejected() -> None:
    with pytest.raises(qbench.ParamError, match="activation_format"):
        qbench.create("hardware", "shift-add", activation_format="8.8")
    with pytest.raises(qbench.ParamError, match="power of two"):
        qbench.create("hardware", "shift-add", sigmoid_entries=1000)
    with pytest.raises(qbench.ParamError):
        qbench.create("hardware", "shift-add", rounding="nearest")


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("rounding", ("floor", "half-up"))
def test_fused_path_equals_general_path(monkeypatch: pytest.MonkeyPatch, cell: str, rounding: str) -> None:
    """The fused loops (tables fed unsaturated, half an LSB preloaded) change no integer."""
    for seed, formats in enumerate([{}, {"activation": QFormat(1, 7), "cell": QFormat(2, 6)}]):
        model = random_exported_model(cell, "exponential", hidden=7, input_size=5, layers=2, seed=seed)
        if seed == 1:  # large powers of two: pre-activations beyond the tables' range
            for layer in model.layers:
                layer.w_input.values *= 8.0
                layer.w_recurrent.values *= 8.0
        inputs, lengths = _inputs(model, random_sample(model, length=25, seed=seed))
        program = build_program(model, SimConfig(rounding=rounding, **formats))
        assert fused.applies(program, program.layers[0])
        fast = engine.run(program, inputs, lengths)
        monkeypatch.setattr(fused, "FAST_PATH", False)
        general = engine.run(program, inputs, lengths)
        monkeypatch.setattr(fused, "FAST_PATH", True)
        _same_run(fast, general)
        assert fast.stats.acc_abs_max == general.stats.acc_abs_max
        _same_run(fast, run_reference(program, inputs, lengths))
        if seed == 1:
            assert fast.stats.saturations.get("preact", 0) > 0


def test_input_conversion_saturations_are_counted() -> None:
    model = random_exported_model("gru", "ternary", hidden=3, input_size=4, input_kind="embedding", seed=1)
    assert model.embedding is not None
    model.embedding[1] = 500.0  # beyond Q8.8: every read of token 1 saturates its 6 features
    program = build_program(model, SimConfig())
    tokens = np.array([[1], [0], [1]])
    codes, saturated = program.input_codes(tokens)
    assert saturated == 12 and codes.max() == QFormat(8, 8).hi
    run = engine.run(program, tokens)
    assert run.stats.input_saturations == 12 and run.stats.total_saturations >= 12


@settings(max_examples=40, deadline=None)
@given(
    cell=st.sampled_from(CELLS),
    scheme=st.sampled_from(SCHEMES),
    hidden=st.integers(1, 6),
    input_size=st.integers(1, 5),
    length=st.integers(1, 6),
    act_bits=st.tuples(st.integers(1, 6), st.integers(2, 12)),
    pre_bits=st.tuples(st.integers(1, 5), st.integers(2, 14)),
    gate_frac=st.integers(3, 15),
    cell_bits=st.tuples(st.integers(1, 6), st.integers(2, 13)),
    rounding=st.sampled_from(ROUNDINGS),
    overflow=st.sampled_from(("saturate", "wrap")),
    nonlinearity=st.sampled_from(("table", "hard")),
    seed=st.integers(0, 1000),
)
def test_bit_exact_for_random_formats(
    cell,
    scheme,
    hidden,
    input_size,
    length,
    act_bits,
    pre_bits,
    gate_frac,
    cell_bits,
    rounding,
    overflow,
    nonlinearity,
    seed,
) -> None:
    """Check 1 over random formats and policies, not only the defaults (hypothesis)."""
    model = random_exported_model(
        cell,
        scheme,
        hidden=hidden,
        input_size=input_size,
        seed=seed,
        input_kind=("one-hot", "features")[seed % 2],
        task=(LANGUAGE_MODEL, CLASSIFICATION)[seed % 2],
    )
    config = SimConfig(
        activation=QFormat(*act_bits),
        preact=QFormat(*pre_bits),
        gate=QFormat(2, gate_frac),
        cell=QFormat(*cell_bits),
        rounding=rounding,
        overflow=overflow,
        nonlinearity=nonlinearity,
        sigmoid_entries=256,
        tanh_entries=512,
        seed=seed,
    )
    program = build_program(model, config)
    inputs, lengths = _inputs(model, random_sample(model, length=length, seed=seed))
    _same_run(engine.run(program, inputs, lengths), run_reference(program, inputs, lengths))


# ---- what float64 cannot referee is reported, never a crash (issue 15, item 12) ---------------


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize(
    "params",
    [
        {"activation_format": "Q8.36", "scale_bits": 40},  # batch-norm shift codes beyond 62 bits
        {"activation_format": "Q8.36", "scale_bits": 40, "nonlinearity": "exact"},
        {"activation_format": "Q8.50", "rounding": "half-even"},  # logits beyond int64
    ],
    ids=["bn-wide", "bn-wide-exact", "wide-logits"],
)
def test_wide_formats_report_what_float64_cannot_referee(cell: str, params: dict) -> None:
    backend = qbench.create("hardware", "shift-add", **params)
    for kind, task in (("one-hot", LANGUAGE_MODEL), ("features", CLASSIFICATION)):
        model = random_exported_model(
            cell, "ternary", hidden=4, input_size=3, layers=2, batch_norm=True, input_kind=kind, task=task
        )
        result = backend.measure(model, random_sample(model, length=5))
        assert result["sim_reference_exact"] is False
        assert result["sim_reference_limit"].startswith("float64 cannot referee bit for bit: ")
        assert "bits" in result["sim_reference_limit"]
        assert result["sim_exact"] in (True, None)  # agreement observed, or not provable: never False


def test_exact_programs_have_no_referee_limit() -> None:
    model = random_exported_model("gru", "ternary", hidden=4, input_size=3, layers=2, batch_norm=True)
    sample = random_sample(model, length=5)
    result = qbench.create("hardware", "shift-add", nonlinearity="exact").measure(model, sample)
    assert result["sim_exact"] is True and result["sim_reference_limit"] == ""
    off = qbench.create("hardware", "shift-add", reference=False).measure(model, sample)
    assert off["sim_exact"] is None and off["sim_reference_limit"] == "not run (reference = false)"


@pytest.mark.parametrize("cell", CELLS)
def test_stochastic_rounding_beyond_the_generator_is_unsupported_with_the_reason(cell: str) -> None:
    backend = qbench.create(
        "hardware", "shift-add", activation_format="Q8.36", scale_bits=40, rounding="stochastic"
    )
    model = random_exported_model(cell, "ternary", hidden=4, input_size=3, layers=2, batch_norm=True)
    with pytest.raises(qbench.Unsupported, match=r"stochastic rounding at layer \d's .* drops \d+ fractional bits"):
        backend.measure(model, random_sample(model, length=5))
