"""Training-step cost of the quantized cells (docs/performance.md, items 1 and 2).

One training step = forward over BPTT steps, cross-entropy, backward, gradient-norm clipping,
Adam step (and, for qbench, shadow clipping), on a language model: embedding -> one recurrent
layer -> output layer, vocabulary 50, embedding 64. Sizes follow docs/performance.md: CPU hidden 256,
batch 32, BPTT 100; GPU (when one is present) hidden 1024, batch 128, BPTT 100.

Ratios are measured in the same process, alternating the two steps in each round after a
warm-up, on random (non-zero) tokens; the ratio is the median of the per-round ratios. On the
CPU with one torch thread (how the runner's workers train) the clock is the process's CPU time,
because the 2-core machines are shared and wall time mostly measures the neighbours; the
wall-time ratio is reported too. With several threads, and on a GPU, the clock is wall time.

* ``test_quantized_step_vs_float``: qbench's stack with each paper quantizer, and with the learned
  quantizers ``lsq`` and ``ttq`` (weight-only: their own autograd functions, still the fused
  kernel) / torch's own fused module (``nn.RNN`` / ``nn.GRU`` / ``nn.LSTM``) in float. Must be
  <= :data:`STEP_LIMIT`.
* ``test_per_step_path_vs_float``: what leaving the fused kernel costs, measured and reported (no
  bound): ``indrnn`` has no fused kernel (the per-step loop) / torch's fused float tanh RNN.
* ``test_hidden_quantizer_vs_float``: ``lsq(hidden=true)`` quantizes the hidden state at every time
  step, which torch's fused kernel cannot: rnn, gru and lstm through the sequence-level BPTT of
  ``qbench.training.sequence`` (the default) and through the per-step reference loop
  (``implementation = "loop"``, what every such case ran before), each / torch's fused float module,
  and the sequence path / the loop, all measured in the same process. Issue 29's target: the
  sequence path within :data:`HIDDEN_TARGET` of the fused float step (reported, not asserted: the
  shared machines' load moves it by more than the margin).
* ``test_scan_vs_per_step_loop``: what a cell's scan saves, measured and reported (no bound):
  ``mingru`` trained with its scan (one input product, the sequential solver of
  ``qbench.training.scan`` on the CPU) / the same model through its per-step reference
  (``implementation = "loop"``); and the scan / torch's fused float GRU of the same hidden size.
* ``test_brevitas_quantlstm_vs_qbench``: Brevitas ``QuantLSTM`` with weight-only quantization
  (activation, gate and cell-state quantizers set to None) / qbench's lstm with the quantizer.
  Must be >= :data:`BREVITAS_MIN_SPEEDUP`.

Run: ``pytest benchmarks/test_bench_cells.py --benchmark-json=.benchmarks/cells.json``; the ratio
table is printed at the end and saved in each benchmark's ``extra_info``.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import pytest

import qbench

torch = pytest.importorskip("torch")
F = pytest.importorskip("torch.nn.functional")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SIZES = {
    "cpu": {"hidden": 256, "batch": 32, "bptt": 100, "embedding": 64, "vocab": 50},
    "cuda": {"hidden": 1024, "batch": 128, "bptt": 100, "embedding": 64, "vocab": 50},
}[DEVICE]
ROUNDS = {"cpu": 21, "cuda": 60}[DEVICE]
WARMUP = {"cpu": 3, "cuda": 10}[DEVICE]
STEP_LIMIT = 1.10
#: torch's own default (one thread per core): what a user comparing libraries runs
DEFAULT_THREADS = torch.get_num_threads()
BREVITAS_MIN_SPEEDUP = 2.0

PAPER_QUANTIZERS = (
    ("float", {}),
    ("binary", {}),
    ("binary", {"stochastic": True}),
    ("ternary", {}),
    ("ternary", {"stochastic": True}),
    ("pow2-ternary", {}),
    ("exponential", {}),
    ("exponential", {"stochastic": True}),
)
TORCH_MODULES = {"rnn": "RNN", "gru": "GRU", "lstm": "LSTM"}

Step = Callable[[], None]


def _label(case: tuple[str, dict]) -> str:
    name, params = case
    return name + ("-stochastic" if params.get("stochastic") else "")


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _tokens() -> Any:
    generator = torch.Generator().manual_seed(0)
    tokens = torch.randint(0, SIZES["vocab"], (SIZES["bptt"] + 1, SIZES["batch"]), generator=generator)
    return tokens.to(DEVICE)


def _loss(logits: Any, targets: Any) -> Any:
    return F.cross_entropy(logits.reshape(-1, SIZES["vocab"]), targets.reshape(-1))


def _optimising(parameters: list[Any], forward: Callable[[], Any], after: Callable[[], None] | None = None) -> Step:
    optimizer = torch.optim.Adam(parameters, lr=2e-3)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        forward().backward()
        torch.nn.utils.clip_grad_norm_(parameters, 1.0, foreach=True)
        optimizer.step()
        if after is not None:
            after()

    return step


def float_step(cell: str) -> Step:
    """torch's own fused module in float: the reference every ratio divides by."""
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(SIZES["vocab"], SIZES["embedding"]).to(DEVICE)
    recurrent = getattr(torch.nn, TORCH_MODULES[cell])(SIZES["embedding"], SIZES["hidden"]).to(DEVICE)
    output = torch.nn.Linear(SIZES["hidden"], SIZES["vocab"]).to(DEVICE)
    tokens = _tokens()
    parameters = [*embedding.parameters(), *recurrent.parameters(), *output.parameters()]

    def forward() -> Any:
        y, _ = recurrent(embedding(tokens[:-1]))
        return _loss(output(y), tokens[1:])

    return _optimising(parameters, forward)


