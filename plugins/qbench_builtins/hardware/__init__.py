"""Built-in hardware."""

from __future__ import annotations

import qbench


@qbench.hookimpl
def qbench_register_hardware() -> list[type]:
    return []
