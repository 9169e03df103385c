"""Matrix throughput of the executors, and what an executor costs per case.

* **Speed-up**: a CPU-bound matrix of 8 real cases (``gru`` hidden 64 on a 200,000-character
  ``pydoc-char``, ``MAX_STEPS`` steps of batch 32 x BPTT 50 each, about 2 s on one core, one torch
  thread per case) run in process (``--workers 1``) and on a warm 2-process pool, alternating,
  after a warm-up; the figure is the median of the per-round ratios (in-process wall / pool wall).
  Target: at least 1.7 on 2 cores. Dask (2 local worker processes) is timed the same way, in a
  phase of its own: an idle Dask cluster slows everything else on 2 cores by about a quarter.
* **Overhead per case**: 8 nearly free real cases (one training step) through a *fresh*
  executor, start-up and shut-down included, minus the same cases in process, divided by the
  number of cases. Target: under 1 s per case.

Run: ``pytest benchmarks/test_bench_executors.py --benchmark-json=.benchmarks/executors.json -s``.
The machine's other load shows in the speed-up (two workers need two idle cores), so a control is
measured in the same run, before and after: what 2 processes of pure Python gain over 1. When the
machine itself cannot give 1.7, a miss of the target is reported as an expected failure with both
figures rather than as a failure of the executor.
"""

from __future__ import annotations

import os
import statistics
import time
from pathlib import Path

import pytest

from qbench.executors import get_executor
from qbench.matrix import expand, load_matrix

pytest.importorskip("torch")

MATRIX = """\
name = "bench-{name}"
seeds = {seeds}

[[quantizer]]
name = "float"

[[cell]]
name = "gru"
hidden = 64

[[dataset]]
name = "pydoc-char"
max_chars = 200000

[train]
epochs = 1
batch = 32
bptt = 50
max_steps = {max_steps}
eval_tokens = 2000
hardware_tokens = 100
"""
CASES = 8
MAX_STEPS = 120
ROUNDS = 3


@pytest.fixture(scope="module", autouse=True)
def data_cache(tmp_path_factory):
    previous = os.environ.get("QBENCH_DATA")
    os.environ["QBENCH_DATA"] = str(tmp_path_factory.mktemp("qbench-data"))
    yield
    if previous is None:
        os.environ.pop("QBENCH_DATA", None)
    else:
        os.environ["QBENCH_DATA"] = previous


def make_cases(directory: Path, name: str, max_steps: int, seeds: int = CASES) -> list:
    path = directory / f"{name}.toml"
    path.write_text(MATRIX.format(name=name, seeds=list(range(seeds)), max_steps=max_steps))
    return expand(load_matrix(path))


def timed_run(executor, cases) -> float:
    start = time.perf_counter()
    records = list(executor.run(cases))
    elapsed = time.perf_counter() - start
    assert len(records) == len(cases) and all(r["status"] == "ok" for r in records), [r["error"] for r in records]
    return elapsed


def _load() -> float:
    return os.getloadavg()[0]


def _spin(n: int) -> int:
    total = 0
    for i in range(n):
        total += i * i
    return total


def control_speedup(n: int = 2_000_000) -> float:
    """What two processes gain over one on this machine right now, for pure Python work (no qbench).

    Other processes holding the cores show here first: a pool cannot beat what the machine gives.
    """
    import multiprocessing as mp

    start = time.perf_counter()
    for _ in range(4):
        _spin(n)
    one = time.perf_counter() - start
    with mp.get_context("spawn").Pool(2) as pool:
        pool.map(_spin, [1, 1])  # start-up outside the timing
        start = time.perf_counter()
        pool.map(_spin, [n] * 4, chunksize=1)
        two = time.perf_counter() - start
    return one / two


