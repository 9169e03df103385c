"""Conformance kit for hardware backends, and a factory of random exported models.

A plugin author checks a backend with::

    from qbench.testing.hardware import HardwareBackendContract

    class TestMyBackend(HardwareBackendContract):
        @pytest.fixture
        def backend(self):
            return MyBackend()

The contract runs :meth:`qbench.HardwareBackend.measure` on small random exported models (every
cell, several weight schemes, language-model and classification samples) and checks that it

* returns every declared column and only declared columns (or raises :class:`qbench.Unsupported`
  with a reason),
* measures at least one of the contract's models (a backend that raises Unsupported for
  everything measures nothing, and would otherwise pass every other check),
* returns JSON scalars (bool, int, float, str or None; no numpy types, no NaN),
* declares a direction ``"min"``, ``"max"`` or ``""`` for every column,
* gives the same answer twice (determinism).

``tests/test_hardware_kit.py`` shows each check failing on a deliberately broken backend.

:func:`random_exported_model` builds the models with numpy only (no torch, no training).
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
import pytest

import qbench
from qbench.data import CLASSIFICATION, LANGUAGE_MODEL, EvalSample, SequenceSplit
from qbench.export import ExportedLayer, ExportedModel, ExportedTensor

GATES = {"rnn": 1, "gru": 3, "lstm": 4}
SCHEMES = ("float", "binary", "ternary", "pow2-ternary", "exponential", "fixed")
SCHEME_BITS = {
    "float": 32.0,
    "binary": 1.0,
    "ternary": 2.0,
    "pow2-ternary": 2.0,
    "exponential": 6.0,
    "fixed": 8.0,
}


def random_weights(
    rng: np.random.Generator, shape: tuple[int, ...], scheme: str, zero_fraction: float | None = None
) -> tuple[np.ndarray, dict[str, Any]]:
    """Values of ``scheme`` (with its ``encoding`` facts) for a matrix of ``shape``.

    ``zero_fraction`` sets the share of exact zeros for ternary, pow2-ternary and exponential
    (random if None). Scales follow Glorot: ``W0 = sqrt(6 / (fan_in + fan_out))``.
    """
    fan_out, fan_in = (shape[0], shape[-1]) if len(shape) == 2 else (shape[0], shape[0])
    w0 = math.sqrt(6.0 / (fan_in + fan_out))
    p_zero = rng.uniform(0.1, 0.6) if zero_fraction is None else zero_fraction
    zeros = rng.random(shape) < p_zero
    signs = np.where(rng.random(shape) < 0.5, -1.0, 1.0)
    if scheme == "float":
        return rng.uniform(-w0, w0, shape), {}
    if scheme == "binary":
        return signs * w0, {"scale": w0}
    if scheme == "ternary":
        return np.where(zeros, 0.0, signs * w0), {"scale": w0}
    if scheme == "pow2-ternary":
        return np.where(zeros, 0.0, signs * 0.5), {"int_bits": 0, "frac_bits": 1}
    if scheme == "exponential":
        exponents = rng.integers(-7, 1, shape)
        return np.where(zeros, 0.0, signs * 2.0**exponents), {"e_min": -7, "e_max": 0, "zero": "zero"}
    if scheme == "fixed":
        codes = rng.integers(-127, 128, shape)
        return codes * 2.0**-8, {"int_bits": 0, "frac_bits": 8}
    raise ValueError(f"unknown scheme {scheme!r}")


def _tensor(
    rng: np.random.Generator, shape: tuple[int, ...], scheme: str, role: str, **kw: Any
) -> ExportedTensor:
    values, encoding = random_weights(rng, shape, scheme, **kw)
    return ExportedTensor(values, role, scheme, SCHEME_BITS[scheme], encoding)


@functools.cache
def _builtin_cell(name: str) -> Any:
    """The class of qbench's built-in cell ``name`` (its declaration: elementwise, state size)."""
    from qbench.host import get_host

    return get_host(load_entry_points=False).registry("cell").get(f"qbench:{name}").cls


