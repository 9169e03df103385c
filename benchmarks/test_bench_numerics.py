"""What the portable numerics mode costs per training step (issue "Numbers that travel").

Two worker processes, one started with the portable pins (qbench.numerics.pinned_environment) and
one without, each holding the same model: qbench's GRU language model (hidden 256, batch 32, BPTT
100, embedding 64, vocabulary 50, one torch thread, the sizes of test_bench_cells.py) with the
float and the ternary quantizer. The driver asks them for one training step in turn, round after
round, so that both see the same load; each reports the step's CPU time (the 2-core machines are
shared: wall time mostly measures the neighbours). The ratio is the median of the per-round
ratios portable / native.

Run: ``pytest benchmarks/test_bench_numerics.py --benchmark-json=.benchmarks/numerics.json``.
"""

from __future__ import annotations

import multiprocessing as mp
import statistics
import time
from typing import Any

import pytest

from qbench.numerics import NATIVE, PORTABLE, environment_for_children, machine_problems, pinned_environment

ROUNDS = 15
WARMUP = 3


def _worker(conn: Any, quantizer: str) -> None:
    """Child: build the step once, then time one step per request (CPU time of this process)."""
    import torch

    import qbench
    from benchmarks.test_bench_cells import qbench_step
    from qbench.numerics import provenance_facts

    torch.set_num_threads(1)
    step = qbench_step("gru", qbench.create("quantizer", quantizer))
    conn.send(provenance_facts())
    while conn.recv():
        start = time.process_time()
        step()
        conn.send(time.process_time() - start)


def _start(mode: str, quantizer: str) -> tuple[Any, Any, dict]:
    ctx = mp.get_context("spawn")
    here, there = ctx.Pipe()
    process = ctx.Process(target=_worker, args=(there, quantizer))
    with environment_for_children(pinned_environment(mode)):
        process.start()
    there.close()
    return process, here, here.recv()


def _step(conn: Any) -> float:
    conn.send(True)
    return float(conn.recv())


@pytest.mark.skipif(bool(machine_problems(PORTABLE)), reason="this CPU cannot give the portable mode")
@pytest.mark.parametrize("quantizer", ["float", "ternary"])
def test_portable_step_vs_native(benchmark, quantizer):
    workers = {mode: _start(mode, quantizer) for mode in (NATIVE, PORTABLE)}
    try:
        assert workers[PORTABLE][2]["numerics"] == PORTABLE, workers[PORTABLE][2]
        assert workers[NATIVE][2]["numerics"] == NATIVE
        for _ in range(WARMUP):
            for _process, conn, _facts in workers.values():
                _step(conn)
        ratios, times = [], {NATIVE: [], PORTABLE: []}

        def one_round() -> None:
            native = _step(workers[NATIVE][1])
            portable = _step(workers[PORTABLE][1])
            times[NATIVE].append(native)
            times[PORTABLE].append(portable)
            ratios.append(portable / native)

        benchmark.pedantic(one_round, rounds=ROUNDS, iterations=1)
    finally:
        for process, conn, _facts in workers.values():
            try:
                conn.send(False)
            except OSError:
                pass
            process.join(timeout=10)
            if process.is_alive():
                process.kill()
    ratio = statistics.median(ratios)
    benchmark.extra_info.update({
        "ratio_portable_over_native": round(ratio, 3),
        "native_step_cpu_s": round(statistics.median(times[NATIVE]), 4),
        "portable_step_cpu_s": round(statistics.median(times[PORTABLE]), 4),
        "native_kernels": workers[NATIVE][2]["aten_cpu_capability"],
        "cpu": workers[NATIVE][2]["cpu_model"],
    })
    print(f"\nportable / native training step, gru-256 {quantizer}: {ratio:.3f} "
          f"(native {statistics.median(times[NATIVE]):.4f} s, portable {statistics.median(times[PORTABLE]):.4f} s "
          f"CPU; native kernels {workers[NATIVE][2]['aten_cpu_capability']})")
