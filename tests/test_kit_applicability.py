"""Kit checks that cannot apply to a component are not generated as skips: they are deselected when
the tests are collected and listed, with the reason, in the terminal summary (issue 17)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # starts pytest processes

AUTHOR_TESTS = '''
import pytest
import qbench
from qbench.testing.cells import CellContract
from qbench.testing.quantizers import QuantizerContract


class TestMyQuantizer(QuantizerContract):
    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "ternary")  # the host's STE, a shadow bound, no learned state


class TestMyLearnedQuantizer(QuantizerContract):
    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "lsq")  # owns its gradient, learned state, no shadow bound


class TestMyCell(CellContract):
    @pytest.fixture
    def cell(self):
        return qbench.create("cell", "indrnn", hidden=4)  # declared, no fused kernel

    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "ternary")
'''


def pytest_in(tmp_path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )


def test_a_third_party_kit_run_lists_what_does_not_apply_instead_of_skipping(tmp_path):
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    ran = pytest_in(tmp_path, "-rs", "-k", "TestMyCell", "test_mine.py")  # a run: nothing skips
    assert ran.returncode == 0 and "passed" in ran.stdout and "skipped" not in ran.stdout, ran.stdout + ran.stderr
    proc = pytest_in(tmp_path, "--co", "test_mine.py")  # the decision is taken when the tests are collected
    out = listed = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    summary = out[out.index("qbench kit:"):]
    # 15 checks that do not fit the quantizers' gradient or state or the cell (no fused kernel, no
    # scan), and 19 of each quantizer's role
    # checks for the hidden role, which neither ternary nor lsq (without hidden = true) takes, and
    # each quantizer's check of the sequence-level backward of a hidden state
    assert "qbench kit: 55 checks do not apply to their component and were not run (deselected):" in summary
    assert sum("the quantizer does not quantize the 'hidden' role (its applies_to says so)" in line
               for line in summary.splitlines()) == 2
    lines = {line.strip() for line in summary.splitlines()}
    for line in [
        "TestMyQuantizer: 3 x test_owned_gradient_is_finite_and_reaches_the_weights: the host's straight-through "
        "estimator carries the gradient (test_straight_through_gradient_reaches_shadow_weights instead)",
        "TestMyQuantizer: 1 x test_learned_state_trains_and_survives_pickling: no learned state (init_state "
        "returns {})",
        "TestMyQuantizer: 1 x test_sequence_backward_matches_the_per_step_loop: the quantizer does not quantize "
        "the hidden state",
        "TestMyLearnedQuantizer: 6 x test_straight_through_gradient_reaches_shadow_weights: the quantizer owns "
        "its gradient (test_owned_gradient_is_finite_and_reaches_the_weights instead)",
        "TestMyLearnedQuantizer: 3 x test_clipping_keeps_the_evaluation_values: no shadow bound for this role: "
        "clipping leaves the weights alone",
        "TestMyCell: 1 x test_fused_matches_reference: the cell declares no fused kernel: the host runs its "
        "per-step reference only",
        "TestMyCell: 1 x test_scan_matches_reference: the cell offers no scan: the host runs its per-step "
        "reference (or fused kernel) only",
    ]:
        assert line in lines, (line, summary)
    # every applicable check is still collected: lsq's owned-gradient and learned-state checks, ternary's
    for test in ("TestMyLearnedQuantizer::test_owned_gradient_is_finite_and_reaches_the_weights",
                 "TestMyLearnedQuantizer::test_learned_state_trains_and_survives_pickling",
                 "TestMyQuantizer::test_clipping_keeps_the_evaluation_values",
                 "TestMyQuantizer::test_straight_through_gradient_reaches_shadow_weights",
                 "TestMyCell::test_counts_equal_the_declaration"):
        assert test in listed, test
    assert "TestMyCell::test_fused_matches_reference" not in listed


def test_a_fixture_that_skips_its_component_is_reported_once_per_reason(tmp_path):
    """A ``cell`` fixture that skips a configuration its cell lacks (as tests/test_cells.py does for a
    plugin cell): those tests are deselected and listed with the fixture's reason, not skipped."""
    (tmp_path / "test_skipper.py").write_text(textwrap.dedent('''
        import pytest
        import qbench
        from qbench.testing.cells import CellContract

        class TestNoBatchNorm(CellContract):
            @pytest.fixture(params=[{"hidden": 4}, {"hidden": 4, "batch_norm": True}], ids=["plain", "bn"])
            def cell(self, request):
                if "batch_norm" in request.param:
                    pytest.skip("this cell has no batch_norm parameter")
                return qbench.create("cell", "indrnn", **request.param)

            @pytest.fixture
            def quantizer(self):
                return qbench.create("quantizer", "float")
    '''))
    proc = pytest_in(tmp_path, "-rs", "test_skipper.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "skipped" not in proc.stdout
    assert "TestNoBatchNorm: 13 x " in proc.stdout and ": this cell has no batch_norm parameter" in proc.stdout
