"""The plugin author's tests: qbench's dataset kit, and the per-step task trained for real."""

from __future__ import annotations

import pytest

pytest.importorskip("qbench_steps", reason="install the plugin first: pip install ./examples/qbench-steps")

import qbench
from qbench.testing.datasets import DatasetContract


class TestDelayedCopyContract(DatasetContract):
    @pytest.fixture
    def dataset(self):
        return qbench.create("dataset", "delayed-copy", sequences=60, length=10)

    @pytest.fixture
    def dataset_cache(self, tmp_path):
        return tmp_path


def test_labels_are_the_symbols_delay_steps_back(tmp_path):
    import numpy as np

    data = qbench.create("dataset", "delayed-copy", sequences=40, length=8, delay=3).prepare(str(tmp_path))
    split = data.train
    symbols = split.x.argmax(axis=2)
    for row in range(len(split)):
        steps = int(split.lengths[row])
        assert (split.y[row, :3] == 4).all()  # blank: nothing to copy yet
        assert np.array_equal(split.y[row, 3:steps], symbols[row, : steps - 3])


def test_the_per_step_task_trains_and_reports_its_declared_metrics(tmp_path):
    from qbench.metrics import MetricSet
    from qbench.training import train_and_evaluate

    dataset = qbench.create("dataset", "delayed-copy", sequences=60, length=10, delay=1)
    data = dataset.prepare(str(tmp_path))
    result = train_and_evaluate(qbench.create("cell", "gru", hidden=8), qbench.create("quantizer", "float"), data,
                                {"epochs": 1, "batch": 16}, 0, declaration=MetricSet.of(dataset))
    assert result.status == "ok", result.message
    assert set(result.metrics) == {"test_step_accuracy", "valid_step_accuracy", "test_step_bits",
                                   "valid_step_bits", "train_step_bits"}
    assert result.directions["test_step_accuracy"] == "max" and 0.0 <= result.metrics["test_step_accuracy"] <= 1.0
    assert result.curve[0]["valid_step_accuracy"] == result.metrics["valid_step_accuracy"]
