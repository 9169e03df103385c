"""The conformance kit run over every registered quantizer: defaults, each stochastic form, each switch."""

from __future__ import annotations

import pytest

import qbench
from qbench.testing.quantizers import QuantizerContract, variants


def _registered_variants() -> list[tuple[str, dict]]:
    registry = qbench.get_host().registry("quantizer")
    return [(name, params) for name in registry for params in variants(registry.get(name).cls)]


REGISTERED = _registered_variants()
IDS = [qbench.create("quantizer", name, **params).label for name, params in REGISTERED]


def test_every_builtin_method_is_registered_with_a_stochastic_form_where_the_paper_has_one():
    labels = set(IDS)
    for name in ("float", "binary", "ternary", "pow2-ternary", "exponential", "fixed"):
        assert name in labels
    for name in ("binary", "ternary", "exponential", "fixed"):
        assert f"{name}(stochastic=true)" in labels
    assert "pow2-ternary(stochastic_rounding=true)" in labels


class TestEveryRegisteredQuantizer(QuantizerContract):
    @pytest.fixture(params=REGISTERED, ids=IDS)
    def quantizer(self, request):
        name, params = request.param
        return qbench.create("quantizer", name, **params)


@pytest.mark.cuda
class TestEveryRegisteredQuantizerOnCuda(TestEveryRegisteredQuantizer):
    device = "cuda"
