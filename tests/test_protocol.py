"""The fair protocol as pure functions: selection on validation, the seed rule, Holm, matrix syntax."""

from __future__ import annotations

import json
import math

import pytest

from qbench.errors import MatrixError
from qbench.matrix import expand, load_matrix
from qbench.protocol import Observation, Protocol, SeedRule, canonical, decide, select
from qbench.stats import holm, paired_p_value, summarize

from .matrices import write_matrix_file

POINTS = [canonical({"train.lr": lr}) for lr in (0.001, 0.01, 0.1)]
# the baseline a matrix resolves (its own, else the quantizer declaring baseline = True): named here
GRID = Protocol(seeds=(0, 1, 2, 3, 4, 5), rule=SeedRule(3, 6, 0.05), grid=(("train.lr", (0.001, 0.01, 0.1)),),
                baseline="float")


def obs(quantizer, point, seed, valid, primary=math.nan, status="ok", cell="gru"):
    return Observation(("d", cell, quantizer), quantizer, point, seed, status, valid, primary)


def test_selection_takes_the_best_validation_mean_and_never_the_test_value():
    rows = [obs("ternary", POINTS[0], 0, 2.0, primary=1.0), obs("ternary", POINTS[1], 0, 1.5, primary=9.0),
            obs("ternary", POINTS[2], 0, 1.7, primary=0.1)]  # fmt: skip
    chosen = select(rows, GRID, {"d": "min"})[("d", "gru", "ternary")]
    assert chosen.chosen == POINTS[1]  # best valid, although its test value is the worst
    assert [p.mean for p in chosen.points] == [2.0, 1.5, 1.7]
    # a "max" metric chooses the highest
    assert select(rows, GRID, {"d": "max"})[("d", "gru", "ternary")].chosen == POINTS[0]


def test_selection_ties_go_to_the_first_point_and_failures_are_not_eligible():
    rows = [obs("t", POINTS[0], 0, 1.5), obs("t", POINTS[1], 0, 1.5), obs("t", POINTS[2], 0, 0.1, status="diverged")]
    selection = select(rows, GRID, {"d": "min"})[("d", "gru", "t")]
    assert selection.chosen == POINTS[0]
    assert [p.eligible for p in selection.points] == [True, True, False]
    nothing = select([obs("t", p, 0, 1.0, status="diverged") for p in POINTS], GRID, {"d": "min"})
    assert nothing[("d", "gru", "t")].chosen is None


def test_selection_averages_the_tuning_seeds_only():
    protocol = Protocol(seeds=(0, 1, 2), grid=GRID.grid, tuning_seeds=2)
    rows = [obs("t", POINTS[0], 0, 1.0), obs("t", POINTS[0], 1, 3.0), obs("t", POINTS[0], 2, 0.0),
            obs("t", POINTS[1], 0, 1.9), obs("t", POINTS[1], 1, 1.9)]  # fmt: skip
    selection = select(rows, protocol, {"d": "min"})[("d", "gru", "t")]
    assert selection.points[0].mean == 2.0  # seed 2 is not a tuning seed
    assert selection.chosen == POINTS[1]
    assert not selection.complete  # the third point has no stored run yet


def _evaluated(method, base, seeds_values):
    rows = []
    for seed, (a, b) in enumerate(seeds_values):
        rows.append(obs(method, POINTS[1], seed, 1.0, primary=a))
        rows.append(obs(base, POINTS[1], seed, 1.0, primary=b))
    return rows


