"""Built-in quantizers."""

from __future__ import annotations

import qbench


@qbench.hookimpl
def qbench_register_quantizers() -> list[type]:
    return []
