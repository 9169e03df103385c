"""The verdict of one paired comparison: which test decides, its p-values, and what they say.

Shared by the leaderboard (which publishes the verdicts), ``qbench validate`` (which recomputes
them from the published runs) and ``qbench compare`` / ``merge`` (which rebuild the leaderboards):
one definition, no numpy at import.

**Which test decides** (:func:`choose_test`), for the differences d_i = method - baseline of the
n seeds both have:

- the exact sign-flip (paired permutation) test when ``n <= 6`` (too few differences to check
  the normality the t test rests on), when the differences have no spread (a t statistic needs
  one), or when ``n <= 20`` and the Shapiro-Wilk test rejects their normality at 0.05;
- the t test otherwise (more than 20 differences: the mean is close to normal whatever their
  shape, and the t test has more power).

**Verdicts** (:func:`verdict`), with a margin M for the metric (the dataset's default or the
matrix's ``[compare] margin``) and Holm's adjustment across one family (a dataset, cell and
metric: every method's difference test and equivalence test together, so the family-wise error
rate is alpha whatever mixture of hypotheses is true):

- *better* / *worse*: the difference test rejects ``mean == 0``;
- *equivalent*: the two one-sided tests (TOST) reject ``mean <= -M`` and ``mean >= M``;
- *non-inferior* (``claim = "non-inferiority"``): the one-sided test rejects "worse by M or more";
- *inconclusive*: none of these. Without a margin equivalence is not tested, and a comparison
  that finds no difference is *inconclusive*, never a match.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from qbench.stats import MAX_SIGN_FLIP_N, holm, sign_flip_p_value, t975, t_p_value

#: The sign-flip test decides up to this many differences (normality cannot be checked below).
SIGN_FLIP_UP_TO = 6
#: Normality of 7..MAX_SIGN_FLIP_N differences is checked with Shapiro-Wilk at this level.
NORMALITY_LEVEL = 0.05
CLAIMS = ("equivalence", "non-inferiority")
VERDICTS = ("better", "worse", "equivalent", "non-inferior", "inconclusive", "single seed", "no paired seeds")


@dataclass(frozen=True)
class Evidence:
    """What one set of paired differences says (before the family's adjustment)."""

    n: int
    mean: float
    std: float  # sample standard deviation of all n differences
    scale: float  # the standard deviation of the interval and the t test (the first stage's under Stein)
    df: int  # its degrees of freedom
    ci95: float  # half-width of the 95% interval of the mean
    test: str  # "t" | "sign-flip" | "" (fewer than two differences)
    why: str  # why that test decides
    p: float  # two-sided p-value of "no difference", from the deciding test
    p_equiv: float  # equivalence (TOST) or non-inferiority p-value; NaN without a margin
    shape: str  # "" | "zero spread" | "two groups"
    p_t: float = math.nan  # both tests' two-sided p-values, shown beside each other (unadjusted)
    p_sign_flip: float = math.nan


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    std = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1)) if n > 1 else math.nan
    return mean, std


def shape_of(diffs: Sequence[float]) -> str:
    """"zero spread" (every difference equal), "two groups" (one gap between the sorted
    differences is at least four times all the other gaps together, with 5 or more of them: a
    mean and an interval describe neither group) or "".

    Normal differences look like two groups by this test 2.2% of the time with 5 seeds, 0.5% with
    6 (a factor of 2, or 4 seeds, would call 12-29% of them so)."""
    n = len(diffs)
    if n >= 2 and max(diffs) == min(diffs):
        return "zero spread"
    if n >= 5:
        ordered = sorted(diffs)
        gaps = [b - a for a, b in zip(ordered, ordered[1:], strict=False)]
        widest = max(gaps)
        if widest > 0 and widest >= 4 * (sum(gaps) - widest):
            return "two groups"
    return ""


def normality_p(diffs: Sequence[float]) -> float:
    """Shapiro-Wilk's p-value of the differences (NaN below 3 or without spread)."""
    if len(diffs) < 3 or max(diffs) == min(diffs):
        return math.nan
    from scipy.stats import shapiro  # imported only when a comparison has 7 to 20 seeds

    return float(shapiro(list(diffs)).pvalue)


def choose_test(diffs: Sequence[float], scale: float) -> tuple[str, str]:
    """(test, why): the rule of the module docstring."""
    n = len(diffs)
    if n < 2:
        return "", "fewer than two paired seeds"
    if scale == 0 or max(diffs) == min(diffs):
        return "sign-flip", "no spread: the t statistic is undefined"
    if n <= SIGN_FLIP_UP_TO:
        return "sign-flip", f"n <= {SIGN_FLIP_UP_TO}: normality cannot be checked"
    if n <= MAX_SIGN_FLIP_N:
        p = normality_p(diffs)
        if p == p and p < NORMALITY_LEVEL:
            return "sign-flip", f"normality rejected (Shapiro-Wilk p={p:.2g})"
        return "t", f"normality not rejected (Shapiro-Wilk p={p:.2g})"
    return "t", f"n > {MAX_SIGN_FLIP_N}"


