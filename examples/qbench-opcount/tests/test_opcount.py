"""The plugin author's tests: qbench's backend kit (column ownership included) and the counts."""

from __future__ import annotations

import pytest

pytest.importorskip("qbench_opcount", reason="install the plugin first: pip install ./examples/qbench-opcount")

import qbench
from qbench.testing.hardware import HardwareBackendContract, contract_case


class TestOpCountContract(HardwareBackendContract):
    @pytest.fixture
    def backend(self):
        return qbench.create("hardware", "opcount")


def test_zeros_cost_nothing_when_skipped():
    model, sample = contract_case("rnn", "ternary", "features", "classification")
    skipping = qbench.create("hardware", "opcount").measure(model, sample)
    dense = qbench.create("hardware", "opcount", skip_zeros=False).measure(model, sample)
    assert skipping["opcount_macs_per_token"] <= dense["opcount_macs_per_token"] == 6 * 5 + 6 * 6
    assert 0 < skipping["opcount_nonzero_fraction"] <= 1 and skipping["opcount_layers"] == 1
