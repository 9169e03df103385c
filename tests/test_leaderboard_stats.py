"""Statistics of the leaderboard against values computed by hand (and scipy where present)."""

from __future__ import annotations

import math

import pytest

from qbench.leaderboard import aggregate, load_runs, paired
from qbench.leaderboard.compute.stats import summarize, t975, verdict
from tests.synthetic import make_record

GRU = "gru(hidden=128)"
TERNARY = "ternary(stochastic=false)"
BINARY = "binary(stochastic=false)"


def _records(values: dict[str, list[float | None]], dataset: str = "pydoc-char") -> list[dict]:
    """``{quantizer label: [metric per seed]}``; None makes that seed diverge."""
    return [
        make_record(q, GRU, dataset, seed, "ok" if v is not None else "diverged", metric=v)
        for q, per_seed in values.items()
        for seed, v in enumerate(per_seed)
    ]


def test_t_quantiles_match_the_table_and_the_expansion():
    assert t975(1) == pytest.approx(12.706204736)
    assert t975(2) == pytest.approx(4.302652730)
    assert t975(30) == pytest.approx(2.042272456)
    # Cornish-Fisher above the table: t(0.975, 40) = 2.021075390, t(0.975, 120) = 1.979930405.
    assert t975(40) == pytest.approx(2.021075390, abs=1e-6)
    assert t975(120) == pytest.approx(1.979930405, abs=1e-7)
    assert math.isnan(t975(0))


def test_t_quantiles_agree_with_scipy_when_installed():
    stats = pytest.importorskip("scipy.stats")
    for df in (1, 3, 7, 29, 31, 45, 200, 5000):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=2e-6)


def test_summarize_by_hand():
    # values 2.0, 2.1, 2.3: mean 6.4/3; deviations -2/15, -1/30, 1/6; sum of squares 0.04666..;
    # std = sqrt(0.0466667 / 2) = 0.1527525; ci = 4.30265273 * 0.1527525 / sqrt(3) = 0.3794583.
    s = summarize([2.0, 2.1, 2.3])
    assert s["n"] == 3
    assert s["mean"] == pytest.approx(2.1333333333)
    assert s["std"] == pytest.approx(0.1527525232)
    assert s["ci95"] == pytest.approx(0.3794583, abs=1e-6)
    one = summarize([1.5, None, math.nan])
    assert one["n"] == 1 and one["mean"] == 1.5 and math.isnan(one["std"]) and math.isnan(one["ci95"])


def test_aggregate_statistics_match_hand_values_and_ignore_diverged_seeds():
    frame = load_runs(_records({"float": [2.0, 2.1, 2.3], BINARY: [2.6, None, 2.5]}))
    table = aggregate(frame).set_index("quantizer_label")
    row = table.loc["float"]
    assert row["test_bpc_mean"] == pytest.approx(2.1333333333)
    assert row["test_bpc_std"] == pytest.approx(0.1527525232)
    assert row["test_bpc_ci95"] == pytest.approx(0.3794583, abs=1e-6)
    assert (row["test_bpc_n"], row["n_ok"], row["n_diverged"], row["n_error"]) == (3, 3, 0, 0)
    binary = table.loc[BINARY]
    # Two ok seeds: mean 2.55, std sqrt(0.005) = 0.0707107, ci = 12.7062047 * 0.0707107 / sqrt(2) = 0.6353102.
    assert binary["test_bpc_mean"] == pytest.approx(2.55)
    assert binary["test_bpc_ci95"] == pytest.approx(0.6353102, abs=1e-6)
    assert (binary["test_bpc_n"], binary["n_ok"], binary["n_diverged"]) == (2, 2, 1)


def test_rows_sort_in_each_metrics_direction_and_unranked_rows_come_last():
    bpc = _records({"float": [2.0], TERNARY: [1.9], BINARY: [None]})
    acc = _records({"float": [0.90], TERNARY: [0.95], BINARY: [0.50]}, dataset="digits")
    table = aggregate(load_runs(bpc + acc))
    by_dataset = {d: rows for d, rows in table.groupby("dataset_label")}
    assert list(by_dataset["pydoc-char"]["quantizer_label"]) == [TERNARY, "float", BINARY]
    assert list(by_dataset["pydoc-char"]["rank"].astype("float")[:2]) == [1, 2]
    assert by_dataset["pydoc-char"]["rank"].isna().iloc[2]  # all seeds diverged: shown, not ranked
    assert list(by_dataset["digits"]["quantizer_label"]) == [TERNARY, "float", BINARY]  # accuracy: max first