def test_steins_first_stage_fixes_the_seeds_and_later_seeds_never_change_it():
    from qbench.stats import stein_seeds, t975

    noisy = _evaluated("ternary", "float", [(1.0, 1.2), (1.5, 1.0), (1.1, 1.1)])
    comparison = decide(noisy, GRID, {"d": "min"}).comparisons[("d", "gru", "ternary")]
    s1 = summarize([-0.2, 0.5, 0.0])["std"]
    expected = min(6, max(3, math.ceil((t975(2) * s1 / 0.05) ** 2)))
    assert (comparison.seeds, comparison.first_n) == (expected, 3) and comparison.first_std == pytest.approx(s1)
    assert comparison.reason == "maximum reached" and expected == 6
    # the seeds it added do not reopen the decision, however they fall
    more = noisy + _evaluated("ternary", "float", [(0, 0)] * 6)[6:]
    assert decide(more, GRID, {"d": "min"}).comparisons[("d", "gru", "ternary")].seeds == 6
    # constant differences: the first stage is precise, N stays at the minimum
    steady = _evaluated("ternary", "float", [(1.1, 1.0), (1.2, 1.1), (1.3, 1.2)])
    comparison = decide(steady, GRID, {"d": "min"}).comparisons[("d", "gru", "ternary")]
    assert (comparison.seeds, comparison.reason) == (3, "precise")
    # N from the formula: s = 0.03 needs (4.303 * 0.03 / 0.05)^2 = 6.67 -> 7 seeds, capped at the maximum
    assert stein_seeds(0.03, 3, 0.05, 3, 10) == 7 and stein_seeds(0.03, 3, 0.05, 3, 6) == 6
    assert stein_seeds(0.0, 3, 0.05, 3, 10) == 3
    # the first stage incomplete: waiting for it
    partial = _evaluated("ternary", "float", [(1.0, 1.2), (1.5, 1.0)])
    comparison = decide(partial, GRID, {"d": "min"}).comparisons[("d", "gru", "ternary")]
    assert (comparison.seeds, comparison.reason) == (3, "waiting for seeds")


def test_seed_rule_gives_the_baseline_the_seeds_of_its_longest_comparison():
    rows = _evaluated("ternary", "float", [(1, 2), (2, 1), (1, 2), (2, 1), (1, 2), (2, 1)])
    rows += [obs("exponential", POINTS[1], s, 1.0, primary=rows[2 * s + 1].primary + 0.1) for s in range(3)]
    decisions = decide(rows, GRID, {"d": "min"})
    assert decisions.seeds[("d", "gru", "exponential")] == 3
    assert decisions.seeds[("d", "gru", "ternary")] == 6
    assert decisions.seeds[("d", "gru", "float")] == 6
    assert decisions.evaluation_seeds(("d", "gru", "exponential")) == {0, 1, 2}


def test_holm_matches_a_hand_computation():
    assert holm([0.01, 0.04, 0.03, math.nan]) == pytest.approx([0.03, 0.06, 0.06, math.nan], nan_ok=True)
    assert holm([0.5, 0.9]) == [1.0, 1.0]
    assert holm([]) == []


def test_paired_p_value_is_scipys_paired_t_test():
    from scipy import stats

    a, b = [1.0, 1.3, 0.9, 1.4], [0.8, 1.0, 1.0, 1.1]
    diffs = [x - y for x, y in zip(a, b, strict=True)]
    s = summarize(diffs)
    assert paired_p_value(s["mean"], s["std"], 4) == pytest.approx(stats.ttest_rel(a, b).pvalue, rel=1e-9)
    assert math.isnan(paired_p_value(0.1, 0.2, 1))


def test_identical_differences_use_the_exact_sign_flip_test_not_an_infinite_t():
    # three seeds each one test item better: the t statistic is infinite, the evidence is not
    assert paired_p_value(1 / 600, 0.0, 3) == 0.25
    assert paired_p_value(-0.5, 0.0, 8) == 2 / 2**8
    assert paired_p_value(0.0, 0.0, 5) == 1.0


# -- the matrix syntax ---------------------------------------------------------------------------


def _matrix(tmp_path, **kwargs):
    kwargs.setdefault("quantizers", ("float", "ternary"))
    return load_matrix(write_matrix_file(tmp_path, "fair", **kwargs))


