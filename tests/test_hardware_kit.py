"""Every check of the hardware conformance kit fails on a backend broken in the way it guards against."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, ClassVar

import numpy as np
import pytest

import qbench
from qbench.testing.hardware import CONTRACT_CASES, HardwareBackendContract


class GoodBackend(qbench.HardwareBackend):
    """Counts the recurrent layers' weights: a small, correct backend."""

    name = "kit-good"
    description = "a correct backend"
    columns: ClassVar[dict[str, str]] = {"weights": "min", "cell": ""}

    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        count = sum(layer.w_input.values.size + layer.w_recurrent.values.size for layer in model.layers)
        return {"weights": int(count), "cell": model.cell}


class AlwaysUnsupported(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        raise qbench.Unsupported("this backend supports nothing")


class SilentUnsupported(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        if model.cell == "lstm":
            raise qbench.Unsupported("")
        return super().measure(model, sample)


class MissingColumn(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {"weights": 1}


class ExtraColumn(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {**super().measure(model, sample), "surprise": 1}


class NumpyValue(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {**super().measure(model, sample), "weights": np.int64(3)}


class NotFinite(GoodBackend):
    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {**super().measure(model, sample), "weights": math.nan}


class Nondeterministic(GoodBackend):
    calls = 0

    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        type(self).calls += 1
        return {**super().measure(model, sample), "weights": type(self).calls}


class BadDirection(GoodBackend):
    columns: ClassVar[dict[str, str]] = {"weights": "smaller", "cell": ""}


class NoColumns(GoodBackend):
    columns: ClassVar[dict[str, str]] = {}

    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        return {}


def kit_checks(backend: qbench.HardwareBackend) -> dict[str, Callable[[], None]]:
    """Each check of the kit, bound to ``backend`` (what pytest runs for a subclass)."""
    kit = HardwareBackendContract()
    checks: dict[str, Callable[[], None]] = {
        "directions": lambda: kit.test_declares_columns_with_directions(backend),
        "measures-something": lambda: kit.test_measures_at_least_one_contract_model(backend),
    }
    for case in CONTRACT_CASES:
        checks["/".join(case)] = lambda case=case: kit.test_measure_returns_declared_json_columns(backend, *case)
    return checks


def failures(backend: qbench.HardwareBackend) -> dict[str, str]:
    found = {}
    for name, check in kit_checks(backend).items():
        try:
            check()
        except (AssertionError, pytest.fail.Exception) as exc:
            found[name] = str(exc)
    return found


def test_a_correct_backend_passes_every_check() -> None:
    assert failures(GoodBackend()) == {}


@pytest.mark.parametrize(
    ("broken", "message"),
    [
        (AlwaysUnsupported, "measured none of the contract's models"),
        (SilentUnsupported, "Unsupported must say why"),
        (MissingColumn, "declared columns not returned"),
        (ExtraColumn, "undeclared columns returned"),
        (NumpyValue, "not a JSON scalar"),
        (NotFinite, "is nan"),
        (Nondeterministic, "measure must be deterministic"),
        (BadDirection, "direction 'smaller'"),
        (NoColumns, "at least one column"),
    ],
    ids=lambda value: value.__name__ if isinstance(value, type) else None,
)
def test_every_check_fails_on_a_broken_backend(broken: type[qbench.HardwareBackend], message: str) -> None:
    found = failures(broken())
    assert found, f"the kit passes {broken.__name__}"
    assert any(message in text for text in found.values()), found
