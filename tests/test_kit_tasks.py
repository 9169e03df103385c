"""The dataset kit knows every task, and its failures say what is wrong; the backend kit checks
column ownership."""

from __future__ import annotations

import numpy as np
import pytest

import qbench
from qbench import Metric
from qbench.data import SequenceLabellingData, SequenceSplit
from qbench.testing.datasets import check_dataset, check_declared_metrics
from qbench.testing.hardware import check_column_ownership


def split(n: int = 6, t: int = 5, per_step: bool = True) -> SequenceSplit:
    x = np.zeros((n, t, 3), dtype=np.float32)
    x[:, :, 0] = 1.0
    y = np.zeros((n, t) if per_step else (n,), dtype=np.int64)
    return SequenceSplit(x, np.full(n, t, dtype=np.int64), y)


class Steps(qbench.Dataset):
    name = "kit-steps"
    description = "d"
    task = "sequence-labelling"
    metrics = (Metric("acc", "accuracy", primary=True),)
    per_step = True

    def prepare(self, cache_dir):
        parts = [split(per_step=self.per_step) for _ in range(3)]
        return SequenceLabellingData(*parts, class_names=("a", "b"), fingerprint="ab" * 16)

    def availability(self, cache_dir):
        return "ready"


def test_a_per_step_dataset_passes_the_kit(tmp_path):
    check_dataset(Steps(), tmp_path)


def test_one_label_per_sequence_in_a_per_step_dataset_is_named(tmp_path):
    broken = type("Broken", (Steps,), {"per_step": False})
    with pytest.raises(AssertionError, match=r"per-step labels y must be \[N, T\]"):
        check_dataset(broken(), tmp_path)


def test_a_bad_metric_declaration_fails_the_kit_saying_why():
    broken = type("Broken", (Steps,), {"metrics": (Metric("acc", "accuracy"),)})
    with pytest.raises(AssertionError, match="exactly one metric must be primary"):
        check_declared_metrics(broken())


class Claimer(qbench.HardwareBackend):
    name = "claimer"
    description = "d"
    columns = {"energy_pj_per_token": "min", "claimer_ops": ""}
    cost_axes = ("claimer_ops",)


def test_the_backend_kit_names_the_owner_of_a_claimed_column():
    with pytest.raises(AssertionError, match=r"'energy_pj_per_token' is declared by two components: hardware 'energy'"):
        check_column_ownership(Claimer())
    fine = type("Fine", (Claimer,), {"columns": {"claimer_ops": ""}})
    with pytest.raises(AssertionError, match="cost axis 'claimer_ops'"):
        check_column_ownership(fine())


def test_the_guide_shows_both_examples_verbatim_and_they_pass_the_kits(tmp_path, monkeypatch):
    import re
    import sys
    import types
    from pathlib import Path

    from qbench.testing.hardware import contract_case

    root = Path(__file__).resolve().parents[1]
    blocks = re.findall(r"```python\n(.*?)```", (root / "docs" / "plugins.md").read_text(), flags=re.S)
    for package, module_name, cls_name in [("qbench-steps/qbench_steps", "guide_steps", "DelayedCopy"),
                                           ("qbench-opcount/qbench_opcount", "guide_opcount", "OpCount")]:
        source = (root / "examples" / package / "plugin.py").read_text()
        assert source in blocks, f"docs/plugins.md no longer shows examples/{package}/plugin.py"
        module = types.ModuleType(module_name)
        monkeypatch.setitem(sys.modules, module_name, module)
        exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 - the guide's own code
        component = module.__dict__[cls_name]()
        if cls_name == "DelayedCopy":
            check_dataset(type(component)(sequences=40, length=8), tmp_path)
        else:
            check_column_ownership(component)
            assert set(component.measure(*contract_case("gru", "ternary", "one-hot", "language-model"))) == set(
                component.columns)
