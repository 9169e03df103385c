"""``c-kernel``'s measurement: generate, compile, run, compare with the simulator, time, size.

Timing is process CPU time on all three sides, over the same tokens: the compiled step in a
loop (an ``-O3 -march=native`` build whose outputs are checked first; the harness times itself
with ``clock()`` over enough repeats for at least ~0.2 s), the
numpy integer engine on the same inputs, and torch float32 inference of the same (quantized)
weights at batch 1 with one thread (each stream, or each sequence alone, through ``nn.RNN`` /
``nn.GRU`` / ``nn.LSTM`` layers and the output ``nn.Linear``).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import qbench
from qbench_builtins.hardware import cbuild, cgen, engine
from qbench_builtins.hardware.program import ModelProgram, SimConfig, build_program
from qbench_builtins.hardware.simulate import sample_inputs

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedModel

#: CPU seconds each timed side runs for at least (repeats grow until then)
MIN_TIMED_SECONDS = 0.2


def _cpu_seconds_per_call(fn: Any) -> float:
    """Process CPU seconds of one call of ``fn``: repeated until :data:`MIN_TIMED_SECONDS` passed."""
    fn()  # warm-up (allocations, lazy imports)
    calls, start = 0, time.process_time()
    while True:
        fn()
        calls += 1
        spent = time.process_time() - start
        if spent >= MIN_TIMED_SECONDS:
            return spent / calls


def torch_inference(model: ExportedModel, inputs: np.ndarray, lengths: np.ndarray | None) -> Any:
    """A callable running torch float32 inference of ``model`` at batch 1 over the sample's streams."""
    import torch

    modules = {"rnn": torch.nn.RNN, "gru": torch.nn.GRU, "lstm": torch.nn.LSTM}
    layers = []
    for layer in model.layers:
        rnn = modules[layer.cell](layer.input_size, layer.hidden_size)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(torch.from_numpy(np.asarray(layer.w_input.values, np.float32)))
            rnn.weight_hh_l0.copy_(torch.from_numpy(np.asarray(layer.w_recurrent.values, np.float32)))
            for name, tensor in (("bias_ih_l0", layer.b_input), ("bias_hh_l0", layer.b_recurrent)):
                values = np.zeros(rnn.weight_ih_l0.shape[0]) if tensor is None else tensor.values
                getattr(rnn, name).copy_(torch.from_numpy(np.asarray(values, np.float32).reshape(-1)))
        bn = None
        if layer.input_scale is not None:
            shift = np.zeros_like(layer.input_scale) if layer.input_shift is None else layer.input_shift
            bn = (torch.tensor(layer.input_scale, dtype=torch.float32), torch.tensor(shift, dtype=torch.float32))
        layers.append((rnn, bn))
    output = torch.nn.Linear(model.hidden_size, model.n_outputs)
    with torch.no_grad():
        output.weight.copy_(torch.from_numpy(np.asarray(model.output_weight, np.float32)))
        output.bias.copy_(torch.from_numpy(np.asarray(model.output_bias, np.float32).reshape(-1)))
    if model.input_kind == "one-hot":
        x_all = torch.nn.functional.one_hot(torch.from_numpy(np.asarray(inputs, np.int64)), model.input_size).float()
    elif model.input_kind == "embedding":
        table = torch.tensor(np.asarray(model.embedding), dtype=torch.float32)
        x_all = table[torch.from_numpy(np.asarray(inputs, np.int64))]
    else:
        x_all = torch.from_numpy(np.asarray(inputs, np.float32))
    streams = [x_all[:, b : b + 1] if lengths is None else x_all[: int(n), b : b + 1]
               for b, n in enumerate(lengths if lengths is not None else [None] * x_all.shape[1])]  # fmt: skip

    def run() -> None:
        with torch.no_grad():
            for x in streams:
                for rnn, bn in layers:
                    if bn is not None:
                        x = x * bn[0] + bn[1]
                    x, _ = rnn(x)
                output(x if lengths is None else x[-1])

    return run