def random_exported_model(
    cell: str = "lstm",
    scheme: str = "ternary",
    hidden: int = 8,
    input_size: int = 5,
    n_outputs: int | None = None,
    layers: int = 1,
    task: str = LANGUAGE_MODEL,
    input_kind: str = "one-hot",
    seed: int = 0,
    biases: bool = True,
    batch_norm: bool = False,
    output_scheme: str = "float",
    zero_fraction: float | None = None,
) -> ExportedModel:
    """A random :class:`ExportedModel` whose recurrent tensors all follow ``scheme``."""
    rng = np.random.default_rng(seed)
    gates = GATES[cell]
    n_outputs = (input_size if task == LANGUAGE_MODEL else 3) if n_outputs is None else n_outputs
    embedding = None
    first_in = input_size
    if input_kind == "embedding":
        embedding = rng.normal(0.0, 1.0, (input_size, 6))
        first_in = 6
    exported_layers = []
    for index in range(layers):
        n = first_in if index == 0 else hidden
        rows = gates * hidden
        bias_in = _tensor(rng, (rows,), scheme, "bias", zero_fraction=zero_fraction) if biases else None
        bias_rec = _tensor(rng, (rows,), scheme, "bias", zero_fraction=zero_fraction) if biases else None
        scale = shift = None
        if batch_norm:
            scale = rng.uniform(0.05, 0.3, n)
            shift = rng.normal(0.0, 0.1, n)
        tensors = {"w_input": _tensor(rng, (rows, n), scheme, "input", zero_fraction=zero_fraction),
                   "w_recurrent": _tensor(rng, (rows, hidden), scheme, "recurrent", zero_fraction=zero_fraction)}
        declared = _builtin_cell(cell)
        for name, bias in (("b_input", bias_in), ("b_recurrent", bias_rec)):
            # only the biases the built-in cell declares (rnn and lstm: one; gru: two), as a run exports
            if bias is not None and any(spec.name == name for spec in declared.tensors):
                bias.layout = "vector"
                tensors[name] = bias
        # the same constructor as a real export, with the built-in cell's declaration
        exported_layers.append(ExportedLayer.from_tensors(
            cell, n, hidden, tensors, input_scale=scale, input_shift=shift,
            elementwise=dict(declared.elementwise), state_size=int(declared.state_size)))  # fmt: skip
    w_out, _ = random_weights(rng, (n_outputs, hidden), output_scheme)
    return ExportedModel(
        cell=cell,
        task=task,
        input_kind=input_kind,
        input_size=input_size,
        layers=exported_layers,
        output_weight=w_out,
        output_bias=rng.normal(0.0, 0.1, n_outputs),
        embedding=embedding,
        output_scheme=output_scheme,
        quantizer=scheme,
    )


