"""The seed rule's intervals keep their promise: a Monte-Carlo check of their coverage.

Paired differences are drawn normal with mean 0 and standard deviation sigma; the rule decides
how many seeds a comparison uses and its interval; coverage is the fraction of intervals that
contain 0. The old rule (add a seed while the running 95% half-width exceeds the precision)
selects samples whose spread happened to be small, so its intervals lose coverage when it stops
early; Stein's two-stage procedure (:func:`qbench.stats.stein_seeds`, the rule qbench uses)
keeps 0.95 whatever sigma / precision is. Run this file as a script for the table of
benchmarks/RESULTS.md.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qbench.stats import stein_seeds, t975
from qbench.verdicts import examine

RATIOS = (0.25, 0.5, 1.0, 1.5, 2.0, 4.0)  # sigma / precision
REPLICATES = 20000


def _t(df: np.ndarray) -> np.ndarray:
    return np.array([t975(int(d)) for d in range(int(df.max()) + 1)])[df] if df.size else df


def simulate(ratio: float, low: int, high: int, replicates: int = REPLICATES, seed: int = 0) -> dict[str, float]:
    """Coverage of the old rule and of Stein's, overall and when they stop at the minimum."""
    rng = np.random.default_rng(seed)
    precision = 1.0
    d = rng.normal(0.0, ratio * precision, size=(replicates, high))
    counts = np.arange(1, high + 1)
    csum, csq = np.cumsum(d, axis=1), np.cumsum(d * d, axis=1)
    means = csum / counts
    with np.errstate(invalid="ignore", divide="ignore"):
        stds = np.sqrt(np.maximum(csq - counts * means**2, 0.0) / (counts - 1))
    rows = np.arange(replicates)
    # old: the first n >= low whose t half-width is within the precision, else the maximum
    t_table = np.array([math.nan, *[t975(k) for k in range(1, high)]])
    halves = t_table[None, :] * stds / np.sqrt(counts)[None, :]
    precise = halves[:, low - 1 :] <= precision
    stop = np.where(precise.any(axis=1), precise.argmax(axis=1) + low, high)
    old_cover = np.abs(means[rows, stop - 1]) <= halves[rows, stop - 1]
    # Stein: the first stage's spread fixes N and the interval
    s0 = stds[:, low - 1]
    total = np.array([stein_seeds(float(s), low, precision, low, high) for s in s0])
    stein_half = t975(low - 1) * s0 / np.sqrt(total)
    new_cover = np.abs(means[rows, total - 1]) <= stein_half
    return {
        "old": float(old_cover.mean()),
        "old_at_min": float(old_cover[stop == low].mean()) if (stop == low).any() else math.nan,
        "old_share_min": float((stop == low).mean()),
        "old_mean_n": float(stop.mean()),
        "new": float(new_cover.mean()),
        "new_at_min": float(new_cover[total == low].mean()) if (total == low).any() else math.nan,
        "new_mean_n": float(total.mean()),
        "new_capped": float((total == high).mean()),
    }


@pytest.mark.parametrize("ratio", RATIOS)
def test_steins_intervals_cover_at_least_094_whatever_the_spread(ratio):
    for low, high in ((3, 5), (3, 10)):
        figures = simulate(ratio, low, high)
        assert figures["new"] >= 0.94, (ratio, low, high, figures)


def test_the_old_rule_loses_coverage_when_it_stops_early():
    # the defect Stein's procedure removes: stopping at n = 3 selects small spreads
    figures = simulate(1.0, 3, 10)
    assert figures["old_at_min"] < 0.85 and figures["new"] >= 0.94


def test_the_published_interval_is_steins():
    rng = np.random.default_rng(1)
    diffs = rng.normal(0.0, 0.03, size=7).tolist()
    evidence = examine(diffs, first_stage=3)
    first = np.std(diffs[:3], ddof=1)
    assert evidence.ci95 == pytest.approx(t975(2) * first / math.sqrt(7), rel=1e-12)
    assert evidence.df == 2 and evidence.mean == pytest.approx(float(np.mean(diffs)), rel=1e-12)


if __name__ == "__main__":  # the table of benchmarks/RESULTS.md
    print("| min-max | sigma/precision | old rule: coverage | old: coverage when stopped at min (share) | "
          "old: mean seeds | Stein: coverage | Stein: mean seeds (capped) |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for low, high in ((3, 5), (3, 10)):
        for ratio in RATIOS:
            f = simulate(ratio, low, high, replicates=100000)
            print(f"| {low}-{high} | {ratio:g} | {f['old']:.3f} | {f['old_at_min']:.3f} ({f['old_share_min']:.2f}) | "
                  f"{f['old_mean_n']:.2f} | {f['new']:.3f} | {f['new_mean_n']:.2f} ({f['new_capped']:.2f}) |")
