"""The generated C library executes the simulator's integer program bit for bit (issue 27).

Each case generates one library, compiles it once (strict C99 flags, warnings as errors) and
pushes a whole evaluation sample through the stdin harness; every hidden-state code and logit
must equal :func:`qbench_builtins.hardware.engine.run`'s. The cell x scheme cases also run under
``-fsanitize=undefined,address``. Needs a host C compiler (Debian: gcc), as CI has.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from qbench_builtins.hardware import cbuild, cgen, engine
from qbench_builtins.hardware.formats import QFormat
from qbench_builtins.hardware.program import SimConfig, build_program
from qbench_builtins.hardware.simulate import sample_inputs

import qbench
from qbench.data import CLASSIFICATION, LANGUAGE_MODEL, EvalSample, SequenceSplit
from qbench.export import ExportedLayer, ExportedModel, ExportedTensor
from qbench.testing.hardware import random_exported_model, random_sample

pytestmark = pytest.mark.skipif(shutil.which("cc") is None and shutil.which("gcc") is None,
                                reason="no C compiler (Debian: apt-get install gcc)")  # fmt: skip

CELLS = ("rnn", "gru", "lstm")
SCHEMES = ("binary", "ternary", "pow2-ternary", "exponential", "fixed")
ROUNDINGS = ("floor", "half-up", "half-away", "half-even", "stochastic")


def compiled_outputs(model: ExportedModel, sample: EvalSample, config: SimConfig, directory: Path,
                     sanitize: bool = False) -> tuple[cbuild.Vectors, np.ndarray, np.ndarray]:  # fmt: skip
    """(the simulator's outputs, the C hidden rows, the C logits) on ``sample``."""
    program = build_program(model, config)
    inputs, lengths, _, _ = sample_inputs(sample)
    vec = cbuild.vectors(program, inputs, lengths, engine.run(program, inputs, lengths))
    directory.mkdir(parents=True, exist_ok=True)
    cbuild.write_library(directory, cgen.generate(program), program, vec)
    exe = cbuild.compile_host(directory, "qb_harness.c", "harness", sanitize=sanitize,
                              opt="-O1" if sanitize else "-O0")  # fmt: skip
    hidden, logits = cbuild.run_harness(exe, vec)
    return vec, hidden, logits


def assert_identical(vec: cbuild.Vectors, hidden: np.ndarray, logits: np.ndarray) -> None:
    assert hidden.shape == vec.hidden.shape and logits.shape == vec.logits.shape
    assert np.array_equal(hidden, vec.hidden), "hidden states differ from the simulator"
    assert np.array_equal(logits, vec.logits), "logits differ from the simulator"


@pytest.mark.parametrize("cell", CELLS)
@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_cell_and_scheme_is_bit_exact_and_sanitizer_clean(cell: str, scheme: str, tmp_path: Path) -> None:
    """Deterministic and stochastic rounding, batch norm or not, one-hot or features, 1-2 layers."""
    index = CELLS.index(cell) * len(SCHEMES) + SCHEMES.index(scheme)
    features = index % 2 == 1
    model = random_exported_model(
        cell, scheme, hidden=6, input_size=5, seed=index, layers=1 + index % 2,
        input_kind="features" if features else "one-hot", task=CLASSIFICATION if features else LANGUAGE_MODEL,
        batch_norm=index % 3 == 0,
    )  # fmt: skip
    config = SimConfig(rounding=ROUNDINGS[index % len(ROUNDINGS)], seed=index)
    sample = random_sample(model, length=9, sequences=5, seed=index)
    assert_identical(*compiled_outputs(model, sample, config, tmp_path, sanitize=True))


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    cell=st.sampled_from(CELLS),
    scheme=st.sampled_from(SCHEMES),
    hidden=st.integers(1, 6),
    input_size=st.integers(1, 5),
    act_bits=st.tuples(st.integers(1, 6), st.integers(2, 12)),
    pre_bits=st.tuples(st.integers(1, 5), st.integers(2, 14)),
    gate_frac=st.integers(3, 15),
    cell_bits=st.tuples(st.integers(1, 6), st.integers(2, 13)),
    rounding=st.sampled_from(ROUNDINGS),
    overflow=st.sampled_from(("saturate", "wrap")),
    nonlinearity=st.sampled_from(("table", "hard")),
    acc_bits=st.sampled_from((0, 0, 12, 20)),
    input_kind=st.sampled_from(("one-hot", "features", "embedding")),
    batch_norm=st.booleans(),
    seed=st.integers(0, 1000),
)
def test_random_formats_and_models_are_bit_exact(tmp_path_factory, cell, scheme, hidden, input_size, act_bits,
                                                 pre_bits, gate_frac, cell_bits, rounding, overflow, nonlinearity,
                                                 acc_bits, input_kind, batch_norm, seed) -> None:  # fmt: skip
    model = random_exported_model(
        cell, scheme, hidden=hidden, input_size=input_size, seed=seed, layers=1 + seed % 2,
        input_kind=input_kind, task=CLASSIFICATION if input_kind == "features" else LANGUAGE_MODEL,
        batch_norm=batch_norm,
    )  # fmt: skip
    config = SimConfig(
        activation=QFormat(*act_bits), preact=QFormat(*pre_bits), gate=QFormat(2, gate_frac),
        cell=QFormat(*cell_bits), rounding=rounding, overflow=overflow, nonlinearity=nonlinearity,
        acc_bits=acc_bits, sigmoid_entries=256, tanh_entries=512, seed=seed,
    )  # fmt: skip
    sample = random_sample(model, length=6, sequences=3, seed=seed)
    assert_identical(*compiled_outputs(model, sample, config, tmp_path_factory.mktemp("c")))


