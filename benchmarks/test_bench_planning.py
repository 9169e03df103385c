"""Expanding and planning a 10,000-case matrix (target: under 2 s), and its peak memory.

The matrix is generated: ``float`` x ``rnn`` with 100 hidden sizes (a list-valued parameter, so
the grid is expanded and every point validated) x ``pydoc-char`` x 100 seeds = 10,000 cases. The
store already holds half of them (written in the setup, not timed), so planning really has to
split stored from pending. Timed: reading and validating the matrix file, expanding it (a stable
case id per case), reading the stored statuses and the plan itself, i.e. everything ``qbench run``
does before the first case goes out. Peak Python memory is measured in a separate pass with
tracemalloc (which slows the code down, so it is not timed).

Run: ``pytest benchmarks/test_bench_planning.py --benchmark-json=.benchmarks/planning.json -s``.
"""

from __future__ import annotations

import statistics
import time
import tracemalloc

import pytest

from qbench.driver import plan
from qbench.matrix import expand, load_matrix
from qbench.store import Store

HIDDEN = list(range(8, 108))
SEEDS = list(range(100))
ROUNDS = 5

MATRIX = f"""\
name = "scale"
seeds = {SEEDS}

[[quantizer]]
name = "float"

[[cell]]
name = "rnn"
hidden = {HIDDEN}

[[dataset]]
name = "pydoc-char"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    directory = tmp_path_factory.mktemp("planning")
    path = directory / "scale.toml"
    path.write_text(MATRIX)
    cases = expand(load_matrix(path))
    assert len(cases) == len(HIDDEN) * len(SEEDS) == 10_000
    store = Store(directory / "qbench.sqlite")
    for case in cases[::2]:
        store.put({"case_id": case.case_id, "matrix": case.matrix, "status": "ok", "seed": case.seed})
    yield path, store
    store.close()


def plan_matrix(path, store):
    cases = expand(load_matrix(path))
    return plan(cases, store.statuses())


def test_expand_and_plan_10000_cases(benchmark, setup):
    path, store = setup
    plan_matrix(path, store)  # warm-up: registries, imports
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        the_plan = plan_matrix(path, store)
        times.append(time.perf_counter() - start)
    benchmark.pedantic(plan_matrix, args=(path, store), rounds=1, iterations=1)
    assert len(the_plan.cases) == 10_000 and len(the_plan.pending) == 5_000

    start = time.perf_counter()
    cases = expand(load_matrix(path))
    expand_seconds = time.perf_counter() - start

    tracemalloc.start()
    plan_matrix(path, store)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()

    median = statistics.median(times)
    benchmark.extra_info.update(plan_seconds=median, expand_seconds=expand_seconds, peak_mib=peak / 2**20,
                                cases=len(cases))
    print(f"\n10,000 cases: load + expand {expand_seconds:.2f} s, load + expand + plan against a store of "
          f"5,000 {median:.2f} s (median of {ROUNDS}); peak Python memory {peak / 2**20:.1f} MiB")
    assert median < 2.0


# -- the same scale with the fair protocol: a grid and a seed rule ----------------------------------

PROTOCOL_MATRIX = f"""\
name = "scale-fair"
seeds = {{ min = 3, max = 97, precision = 0.01 }}

[[quantizer]]
name = "float"

[[quantizer]]
name = "ternary"

[[cell]]
name = "rnn"
hidden = {HIDDEN[:50]}

[[dataset]]
name = "pydoc-char"

[tune]
train.lr = [0.001, 0.003, 0.01, 0.03]
extend = 0  # 10,000 cases as before grid extension existed (lr 0.003 is inside the grid anyway)
"""


@pytest.fixture(scope="module")
def protocol_setup(tmp_path_factory):
    """100 methods (float and ternary x 50 sizes) x (4 grid points on seed 0 + 96 more seeds) = 10,000
    cases at most; the store
    holds every tuning case and the first three seeds of each chosen configuration."""
    from qbench.expanded import ExpandedMatrix
    from qbench.planning import next_cases

    directory = tmp_path_factory.mktemp("planning-fair")
    path = directory / "scale-fair.toml"
    path.write_text(PROTOCOL_MATRIX)
    matrix = ExpandedMatrix.of(load_matrix(path))
    assert matrix.max_cases == 10_000
    store = Store(directory / "qbench.sqlite")
    directions = {"test_bpc": "min", "valid_bpc": "min"}
    for case in matrix.cases:  # the grid: lr 0.003 is best for every method
        store.put({"case_id": case.case_id, "matrix": case.matrix, "status": "ok", "seed": case.seed,
                   "directions": directions, "valid_bpc": abs(case.train["lr"] - 0.003) + 1.0, "test_bpc": 1.0})
    done = lambda case_id, record: record.get("status") == "ok"  # noqa: E731
    lookup = lambda cases: store.records_for([c.case_id for c in cases])  # noqa: E731
    first = next_cases(matrix, lookup, done)
    for case in first.cases:  # seeds 0-2 of the chosen configurations, noisy: the rule asks for more
        store.put({"case_id": case.case_id, "matrix": case.matrix, "status": "ok", "seed": case.seed,
                   "directions": directions, "valid_bpc": 1.0,
                   "test_bpc": 1.0 + 0.1 * (case.seed % 2) * (case.quantizer.name == "ternary")})
    yield path, store, lookup, done
    store.close()


def plan_protocol(path, lookup, done):
    from qbench.expanded import ExpandedMatrix
    from qbench.planning import next_cases

    return next_cases(ExpandedMatrix.of(load_matrix(path)), lookup, done)


def test_plan_10000_cases_with_a_grid_and_a_seed_rule(benchmark, protocol_setup):
    path, store, lookup, done = protocol_setup
    plan_protocol(path, lookup, done)  # warm-up
    times = []
    for _ in range(ROUNDS):
        start = time.perf_counter()
        the_round = plan_protocol(path, lookup, done)
        times.append(time.perf_counter() - start)
    benchmark.pedantic(plan_protocol, args=(path, lookup, done), rounds=1, iterations=1)
    # Stein's second stage asks for every seed a comparison needs in one round: the noisy first stage
    # puts each method at the maximum, seeds 3-96 of 100 methods
    assert the_round.phase == "evaluation" and len(the_round.cases) == 9_400
    median = statistics.median(times)
    benchmark.extra_info.update(plan_seconds=median)
    print(f"\n10,000-case matrix with a 4-point grid and a seed rule (3-97 seeds): load + decide + plan the next "
          f"round against a store of 700 records {median:.2f} s (median of {ROUNDS})")
    assert median < 2.0