def random_sample(model: ExportedModel, length: int = 12, sequences: int = 4, seed: int = 0) -> EvalSample:
    """A sample matching ``model``: a token stream (language model) or padded sequences."""
    rng = np.random.default_rng(seed + 1)
    if model.task == LANGUAGE_MODEL:
        tokens = rng.integers(0, model.input_size, length + 1)
        return EvalSample(LANGUAGE_MODEL, tokens=tokens, float_metrics={"bpc": 2.0})
    features = model.input_size
    x = rng.normal(0.0, 1.0, (sequences, length, features)).astype(np.float32)
    lengths = rng.integers(max(1, length // 2), length + 1, sequences)
    for i, n in enumerate(lengths):
        x[i, n:] = 0.0
    y = rng.integers(0, model.n_outputs, sequences)
    split = SequenceSplit(x, lengths, y)
    return EvalSample(CLASSIFICATION, sequences=split, float_metrics={"accuracy": 0.5})


def check_json_scalars(result: dict[str, Any]) -> None:
    """Every value is a JSON scalar (bool, int, float, str, None), never NaN or a numpy type."""
    for column, value in result.items():
        assert value is None or type(value) in (bool, int, float, str), (
            f"column {column!r}: {value!r} is {type(value).__name__}, not a JSON scalar"
        )
        if isinstance(value, float):
            assert math.isfinite(value), f"column {column!r} is {value}"
    json.dumps(result, allow_nan=False)


CONTRACT_CASES = [
    ("rnn", "ternary", "one-hot", LANGUAGE_MODEL),
    ("gru", "exponential", "features", CLASSIFICATION),
    ("lstm", "pow2-ternary", "embedding", LANGUAGE_MODEL),
    ("lstm", "float", "one-hot", LANGUAGE_MODEL),
]


class HardwareBackendContract:
    """Subclass and provide a ``backend`` fixture (an instance) to check a hardware backend."""

    @pytest.fixture
    def backend(self) -> qbench.HardwareBackend:  # pragma: no cover - overridden by subclasses
        raise NotImplementedError("provide a `backend` fixture")

    def test_declares_columns_with_directions(self, backend: qbench.HardwareBackend) -> None:
        assert backend.columns, "a backend must declare at least one column"
        for column, direction in backend.columns.items():
            assert direction in ("min", "max", ""), f"{column}: direction {direction!r}"

    def test_owns_its_columns(self, backend: qbench.HardwareBackend) -> None:
        check_column_ownership(backend)

    @pytest.mark.parametrize(("cell", "scheme", "input_kind", "task"), CONTRACT_CASES)
    def test_measure_returns_declared_json_columns(
        self, backend: qbench.HardwareBackend, cell: str, scheme: str, input_kind: str, task: str
    ) -> None:
        model, sample = contract_case(cell, scheme, input_kind, task)
        try:
            result = backend.measure(model, sample)
        except qbench.Unsupported as exc:
            assert str(exc).strip(), "Unsupported must say why"
            return
        check_declared_columns(backend, result)
        check_json_scalars(result)
        # columns a backend names in ``timed_columns`` are wall-clock measurements: declared and
        # returned like the others, but two runs cannot agree on them
        timed = set(getattr(backend, "timed_columns", ()))
        again = backend.measure(model, sample)
        assert {k: v for k, v in again.items() if k not in timed} == {
            k: v for k, v in result.items() if k not in timed
        }, "measure must be deterministic"

    def test_measures_at_least_one_contract_model(self, backend: qbench.HardwareBackend) -> None:
        reasons = []
        for case in CONTRACT_CASES:
            try:
                backend.measure(*contract_case(*case))
            except qbench.Unsupported as exc:
                reasons.append(f"{'/'.join(case)}: {exc}")
            else:
                return
        pytest.fail("the backend measured none of the contract's models: " + "; ".join(reasons))


def contract_case(cell: str, scheme: str, input_kind: str, task: str) -> tuple[ExportedModel, EvalSample]:
    """The small random model and sample of one :data:`CONTRACT_CASES` entry."""
    model = random_exported_model(cell, scheme, hidden=6, input_size=5, input_kind=input_kind, task=task)
    return model, random_sample(model, length=8)


def check_column_ownership(backend: qbench.HardwareBackend) -> None:
    """No column of ``backend`` belongs to the host, to a dataset's metrics or to another installed
    backend (registration would refuse it, naming both owners); its cost axes are its own
    columns with a direction."""
    from qbench.columns import ColumnOwner, check_ownership
    from qbench.errors import PluginError
    from qbench.host import get_host

    host = get_host(keep_broken=True)
    others = [(ColumnOwner("hardware", name, entry.plugin, entry.distribution),
               tuple(getattr(entry.cls, "columns", {})))
              for name, entry in host.registry("hardware").items()
              if name != backend.name]  # the backend under test may be installed too  # fmt: skip
    mine = (ColumnOwner("hardware", backend.name, "the plugin under test"), tuple(backend.columns))
    try:
        check_ownership([*others, mine])
    except PluginError as exc:
        raise AssertionError(str(exc)) from None
    for axis in getattr(backend, "cost_axes", ()):
        assert backend.columns.get(axis) in ("min", "max"), (
            f"cost axis {axis!r} must be one of the backend's columns with direction 'min' or 'max'")


def check_declared_columns(backend: qbench.HardwareBackend, result: dict[str, Any]) -> None:
    """``result`` has every column ``backend`` declares, and no other."""
    missing = set(backend.columns) - set(result)
    extra = set(result) - set(backend.columns)
    assert not missing, f"declared columns not returned: {sorted(missing)}"
    assert not extra, f"undeclared columns returned: {sorted(extra)}"
