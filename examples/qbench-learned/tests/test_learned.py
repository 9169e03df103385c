"""The plugin author's tests: qbench's conformance kits, subclassed."""

from __future__ import annotations

import pytest

pytest.importorskip("qbench_learned", reason="install the plugin first: pip install ./examples/qbench-learned")

import qbench
from qbench.testing.cells import CellContract
from qbench.testing.quantizers import QuantizerContract


class TestLearnedBinary(QuantizerContract):
    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "learned-binary")


class TestDiagonalRNN(CellContract):
    @pytest.fixture(params=[{"hidden": 6}, {"hidden": 5, "layers": 2}], ids=["one-layer", "two-layers"])
    def cell(self, request):
        return qbench.create("cell", "diagonal-rnn", **request.param)

    @pytest.fixture(params=["ternary", "learned-binary"])
    def quantizer(self, request):
        return qbench.create("quantizer", request.param)
