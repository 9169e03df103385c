"""train_and_evaluate on real data: learning, determinism, divergence, export and the hardware sample."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from qbench_builtins.quantizers.connect import TernaryQuantizer

import qbench
from tests.test_cells import float_quantizer, make_quantizer, quantizer_cases

torch = pytest.importorskip("torch")

from qbench.data import ClassificationData, LanguageModelData  # noqa: E402
from qbench.training import TrainResult, train_and_evaluate  # noqa: E402

SHORT = {"epochs": 2, "batch": 16, "bptt": 50, "max_steps": 25, "eval_tokens": 4000, "hardware_tokens": 300}


@pytest.fixture(autouse=True)
def one_thread():
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def pydoc_data(tmp_path_factory) -> LanguageModelData:
    return qbench.create("dataset", "pydoc-char").prepare(str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def digits_data(tmp_path_factory) -> ClassificationData:
    return qbench.create("dataset", "digits-rows").prepare(str(tmp_path_factory.mktemp("cache")))


def _without_seconds(curve: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in row.items() if k != "seconds"} for row in curve]


def test_language_model_learns_and_reports(pydoc_data):
    rows: list[dict] = []
    cell = qbench.create("cell", "gru", hidden=48)
    result = train_and_evaluate(cell, float_quantizer(), pydoc_data, SHORT, seed=0, progress=rows.append)
    assert isinstance(result, TrainResult)
    assert result.status == "ok", result.message
    assert set(result.metrics) == {"test_bpc", "valid_bpc", "train_bpc"}
    assert result.directions == {"test_bpc": "min", "valid_bpc": "min", "train_bpc": "min"}
    uniform = math.log2(len(pydoc_data.vocab))
    first, second = result.curve
    assert second["valid_bpc"] < first["valid_bpc"] < uniform
    assert result.metrics["valid_bpc"] == second["valid_bpc"]
    assert result.metrics["test_bpc"] < uniform - 1.5
    assert set(first) == {"epoch", "train_loss", "valid_bpc", "lr", "seconds"}
    assert rows == result.curve
    assert result.train_seconds > 0 and result.tokens_per_second > 0
    assert result.weight_count == 3 * 48 * (len(pydoc_data.vocab) + 48) + 2 * 3 * 48

    model = result.exported
    assert model is not None and model.input_kind == "one-hot" and model.task == "language-model"
    assert model.output_weight.shape == (len(pydoc_data.vocab), 48)
    assert model.layers[0].w_input.values.shape == (3 * 48, len(pydoc_data.vocab))
    assert model.quantizer == float_quantizer().name

    sample = result.sample
    assert sample is not None and sample.task == "language-model"
    assert len(sample.tokens) == SHORT["hardware_tokens"]
    np.testing.assert_array_equal(sample.tokens, pydoc_data.test[: SHORT["hardware_tokens"]])
    assert sample.float_predictions.shape == (SHORT["hardware_tokens"] - 1,)
    assert 0 < sample.float_metrics["test_bpc"] < uniform


def test_same_seed_same_record(pydoc_data):
    quantizer = make_quantizer(*next(c for c in quantizer_cases() if c[1].get("stochastic")))
    cell = qbench.create("cell", "lstm", hidden=24, batch_norm=True, embedding=8)
    short = dict(SHORT, max_steps=10, epochs=2)
    a = train_and_evaluate(cell, quantizer, pydoc_data, short, seed=3)
    b = train_and_evaluate(cell, quantizer, pydoc_data, short, seed=3)
    c = train_and_evaluate(cell, quantizer, pydoc_data, short, seed=4)
    assert a.status == b.status == "ok"
    assert a.metrics == b.metrics
    assert _without_seconds(a.curve) == _without_seconds(b.curve)
    assert a.metrics != c.metrics
    for la, lb in zip(a.exported.layers, b.exported.layers, strict=True):
        np.testing.assert_array_equal(la.w_input.values, lb.w_input.values)
        np.testing.assert_array_equal(la.input_scale, lb.input_scale)
    np.testing.assert_array_equal(a.sample.float_predictions, b.sample.float_predictions)
    assert a.exported.input_kind == "embedding" and a.exported.embedding.shape == (len(pydoc_data.vocab), 8)
    assert a.exported.layers[0].input_size == 8


def test_classification_on_digits(digits_data):
    cell = qbench.create("cell", "rnn", hidden=32)
    train = {"epochs": 4, "batch": 32, "hardware_tokens": 300}
    result = train_and_evaluate(cell, float_quantizer(), digits_data, train, seed=0)
    assert result.status == "ok", result.message
    assert set(result.metrics) == {"test_accuracy", "valid_accuracy", "test_loss"}
    assert result.directions["test_accuracy"] == "max"
    assert result.metrics["test_accuracy"] > 0.6
    assert result.exported.input_kind == "features"
    assert result.sample.sequences is not None and len(result.sample.sequences) == 30
    assert result.sample.float_predictions.shape == (30,)
    assert 0 <= result.sample.float_metrics["test_accuracy"] <= 1


def test_quantized_model_learns(digits_data):
    quantizer = make_quantizer(*next(c for c in quantizer_cases() if "ternary" in c[0]))
    cell = qbench.create("cell", "gru", hidden=32, batch_norm=True)
    result = train_and_evaluate(cell, quantizer, digits_data, {"epochs": 4, "batch": 32}, seed=1)
    assert result.status == "ok", result.message
    assert result.metrics["test_accuracy"] > 0.5
    values = np.unique(result.exported.layers[0].w_recurrent.values)
    assert len(values) <= 3  # ternary export
    assert result.exported.layers[0].input_scale is not None


class PoisonAfter(TernaryQuantizer):
    """Gives NaN weights after ``steps`` training draws (what an unstable quantizer does)."""

    name = "poison"

    def __init__(self, steps: int, value: float, **params: Any) -> None:
        super().__init__(**params)
        self.left = steps
        self.value = value

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        if ctx.training and ctx.role == "recurrent":
            self.left -= 1
        if self.left < 0:
            return torch.full_like(w, self.value)
        return super().quantize(w, ctx)


@pytest.mark.parametrize("value", [math.nan, math.inf])
def test_divergence_ends_the_case(pydoc_data, value):
    quantizer = PoisonAfter(steps=40, value=value)
    cell = qbench.create("cell", "rnn", hidden=16)
    train = dict(SHORT, epochs=3, max_steps=30, diverge_factor=1.5)
    result = train_and_evaluate(cell, quantizer, pydoc_data, train, seed=0)
    assert result.status == "diverged"
    assert result.message
    assert result.exported is None and result.sample is None
    assert len(result.curve) == 1  # the first epoch finished, the second diverged
    assert result.metrics == {"valid_bpc": result.curve[0]["valid_bpc"]}


def test_divergence_guard_catches_explosion_and_nan():
    from qbench.errors import Diverged
    from qbench.training.loop import DivergenceGuard

    guard = DivergenceGuard(factor=10.0, every=3)
    for loss in (4.0, 5.0, 39.0, 3.0):
        guard.observe(torch.tensor(loss))
    guard.check()  # below 10 x 4.0: fine
    guard.observe(torch.tensor(41.0))
    with pytest.raises(Diverged, match="exploded"):
        guard.check()
    guard.observe(torch.tensor(math.nan))
    with pytest.raises(Diverged, match="nan"):
        guard.check()


def test_plateau_schedule_decays_then_stops():
    from qbench.training.loop import PlateauSchedule

    schedule = PlateauSchedule(lr=1.0, decay=0.5, patience=2)
    assert schedule.update(True) is False and schedule.lr == 1.0
    assert schedule.update(False) is False and schedule.lr == 0.5
    assert schedule.update(True) is False and schedule.bad_epochs == 0
    assert schedule.update(False) is False and schedule.lr == 0.25
    assert schedule.update(False) is True
    never = PlateauSchedule(lr=1.0, decay=0.5, patience=0)
    assert not any(never.update(False) for _ in range(5)) and never.lr == 0.5**5


def test_classifier_reads_the_last_true_step():
    """Padding after a sequence's length does not change its logits."""
    from qbench.training.model import SequenceModel

    cell = qbench.create("cell", "lstm", hidden=8, layers=2)
    model = SequenceModel(cell, float_quantizer(), "classification", 3, 4, seed=0).eval()
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(5, 9, 3, generator=generator)
    lengths = torch.tensor([9, 1, 4, 6, 2])
    noisy = x.clone()
    for row, length in enumerate(lengths.tolist()):
        noisy[row, length:] = torch.randn(9 - length, 3, generator=generator) * 10
    with torch.no_grad():
        expected = torch.stack(
            [model.forward_sequences(x[i : i + 1, : int(n)], lengths[i : i + 1])[0] for i, n in enumerate(lengths)]
        )
        torch.testing.assert_close(model.forward_sequences(noisy, lengths), expected, atol=1e-6, rtol=1e-6)
