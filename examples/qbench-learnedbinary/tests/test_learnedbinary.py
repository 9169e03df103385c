"""The plugin author's tests: qbench's quantizer kit, subclassed."""

from __future__ import annotations

import pytest

pytest.importorskip(
    "qbench_learnedbinary", reason="install the plugin first: pip install ./examples/qbench-learnedbinary"
)

import qbench
from qbench.testing.quantizers import QuantizerContract


class TestLearnedBinary(QuantizerContract):
    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "learned-binary")
