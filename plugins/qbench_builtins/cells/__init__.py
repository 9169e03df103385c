"""Built-in cells."""

from __future__ import annotations

import qbench
from qbench_builtins.cells.recurrent import BUILTIN_CELLS


@qbench.hookimpl
def qbench_register_cells() -> list[type]:
    return list(BUILTIN_CELLS)
