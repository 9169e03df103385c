"""Statistics across seeds: mean, sample standard deviation, 95% confidence interval, n.

The interval is Student's t: ``ci95 = t(0.975, n - 1) * std / sqrt(n)`` with the sample
standard deviation (``ddof = 1``), reported as the half-width, so a row reads ``mean +- ci95``.
It is undefined (NaN) for ``n < 2``. The paired comparison of a method against the float
baseline applies the same formula to the per-seed differences (a paired t interval), which is
what makes "ternary is 0.05 +- 0.02 BPC better than float" a statement about the method rather
than about the seeds.

No scipy: the quantile is a table for ``df <= 30`` and the Cornish-Fisher expansion (Abramowitz
& Stegun 26.7.5) above, which agrees with the exact value to better than 1e-6 there.
"""

from __future__ import annotations

import math

import numpy as np

# t(0.975, df) for df = 1 .. 30 (exact to 9 decimals).
_T975 = (
    12.706204736, 4.302652730, 3.182446305, 2.776445105, 2.570581836, 2.446911851, 2.364624252,
    2.306004135, 2.262157163, 2.228138852, 2.200985160, 2.178812830, 2.160368656, 2.144786688,
    2.131449546, 2.119905299, 2.109815578, 2.100922040, 2.093024054, 2.085963447, 2.079613845,
    2.073873068, 2.068657610, 2.063898562, 2.059538553, 2.055529439, 2.051830516, 2.048407142,
    2.045229642, 2.042272456,
)  # fmt: skip
_Z975 = 1.959963984540054


def t975(df: int) -> float:
    """The 0.975 quantile of Student's t with ``df`` degrees of freedom (NaN for ``df < 1``)."""
    if df < 1:
        return math.nan
    if df <= len(_T975):
        return _T975[df - 1]
    z, v = _Z975, float(df)
    return (
        z
        + (z**3 + z) / (4 * v)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * v**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * v**3)
        + (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / (92160 * v**4)
    )


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


def summarize(values: list[float]) -> dict[str, float | int]:
    """Mean, std, ci95 and n of one list of values (NaNs dropped); a reference for the tables."""
    clean = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(clean)
    if n == 0:
        return {"mean": math.nan, "std": math.nan, "ci95": math.nan, "n": 0}
    mean = sum(clean) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in clean) / (n - 1)) if n > 1 else math.nan
    ci = t975(n - 1) * std / math.sqrt(n) if n > 1 else math.nan
    return {"mean": mean, "std": std, "ci95": ci, "n": n}


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
