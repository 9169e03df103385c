"""A regression task a dataset can declare: the built-in adding problem, its metrics, its place in the protocol."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import qbench
from qbench.errors import PluginError
from qbench.metrics import REGRESSION, Metric, MetricSet
from qbench.testing import registered_plugins
from qbench.testing.datasets import DatasetContract


class TestAddingProblem(DatasetContract):
    @pytest.fixture
    def dataset(self) -> Any:
        return qbench.create("dataset", "adding-problem", length=10, sequences=60)

    @pytest.fixture
    def dataset_cache(self, tmp_path: Path) -> Path:
        return tmp_path


def test_the_adding_problem_declares_a_regression_ranked_by_the_lowest_mse():
    declared = MetricSet.of(qbench.create("dataset", "adding-problem"))
    assert declared.task == REGRESSION
    assert declared.primary_column == "test_mse" and declared.selection_column == "valid_mse"
    assert declared.columns() == {"test_mse": "min", "valid_mse": "min", "train_mse": "min", "test_mae": "min",
                                  "valid_mae": "min"}  # fmt: skip


def test_the_targets_are_the_sums_of_the_marked_values():
    import numpy as np

    data = qbench.create("dataset", "adding-problem", length=9, sequences=40).prepare("")
    for split in (data.train, data.valid, data.test):
        values, markers = split.x[..., 0], split.x[..., 1]
        assert (markers.sum(axis=1) == 2).all()
        np.testing.assert_allclose(split.y[:, 0], (values * markers).sum(axis=1), rtol=1e-6)


@pytest.mark.parametrize(
    ("metrics", "message"),
    [
        ((Metric("acc", "accuracy", primary=True),), "measure 'accuracy' is not one the regression task computes"),
        ((Metric("mae", "mae", primary=True, splits=("test", "valid", "train")),), "train split reports only"),
    ],
)
def test_a_regression_declaration_the_host_cannot_honour_is_refused_at_registration(metrics, message):
    class Wrong(qbench.Dataset):
        name = "wrong-regression"
        task = "regression"

    Wrong.metrics = metrics

    class Plugin:
        @qbench.hookimpl
        def qbench_register_datasets(self) -> list[type]:
            return [Wrong]

    with pytest.raises(PluginError, match=message), registered_plugins(Plugin()):
        pass


def test_a_regression_case_trains_measures_and_is_priced_per_sequence():
    pytest.importorskip("torch")
    from qbench.trainconfig import resolve_train
    from qbench.training import train_and_evaluate

    data = qbench.create("dataset", "adding-problem", length=8, sequences=80).prepare("")
    train = resolve_train({"epochs": 2, "batch": 16, "lr": 0.01})
    declared = MetricSet.of(qbench.create("dataset", "adding-problem"))
    result = train_and_evaluate(qbench.create("cell", "rnn", hidden=6), qbench.create("quantizer", "ternary"), data,
                                train, 0, "cpu", declaration=declared)
    assert result.status == "ok"
    assert set(result.metrics) == {"test_mse", "valid_mse", "train_mse", "test_mae", "valid_mae"}
    assert all(value >= 0 for value in result.metrics.values())
    assert result.metrics["test_mae"] ** 2 <= result.metrics["test_mse"] + 1e-9  # Jensen: mae^2 <= mse
    assert result.exported.task == "regression" and result.exported.n_outputs == 1
    energy = qbench.create("hardware", "energy").measure(result.exported, result.sample)
    # one output per sequence: the output layer is amortised over the 8 steps
    assert energy["energy_output_pj_per_token"] < energy["energy_pj_per_token"]
    with pytest.raises(qbench.Unsupported, match="regression"):
        qbench.create("hardware", "shift-add").measure(result.exported, result.sample)



def test_the_protocol_ranks_the_lowest_error_first_and_gives_verdicts(tmp_path):
    """A matrix on the adding problem: rows ranked by test_mse ascending, paired verdicts against float."""
    pytest.importorskip("torch")
    from qbench.driver import RunOptions, run_matrix

    matrix = tmp_path / "adding.toml"
    matrix.write_text("""
name = "adding"
seeds = [0, 1]
[[quantizer]]
name = "float"
[[quantizer]]
name = "binary"
[[cell]]
name = "rnn"
hidden = 4
[[dataset]]
name = "adding-problem"
length = 6
sequences = 60
[train]
epochs = 1
batch = 16
""")
    assert run_matrix(matrix, RunOptions(out=tmp_path / "out", workers=1, progress=False)) == 0
    board = json.loads((tmp_path / "out" / "leaderboard.json").read_text())
    text = json.dumps(board)
    assert "test_mse" in text and '"min"' in text
    markdown = (tmp_path / "out" / "leaderboard.md").read_text()
    assert "Ranked by test_mse (lower is better)" in markdown
    assert "Against the float baseline" in markdown and "| binary" in markdown
    rows = [line for line in markdown.splitlines() if line.startswith("| 1 ") or line.startswith("| 2 ")]
    values = [float(row.split("|")[4].split("±")[0]) for row in rows[:2]]
    assert values == sorted(values)
