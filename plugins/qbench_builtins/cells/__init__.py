"""Built-in cells."""

from __future__ import annotations

import qbench


@qbench.hookimpl
def qbench_register_cells() -> list[type]:
    return []
