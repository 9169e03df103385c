"""What the cache tells the user: one-line messages and progress bars on stderr (stdout stays clean)."""

from __future__ import annotations

import sys
from typing import Any


def say(message: str) -> None:
    """Tell the user what is being done (stderr, so that machine-readable stdout stays clean)."""
    print(f"qbench: {message}", file=sys.stderr, flush=True)


def progress(total: int | None, desc: str, unit: str = "B") -> Any:
    """A tqdm bar on stderr; disabled when stderr is not a terminal (CI, tests, log files)."""
    from tqdm import tqdm

    scale = unit == "B"
    return tqdm(total=total, desc=f"qbench: {desc}", unit=unit, unit_scale=scale, unit_divisor=1024 if scale
                else 1000, file=sys.stderr, disable=None, leave=False, dynamic_ncols=True)