def test_two_workers_against_one_on_a_cpu_bound_matrix(benchmark, tmp_path):
    controls = [control_speedup()]
    cases = make_cases(tmp_path, "speedup", MAX_STEPS)
    warmup = make_cases(tmp_path, "warmup", 2, seeds=2)
    times: dict[str, list[float]] = {"in-process": [], "pool-2": [], "dask-2": []}
    # One multi-process executor alive at a time: an idle Dask cluster's event loops cost the
    # others about a quarter of their speed on 2 cores (measured), which is not what is compared.
    for other, make in (("pool-2", lambda: get_executor("local", 2)), ("dask-2", lambda: get_executor("dask", 2))):
        executors = {"in-process": get_executor("local", 1), other: make()}
        try:
            for executor in executors.values():  # imports, worker start-up, first-call kernels
                timed_run(executor, warmup)
            for index in range(ROUNDS):
                order = ["in-process", other] if index % 2 == 0 else [other, "in-process"]
                for name in order:
                    times[name].append(timed_run(executors[name], cases))
            if other == "pool-2":
                benchmark.pedantic(timed_run, args=(executors["pool-2"], cases), rounds=1, iterations=1)
        finally:
            for executor in executors.values():
                executor.close()
    controls.append(control_speedup())
    # in-process was timed twice as often (once beside each other executor): pair each round with its neighbour
    reference = {"pool-2": times["in-process"][:ROUNDS], "dask-2": times["in-process"][ROUNDS:]}
    speedups = {name: statistics.median(a / b for a, b in zip(reference[name], times[name], strict=True))
                for name in ("pool-2", "dask-2")}
    benchmark.extra_info.update({f"{name}_seconds": statistics.median(t) for name, t in times.items()})
    benchmark.extra_info.update({f"speedup_{name}": s for name, s in speedups.items()})
    benchmark.extra_info["load_average"] = _load()
    benchmark.extra_info["control_speedup"] = control = statistics.median(controls)
    print(f"\n{CASES} cases x {MAX_STEPS} steps: " + ", ".join(
        f"{name} {statistics.median(t):.1f} s" for name, t in times.items()))
    print(f"speed-up over 1 worker: pool-2 x{speedups['pool-2']:.2f}, dask-2 x{speedups['dask-2']:.2f} "
          f"(cores {os.cpu_count()}, load average {_load():.1f}); the machine itself gives x{control:.2f} "
          "to 2 processes of pure Python")
    if speedups["pool-2"] < 1.7 and control < 1.7:
        pytest.xfail(f"not measurable here: 2 processes of pure Python get only x{control:.2f} on this machine now "
                     "(other processes hold the cores a second worker needs)")
    assert speedups["pool-2"] >= 1.7, "2 workers should be at least 1.7x faster than 1 on 2 idle cores"


def test_executor_overhead_per_case(benchmark, tmp_path):
    cases = make_cases(tmp_path, "overhead", 1)
    in_process = get_executor("local", 1)
    timed_run(in_process, cases[:2])  # warm-up: imports, dataset cache, first kernels
    reference = timed_run(in_process, cases)
    overhead: dict[str, float] = {}
    for name, workers in (("pool-2", 2), ("dask-2", 2)):
        start = time.perf_counter()
        executor = get_executor("local" if name.startswith("pool") else "dask", workers)
        try:
            timed_run(executor, cases)
        finally:
            executor.close()
        overhead[name] = (time.perf_counter() - start - reference) / len(cases)
    pool = get_executor("local", 2)
    try:
        timed_run(pool, cases)
        warm = statistics.median(timed_run(pool, cases) for _ in range(3))
        benchmark.pedantic(timed_run, args=(pool, cases), rounds=1, iterations=1)
    finally:
        pool.close()
    # a warm pool: what dispatching a case and returning its record costs, beyond half the work
    overhead["pool-2 warm"] = (warm - reference / 2) / len(cases)
    benchmark.extra_info.update({f"overhead_{k}": v for k, v in overhead.items()})
    benchmark.extra_info["in_process_seconds_per_case"] = reference / len(cases)
    print(f"\nin process {1e3 * reference / len(cases):.0f} ms per case; executor overhead per case: " + ", ".join(
        f"{name} {1e3 * value:.0f} ms" for name, value in overhead.items())
        + f" (load average {_load():.1f})")
    assert max(overhead.values()) < 1.0
