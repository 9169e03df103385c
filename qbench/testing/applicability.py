"""Which kit checks apply to a component, decided as each test starts, with public pytest API only.

A conformance kit (:class:`~qbench.testing.quantizers.QuantizerContract`,
:class:`~qbench.testing.cells.CellContract`) has checks that only mean something for some
components: the straight-through gradient check for a quantizer that leaves the gradient to the
host, the owned-gradient check for one that owns it, the fused-kernel check for a cell that
names a kernel. Reported as ordinary skips, they buried the few meaningful skips of a run under
hundreds of "not applicable" ones. So the kit base class :class:`JudgedKit` has an autouse
fixture that, before anything else of a test is set up, builds the component (the class's
``component_fixtures``, through ``request.getfixturevalue``) and asks the class's
``not_applicable(test, fixtures)``. A test that does not apply ends there with an outcome of its
own: pytest's progress shows ``n``, its last line counts them as "not applicable" (never among
the skips that ``-rs`` lists), and the terminal summary lists, per class, how many checks did not
apply and why. A component fixture that skips (``pytest.skip`` while building the component) is
reported the same way.

An earlier version took this decision when the tests were collected and deselected them; that
needed pytest's private ``item._fixtureinfo`` to call the fixtures by hand, which any pytest
release may change, and it built every component twice. Deciding at run time costs nothing extra
(the test would build the component anyway); what changed for users is in docs/plugins.md.

The kit classes register the reporting plugin themselves (from ``pytest_generate_tests`` and from
the fixture), so a third-party ``class TestMine(QuantizerContract)`` gets it without a conftest.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, NoReturn

import pytest

PLUGIN_NAME = "qbench-kit-applicability"
#: the user property (``item.user_properties``, copied into every report of the test, so it also
#: reaches pytest-xdist's controller and JUnit XML) that marks a skip as "this check does not apply"
PROPERTY = "qbench_not_applicable"
#: the outcome's name in pytest's last line and its letter in the progress line
CATEGORY, LETTER, WORD = "not applicable", "n", "NOT APPLICABLE"


def not_applicable_reason(report: pytest.TestReport) -> str | None:
    """The reason a kit check did not apply, when ``report`` is such a check's (None otherwise)."""
    if not report.skipped or hasattr(report, "wasxfail"):
        return None
    for name, value in report.user_properties:
        if name == PROPERTY:
            return str(value)
    return None


class KitApplicability:
    """The pytest plugin: report the kit checks that do not apply as their own outcome, then list them."""

    def __init__(self) -> None:
        #: (class name, reason) -> {test name: count}
        self.dropped: dict[tuple[str, str], Counter[str]] = {}

    @pytest.hookimpl(tryfirst=True)  # before pytest's own answer ("skipped")
    def pytest_report_teststatus(self, report: pytest.TestReport) -> tuple[str, str, str] | None:
        if report.when == "setup" and not_applicable_reason(report) is not None:
            return CATEGORY, LETTER, WORD
        return None

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        reason = not_applicable_reason(report)
        if report.when != "setup" or reason is None:
            return
        owner, name = _class_and_test(report.nodeid)
        self.dropped.setdefault((owner, reason), Counter())[name] += 1

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.dropped:
            return
        total = sum(sum(tests.values()) for tests in self.dropped.values())
        terminalreporter.write_line(
            f"qbench kit: {total} checks do not apply to their component and were not run (not applicable):"
        )
        for (cls, reason), tests in sorted(self.dropped.items()):
            names = ", ".join(sorted(tests))
            terminalreporter.write_line(f"  {cls}: {sum(tests.values())} x {names}: {reason}")


class JudgedKit:
    """Base of the kit classes: before each test, asks whether it applies to the component (all, here)."""

    #: the fixtures that make the component, built first and handed to not_applicable
    component_fixtures: tuple[str, ...] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        register(metafunc.config)

    @pytest.fixture(autouse=True)
    def _qbench_check_applies(self, request: pytest.FixtureRequest) -> None:
        """Build the component and end the test as "not applicable" when ``not_applicable`` says so.

        Autouse, so it is set up before the test's other fixtures: a check that does not apply
        costs the component's fixtures only.
        """
        register(request.config)
        try:
            fixtures = _component_values(request, tuple(self.component_fixtures))
        except pytest.skip.Exception as exc:  # the fixture itself says the component does not fit
            _not_applicable(request, str(exc.msg))
        try:
            reason = self.not_applicable(request.function.__name__, fixtures)
        except Exception:  # noqa: BLE001 - a judge that cannot decide leaves the test to run (and show the fault)
            return
        if reason is not None:
            _not_applicable(request, reason)

    def not_applicable(self, test: str, fixtures: dict[str, Any]) -> str | None:
        """Why check ``test`` does not apply to the component in ``fixtures`` (None: it applies).

        ``fixtures`` holds the values of the class's ``component_fixtures`` that the test uses
        and the test's ``@pytest.mark.parametrize`` arguments. Called as the test starts; a
        check that does not apply is reported as "not applicable" (not as a skip) and listed in
        pytest's terminal summary with this reason. Extend it (call ``super()``) for checks of
        your own.
        """
        return None


def register(config: pytest.Config) -> None:
    """Install the reporting plugin once per pytest run (the kit classes call this themselves)."""
    if config.pluginmanager.get_plugin(PLUGIN_NAME) is None:
        config.pluginmanager.register(KitApplicability(), PLUGIN_NAME)


def _component_values(request: pytest.FixtureRequest, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of the test's fixtures ``names`` (those that make the component: not every fixture
    of the test, whose set-up may be expensive) and of its ``parametrize`` arguments."""
    used = set(request.fixturenames)
    wanted = [name for name in names if name in used]
    for mark in request.node.iter_markers("parametrize"):
        arguments = mark.args[0] if mark.args else mark.kwargs.get("argnames", ())
        if isinstance(arguments, str):
            arguments = [part.strip() for part in arguments.split(",")]
        wanted += [name for name in arguments if name in used and name not in wanted]
    return {name: request.getfixturevalue(name) for name in wanted}


def _not_applicable(request: pytest.FixtureRequest, reason: str) -> NoReturn:
    request.node.user_properties.append((PROPERTY, reason))
    pytest.skip(reason)


def _class_and_test(nodeid: str) -> tuple[str, str]:
    """("TestMine", "test_x") of "path/test_mine.py::TestMine::test_x[param]"."""
    parts = nodeid.split("[", 1)[0].split("::")
    return (parts[-2] if len(parts) > 2 else "?"), parts[-1]
