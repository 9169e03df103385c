"""Which kit checks apply to a component, decided when pytest collects the tests.

A conformance kit (:class:`~qbench.testing.quantizers.QuantizerContract`,
:class:`~qbench.testing.cells.CellContract`) has checks that only mean something for some
components: the straight-through gradient check for a quantizer that leaves the gradient to the
host, the owned-gradient check for one that owns it, the fused-kernel check for a cell that
names a kernel. Skipping them at run time buried the few meaningful skips of a run under
hundreds of "not applicable" ones. Instead, once the tests are collected, every test of a kit
class is given its component (its fixtures are called with the test's parameters) and asks the
class's ``not_applicable(test, fixtures)``; a test that does not apply is deselected, and the
terminal summary lists, per class, how many checks were not run and why. A fixture that skips
(``pytest.skip`` while building the component) is reported the same way.

The kit classes register this plugin from their ``pytest_generate_tests``, so a third-party
``class TestMine(QuantizerContract)`` gets it without any conftest. A component whose fixtures
cannot be evaluated at collection time keeps every test: the checks then skip at run time,
saying why, as before.
"""

from __future__ import annotations

import types
from collections import Counter
from typing import Any

import pytest

PLUGIN_NAME = "qbench-kit-applicability"


class KitApplicability:
    """The pytest plugin: deselect the kit tests that do not apply, then list them in the summary."""

    def __init__(self) -> None:
        #: (class name, reason) -> {test name: count}
        self.dropped: dict[tuple[str, str], Counter[str]] = {}

    @pytest.hookimpl(trylast=True)  # after the suite's own deselection (e.g. CUDA variants)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        kept, deselected = [], []
        for item in items:
            reason = self.reason(item)
            if reason is None:
                kept.append(item)
                continue
            deselected.append(item)
            name = getattr(item, "originalname", item.name)
            owner = getattr(item, "cls", None)
            self.dropped.setdefault((getattr(owner, "__name__", "?"), reason), Counter())[name] += 1
        if deselected:
            items[:] = kept
            config.hook.pytest_deselected(items=deselected)

    def reason(self, item: pytest.Item) -> str | None:
        """Why ``item`` (a kit check) does not apply to its component; None: it applies (or not a kit test)."""
        cls: Any = getattr(item, "cls", None)
        if getattr(cls, "not_applicable", None) is None or item.get_closest_marker("cuda") is not None:
            return None
        try:
            fixtures = _fixture_values(item, tuple(getattr(cls, "component_fixtures", ())))
        except pytest.skip.Exception as exc:  # the fixture itself says the component does not fit
            return str(exc.msg)
        except Exception:  # noqa: BLE001 - not decidable now: the test runs (and skips itself if it must)
            return None
        name = getattr(item, "originalname", item.name)
        try:
            return cls().not_applicable(name, fixtures)
        except Exception:  # noqa: BLE001 - a judge that cannot decide leaves the test to run
            return None

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        if not self.dropped:
            return
        total = sum(sum(tests.values()) for tests in self.dropped.values())
        terminalreporter.write_line(
            f"qbench kit: {total} checks do not apply to their component and were not run (deselected):"
        )
        for (cls, reason), tests in sorted(self.dropped.items()):
            names = ", ".join(sorted(tests))
            terminalreporter.write_line(f"  {cls}: {sum(tests.values())} x {names}: {reason}")


class JudgedKit:
    """Base of the kit classes: registers the plugin and says which checks apply (all, here)."""

    #: the fixtures that make the component, evaluated when the tests are collected
    component_fixtures: tuple[str, ...] = ()

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        register(metafunc.config)

    def not_applicable(self, test: str, fixtures: dict[str, Any]) -> str | None:
        """Why check ``test`` does not apply to the component in ``fixtures`` (None: it applies).

        Called when the tests are collected; a check that does not apply is deselected and listed
        in pytest's terminal summary with this reason. Extend it (call ``super()``) for checks of
        your own.
        """
        return None


def register(config: pytest.Config) -> None:
    """Install the plugin once per pytest run (the kit classes call this while tests are collected)."""
    if config.pluginmanager.get_plugin(PLUGIN_NAME) is None:
        config.pluginmanager.register(KitApplicability(), PLUGIN_NAME)


def _fixture_values(item: pytest.Item, names: tuple[str, ...]) -> dict[str, Any]:
    """The values of ``item``'s fixtures ``names`` (those that make the component: not every fixture
    of the test, whose set-up may be expensive), computed from their definitions and the test's
    parameters; a parametrized test argument is its parameter."""
    info = item._fixtureinfo  # type: ignore[attr-defined]  # noqa: SLF001 - pytest offers no public way
    params = getattr(getattr(item, "callspec", None), "params", {})
    values: dict[str, Any] = {}
    closers: list[Any] = []

    def resolve(name: str, depth: int = 0) -> Any:
        if name in values:
            return values[name]
        definitions = info.name2fixturedefs.get(name)
        if not definitions or depth > 20:
            raise LookupError(name)
        definition = definitions[-1]
        arguments = {}
        for argument in definition.argnames:
            if argument == "request":
                arguments[argument] = types.SimpleNamespace(
                    param=params.get(name), config=item.config, node=item, fixturename=name,
                    getfixturevalue=lambda other: resolve(other, depth + 1),
                )
            else:
                arguments[argument] = resolve(argument, depth + 1)
        value = definition.func(**arguments)
        if isinstance(value, types.GeneratorType):
            closers.append(value)  # its teardown runs once the values are judged
            value = next(value)
        values[name] = value
        return value

    try:
        for name in item.fixturenames:  # type: ignore[attr-defined]
            if name in names:
                resolve(name)
            elif name in params:
                values[name] = params[name]  # a @pytest.mark.parametrize argument
    finally:
        for closer in reversed(closers):
            next(closer, None)
    return values
