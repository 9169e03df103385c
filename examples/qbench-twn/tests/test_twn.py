"""The plugin author's tests: qbench's conformance suite plus the method's own facts."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("qbench_twn", reason="install the plugin first: pip install ./examples/qbench-twn")

import qbench
from qbench.testing.quantizers import QuantizerContract


class TestTWNContract(QuantizerContract):
    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "twn")


def test_values_are_zero_or_plus_minus_alpha():
    w = torch.tensor([[-1.0, -0.1, 0.05, 0.9]])
    q = qbench.create("quantizer", "twn").quantize(w, qbench.QuantContext("input", 4, 1, False))
    # mean|W| = 0.5125, delta = 0.35875: only -1.0 and 0.9 survive, alpha = 0.95
    assert torch.allclose(q, torch.tensor([[-0.95, 0.0, 0.0, 0.95]]))
