"""Throughput of the integer shift-add simulator against float32 torch inference of the same model.

One character stream (batch 1, the simulator's language-model case), vocabulary 50 one-hot
inputs, one recurrent layer of hidden 256, the output layer included on both sides. The torch
side is ``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM`` plus ``nn.Linear`` holding the exported model's
(quantized) weights in float32, under ``torch.no_grad()``; the simulator side is the vectorised
integer engine on the built program (building it, the float64 reference and the metrics are not
timed: they are per-case costs, not per-token ones). After a warm-up the two alternate every
round; the figure is the median over rounds of torch time / simulator time, i.e. the simulator's
throughput as a fraction of torch's, on process CPU time (robust to other work on a shared
machine; wall-time ratios are printed beside it). Target: at least :data:`MIN_THROUGHPUT_RATIO`.

Both sides use one thread (torch.set_num_threads(1); BLAS limited through threadpoolctl when
installed). Run: ``pytest benchmarks/test_bench_simulator.py --benchmark-json=.benchmarks/sim.json``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import pytest

from qbench.testing.hardware import random_exported_model

torch = pytest.importorskip("torch")

HIDDEN, VOCAB, TOKENS = 256, 50, 1000
ROUNDS, WARMUP = 7, 2
MIN_THROUGHPUT_RATIO = 0.3
CASES = [
    (cell, scheme) for cell in ("rnn", "gru", "lstm") for scheme in ("ternary", "pow2-ternary", "exponential")
]
TORCH_MODULES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - BLAS keeps its default
        limits = contextlib.nullcontext()
    else:
        limits = threadpool_limits(1)
    with limits:
        yield
    torch.set_num_threads(previous)


def torch_inference(model: Any, tokens: np.ndarray) -> Callable[[], Any]:
    layer = model.layers[0]
    rnn = getattr(torch.nn, TORCH_MODULES[layer.cell])(layer.input_size, layer.hidden_size)
    output = torch.nn.Linear(layer.hidden_size, model.n_outputs)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(layer.w_input.values))
        rnn.weight_hh_l0.copy_(torch.from_numpy(layer.w_recurrent.values))
        rnn.bias_ih_l0.copy_(torch.from_numpy(layer.b_input.values))
        rnn.bias_hh_l0.copy_(torch.from_numpy(layer.b_recurrent.values))
        output.weight.copy_(torch.from_numpy(model.output_weight))
        output.bias.copy_(torch.from_numpy(model.output_bias))
    x = torch.nn.functional.one_hot(torch.from_numpy(tokens), VOCAB).float().unsqueeze(1)

    def run() -> Any:
        with torch.no_grad():
            y, _ = rnn(x)
            return output(y)

    return run


def simulator_inference(model: Any, tokens: np.ndarray) -> Callable[[], Any]:
    from qbench_builtins.hardware import engine
    from qbench_builtins.hardware.program import SimConfig, build_program

    program = build_program(model, SimConfig())
    inputs = tokens[:, None]
    return lambda: engine.run(program, inputs)


def paired_ratio(reference: Callable[[], Any], candidate: Callable[[], Any]) -> dict[str, float]:
    """Median over rounds of reference time / candidate time (throughput of candidate vs reference).

    Both the process CPU time (the headline: both sides are single-threaded, and it does not count
    the time other processes on a shared machine take from this one) and the wall time are kept.
    """
    for _ in range(WARMUP):
        reference()
        candidate()
    cpu: dict[str, list[float]] = {"reference": [], "candidate": [], "ratio": []}
    wall: dict[str, list[float]] = {"reference": [], "candidate": [], "ratio": []}
    for index in range(ROUNDS):
        order = (("reference", reference), ("candidate", candidate))
        for name, step in order if index % 2 == 0 else order[::-1]:
            start_cpu, start_wall = time.process_time(), time.perf_counter()
            step()
            cpu[name].append(time.process_time() - start_cpu)
            wall[name].append(time.perf_counter() - start_wall)
        for times in (cpu, wall):
            times["ratio"].append(times["reference"][-1] / max(times["candidate"][-1], 1e-9))
    return {
        "throughput_ratio": statistics.median(cpu["ratio"]),
        "throughput_ratio_wall": statistics.median(wall["ratio"]),
        "torch_us_per_token": 1e6 * statistics.median(cpu["reference"]) / TOKENS,
        "simulator_us_per_token": 1e6 * statistics.median(cpu["candidate"]) / TOKENS,
    }


@pytest.fixture(scope="module")
def table(request):
    rows: list[str] = []
    yield rows
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and rows:
        with capture.global_and_fixture_disabled():
            print(
                f"\n\nshift-add simulator vs float32 torch inference: hidden {HIDDEN}, vocab {VOCAB}, "
                f"{TOKENS} tokens, batch 1, one thread"
            )
            print("case                      torch us/token  simulator us/token  ratio (cpu)  ratio (wall)")
            for row in rows:
                print(row)


@pytest.mark.parametrize(("cell", "scheme"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_simulator_throughput_vs_torch(benchmark, table, cell: str, scheme: str) -> None:
    model = random_exported_model(cell, scheme, hidden=HIDDEN, input_size=VOCAB, seed=0)
    tokens = np.random.default_rng(0).integers(0, VOCAB, TOKENS)
    with one_thread():
        reference, candidate = torch_inference(model, tokens), simulator_inference(model, tokens)
        figures = paired_ratio(reference, candidate)
        benchmark.extra_info.update(figures)
        benchmark.pedantic(candidate, rounds=1, iterations=1)
    table.append(
        f"{cell + '-' + scheme:<26}{figures['torch_us_per_token']:>14.1f}{figures['simulator_us_per_token']:>20.1f}"
        f"{figures['throughput_ratio']:>13.2f}{figures['throughput_ratio_wall']:>14.2f}"
    )
    assert figures["throughput_ratio"] >= MIN_THROUGHPUT_RATIO, figures