def qbench_step(cell: str, quantizer: qbench.Quantizer, implementation: str | None = None) -> Step:
    """qbench's model (full-precision embedding and output, quantized stack), as the runner trains it
    (``implementation``: force the stack's "loop", "scan" or "fused" path)."""
    from qbench.training.model import SequenceModel

    cell_component = qbench.create("cell", cell, hidden=SIZES["hidden"], embedding=SIZES["embedding"])
    model = SequenceModel(cell_component, quantizer, "language-model", SIZES["vocab"], SIZES["vocab"], 0)
    model = model.to(DEVICE).train()
    if implementation is not None:
        model.stack.implementation = implementation
    tokens = _tokens()

    def forward() -> Any:
        logits, _ = model.forward_tokens(tokens[:-1])
        return _loss(logits, tokens[1:])

    return _optimising(list(model.parameters()), forward, model.stack.clip_shadow_weights_)


def brevitas_step() -> Step:
    """Brevitas QuantLSTM, weight-only (8-bit per-tensor weights, its default weight quantizer)."""
    brevitas_nn = pytest.importorskip("brevitas.nn")
    torch.manual_seed(0)
    embedding = torch.nn.Embedding(SIZES["vocab"], SIZES["embedding"]).to(DEVICE)
    recurrent = brevitas_nn.QuantLSTM(
        SIZES["embedding"],
        SIZES["hidden"],
        io_quant=None,
        gate_acc_quant=None,
        sigmoid_quant=None,
        tanh_quant=None,
        cell_state_quant=None,
        bias_quant=None,
    ).to(DEVICE)
    output = torch.nn.Linear(SIZES["hidden"], SIZES["vocab"]).to(DEVICE)
    tokens = _tokens()
    parameters = [*embedding.parameters(), *recurrent.parameters(), *output.parameters()]

    def forward() -> Any:
        y = recurrent(embedding(tokens[:-1]))
        y = y[0] if isinstance(y, tuple) else y
        return _loss(output(y), tokens[1:])

    return _optimising(parameters, forward)


def _timed(step: Step) -> tuple[float, float]:
    """(seconds counted for the ratio, wall seconds). GPU, or several CPU threads: wall time
    (between synchronisations). One CPU thread: CPU time of this process, which time slices lost
    to other processes on a shared machine do not inflate; the wall-time ratio is reported too."""
    _sync()
    wall, cpu = time.perf_counter(), time.process_time()
    step()
    _sync()
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return (cpu if _cpu_clock() else wall), wall


def _cpu_clock() -> bool:
    return DEVICE == "cpu" and torch.get_num_threads() == 1


def paired_ratio(reference: Step, candidate: Step, rounds: int = ROUNDS) -> dict[str, float]:
    """Median over rounds of candidate time / reference time; the order alternates every round."""
    for _ in range(WARMUP):
        reference()
        candidate()
    ratios, wall_ratios, reference_times, candidate_times = [], [], [], []
    for index in range(rounds):
        if index % 2:
            c, r = _timed(candidate), _timed(reference)
        else:
            r, c = _timed(reference), _timed(candidate)
        ratios.append(c[0] / r[0])
        wall_ratios.append(c[1] / r[1])
        reference_times.append(r[0])
        candidate_times.append(c[0])
    return {
        "ratio": statistics.median(ratios),
        "wall_ratio": statistics.median(wall_ratios),
        "reference_ms": 1e3 * statistics.median(reference_times),
        "candidate_ms": 1e3 * statistics.median(candidate_times),
        "clock": "process cpu" if _cpu_clock() else "wall",
    }