def test_tune_and_seed_rule_parse_into_the_protocol(tmp_path):
    matrix = _matrix(tmp_path, seeds={"min": 3, "max": 6, "precision": 0.05}, tune={"train.lr": [0.001, 0.01]})
    protocol = matrix.protocol
    assert protocol.grid == (("train.lr", (0.001, 0.01)),) and protocol.rule == SeedRule(3, 6, 0.05)
    assert protocol.seeds == (0, 1, 2, 3, 4, 5) and protocol.tuning_seed_list == (0,)
    cases = expand(matrix)  # the grid on the tuning seed, for both methods
    assert [(c.quantizer.name, c.train["lr"], c.seed) for c in cases] == [
        ("float", 0.001, 0), ("float", 0.01, 0), ("ternary", 0.001, 0), ("ternary", 0.01, 0)]  # fmt: skip
    assert {c.quantizer.label for c in cases} == {"float", "ternary"}  # tuned values stay out of the label
    assert Protocol.from_dict(json.loads(json.dumps(protocol.as_dict()))) == protocol


def test_a_grid_point_is_the_same_case_as_the_untuned_matrix(tmp_path):
    tuned = expand(_matrix(tmp_path, tune={"train.lr": [0.001, 0.01]}))
    plain = expand(load_matrix(write_matrix_file(tmp_path, "plain", quantizers=("float",), lr=0.01)))
    assert plain[0].case_id in {c.case_id for c in tuned}  # stored grid points are reused


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"tune": {"train.lr": []}}, "non-empty list"),
    ({"tune": {"train.nope": [1]}}, "unknown [train] key"),
    ({"tune": {"train.lr": [0.01, 0.01]}}, "lists a value twice"),
    ({"tune": {"train.lr": [-1.0]}}, "[tune] train.lr"),
    ({"tune": {"quantizer.e_min": [-8, -4]}}, "has no parameter 'e_min'"),
    ({"tune": {"train.lr": [0.01], "seeds": 5}}, "more than the"),
    ({"tune": {"train.lr": [0.01], "metric": "test_bpc"}}, "validation metric"),
    ({"tune": {"lr": [0.01]}}, "unknown key"),
    ({"seeds": {"min": 4, "max": 3, "precision": 0.1}}, "1 <= min <= max"),
    ({"seeds": {"min": 1, "max": 3, "precision": 0}}, "precision must be a positive number"),
    ({"seeds": {"min": 1, "max": 3, "precision": 0.1, "step": 1}}, "unknown key"),
    ({"lr": [0.01, 0.1]}, "write it under [tune]"),
])  # fmt: skip
def test_protocol_mistakes_are_usage_errors(tmp_path, kwargs, message):
    with pytest.raises(MatrixError, match=None) as caught:
        _matrix(tmp_path, **kwargs)
    assert message in str(caught.value)


def test_a_tuned_component_parameter_must_not_be_set_on_the_axis_too(tmp_path):
    with pytest.raises(MatrixError, match="sets it too"):
        _matrix(tmp_path, quantizers=(("ternary", {"stochastic": True}),), tune={"quantizer.stochastic": [True]})
    matrix = _matrix(tmp_path, quantizers=("ternary", "binary"), tune={"quantizer.stochastic": [False, True]})
    assert {c.quantizer.params["stochastic"] for c in expand(matrix)} == {False, True}


def test_every_ready_matrix_loads_and_the_paper_profiles_use_the_fair_protocol():
    from pathlib import Path

    ready = sorted((Path(__file__).parent.parent / "matrices").glob("*.toml"))
    assert ready
    for path in ready:
        matrix = load_matrix(path)
        assert expand(matrix), path
        if path.stem.startswith("ott2016-") or path.stem == "quickstart":
            protocol = matrix.protocol
            assert protocol.min_seeds >= 3 and [key for key, _ in protocol.grid] == ["train.lr"], path
            assert len(protocol.grid[0][1]) >= 3 and protocol.baseline == "float", path
