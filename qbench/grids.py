"""The edges of an ordered tuning grid, and the points beyond them (``[tune] extend``).

A tuned axis is *ordered* when its values are numbers (not booleans), two distinct or more; a
choice at its largest or smallest value sits at an *edge*, and the method's optimum may lie
beyond it. Pure functions, shared by the protocol's selection, the planner and the pages.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def ordered_values(values: Sequence[Any]) -> bool:
    """Whether a tuned axis is an ordered numeric grid: numbers (not booleans), two distinct or more."""
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    return len(numbers) == len(values) and len(set(numbers)) >= 2 and all(math.isfinite(v) for v in numbers)


def extension_value(values: Sequence[float], side: str) -> float | int:
    """The next value beyond the ``side`` ("top" | "bottom") edge on the grid's own spacing.

    Positive values: the ratio of the two outermost values at that edge (a geometric grid keeps
    its ratio); otherwise their difference. Rounded to 6 significant digits (0.04, not
    0.040000000000000001); a grid of integers stays integer and always moves.
    """
    ordered = sorted(set(values))
    edge, inner = (ordered[-1], ordered[-2]) if side == "top" else (ordered[0], ordered[1])
    if all(v > 0 for v in ordered):
        raw = edge * (edge / inner)
    else:
        raw = edge + (edge - inner)
    if all(isinstance(v, int) for v in ordered):
        step = round(raw)
        if step == edge:
            step = edge + (1 if side == "top" else -1)
        return int(step)
    return float(f"{raw:.6g}")


def edges_of(chosen: Mapping[str, Any], values: Mapping[str, list[Any]]) -> list[tuple[str, str]]:
    """(axis, "top" | "bottom") for every ordered axis whose chosen value is an edge of the values
    tried so far (``values``: {axis: the grid's values and the extensions tried})."""
    edges = []
    for key, known in values.items():
        value = chosen.get(key)
        if value == max(known):
            edges.append((key, "top"))
        elif value == min(known):
            edges.append((key, "bottom"))
    return edges
