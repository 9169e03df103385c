"""Statistics across seeds: mean, sample standard deviation, 95% confidence interval, n.

The interval is Student's t: ``ci95 = t(0.975, n - 1) * std / sqrt(n)`` with the sample
standard deviation (``ddof = 1``), reported as the half-width, so a row reads ``mean +- ci95``.
It is undefined (NaN) for ``n < 2``. The paired comparison of a method against the float
baseline applies the same formula to the per-seed differences (a paired t interval), which is
what makes "ternary is 0.05 +- 0.02 BPC better than float" a statement about the method rather
than about the seeds.

The scalar functions (the t quantile, :func:`summarize`, p-values and Holm's adjustment) live in
:mod:`qbench.stats`, shared with the run driver; this module holds their numpy forms and the
verdicts of the 0.1 protocol. :func:`verdict` is the unadjusted interval verdict and
:func:`adjusted_verdict` the Holm-adjusted t-test verdict, both kept as references their tests
pin; the leaderboards now publish the verdicts of :mod:`qbench.verdicts` (the test chosen for the
data, equivalence against a margin).
"""

from __future__ import annotations

import math

import numpy as np

from qbench.stats import summarize, t975

__all__ = ["adjusted_verdict", "ci95_half_width", "summarize", "t975", "t975_array", "verdict"]


def t975_array(df: np.ndarray) -> np.ndarray:
    """:func:`t975` over an integer array (vectorised over the distinct values)."""
    df = np.asarray(df, dtype=np.int64)
    out = np.full(df.shape, np.nan)
    for value in np.unique(df):
        out[df == value] = t975(int(value))
    return out


def ci95_half_width(std: np.ndarray, n: np.ndarray) -> np.ndarray:
    """Half-width of the 95% interval of a mean; NaN where ``n < 2``."""
    n = np.asarray(n, dtype=np.int64)
    std = np.asarray(std, dtype=float)
    with np.errstate(invalid="ignore", divide="ignore"):
        half = t975_array(n - 1) * std / np.sqrt(np.where(n > 0, n, 1))
    return np.where(n >= 2, half, np.nan)


def verdict(diff_mean: float, diff_ci: float, n: int, direction: str) -> str:
    """``better``, ``worse``, ``no significant difference`` or ``single seed`` for a paired difference.

    ``diff`` is method minus baseline; for a ``min`` metric a negative difference is better.
    """
    if n < 2 or math.isnan(diff_ci):
        return "single seed" if n == 1 else "no paired seeds"
    gain = -diff_mean if direction == "min" else diff_mean
    if gain - diff_ci > 0:
        return "better"
    if gain + diff_ci < 0:
        return "worse"
    return "no significant difference"


def adjusted_verdict(diff_mean: float, p_adjusted: float, n: int, direction: str, alpha: float = 0.05) -> str:
    """The published verdict: ``better`` / ``worse`` when the Holm-adjusted p-value is below ``alpha``.

    ``diff`` is method minus baseline; for a ``min`` metric a negative difference is better.
    """
    if n < 2 or math.isnan(p_adjusted):
        return "single seed" if n == 1 else "no paired seeds"
    if p_adjusted < alpha and diff_mean != 0:
        gain = -diff_mean if direction == "min" else diff_mean
        return "better" if gain > 0 else "worse"
    return "no significant difference"