def test_paired_difference_by_hand_three_seeds_decided_by_the_sign_flip_test():
    records = _records({
        "float": [2.00, 2.10, 2.30],
        TERNARY: [2.05, 2.15, 2.36],  # diffs 0.05, 0.05, 0.06: all worse, but 3 seeds
        BINARY: [2.05, 2.12, 2.36],  # diffs 0.05, 0.02, 0.06: interval covers 0
        "exponential(stochastic=false)": [1.90, 2.00, 2.19],  # diffs -0.1, -0.1, -0.11
    })  # fmt: skip
    table = paired(load_runs(records))
    rows = table[table["metric"] == "test_bpc"].set_index("quantizer_label")
    ternary = rows.loc[TERNARY]
    # mean 0.0533333, std sqrt(((-1/300)^2*2 + (2/300)^2) / 2) = 0.0057735, ci = 4.30265273 * 0.0057735 / sqrt(3)
    assert ternary["diff_mean"] == pytest.approx(0.0533333, abs=1e-6)
    assert ternary["diff_std"] == pytest.approx(0.0057735, abs=1e-6)
    assert ternary["diff_ci95"] == pytest.approx(0.0143422, abs=1e-6)
    # 3 seeds: the exact sign-flip test decides; all three positive is 2 of 8 assignments: p = 0.25
    assert ternary["test"] == "sign-flip" and ternary["p_value"] == 0.25
    assert ternary["verdict"] == "inconclusive" and ternary["n"] == 3 and ternary["baseline_label"] == "float"
    assert "equivalence was not tested" in ternary["sentence"] and "sign-flip" in ternary["sentence"]
    binary = rows.loc[BINARY]
    # diffs 0.05, 0.02, 0.06: mean 0.0433333, std 0.0208167, ci 0.0517115 > mean
    assert binary["diff_ci95"] == pytest.approx(0.0517115, abs=1e-6)
    assert binary["verdict"] == "inconclusive"
    assert "float" not in rows.index


def test_paired_difference_of_eight_seeds_decided_by_the_t_test():
    from scipy import stats

    base = [2.00, 2.10, 2.30, 2.05, 2.20, 2.15, 1.95, 2.25]
    worse = [b + d for b, d in zip(base, [0.05, 0.06, 0.04, 0.05, 0.07, 0.03, 0.05, 0.06], strict=True)]
    better = [b - d for b, d in zip(base, [0.10, 0.12, 0.09, 0.11, 0.10, 0.08, 0.13, 0.10], strict=True)]
    table = paired(load_runs(_records({"float": base, TERNARY: worse, "exponential(stochastic=false)": better})))
    rows = table[table["metric"] == "test_bpc"].set_index("quantizer_label")
    ternary = rows.loc[TERNARY]
    assert ternary["test"] == "t" and "normality not rejected" in ternary["test_reason"]
    assert ternary["p_value"] == pytest.approx(stats.ttest_rel(worse, base).pvalue, rel=1e-9)
    assert ternary["p_holm"] == pytest.approx(min(1.0, 2 * ternary["p_value"]), rel=1e-9) or ternary["p_holm"] >= \
        ternary["p_value"]
    assert ternary["verdict"] == "worse" and "worse than float" in ternary["sentence"]
    assert rows.loc["exponential(stochastic=false)", "verdict"] == "better"


def test_paired_needs_the_same_seed_and_reports_a_single_seed_as_such():
    records = _records({"float": [2.0, None], TERNARY: [2.1, 2.2]})
    rows = paired(load_runs(records)).set_index(["quantizer_label", "metric"])
    row = rows.loc[(TERNARY, "test_bpc")]
    assert row["n"] == 1 and row["diff_mean"] == pytest.approx(0.1)
    assert row["verdict"] == "single seed" and math.isnan(row["diff_ci95"])


def test_verdict_rule():
    assert verdict(-0.05, 0.02, 3, "min") == "better"
    assert verdict(-0.05, 0.02, 3, "max") == "worse"
    assert verdict(0.01, 0.02, 3, "min") == "no significant difference"
    assert verdict(0.01, math.nan, 1, "min") == "single seed"


def test_hardware_columns_aggregate_like_metrics_and_booleans_become_fractions():
    records = _records({TERNARY: [2.1, 2.2]})
    records[1]["sim_exact"] = False
    records[1]["energy_pj_per_token"] = records[0]["energy_pj_per_token"] + 10.0
    row = aggregate(load_runs(records)).iloc[0]
    assert row["sim_exact_mean"] == 0.5 and row["sim_exact_n"] == 2
    assert row["energy_pj_per_token_mean"] == pytest.approx(records[0]["energy_pj_per_token"] + 5.0)
    assert row["energy_pj_per_token_std"] == pytest.approx(math.sqrt(50.0))