def _hand_model() -> tuple[ExportedModel, EvalSample]:
    def t(values: list, role: str) -> ExportedTensor:
        return ExportedTensor(np.array(values, dtype=np.float64), role, "pow2-ternary", 2.0)

    layer = ExportedLayer(
        cell="rnn", input_size=2, hidden_size=2,
        w_input=t([[0.5, 0.0], [-0.5, 0.5]], "input"), w_recurrent=t([[0.0, 0.5], [0.5, 0.5]], "recurrent"),
        b_input=t([0.5, 0.0], "bias"), b_recurrent=t([0.0, 0.0], "bias"),
    )  # fmt: skip
    model = ExportedModel(
        cell="rnn", task=CLASSIFICATION, input_kind="features", input_size=2, layers=[layer],
        output_weight=np.array([[0.5, 0.0], [0.0, -0.5]]), output_bias=np.array([0.0, 0.25]),
        output_scheme="pow2-ternary",
    )  # fmt: skip
    x = np.array([[[1.0, 0.5], [-0.75, 1.0], [0.25, -1.0]]], dtype=np.float32)
    sample = EvalSample(CLASSIFICATION, sequences=SequenceSplit(x, np.array([3]), np.array([0])),
                        float_metrics={"test_accuracy": 1.0})  # fmt: skip
    return model, sample


def test_frozen_hand_computed_rnn(tmp_path: Path) -> None:
    """2-unit RNN, ternary {0, +-1/2} weights, Q2.2 activations, hard tanh, 3 steps (worked by hand).

    Codes: W_x [[1, 0], [-1, 1]], W_h [[0, 1], [1, 1]] (2**-1); x in Q2.2: [4, 2], [-3, 4], [1, -4];
    accumulator at 3 fractional bits, bias_x [4, 0]; pre-activations Q3.2 rounded half away; hard
    tanh clips to [-4, 4]:
      t1: acc = [4+4, 0-2] = [8, -2]        -> h1 [4, -1]
      t2: acc = [4-3-1, 0+7+3] = [0, 10]    -> h2 [0, 4]
      t3: acc = [4+1+4, 0-5+4] = [9, -1]    -> h3 [4, -1]
    Output codes [[1, 0], [0, -1]] (2**-1), bias [0, 2] at 3 bits: logits [4, 1 + 2] = [4, 3].
    """
    model, sample = _hand_model()
    config = SimConfig(activation=QFormat(2, 2), preact=QFormat(3, 2), gate=QFormat(2, 2), rounding="half-away",
                       nonlinearity="hard")  # fmt: skip
    vec, hidden, logits = compiled_outputs(model, sample, config, tmp_path)
    assert vec.inputs.tolist() == [[4, 2], [-3, 4], [1, -4]]
    assert hidden.tolist() == [[4, -1], [0, 4], [4, -1]]
    assert logits.tolist() == [[4, 3]]


