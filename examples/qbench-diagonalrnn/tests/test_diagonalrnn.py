"""The plugin author's tests: qbench's cell kit, subclassed."""

from __future__ import annotations

import pytest

pytest.importorskip("qbench_diagonalrnn", reason="install the plugin first: pip install ./examples/qbench-diagonalrnn")

import qbench
from qbench.testing.cells import CellContract


class TestDiagonalRNN(CellContract):
    @pytest.fixture(params=[{"hidden": 6}, {"hidden": 5, "layers": 2}], ids=["one-layer", "two-layers"])
    def cell(self, request):
        return qbench.create("cell", "diagonal-rnn", **request.param)

    # a paper method and a learned built-in (lsq: learned step, its own gradient)
    @pytest.fixture(params=["ternary", "lsq"])
    def quantizer(self, request):
        return qbench.create("quantizer", request.param)
