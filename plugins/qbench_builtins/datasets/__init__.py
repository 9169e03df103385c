"""Built-in datasets."""

from __future__ import annotations

import qbench


@qbench.hookimpl
def qbench_register_datasets() -> list[type]:
    return []