def _kernels(scheme: str, directory: Path, opt: str = "-O2") -> dict[str, list[str]]:
    model = random_exported_model("gru", scheme, hidden=16, input_size=12, input_kind="features",
                                  task=CLASSIFICATION, output_scheme=scheme)  # fmt: skip
    library = cgen.generate(build_program(model, SimConfig()))
    for name, text in library.files.items():
        (directory / name).write_text(text)
    level, *extra = opt.split()
    obj = cbuild.compile_object(directory, level, tuple(extra))
    names = [k for k in library.kernels] + [f"qb_sum_fixed_{t}" for t in ("int8_t", "int16_t", "int32_t")]
    return cbuild.function_code(obj, names)


def _multiplies(instructions: list[str]) -> list[str]:
    return [i for i in instructions if i.split()[0].rstrip("bwlq").lstrip("v") in ("mul", "imul", "pmul")
            or i.split()[0].startswith(("imul", "mul", "pmul", "vpmul"))]  # fmt: skip


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump missing (Debian: apt-get install binutils)")
@pytest.mark.parametrize("opt", ("-O2", "-O3 -march=native"))
@pytest.mark.parametrize("scheme", ("ternary", "binary", "exponential"))
def test_multiplier_free_matrix_kernels_contain_no_multiply(scheme: str, opt: str, tmp_path: Path) -> None:
    code = _kernels(scheme, tmp_path, opt)
    kind = {"ternary": "ternary", "binary": "binary", "exponential": "pow2"}[scheme]
    assert f"qb_sum_{kind}" in code and code[f"qb_sum_{kind}"]
    for name, instructions in code.items():
        if "fixed" not in name:
            assert not _multiplies(instructions), f"{name} multiplies: {_multiplies(instructions)}"


@pytest.mark.skipif(shutil.which("objdump") is None, reason="objdump missing (Debian: apt-get install binutils)")
def test_the_multiply_check_sees_a_fixed_point_kernel_multiply(tmp_path: Path) -> None:
    code = _kernels("fixed", tmp_path)
    fixed = [name for name in code if "fixed" in name]
    assert fixed and all(_multiplies(code[name]) for name in fixed)


def test_unsupported_programs_are_refused_with_the_reason() -> None:
    model = random_exported_model("lstm", "ternary", hidden=3, input_size=4)
    with pytest.raises(qbench.Unsupported, match="nonlinearity 'exact'"):
        cgen.generate(build_program(model, SimConfig(nonlinearity="exact")))
    with pytest.raises(qbench.Unsupported, match="int32_t"):
        cgen.generate(build_program(model, SimConfig(activation=QFormat(8, 30))))


def test_the_library_has_no_float_no_malloc_and_fixed_width_types() -> None:
    model = random_exported_model("lstm", "exponential", hidden=4, input_size=3, input_kind="features",
                                  task=CLASSIFICATION, batch_norm=True, layers=2)  # fmt: skip
    library = cgen.generate(build_program(model, SimConfig(rounding="stochastic")))
    source = library.files["qb_model.c"] + library.files["qb_model.h"]
    for word in ("float", "double", "malloc", "free(", "<stdlib.h>", "<math.h>", " long ", " int64_t x >>"):
        assert word not in source


@pytest.mark.parametrize("scheme", ("ternary", "exponential", "fixed"))
def test_sums_that_may_exceed_31_bits_use_the_64_bit_kernels(scheme: str, tmp_path: Path) -> None:
    """Q12.14 activations and 140 inputs: the input sums may pass 2**31, so that matrix keeps int64_t."""
    model = random_exported_model("gru", scheme, hidden=4, input_size=140, input_kind="features",
                                  task=CLASSIFICATION, seed=5)  # fmt: skip
    config = SimConfig(activation=QFormat(12, 14))
    kind = {"ternary": "ternary", "exponential": "pow2", "fixed": "fixed_int8_t"}[scheme]
    source = cgen.generate(build_program(model, config)).files["qb_model.c"]
    assert f"qb_sum_{kind}(qb_wx0_0" in source and f"qb_sum_{kind}32(qb_wh0_0" in source
    sample = random_sample(model, length=6, sequences=3, seed=5)
    assert_identical(*compiled_outputs(model, sample, config, tmp_path, sanitize=True))
