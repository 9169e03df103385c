"""Throughput of the compiled C kernel against torch float32 inference at batch 1 and the numpy simulator.

The models have the ``hardware`` matrix's size (one layer, hidden 64, the pydoc-char vocabulary of
103 one-hot inputs, output layer included). Per cell and quantizer, in one run: the generated
library compiled with ``-O2`` and with ``-O3 -march=native`` (its harness times ``qb_step`` in a
loop with ``clock()``), torch
float32 with the same weights at batch 1 and one thread, both over the whole stream in one call
(``nn.GRU`` over 1000 tokens: torch's fastest batch-1 form) and one call per token (what a
device streaming tokens does), and the numpy integer engine on the same tokens. All on process
CPU time; the C outputs are checked bit-exact against the simulator first. Figures: C tokens per
second divided by each other side's.

Run: ``pytest benchmarks/test_bench_ckernel.py --benchmark-json=.benchmarks/ckernel.json -s``.
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from qbench.testing.hardware import random_exported_model

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(shutil.which("cc") is None, reason="no C compiler (Debian: apt-get install gcc)")

HIDDEN, VOCAB, TOKENS, ROUNDS = 64, 103, 1000, 5
SCHEMES = ("binary", "ternary", "pow2-ternary", "exponential", "fixed")
CASES = [(cell, scheme) for cell in ("rnn", "gru", "lstm") for scheme in SCHEMES]


def cpu_seconds(fn: Callable[[], Any]) -> float:
    """Median process CPU seconds of ``fn`` over ROUNDS calls after one warm-up."""
    fn()
    times = []
    for _ in range(ROUNDS):
        start = time.process_time()
        fn()
        times.append(time.process_time() - start)
    return statistics.median(times)


def torch_per_token(model: Any, tokens: np.ndarray) -> Callable[[], Any]:
    """torch float32, one call per token carrying the state (batch 1, streaming)."""
    from qbench_builtins.hardware.ckernel_measure import torch_inference

    layer = model.layers[0]
    modules = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
    rnn = modules[layer.cell](layer.input_size, layer.hidden_size)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(torch.from_numpy(layer.w_input.values.astype(np.float32)))
        rnn.weight_hh_l0.copy_(torch.from_numpy(layer.w_recurrent.values.astype(np.float32)))
        rnn.bias_ih_l0.copy_(torch.from_numpy(layer.b_input.values.astype(np.float32)))
        rnn.bias_hh_l0.copy_(torch.from_numpy(layer.b_recurrent.values.astype(np.float32)))
    output = torch.nn.Linear(layer.hidden_size, model.n_outputs)
    xs = torch.nn.functional.one_hot(torch.from_numpy(tokens), VOCAB).float().reshape(len(tokens), 1, 1, VOCAB)
    _ = torch_inference  # the whole-stream form is the backend's own

    def run() -> None:
        with torch.no_grad():
            state = None
            for x in xs:
                y, state = rnn(x, state)
                output(y)

    return run


@pytest.fixture(scope="module")
def table(request):
    rows: list[str] = []
    yield rows
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and rows:
        with capture.global_and_fixture_disabled():
            print(f"\n\ncompiled C kernel vs torch float32 (batch 1, one thread) and the numpy simulator: hidden "
                  f"{HIDDEN}, vocab {VOCAB}, {TOKENS} tokens; C throughput / other's")  # fmt: skip
            print("ns per token (C: -O2; native: -O3 -march=native); C throughput over torch whole-sequence (seq), "
                  "per-token (step), simulator (sim)")
            print("case                      C  native  torch-seq torch-step   sim  C/seq C/step  C/sim "
                  "nat/seq nat/step")
            for row in rows:
                print(row)


@pytest.mark.parametrize(("cell", "scheme"), CASES, ids=[f"{c}-{s}" for c, s in CASES])
def test_compiled_kernel_throughput(benchmark, table, cell: str, scheme: str) -> None:
    from qbench_builtins.hardware import cbuild, cgen, engine
    from qbench_builtins.hardware.ckernel_measure import torch_inference
    from qbench_builtins.hardware.program import SimConfig, build_program

    model = random_exported_model(cell, scheme, hidden=HIDDEN, input_size=VOCAB, seed=0)
    tokens = np.random.default_rng(0).integers(0, VOCAB, TOKENS)
    inputs = tokens[:, None]
    program = build_program(model, SimConfig())
    run = engine.run(program, inputs)
    vec = cbuild.vectors(program, inputs, None, run)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as scratch:
        directory = Path(scratch)
        cbuild.write_library(directory, cgen.generate(program), program, vec)
        exe = cbuild.compile_host(directory, "qb_harness.c", "harness")
        hidden, logits = cbuild.run_harness(exe, vec)
        assert np.array_equal(hidden, vec.hidden) and np.array_equal(logits, vec.logits)
        c_ns = statistics.median(cbuild.bench_harness(exe, vec, 20) for _ in range(ROUNDS))
        fast = cbuild.compile_host(directory, "qb_harness.c", "fast", opt="-O3", extra=cbuild.FAST_FLAGS)
        assert cbuild.run_harness(fast, vec)[0].tolist() == vec.hidden.tolist()
        fast_ns = statistics.median(cbuild.bench_harness(fast, vec, 20) for _ in range(ROUNDS))
        seq_ns = 1e9 * cpu_seconds(torch_inference(model, inputs, None)) / TOKENS
        step_ns = 1e9 * cpu_seconds(torch_per_token(model, tokens)) / TOKENS
        sim_ns = 1e9 * cpu_seconds(lambda: engine.run(program, inputs)) / TOKENS
        benchmark.pedantic(lambda: cbuild.bench_harness(exe, vec, 1), rounds=1, iterations=1)
    torch.set_num_threads(previous)
    figures = {"c_ns_per_token": c_ns, "c_native_ns_per_token": fast_ns, "torch_seq_ns_per_token": seq_ns,
               "torch_step_ns_per_token": step_ns,
               "simulator_ns_per_token": sim_ns, "vs_torch_seq": seq_ns / c_ns, "vs_torch_step": step_ns / c_ns,
               "vs_simulator": sim_ns / c_ns, "native_vs_torch_seq": seq_ns / fast_ns,
               "native_vs_torch_step": step_ns / fast_ns}  # fmt: skip
    benchmark.extra_info.update(figures)
    table.append(f"{cell + '-' + scheme:<22}{c_ns:>8.0f}{fast_ns:>8.0f}{seq_ns:>10.0f}{step_ns:>10.0f}"
                 f"{sim_ns:>8.0f}"
                 f"{figures['vs_torch_seq']:>8.1f}{figures['vs_torch_step']:>8.1f}{figures['vs_simulator']:>8.1f}"
                 f"{figures['native_vs_torch_seq']:>8.1f}{figures['native_vs_torch_step']:>8.1f}")
