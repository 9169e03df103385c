"""Scalar statistics shared by the run driver and the leaderboards (no numpy, no pandas).

- :func:`t975`: the 0.975 quantile of Student's t, a table for ``df <= 30`` and the
  Cornish-Fisher expansion (Abramowitz & Stegun 26.7.5) above, exact to better than 1e-6;
- :func:`summarize`: mean, sample standard deviation, 95% half-width and n of one list;
- :func:`paired_p_value`: the two-sided p-value of a paired t test (scipy.special's Student t
  distribution function, imported when first needed: the driver plans seeds without it);
- :func:`holm`: Holm-Bonferroni adjusted p-values of one family of tests.

The interval is Student's t: ``ci95 = t(0.975, n - 1) * std / sqrt(n)`` with ``ddof = 1``,
reported as the half-width; it is undefined (NaN) for ``n < 2``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

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



def paired_p_value(mean: float, std: float, n: int) -> float:
    """Two-sided p-value of the paired t test of ``mean == 0`` (NaN for ``n < 2``).

    A zero standard deviation (every seed differs by exactly the same amount, which a discrete
    metric such as the accuracy on a few hundred test items produces easily) makes the t
    statistic infinite and its p-value 0, a certainty three seeds cannot give. The exact
    sign-flip (paired permutation) test is used instead: with n equal, non-zero differences only
    the all-positive and all-negative assignments are as extreme, so ``p = 2 / 2^n`` (0.25 for 3
    seeds); equal zero differences give 1.
    """
    if n < 2 or math.isnan(mean) or math.isnan(std):
        return math.nan
    if std == 0:
        return min(1.0, 2.0 ** (1 - n)) if mean != 0 else 1.0
    # stdtr(df, -t) is exactly what scipy.stats.t.sf(t, df) evaluates, without its argument
    # checking (56 us a call against 2 us; leaderboards of 100,000 records ask thousands of times)
    # and without importing scipy.stats (a second).
    from scipy.special import stdtr

    t = abs(mean) / (std / math.sqrt(n))
    return float(min(1.0, 2.0 * stdtr(n - 1, -t)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the order given; NaNs stay NaN and do not count.

    With m valid values sorted ascending, ``adj_(i) = max_{j <= i} min(1, (m - j + 1) p_(j))``:
    the step-down procedure as adjusted values, so ``adj < alpha`` is Holm's rejection at alpha.
    """
    valid = sorted((p, i) for i, p in enumerate(p_values) if not math.isnan(p))
    m = len(valid)
    adjusted = [math.nan] * len(p_values)
    running = 0.0
    for rank, (p, index) in enumerate(valid):
        running = max(running, min(1.0, (m - rank) * p))
        adjusted[index] = running
    return adjusted


def effect_size(mean: float, std: float) -> float:
    """Cohen's d_z of paired differences: mean / std (NaN when undefined)."""
    if math.isnan(mean) or math.isnan(std) or std == 0:
        return math.nan
    return mean / std


# -- tests of one set of paired differences -----------------------------------------------------
#
# Every p-value below is of the differences d_i = method - baseline. ``scale`` is the standard
# deviation the t statistic divides by and ``df`` its degrees of freedom: the sample's own
# (``std``, ``n - 1``) for a fixed number of seeds, the first stage's under Stein's two-stage
# procedure (see :func:`stein_seeds`).


def t_p_value(mean: float, scale: float, n: int, df: int, shift: float = 0.0, side: str = "two") -> float:
    """p-value of a t test of ``mean == shift``: ``side`` "two", "less" (H1: below) or "greater".

    NaN when undefined (``n < 1``, ``df < 1`` or a zero or NaN scale).
    """
    if n < 1 or df < 1 or math.isnan(mean) or math.isnan(scale) or scale <= 0:
        return math.nan
    from scipy.special import stdtr  # see paired_p_value for why not scipy.stats

    t = (mean - shift) / (scale / math.sqrt(n))
    if side == "less":
        return float(stdtr(df, t))
    if side == "greater":
        return float(stdtr(df, -t))
    return float(min(1.0, 2.0 * stdtr(df, -abs(t))))


