"""Every registered hardware backend passes the conformance kit (qbench.testing.hardware)."""

from __future__ import annotations

import subprocess
import sys

import pytest

import qbench
from qbench.testing.hardware import HardwareBackendContract

BACKENDS = list(qbench.get_host().registry("hardware"))


@pytest.mark.parametrize("name", BACKENDS)
class TestEveryRegisteredBackend(HardwareBackendContract):
    @pytest.fixture
    def backend(self, name: str) -> qbench.HardwareBackend:
        return qbench.create("hardware", name)


def test_builtin_backends_are_registered() -> None:
    assert {"shift-add", "energy"} <= set(BACKENDS)


def test_backend_class_modules_do_not_import_numpy() -> None:
    code = (
        "import sys; import qbench_builtins.hardware as h; "
        "assert 'numpy' not in sys.modules, 'numpy imported'; print(len(h.qbench_register_hardware()))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "3"
