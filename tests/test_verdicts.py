"""Verdicts a reader can cite: the test that decides, equivalence against a margin, the sentences."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from qbench.errors import MatrixError
from qbench.leaderboard import load_runs, paired
from qbench.metrics import Metric, MetricError, check_metrics
from qbench.protocol import Protocol
from qbench.stats import sign_flip_p_value, t_p_value
from qbench.verdicts import choose_test, examine, judge, shape_of, verdict
from tests.synthetic import make_record

from .matrices import write_matrix_file

GRU = "gru(hidden=128)"
TERNARY = "ternary(stochastic=false)"


def _brute_sign_flip(diffs, shift=0.0, side="two"):
    values = [d - shift for d in diffs]
    observed = sum(values)
    sums = [sum(s * v for s, v in zip(signs, values, strict=True)) for signs in itertools.product((1, -1),
                                                                                               repeat=len(values))]
    if side == "less":
        return sum(s <= observed + 1e-12 for s in sums) / len(sums)
    if side == "greater":
        return sum(s >= observed - 1e-12 for s in sums) / len(sums)
    return sum(abs(s) >= abs(observed) - 1e-12 for s in sums) / len(sums)


def test_sign_flip_p_values_equal_a_brute_force_enumeration():
    rng = random.Random(3)
    for n in (1, 3, 5, 8, 13):  # 13: the numpy path
        diffs = [rng.gauss(0.1, 1.0) for _ in range(n)]
        for shift, side in ((0.0, "two"), (0.5, "less"), (-0.5, "greater")):
            assert sign_flip_p_value(diffs, shift, side) == pytest.approx(_brute_sign_flip(diffs, shift, side))
    assert sign_flip_p_value([0.1, 0.2, 0.3]) == 0.25  # 2 of 8 assignments as extreme
    assert sign_flip_p_value([0.1] * 5) == 2 / 32
    for diffs in ([0.1] * 4, [-0.2] * 3, [0.0] * 3):  # equal values: the closed form, checked
        for shift, side in ((0.0, "two"), (0.0, "less"), (0.0, "greater")):
            assert sign_flip_p_value(diffs, shift, side) == pytest.approx(_brute_sign_flip(diffs, shift, side))
    assert sign_flip_p_value([0.1] * 25) == 2 / 2**25  # beyond the enumeration, still exact
    assert examine([0.1] * 25).test == "sign-flip" and examine([0.1] * 25).p == 2 / 2**25


def test_t_p_values_are_scipys_one_and_two_sided():
    from scipy import stats

    diffs = [0.05, 0.02, 0.06, 0.04, 0.03, 0.08, 0.01]
    mean, std = sum(diffs) / 7, stats.tstd(diffs)
    assert t_p_value(mean, std, 7, 6) == pytest.approx(stats.ttest_1samp(diffs, 0.0).pvalue, rel=1e-9)
    assert t_p_value(mean, std, 7, 6, 0.1, "less") == pytest.approx(
        stats.ttest_1samp(diffs, 0.1, alternative="less").pvalue, rel=1e-9)
    assert t_p_value(mean, std, 7, 6, -0.1, "greater") == pytest.approx(
        stats.ttest_1samp(diffs, -0.1, alternative="greater").pvalue, rel=1e-9)


def test_the_rule_choosing_the_test():
    assert choose_test([0.1, 0.2, 0.15, 0.3, 0.25, 0.2], 0.07)[0] == "sign-flip"  # n <= 6
    assert choose_test([0.1] * 9, 0.0)[0] == "sign-flip"  # no spread
    normal = [0.01, -0.02, 0.03, 0.0, 0.015, -0.01, 0.02, 0.005]
    assert choose_test(normal, 0.017)[0] == "t"
    skewed = [0.0, 0.001, 0.0, 0.002, 0.001, 0.0, 0.001, 5.0]  # one wild seed: normality rejected
    test, why = choose_test(skewed, 1.7)
    assert test == "sign-flip" and "Shapiro-Wilk" in why
    assert choose_test([random.Random(i).gauss(0, 1) for i in range(25)], 1.0)[0] == "t"  # n > 20


def test_equivalence_needs_the_whole_tost_interval_inside_the_margin():
    tight = [0.01, -0.01, 0.005, 0.0, -0.005, 0.01, -0.01, 0.0]  # mean 0, spread small
    assert verdict_of(tight, 0.05) == "equivalent"
    assert verdict_of(tight, None) == "inconclusive"  # no margin: never a match
    assert verdict_of(tight, 0.001) == "inconclusive"  # margin narrower than the evidence
    assert verdict_of([0.2, 0.21, 0.19, 0.2, 0.22, 0.18, 0.2, 0.21], 0.05) == "worse"
    # non-inferiority: worse by less than the margin, or better
    slightly = [0.01, 0.02, 0.0, 0.015, 0.01, 0.005, 0.02, 0.01]
    assert verdict_of(slightly, 0.05, "non-inferiority") == "non-inferior"
    assert verdict_of([-d for d in slightly], 0.05, "non-inferiority") == "better"


def verdict_of(diffs, margin, claim="equivalence", direction="min"):
    return judge([("family", diffs, None, margin, direction)], claim, 0.05)[0].verdict


def test_a_comparison_whose_interval_is_wider_than_the_margin_is_never_equivalent():
    rng = random.Random(7)
    for _ in range(300):
        n = rng.choice([3, 5, 7, 9, 12, 25])
        sigma, margin = rng.uniform(0.005, 0.2), rng.uniform(0.01, 0.1)
        diffs = [rng.gauss(rng.uniform(-0.05, 0.05), sigma) for _ in range(n)]
        evidence = examine(diffs, margin)
        result = verdict(evidence.mean, n, evidence.p, evidence.p_equiv, "min", 0.05, margin)
        if result == "equivalent" and evidence.test == "t":
            from scipy import stats

            # TOST at 0.05 is the 90% interval inside the margin
            ratio = stats.t.ppf(0.95, evidence.df) / stats.t.ppf(0.975, evidence.df)
            assert abs(evidence.mean) + evidence.ci95 * ratio <= margin * (1 + 1e-9)
        if abs(evidence.mean) + evidence.ci95 > margin * 1.25 or n <= 4:
            assert result != "equivalent", (diffs, margin, evidence)


def test_zero_spread_and_two_groups_get_a_sentence_not_a_bare_p_value():
    assert shape_of([1 / 600] * 3) == "zero spread"
    assert shape_of([0.74, 0.8, 0.9, 1.0, 3.58]) == "two groups"  # the brown-char binary case
    assert shape_of([0.1, 0.2, 0.15, 0.3]) == ""
    records = [make_record(q, GRU, "pydoc-char", s, metric=v) for q, values in
               (("float", [2.0, 2.1, 2.2, 2.3, 2.4]), (TERNARY, [2.74, 2.9, 3.1, 3.3, 5.98])) for s, v in
               enumerate(values)]  # fmt: skip
    row = paired(load_runs(records)).set_index(["quantizer_label", "metric"]).loc[(TERNARY, "test_bpc")]
    assert row["shape"] == "two groups" and "two separate groups" in row["sentence"]
    assert row["test"] == "sign-flip" and row["p_value"] == pytest.approx(2 / 32)
    same = [make_record(q, GRU, "pydoc-char", s, metric=v) for q, values in
            (("float", [2.0, 2.1, 2.2]), (TERNARY, [2.01, 2.11, 2.21])) for s, v in enumerate(values)]  # fmt: skip
    row = paired(load_runs(same)).set_index(["quantizer_label", "metric"]).loc[(TERNARY, "test_bpc")]
    assert row["shape"] == "zero spread" and "no spread" in row["sentence"] and row["p_value"] == 0.25


def test_a_margin_gives_equivalent_and_inconclusive_verdicts_on_the_pages(tmp_path):
    from qbench.leaderboard import write_leaderboards

    rng = random.Random(2)
    base = [2.0 + rng.gauss(0, 0.05) for _ in range(8)]
    records = []
    for quantizer, offset, noise in (("float", 0.0, 0.0), (TERNARY, 0.002, 0.004),
                                     ("exponential(stochastic=false)", 0.0, 0.2)):  # fmt: skip
        for seed, b in enumerate(base):
            records.append(make_record(quantizer, GRU, "pydoc-char", seed, metric=b + offset + rng.gauss(0, noise)))
    protocol = Protocol(seeds=tuple(range(8)), baseline="float", margins=(("pydoc-char", "test_bpc", 0.02),))
    write_leaderboards(records, tmp_path, "margins", plots=False, protocol=protocol)
    rows = paired(load_runs(records), "float", 0.05, protocol).set_index(["quantizer_label", "metric"])
    assert rows.loc[(TERNARY, "test_bpc"), "verdict"] == "equivalent"
    wide = rows.loc[("exponential(stochastic=false)", "test_bpc")]
    assert wide["diff_ci95"] > 0.02 and wide["verdict"] == "inconclusive"
    page = (tmp_path / "leaderboard.md").read_text()
    assert "| equivalent" in page and "±0.02" in page and "Equivalence margins: test\\_bpc ±0.02" in page
    # without a margin the page says equivalence was not tested and never calls a method a match
    write_leaderboards(records, tmp_path / "none", "none", plots=False,
                       protocol=Protocol(seeds=tuple(range(8)), baseline="float"))
    page = (tmp_path / "none" / "leaderboard.md").read_text()
    assert "Equivalence was not tested: no margin is declared for test\\_bpc" in page and "| equivalent" not in page


def test_margins_are_declared_by_a_metric_and_set_by_the_matrix(tmp_path):
    assert check_metrics("language-model", (Metric("bpc", "bits", primary=True, margin=0.05),))
    with pytest.raises(MetricError, match="margin must be a positive finite number"):
        check_metrics("language-model", (Metric("bpc", "bits", primary=True, margin=-1.0),))
    from qbench.matrix import load_matrix

    path = write_matrix_file(tmp_path, "m", quantizers=("float", "ternary"), seeds=[0, 1])
    text = path.read_text() + "\n[compare]\nmargin = { test_bpc = 0.05 }\nclaim = \"non-inferiority\"\n"
    path.write_text(text)
    protocol = load_matrix(path).protocol
    assert protocol.margins == (("pydoc-char(max_chars=20000)", "test_bpc", 0.05),) or \
        protocol.margin_for(protocol.margins[0][0], "test_bpc") == 0.05
    assert protocol.claim == "non-inferiority"
    assert Protocol.from_dict(protocol.as_dict()) == protocol


@pytest.mark.parametrize(("table", "message"), [
    ("[compare]\nmargin = { test_bpx = 0.05 }", "is not a test metric of the matrix's datasets; known: test_bpc"),
    ("[compare]\nmargin = { test_bpc = -0.05 }", "must be a positive number"),
    ("[compare]\nmargin = { test_bpc = true }", "must be a positive number"),
    ("[compare]\nmargin = 0.05", "must be a table of test metrics"),
    ("[compare]\nclaim = \"superiority\"", "claim must be"),
    ("[compare]\nclaim = \"non-inferiority\"", "needs a margin"),
    ("[compare]\nmargins = {}", "unknown key(s) 'margins'"),
])  # fmt: skip
def test_margin_mistakes_are_usage_errors(tmp_path, table, message):
    from qbench.matrix import load_matrix

    path = write_matrix_file(tmp_path, "m", quantizers=("float", "ternary"), seeds=[0, 1])
    path.write_text(path.read_text() + "\n" + table + "\n")
    with pytest.raises(MatrixError) as info:
        load_matrix(path)
    assert message in str(info.value)


def test_a_margin_mistake_exits_4_on_the_command_line(tmp_path, capsys):
    from qbench.cli import main

    path = write_matrix_file(tmp_path, "m", quantizers=("float", "ternary"), seeds=[0, 1])
    path.write_text(path.read_text() + "\n[compare]\nmargin = { test_bpc = 0 }\n")
    assert main(["run", "--matrix", str(path), "--dry-run"]) == 4
    err = capsys.readouterr().err
    assert "margin test_bpc must be a positive number" in err and "Traceback" not in err


def test_holm_runs_across_difference_and_margin_tests_of_a_family():
    items = [(("d", "c", "m"), [0.01, -0.01, 0.005, 0.0, -0.005, 0.01, -0.01, 0.0], None, 0.05, "min"),
             (("d", "c", "m"), [0.2, 0.21, 0.19, 0.2, 0.22, 0.18, 0.2, 0.21], None, 0.05, "min")]  # fmt: skip
    judged = judge(items, "equivalence", 0.05)
    raw = sorted([j.evidence.p for j in judged] + [j.evidence.p_equiv for j in judged])
    adjusted = sorted([j.p_holm for j in judged] + [j.p_margin_holm for j in judged])
    assert adjusted[0] == pytest.approx(min(1.0, 4 * raw[0]))  # four hypotheses in the family
    assert math.isnan(examine([0.1]).p)


def test_compare_shows_each_sides_verdict_as_the_leaderboard_publishes_it():
    from qbench.leaderboard.audit.compare import Threshold, compare_records, render_comparison

    rng = random.Random(5)
    base = [2.0 + rng.gauss(0, 0.05) for _ in range(8)]
    records = [make_record(q, GRU, "pydoc-char", s, metric=b + offset + rng.gauss(0, 0.004))
               for q, offset in (("float", 0.0), (TERNARY, 0.002)) for s, b in enumerate(base)]  # fmt: skip
    with_margin = Protocol(seeds=tuple(range(8)), baseline="float", margins=(("pydoc-char", "test_bpc", 0.02),))
    without = Protocol(seeds=tuple(range(8)), baseline="float")
    comparison = compare_records(records, records, None, Threshold.parse("1%"), (without, with_margin))
    row = comparison.rows.set_index("quantizer_label").loc[TERNARY]
    expected = paired(load_runs(records), "float", 0.05, with_margin).set_index("quantizer_label")
    assert row["b_verdict"] == expected.loc[TERNARY].query("metric == 'test_bpc'")["verdict"].iloc[0] == "equivalent"
    assert row["a_verdict"] == "inconclusive"
    assert "inconclusive -> equivalent" in render_comparison(comparison, "a", "b", Threshold.parse("1%"))


def _margin_plugin(margin: float):
    import dataclasses
    import types

    from qbench_builtins.datasets.pydoc_char import PydocChar

    import qbench

    metrics = tuple(dataclasses.replace(m, margin=margin) for m in PydocChar.metrics)
    dataset = type("MarginChar", (PydocChar,), {"name": "margin-char", "metrics": metrics})
    plugin = types.SimpleNamespace(__name__="margins")
    plugin.qbench_register_datasets = qbench.hookimpl(specname="qbench_register_datasets")(lambda: [dataset])
    return plugin


@pytest.mark.slow
def test_a_dataset_declaring_a_margin_gets_equivalence_verdicts_on_a_real_run(tmp_path, data_cache, monkeypatch):
    """Seven seeds of float and ternary on a tiny model: within a generous declared margin they are
    equivalent; the matrix's much narrower margin makes the same records inconclusive."""
    import json

    from qbench.driver import RunOptions, run_matrix
    from qbench.leaderboard.render.writers import table_rows
    from qbench.testing import registered_plugins

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    settings = dict(quantizers=("float", "ternary"), cells=(("rnn", {"hidden": 8}),),
                    datasets=(("margin-char", {"max_chars": 20000}),), seeds=list(range(7)), epochs=1, batch=16,
                    bptt=20, max_steps=3, eval_tokens=300)  # fmt: skip
    path = write_matrix_file(tmp_path, "margins", **settings)
    out = tmp_path / "out"
    with registered_plugins(_margin_plugin(2.0), load_entry_points=True) as host:
        assert run_matrix(path, RunOptions(out=out, workers=1, progress=False), host=host) == 0
        row = {r["metric"]: r for r in table_rows(json.loads((out / "leaderboard.json").read_text())["paired"])}
        assert row["test_bpc"]["margin"] == 2.0 and row["test_bpc"]["verdict"] == "equivalent"
        assert "Equivalence margins: test\\_bpc ±2" in (out / "leaderboard.md").read_text()
        # the matrix overrides the dataset's margin: far narrower than the interval
        path.write_text(path.read_text() + "\n[compare]\nmargin = { test_bpc = 0.000001 }\n")
        assert run_matrix(path, RunOptions(out=out, workers=1, progress=False), host=host) == 0
    row = {r["metric"]: r for r in table_rows(json.loads((out / "leaderboard.json").read_text())["paired"])}
    assert row["test_bpc"]["margin"] == 0.000001 and row["test_bpc"]["diff_ci95"] > 0.000001
    assert row["test_bpc"]["verdict"] in ("inconclusive", "better", "worse")