@pytest.fixture(scope="module", autouse=True)
def fixed_threads():
    """One torch thread on the CPU (as the runner's workers use): stable timings on a shared machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def table(request):
    rows: list[str] = []
    yield rows
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if capture is not None and rows:
        sizes = ", ".join(f"{k} {v}" for k, v in SIZES.items())
        with capture.global_and_fixture_disabled():
            print(f"\n\nqbench cells, training step, device {DEVICE}, torch threads {torch.get_num_threads()}")
            print(f"sizes: {sizes}")
            for row in rows:
                print(row)


def _quantizer_or_skip(case: tuple[str, dict]) -> qbench.Quantizer:
    name, params = case
    # the registry's keys are origin-qualified ("qbench:lsq"): ask it by the bare name, as a matrix does
    try:
        qbench.get_host().registry("quantizer").get(name)
    except qbench.UsageError:
        pytest.skip(f"quantizer {name!r} is not registered")
    return qbench.create("quantizer", name, **params)


#: Weight-only learned quantizers keep the fused kernel too, so the same limit holds for them.
LEARNED_WEIGHT_ONLY = (("lsq", {}), ("ttq", {}))


@pytest.mark.parametrize("case", [*PAPER_QUANTIZERS, *LEARNED_WEIGHT_ONLY], ids=_label)
@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_quantized_step_vs_float(benchmark, table, cell, case):
    quantizer = _quantizer_or_skip(case)
    candidate = qbench_step(cell, quantizer)
    result = paired_ratio(float_step(cell), candidate)
    benchmark.extra_info.update({"device": DEVICE, "reference": f"torch.nn.{TORCH_MODULES[cell]} float", **result})
    benchmark.pedantic(candidate, setup=_sync, rounds=3, iterations=1)
    table.append(
        f"{cell:5} {_label(case):24} qbench/float-torch = {result['ratio']:.3f} (wall {result['wall_ratio']:.3f}; "
        f"float {result['reference_ms']:.1f} ms, qbench {result['candidate_ms']:.1f} ms)"
    )
    assert result["ratio"] <= STEP_LIMIT


PER_STEP_CASES = (("indrnn", ("ternary", {}), "rnn"),)
#: issue 29: a quantized hidden state's training step / torch's fused float step
HIDDEN_TARGET = 1.3


@pytest.mark.parametrize(
    ("cell", "case", "reference"), PER_STEP_CASES, ids=lambda v: v if isinstance(v, str) else _label(v)
)
def test_per_step_path_vs_float(benchmark, table, cell, case, reference):
    """Measured and reported, not bounded: a Python loop over time steps (hidden-state quantizer, or a
    cell without a fused kernel) against torch's fused float module."""
    quantizer = _quantizer_or_skip(case)
    candidate = qbench_step(cell, quantizer)
    result = paired_ratio(float_step(reference), candidate, rounds=max(5, ROUNDS // 3))
    benchmark.extra_info.update({"device": DEVICE, "reference": f"torch.nn.{TORCH_MODULES[reference]} float", **result})
    benchmark.pedantic(candidate, setup=_sync, rounds=1, iterations=1)
    label = f"{_label(case)}{'(hidden)' if case[1].get('hidden') else ''}"
    table.append(
        f"{cell:6} {label:23} per-step / float-torch {reference} = {result['ratio']:.3f} (wall "
        f"{result['wall_ratio']:.3f}; float {result['reference_ms']:.1f} ms, qbench {result['candidate_ms']:.1f} ms)"
    )
    assert result["ratio"] > 0


@pytest.mark.parametrize("cell", sorted(TORCH_MODULES))
def test_hidden_quantizer_vs_float(benchmark, table, cell):
    """lsq(hidden=true): the sequence-level BPTT and the per-step reference loop, each against torch's
    fused float module, and against each other (same model, same draw), in one process."""
    case = ("lsq", {"hidden": True})
    _quantizer_or_skip(case)
    sequence = qbench_step(cell, qbench.create("quantizer", "lsq", hidden=True))
    looped = qbench_step(cell, qbench.create("quantizer", "lsq", hidden=True), "loop")
    fused = float_step(cell)
    rounds = ROUNDS  # the target's margin is small: all the rounds of the bounded comparisons
    result = paired_ratio(fused, sequence, rounds=rounds)
    loop = paired_ratio(fused, looped, rounds=rounds)
    saving = paired_ratio(looped, sequence, rounds=rounds)
    benchmark.extra_info.update({"device": DEVICE, "reference": f"torch.nn.{TORCH_MODULES[cell]} float", **result,
                                 "loop_ratio": loop["ratio"], "sequence_over_loop": saving["ratio"]})  # fmt: skip
    benchmark.pedantic(sequence, setup=_sync, rounds=1, iterations=1)
    table.append(
        f"{cell:6} lsq(hidden) sequence / float-torch = {result['ratio']:.3f} (wall {result['wall_ratio']:.3f}; "
        f"float {result['reference_ms']:.1f} ms, sequence {result['candidate_ms']:.1f} ms); loop / float-torch = "
        f"{loop['ratio']:.3f} (loop {loop['candidate_ms']:.1f} ms); sequence / loop = {saving['ratio']:.3f} "
        f"(target sequence / float-torch <= {HIDDEN_TARGET})"
    )
    assert result["ratio"] > 0


@pytest.mark.parametrize("case", [("float", {}), ("ternary", {})], ids=_label)
def test_scan_vs_per_step_loop(benchmark, table, case):
    """minGRU's scan against its own per-step loop (same model, same draw), and against torch's fused GRU."""
    quantizer = _quantizer_or_skip(case)
    scanned = qbench_step("mingru", quantizer, "scan")
    looped = qbench_step("mingru", quantizer, "loop")
    result = paired_ratio(looped, scanned, rounds=max(5, ROUNDS // 3))
    versus_fused = paired_ratio(float_step("gru"), scanned, rounds=max(5, ROUNDS // 3))
    benchmark.extra_info.update({"device": DEVICE, "reference": "mingru per-step loop", **result,
                                 "ratio_to_fused_gru": versus_fused["ratio"]})  # fmt: skip
    benchmark.pedantic(scanned, setup=_sync, rounds=3, iterations=1)
    table.append(
        f"mingru {_label(case):22} scan / per-step loop = {result['ratio']:.3f} (wall {result['wall_ratio']:.3f}; "
        f"loop {result['reference_ms']:.1f} ms, scan {result['candidate_ms']:.1f} ms); scan / float-torch gru = "
        f"{versus_fused['ratio']:.3f} (gru {versus_fused['reference_ms']:.1f} ms)"
    )
    # measured and reported, not bounded: on one CPU thread the scan and the loop cost about the same
    # (benchmarks/RESULTS.md); the parallel form is for GPUs, where the loop's launches dominate
    assert result["ratio"] > 0


@pytest.mark.parametrize("threads", sorted({1, DEFAULT_THREADS}), ids=lambda t: f"threads={t}")
@pytest.mark.parametrize("case", [("ternary", {"stochastic": True}), ("exponential", {})], ids=_label)
def test_brevitas_quantlstm_vs_qbench(benchmark, table, case, threads):
    """Brevitas steps a Python loop over time; with one thread the fused kernel's GEMMs dominate both
    steps, so the speed-up is smaller there: it is measured and reported, and the 2x bound is
    asserted at torch's default thread count (the setting of a user comparing the libraries)."""
    quantizer = _quantizer_or_skip(case)
    torch.set_num_threads(threads)
    try:
        ours = qbench_step("lstm", quantizer)
        result = paired_ratio(ours, brevitas_step(), rounds=max(5, ROUNDS // 3))
        benchmark.extra_info.update(
            {"device": DEVICE, "threads": threads, "reference": f"qbench lstm {_label(case)}", **result}
        )
        benchmark.pedantic(ours, setup=_sync, rounds=3, iterations=1)
    finally:
        torch.set_num_threads(1)
    table.append(
        f"lstm  {_label(case):24} threads {threads}: brevitas-QuantLSTM/qbench = {result['ratio']:.2f} "
        f"(wall {result['wall_ratio']:.2f}; qbench {result['reference_ms']:.1f} ms, "
        f"brevitas {result['candidate_ms']:.1f} ms)"
    )
    if threads == DEFAULT_THREADS or DEVICE == "cuda":
        assert result["ratio"] >= BREVITAS_MIN_SPEEDUP
