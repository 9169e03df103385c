"""Kit checks that cannot apply to a component are not reported as skips: each ends as it starts with
an outcome of its own ("not applicable"), listed with the reason in the terminal summary (issue 17),
decided with public pytest API only (issue 23: no private ``item._fixtureinfo``)."""

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
    proc = pytest_in(tmp_path, "-rs", "test_mine.py")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    # nothing is a skip (``-rs`` lists none) and nothing is deselected: the last line counts them apart
    assert "skipped" not in out and "SKIPPED" not in out and "deselected" not in out, out
    assert out.rstrip().splitlines()[-1].startswith("154 passed, 59 not applicable in "), out
    summary = out[out.index("qbench kit:"):]
    # 19 checks that do not fit the quantizers' gradient or state or the cell (no fused kernel, no
    # scan; the output role is one more role case), and 19 of each quantizer's role
    # checks for the hidden role, which neither ternary nor lsq (without hidden = true) takes, and
    # each quantizer's check of the sequence-level backward of a hidden state
    assert "qbench kit: 59 checks do not apply to their component and were not run (not applicable):" in summary
    assert sum("the quantizer does not quantize the 'hidden' role (its applies_to says so)" in line
               for line in summary.splitlines()) == 2
    lines = {line.strip() for line in summary.splitlines()}
    for line in [
        "TestMyQuantizer: 4 x test_owned_gradient_is_finite_and_reaches_the_weights: the host's straight-through "
        "estimator carries the gradient (test_straight_through_gradient_reaches_shadow_weights instead)",
        "TestMyQuantizer: 1 x test_learned_state_trains_and_survives_pickling: no learned state (init_state "
        "returns {})",
        "TestMyQuantizer: 1 x test_sequence_backward_matches_the_per_step_loop: the quantizer does not quantize "
        "the hidden state",
        "TestMyLearnedQuantizer: 8 x test_straight_through_gradient_reaches_shadow_weights: the quantizer owns "
        "its gradient (test_owned_gradient_is_finite_and_reaches_the_weights instead)",
        "TestMyLearnedQuantizer: 4 x test_clipping_keeps_the_evaluation_values: no shadow bound for this role: "
        "clipping leaves the weights alone",
        "TestMyCell: 1 x test_fused_matches_reference: the cell declares no fused kernel: the host runs its "
        "per-step reference only",
        "TestMyCell: 1 x test_scan_matches_reference: the cell offers no scan: the host runs its per-step "
        "reference (or fused kernel) only",
    ]:
        assert line in lines, (line, summary)


def test_each_check_shows_whether_it_applied(tmp_path):
    """Verbose (-q -vv): a check that does not apply says NOT APPLICABLE where a skip would say SKIPPED; every
    applicable check still runs (lsq's owned-gradient and learned-state checks, ternary's)."""
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    proc = pytest_in(tmp_path, "-vv", "-k", "learned_state or straight_through or counts or fused", "test_mine.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    status = {line.split(" ")[0]: line.split(" ")[1] for line in proc.stdout.splitlines() if "::" in line}
    assert status["test_mine.py::TestMyCell::test_fused_matches_reference"] == "NOT"  # NOT APPLICABLE
    assert status["test_mine.py::TestMyCell::test_counts_equal_the_declaration"] == "PASSED"
    assert status["test_mine.py::TestMyLearnedQuantizer::test_learned_state_trains_and_survives_pickling"] == "PASSED"
    assert status["test_mine.py::TestMyQuantizer::test_learned_state_trains_and_survives_pickling"] == "NOT"
    assert status["test_mine.py::TestMyQuantizer::test_straight_through_gradient_reaches_shadow_weights[input-eval]"] \
        == "PASSED"
    assert status[
        "test_mine.py::TestMyLearnedQuantizer::test_straight_through_gradient_reaches_shadow_weights[input-eval]"
    ] == "NOT"
    assert "NOT APPLICABLE" in proc.stdout and "SKIPPED" not in proc.stdout


def test_collecting_lists_every_check(tmp_path):
    """The decision needs the component, which is built when the test runs: ``--co`` lists every check
    (docs/plugins.md says so), and selecting by name works as for any test."""
    (tmp_path / "test_mine.py").write_text(textwrap.dedent(AUTHOR_TESTS))
    proc = pytest_in(tmp_path, "--co", "test_mine.py")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "213 tests collected" in proc.stdout
    assert "TestMyCell::test_fused_matches_reference" in proc.stdout
    assert "qbench kit:" not in proc.stdout  # nothing was judged


def test_an_extended_judge_keeps_its_signature_and_runs_before_the_other_fixtures(tmp_path):
    """A plugin's own ``not_applicable`` (today's signature, calling ``super()``) sees the component and the
    test's parametrize arguments, and a check it rules out sets up none of its other fixtures."""
    (tmp_path / "test_judge.py").write_text(textwrap.dedent('''
        import pytest
        import qbench
        import torch
        from qbench.testing.quantizers import QuantizerContract, make_context

        class TestJudged(QuantizerContract):
            @pytest.fixture
            def quantizer(self):
                return qbench.create("quantizer", "ternary")

            @pytest.fixture
            def costly(self):
                raise AssertionError("set up for a check that does not apply")

            def not_applicable(self, test, fixtures):
                if test == "test_mine_with_state" and not fixtures["quantizer"].init_state(
                        torch.ones(2, 2), make_context()):
                    return "mine: no learned state"
                if test == "test_mine_per_width" and fixtures["width"] > 4:
                    return f"mine: width {fixtures['width']} is more than ternary needs"
                return super().not_applicable(test, fixtures)

            def test_mine_with_state(self, quantizer, costly):
                raise AssertionError("ran")

            @pytest.mark.parametrize("width", [2, 8])
            def test_mine_per_width(self, quantizer, width):
                assert width == 2
    '''))
    proc = pytest_in(tmp_path, "-k", "mine or learned_state_trains", "test_judge.py")
    out = proc.stdout
    assert proc.returncode == 0, out + proc.stderr
    assert out.rstrip().splitlines()[-1].startswith("1 passed, 99 deselected, 3 not applicable in "), out  # -k
    assert "TestJudged: 1 x test_mine_with_state: mine: no learned state" in out
    assert "TestJudged: 1 x test_mine_per_width: mine: width 8 is more than ternary needs" in out
    assert "TestJudged: 1 x test_learned_state_trains_and_survives_pickling: no learned state" in out


def test_a_fixture_that_skips_its_component_is_reported_once_per_reason(tmp_path):
    """A ``cell`` fixture that skips a configuration its cell lacks (as tests/test_cells.py does for a
    plugin cell): those tests are reported as not applicable with the fixture's reason, not skipped."""
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


def test_the_kits_use_no_private_pytest_api():
    """pytest's private modules and attributes change between releases; the kits use its public API."""
    import ast
    from pathlib import Path

    import qbench.testing

    private = []
    for path in sorted(Path(qbench.testing.__file__).parent.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                modules = [alias.name for alias in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                private += [f"{path.name}: import {m}" for m in modules if m.split(".")[0] == "_pytest"]
            elif isinstance(node, ast.Attribute) and node.attr in PYTEST_PRIVATE:
                private.append(f"{path.name}:{node.lineno}: .{node.attr}")
    assert not private, private


#: private attributes of pytest's items, requests and configs that earlier kits reached for
PYTEST_PRIVATE = {"_fixtureinfo", "_fixturemanager", "_arg2fixturedefs", "_pyfuncitem", "_request", "_store"}