def _timings(program: ModelProgram, model: ExportedModel, inputs: np.ndarray, lengths: np.ndarray | None,
             exe: Path, vec: cbuild.Vectors) -> dict[str, float]:  # fmt: skip
    import torch

    tokens = len(vec.inputs)
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        torch_s = _cpu_seconds_per_call(torch_inference(model, inputs, lengths)) / tokens
    finally:
        torch.set_num_threads(previous)
    sim_s = _cpu_seconds_per_call(lambda: engine.run(program, inputs, lengths)) / tokens
    # the timed build: -O3 for this CPU; its outputs are checked too before it is timed
    exe = cbuild.compile_host(exe.parent, "qb_harness.c", "qb_harness_fast", opt="-O3", extra=cbuild.FAST_FLAGS)
    hidden, logits = cbuild.run_harness(exe, vec)
    if not (np.array_equal(hidden, vec.hidden) and np.array_equal(logits, vec.logits)):
        raise RuntimeError("the -O3 build of the C library differs from the simulator (a qbench bug)")
    probe = cbuild.bench_harness(exe, vec, 1) * 1e-9
    repeats = max(1, min(100000, int(MIN_TIMED_SECONDS / max(probe * tokens, 1e-9))))
    c_s = cbuild.bench_harness(exe, vec, repeats) * 1e-9
    c_s = max(c_s, 1e-12)  # clock() resolution: a tiny model may read 0
    return {"c_ns_per_token": round(c_s * 1e9, 3), "c_vs_torch": round(torch_s / c_s, 3),
            "c_vs_simulator": round(sim_s / c_s, 3)}  # fmt: skip


def measure(model: ExportedModel, sample: EvalSample, config: SimConfig, max_items: int, timing: bool,
            cortex_m: bool) -> dict[str, Any]:  # fmt: skip
    program = build_program(model, config)
    library = cgen.generate(program)
    cbuild.host_compiler()  # Unsupported naming the package when there is none
    inputs, lengths, _, _ = sample_inputs(sample, max_items)
    run = engine.run(program, inputs, lengths)
    vec = cbuild.vectors(program, inputs, lengths, run)
    with tempfile.TemporaryDirectory(prefix="qbench-c-kernel-") as scratch:
        directory = Path(scratch)
        cbuild.write_library(directory, library, program, vec)
        exe = cbuild.compile_host(directory, "qb_harness.c", "qb_harness")
        hidden, logits = cbuild.run_harness(exe, vec)
        checked = vec.hidden.size + vec.logits.size
        same = 0
        if hidden.shape == vec.hidden.shape:
            same += int(np.count_nonzero(hidden == vec.hidden))
        if logits.shape == vec.logits.shape:
            same += int(np.count_nonzero(logits == vec.logits))
        obj = cbuild.compile_object(directory)
        sizes = cbuild.section_sizes(obj)
        stack = sum(cbuild.stack_usage(directory).values())
        result: dict[str, Any] = {
            "c_exact": same / checked if checked else None,
            "c_outputs_checked": checked,
            "c_flash_bytes": sizes["text"] + sizes["rodata"],
            "c_ram_bytes": library.state_bytes + sizes["data"] + sizes["bss"] + stack,
            "c_stack_bytes": stack,
            "c_weight_bytes": library.weight_bytes + library.table_bytes,
            "c_ns_per_token": None,
            "c_vs_torch": None,
            "c_vs_simulator": None,
        }
        if timing:
            result.update(_timings(program, model, inputs, lengths, exe, vec))
        result.update(_cortex_m(directory, library.state_bytes) if cortex_m
                      else _no_cortex_m("not run (cortex_m = false)"))  # fmt: skip
    return result


def _no_cortex_m(status: str) -> dict[str, Any]:
    return {"m3_flash_bytes": None, "m3_ram_bytes": None, "m3_exact": None, "m3_instructions_per_token": None,
            "m3_status": status}


def _cortex_m(directory: Path, state_bytes: int) -> dict[str, Any]:
    """Cross-compiled sizes and the self-test under QEMU (the vectors are already in the folder)."""
    try:
        elf = cbuild.cortex_m_build(directory)
        sizes = cbuild.section_sizes(directory / "qb_model_arm.o", "arm-none-eabi-size")
        status, text, instructions = cbuild.run_qemu(elf)
    except qbench.Unsupported as exc:
        return _no_cortex_m(f"not run: {exc}")
    match = cbuild.SELFTEST_LINE.search(text)
    exact = int(match.group(1)) / int(match.group(2)) if match and int(match.group(2)) else None
    return {
        "m3_flash_bytes": sizes["text"] + sizes["rodata"] + sizes["data"],
        "m3_ram_bytes": state_bytes + sizes["data"] + sizes["bss"]
        + sum(cbuild.read_stack_usage(directory / "qb_model_arm.su").values()),
        "m3_exact": exact,
        "m3_instructions_per_token": instructions,
        "m3_status": "ok" if match and status in (0, 1) else f"self-test failed (exit {status}): {text[-200:]}",
    }