#: Up to this many differences the sign-flip distribution is enumerated in pure Python.
_PURE_FLIPS = 12
#: The exact sign-flip test enumerates 2^n assignments; above this n it is not offered.
MAX_SIGN_FLIP_N = 20


def _flip_sums(values: Sequence[float]) -> list[float]:
    """The sum of ``+-v_i`` under every one of the 2^n sign assignments."""
    n = len(values)
    if n <= _PURE_FLIPS:
        sums = [0.0]
        for v in values:
            sums = [s + v for s in sums] + [s - v for s in sums]
        return sums
    import numpy as np

    signs = ((np.arange(2**n)[:, None] >> np.arange(n)[None, :]) & 1) * 2 - 1
    return (signs @ np.asarray(values, dtype=float)).tolist()


def sign_flip_p_value(diffs: Sequence[float], shift: float = 0.0, side: str = "two") -> float:
    """The exact paired permutation (sign-flip) test of ``mean == shift``.

    Under the null the differences minus ``shift`` are symmetric about zero, so every one of the
    2^n sign assignments is as likely as the observed one; the p-value is the fraction of them
    whose sum is at least as extreme (ties counted, with a relative tolerance of 1e-9 so that
    rounding never breaks a tie). ``side``: "two", "less" (H1: mean below ``shift``) or "greater".
    Valid without normality; its smallest two-sided p-value is ``2 / 2^n`` (0.25 for 3 seeds).
    """
    values = [float(d) - shift for d in diffs if not math.isnan(float(d))]
    n = len(values)
    if n and max(values) == min(values):
        return _equal_flips(values[0], n, side)
    if n == 0 or n > MAX_SIGN_FLIP_N:
        return math.nan
    observed = sum(values)
    sums = _flip_sums(values)
    tol = 1e-9 * max(1.0, sum(abs(v) for v in values))
    if side == "less":
        count = sum(1 for s in sums if s <= observed + tol)
    elif side == "greater":
        count = sum(1 for s in sums if s >= observed - tol)
    else:
        count = sum(1 for s in sums if abs(s) >= abs(observed) - tol)
    return min(1.0, count / len(sums))


def _equal_flips(value: float, n: int, side: str) -> float:
    """The sign-flip p-value of n equal values (any n): their flipped sum is value * (2k - n), k binomial."""
    if value == 0:
        return 1.0
    positive = value > 0  # the observed sum is the largest (value > 0) or the smallest possible
    if side == "two":
        return min(1.0, 2.0 / 2**n)
    if side == "less":
        return 1.0 if positive else 1.0 / 2**n
    return 1.0 / 2**n if positive else 1.0


def stein_seeds(first_std: float, first_n: int, precision: float, minimum: int, maximum: int) -> int:
    """Stein's two-stage procedure: the total number of seeds fixed by the first stage.

    The first ``first_n`` paired differences give ``first_std``; the comparison then uses
    ``N = max(minimum, ceil((t(0.975, first_n - 1) * first_std / precision)^2))`` seeds, at most
    ``maximum``. Its interval is ``mean of N +- t(0.975, first_n - 1) * first_std / sqrt(N)``: the
    mean of N normal differences is independent of the first stage's variance, which alone chose
    N, so the interval covers with probability 0.95 exactly, whatever the true spread, and its
    half-width is at most ``precision`` unless the maximum was reached. (Stopping as soon as the
    running half-width is small enough instead selects samples whose spread happened to be small.)
    """
    if first_n < 2 or math.isnan(first_std):
        return minimum
    needed = (t975(first_n - 1) * first_std / precision) ** 2
    # a relative tolerance keeps an exact boundary (needed == k up to rounding) at k
    total = max(minimum, math.ceil(needed * (1 - 1e-12)))
    return min(maximum, total)
