"""Cost of one quantizer call on a 1024 x 4096 weight matrix, relative to plain elementwise torch.

Every registered quantizer variant (defaults, each stochastic form, each switch; see
``qbench.testing.quantizers.variants``) is timed against two references on the same tensor, in
the same process, alternating the order every round after a warm-up, on random (non-zero)
weights on the scale of the Glorot bound:

* ``sign``: ``torch.sign(w) * 0.5`` (two passes, the arithmetic of a pow2-ternary product);
* ``abs``: ``w.abs()`` (one pass, the floor of any elementwise map).

Deterministic forms are timed at evaluation, stochastic forms while training (a draw from a
seeded generator included). The ratio is the median of the per-round ratios. torch threads are
fixed to 1 on the CPU so that the figures do not depend on what else the machine runs.

Run: ``pytest benchmarks/test_bench_quantizers.py --benchmark-json=.benchmarks/quantizers.json``;
the table is printed at the end and each ratio saved in the benchmark's ``extra_info``.
"""

from __future__ import annotations

import contextlib
import statistics
import time
from collections.abc import Callable

import pytest

import qbench
from qbench.testing.quantizers import make_context, variants

torch = pytest.importorskip("torch")

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SHAPE = (1024, 4096)
ROUNDS = {"cpu": 15, "cuda": 100}[DEVICE]
WARMUP = {"cpu": 3, "cuda": 20}[DEVICE]
REFERENCES: dict[str, Callable] = {
    "sign": lambda w: torch.sign(w) * 0.5,
    "abs": lambda w: w.abs(),
}


def _cases() -> list[tuple[str, dict]]:
    registry = qbench.get_host().registry("quantizer")
    return [(name, params) for name in registry for params in variants(registry.get(name).cls)]


CASES = _cases()


def _label(case: tuple[str, dict]) -> str:
    return qbench.create("quantizer", case[0], **case[1]).label


def _sync() -> None:
    if DEVICE == "cuda":
        torch.cuda.synchronize()


def _timed(call: Callable[[], object]) -> float:
    _sync()
    start = time.perf_counter()
    call()
    _sync()
    return time.perf_counter() - start


def paired_ratio(reference: Callable[[], object], candidate: Callable[[], object]) -> dict[str, float]:
    """Median over rounds of candidate time / reference time; the order alternates every round."""
    for _ in range(WARMUP):
        reference()
        candidate()
    ratios, reference_times, candidate_times = [], [], []
    for index in range(ROUNDS):
        if index % 2:
            c, r = _timed(candidate), _timed(reference)
        else:
            r, c = _timed(reference), _timed(candidate)
        ratios.append(c / r)
        reference_times.append(r)
        candidate_times.append(c)
    return {
        "ratio": statistics.median(ratios),
        "reference_ms": 1e3 * statistics.median(reference_times),
        "candidate_ms": 1e3 * statistics.median(candidate_times),
    }


@pytest.fixture(scope="module")
def table(request):
    rows: list[str] = []
    previous_threads = torch.get_num_threads()
    if DEVICE == "cpu":
        torch.set_num_threads(1)
    yield rows
    torch.set_num_threads(previous_threads)
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is None or not rows:
        return
    # teardown output is captured like a test's: write past the capture so the table is seen
    with capture.global_and_fixture_disabled() if capture is not None else contextlib.nullcontext():
        reporter.write_line("")
        reporter.write_line(
            f"qbench quantizers, one call on {SHAPE[0]} x {SHAPE[1]} float32, device {DEVICE}, "
            f"torch threads {1 if DEVICE == 'cpu' else previous_threads}; ratio = quantizer / reference"
        )
        reporter.write_line(f"{'quantizer':44} {'mode':5} {'ms':>7}  {'/sign':>6}  {'/abs':>6}")
        for row in rows:
            reporter.write_line(row)


@pytest.mark.parametrize("case", CASES, ids=_label)
def test_quantizer_vs_elementwise(benchmark, table, case):
    name, params = case
    quantizer = qbench.create("quantizer", name, **params)
    training = quantizer.stochastic
    ctx = make_context("recurrent", SHAPE[1], SHAPE[0], training=training, seed=0, device=DEVICE)
    generator = torch.Generator().manual_seed(1)
    w = ((torch.rand(SHAPE, generator=generator) * 2 - 1) * 1.5 * ctx.glorot_bound).to(DEVICE)

    def candidate() -> object:
        return quantizer.quantize(w, ctx)

    results = {ref: paired_ratio(lambda f=f: f(w), candidate) for ref, f in REFERENCES.items()}
    benchmark.extra_info.update(
        {
            "device": DEVICE,
            "shape": list(SHAPE),
            "mode": "train" if training else "eval",
            **{f"ratio_to_{ref}": r["ratio"] for ref, r in results.items()},
            **{f"{ref}_ms": r["reference_ms"] for ref, r in results.items()},
            "quantizer_ms": statistics.median(r["candidate_ms"] for r in results.values()),
        }
    )
    benchmark.pedantic(candidate, setup=_sync, rounds=5, iterations=1, warmup_rounds=1)
    table.append(
        f"{quantizer.label:44} {'train' if training else 'eval':5} "
        f"{benchmark.extra_info['quantizer_ms']:7.2f}  {results['sign']['ratio']:6.2f}  {results['abs']['ratio']:6.2f}"
    )
