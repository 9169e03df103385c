"""``qbench plugins --check`` runs the quick contract-2 checks and names each failing component and check."""

from __future__ import annotations

import pytest

from qbench.cli import main

pytest.importorskip("torch")

BROKEN = '''
import torch
import qbench
from qbench_builtins.cells.recurrent import IndRNNCell
from qbench_builtins.quantizers.learned import LSQQuantizer

# names torch's GRU kernel but applies the reset gate before the recurrent product
from tests.test_kit_breaks import ResetBeforeProduct


class DetachedStep(LSQQuantizer):
    """Claims to own its gradient but returns a detached tensor: the step never trains."""
    name = "detached-step"

    def quantize(self, w, ctx):
        return super().quantize(w, ctx).detach()


class ScaledIndRNN(IndRNNCell):
    """Scales the pre-activation by 0.5 without declaring the multiplies."""
    name = "scaled-indrnn"

    def step(self, x, state, w):
        (h,) = state
        return (torch.relu(0.5 * (x @ w["w_input"].t() + w["b_input"] + w["w_recurrent"] * h)),)


@qbench.hookimpl
def qbench_register_quantizers():
    return [DetachedStep]


@qbench.hookimpl
def qbench_register_cells():
    return [ScaledIndRNN, ResetBeforeProduct]
'''


def test_plugins_check_runs_the_contract_2_checks_and_names_each_failure(capsys, fake_distribution):
    fake_distribution("broken-learned", {"broken": "broken_learned"}, {"broken_learned": BROKEN})
    code = main(["plugins", "--check"])
    out = capsys.readouterr().out
    assert code == 1, out
    failures = [line for line in out.splitlines() if line.startswith("FAIL ")]
    assert any(
        line.startswith("FAIL quantizer detached-step (broken): owned gradient: quantize returned a tensor "
                        "without a gradient path") for line in failures
    ), failures
    assert any(line.startswith("FAIL cell scaled-indrnn (broken): declared counts: one step() of layer 0")
               and "'mults': 4" in line for line in failures), failures
    assert any(line.startswith("FAIL cell gru-reset-before (broken): fused vs reference: the fused kernel and the "
                               "per-step reference differ") for line in failures), failures
    # gru-reset-before also does other element-wise work than the GRU it declares (reset * h, no r * hn add)
    assert any(line.startswith("FAIL cell gru-reset-before (broken): declared counts:") for line in failures), failures
    assert len(failures) == 4, failures  # the built-ins and the other installed plugins pass
    assert "4 problem(s)" in out


def test_plugins_check_chooses_the_contract_2_checks_that_apply():
    """lsq / ttq get the learned checks, a declared cell the counts, one with a fused kernel the kernel check."""
    import qbench
    from qbench.plugincheck import cell_checks, learned_checks

    def labels(found):
        return [label for label, _ in found]

    registry = qbench.get_host().registry("cell")
    gru, plain = registry.get("gru").cls, qbench.create("quantizer", "float")
    for name in ("lsq", "ttq"):
        assert labels(learned_checks(qbench.create("quantizer", name), gru)) == [
            "learned state", "owned gradient", "learned state round trip"]
    assert labels(learned_checks(qbench.create("quantizer", "ternary"), gru)) == []  # not learned: the basics only
    for name in ("rnn", "gru", "lstm"):
        assert labels(cell_checks(registry.get(name).cls, plain)) == ["declared counts", "fused vs reference"]
    assert labels(cell_checks(registry.get("indrnn").cls, plain)) == ["declared counts"]
    found = cell_checks(registry.get("mingru").cls, plain)  # a cell with a scan: the scan against its step
    assert labels(found) == ["declared counts", "scan vs reference"]
    for _, check in found:
        check()


def test_plugins_check_runs_the_sequence_backward_check_on_a_hidden_quantizer(monkeypatch):
    """A quantizer of the hidden state gets its sequence-level backward checked against the per-step
    loop, without pytest; an estimator that forgets LSQ's clip range fails it."""
    from qbench_builtins.quantizers.learned import LSQHiddenEstimator

    import qbench
    from qbench.plugincheck import learned_checks

    gru = qbench.get_host().registry("cell").get("gru").cls
    found = dict(learned_checks(qbench.create("quantizer", "lsq", hidden=True), gru))
    assert "sequence backward" in found
    found["sequence backward"]()  # the built-in estimator passes
    monkeypatch.setattr(LSQHiddenEstimator, "derivative", lambda self, saved: None)
    with pytest.raises(AssertionError, match="gradient of"):
        found["sequence backward"]()