def examine(diffs: Sequence[float], margin: float | None = None, claim: str = "equivalence",
            direction: str = "min", first_stage: int | None = None) -> Evidence:  # fmt: skip
    """The evidence of the differences (in seed order).

    ``first_stage``: under Stein's two-stage procedure, how many of the leading differences form
    the first stage; their standard deviation (with ``first_stage - 1`` degrees of freedom) is
    the interval's and the t test's (:func:`qbench.stats.stein_seeds`).
    """
    values = [float(d) for d in diffs if not math.isnan(float(d))]
    n = len(values)
    mean, std = _mean_std(values)
    scale, df = std, n - 1
    if first_stage is not None and 2 <= first_stage < n:
        _, scale = _mean_std(values[:first_stage])
        df = first_stage - 1
    ci95 = t975(df) * scale / math.sqrt(n) if n >= 2 and scale == scale else math.nan
    test, why = choose_test(values, scale)
    p_t = t_p_value(mean, scale, n, df) if n >= 2 else math.nan
    p_flip = sign_flip_p_value(values) if n >= 2 else math.nan
    p = p_flip if test == "sign-flip" else p_t if test == "t" else math.nan
    p_equiv = math.nan
    if margin is not None and test:
        p_equiv = _margin_p(values, mean, scale, n, df, test, float(margin), claim, direction)
    return Evidence(n, mean, std, scale, df, ci95, test, why, p, p_equiv, shape_of(values) if n else "", p_t, p_flip)


def _margin_p(values: list[float], mean: float, scale: float, n: int, df: int, test: str, margin: float,
              claim: str, direction: str) -> float:  # fmt: skip
    def one_sided(shift: float, side: str) -> float:
        if test == "sign-flip":
            return sign_flip_p_value(values, shift, side)
        return t_p_value(mean, scale, n, df, shift, side)

    if claim == "non-inferiority":
        # worse by the margin or more is the null: above +M for a min metric, below -M for a max one
        return one_sided(margin, "less") if direction == "min" else one_sided(-margin, "greater")
    return max(one_sided(margin, "less"), one_sided(-margin, "greater"))


def family_holm(p_diff: Sequence[float], p_equiv: Sequence[float]) -> tuple[list[float], list[float]]:
    """Holm-adjusted p-values of one family: the difference and the margin tests of every method together."""
    adjusted = holm([*p_diff, *p_equiv])
    return adjusted[: len(p_diff)], adjusted[len(p_diff):]


def verdict(mean: float, n: int, p_holm: float, p_equiv_holm: float, direction: str, alpha: float,
            margin: float | None, claim: str = "equivalence") -> str:  # fmt: skip
    """The published verdict (see the module docstring); ``mean`` is method minus baseline."""
    if n < 2:
        return "single seed" if n == 1 else "no paired seeds"
    differs = p_holm == p_holm and p_holm < alpha and mean != 0
    gain = -mean if direction == "min" else mean
    within = margin is not None and p_equiv_holm == p_equiv_holm and p_equiv_holm < alpha
    if claim == "non-inferiority" and margin is not None:
        if differs and gain > 0:
            return "better"
        if within:
            return "non-inferior"
    elif within:
        return "equivalent"
    if differs:
        return "better" if gain > 0 else "worse"
    return "inconclusive"


@dataclass(frozen=True)
class Judged:
    """One comparison judged within its family."""

    evidence: Evidence
    p_holm: float
    p_margin_holm: float
    verdict: str
    margin: float | None


def first_stage_of(protocol: Any) -> set[int] | None:
    """The seeds of Stein's first stage (None without a seed rule)."""
    rule = getattr(protocol, "rule", None)
    return set(protocol.seeds[: rule.min]) if rule is not None else None


def ordered_differences(by_seed: Mapping[int, float], order: Sequence[int],
                        first_stage: set[int] | None) -> tuple[list[float], int | None]:  # fmt: skip
    """The differences in the protocol's seed order (seeds it does not list last, ascending) and
    how many of them belong to the first stage (None without a seed rule)."""
    rank = {seed: i for i, seed in enumerate(order)}
    seeds = sorted(by_seed, key=lambda s: (rank.get(s, len(rank)), s))
    diffs = [by_seed[s] for s in seeds]
    if first_stage is None:
        return diffs, None
    return diffs, sum(1 for s in seeds if s in first_stage)


def judge(items: Sequence[tuple[Any, Sequence[float], int | None, float | None, str]], claim: str,
          alpha: float) -> list[Judged]:  # fmt: skip
    """Judge comparisons given as (family key, differences, first-stage count, margin, direction):
    the evidence of each, Holm across each family (difference and margin tests together), the verdict."""
    evidence = [examine(diffs, margin, claim, direction, first) for _, diffs, first, margin, direction in items]
    families: dict[Any, list[int]] = {}
    for i, item in enumerate(items):
        families.setdefault(item[0], []).append(i)
    p_holm, p_margin_holm = [math.nan] * len(items), [math.nan] * len(items)
    for members in families.values():
        diff_adj, margin_adj = family_holm([evidence[i].p for i in members], [evidence[i].p_equiv for i in members])
        for i, a, b in zip(members, diff_adj, margin_adj, strict=True):
            p_holm[i], p_margin_holm[i] = a, b
    out = []
    for i, (_, _, _, margin, direction) in enumerate(items):
        ev = evidence[i]
        out.append(Judged(ev, p_holm[i], p_margin_holm[i],
                          verdict(ev.mean, ev.n, p_holm[i], p_margin_holm[i], direction, alpha, margin, claim), margin))
    return out
