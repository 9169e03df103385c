"""``shift-add``'s measurement: run the integer program on the sample and report its columns."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

import qbench
from qbench_builtins.hardware import counters, engine, evaluation, float_model
from qbench_builtins.hardware.program import ModelProgram, SimConfig, build_program
from qbench_builtins.hardware.reference import referee_limit, run_reference

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedModel


def sample_inputs(
    sample: EvalSample, max_items: int = 0
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    """(time-major inputs, lengths or None, targets, the float model's predictions or None)."""
    predictions = sample.float_predictions
    if sample.tokens is not None:
        tokens = np.asarray(sample.tokens, dtype=np.int64)
        if max_items:
            tokens = tokens[: max_items + 1]
            predictions = None if predictions is None else np.asarray(predictions)[:max_items]
        if len(tokens) < 2:
            raise qbench.Unsupported("the language-model sample has fewer than two tokens")
        return tokens[:-1, None], None, tokens[1:], predictions
    if sample.sequences is None or not len(sample.sequences):
        raise qbench.Unsupported("the sample holds neither tokens nor sequences")
    split = sample.sequences
    if max_items:
        split = split.subset(slice(0, max_items))
        predictions = None if predictions is None else np.asarray(predictions)[:max_items]
    x = np.asarray(split.x)
    lengths = np.clip(np.asarray(split.lengths, dtype=np.int64), 1, x.shape[1])
    inputs = np.swapaxes(x, 0, 1)
    return inputs, lengths, np.asarray(split.y, dtype=np.int64), predictions


def dequantize(codes: np.ndarray, frac: int) -> np.ndarray:
    """Integer codes (int64 or Python ints) -> float64 values ``code * 2**-frac``."""
    if codes.dtype == object:
        return np.array([float(v) for v in codes.reshape(-1)]).reshape(codes.shape) * 2.0**-frac
    return codes.astype(np.float64) * 2.0**-frac


def per_token_counts(program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None) -> Counter:
    """Average counts per time step (batch 1) of the recurrent layers over the sample."""
    if program.layers[0].one_hot:
        ids = (
            inputs[:, 0]
            if lengths is None
            else np.concatenate([inputs[:n, b] for b, n in enumerate(lengths)])
        )
        totals = counters.program_counts(program, len(ids), ids)
        return Counter({k: v / len(ids) for k, v in totals.items()})
    return counters.program_counts(program, 1)


def _formats_label(config: SimConfig) -> str:
    return (
        f"A={config.activation} P={config.preact} S={config.gate} C={config.cell} "
        f"{config.rounding} {config.overflow} acc={config.acc_bits or 'exact'} {config.nonlinearity}"
    )


def _widths_label(program: ModelProgram, adder_bits: int) -> str:
    """Operand widths by operation kind (the counters' widths)."""
    cfg = program.config
    weight_bits = max(max(layer.wx.code_bits, layer.wh.code_bits) for layer in program.layers)
    elementwise = max(cfg.preact.width, cfg.cell.width, cfg.activation.width)
    return (
        f"add/sub:{adder_bits}b weight-mult:{weight_bits}x{cfg.activation.width}b "
        f"scale-mult:{cfg.scale_bits}x{adder_bits}b elementwise-mult:{cfg.gate.width}x{elementwise}b "
        f"tables:{cfg.sigmoid_entries}/{cfg.tanh_entries}x{cfg.gate.width}b"
    )


def _referee_note(limit: str | None, reference: bool) -> str:
    """Why ``sim_exact`` cannot be trusted or was not measured ("" when float64 referees exactly)."""
    if not reference:
        return "not run (reference = false)"
    return "" if limit is None else f"float64 cannot referee bit for bit: {limit}"


def _number(value: float) -> float | int:
    return int(value) if float(value).is_integer() else float(value)


def _refereed(program: ModelProgram, result: engine.RunResult, inputs: np.ndarray,
              lengths: np.ndarray | None, limit: str | None) -> bool | None:
    """``sim_exact``: the engine equals the float64 referee bit for bit (None: not provable)."""
    ref = run_reference(program, inputs, lengths)
    exact = bool(
        np.array_equal(np.asarray(result.logits, dtype=object), np.asarray(ref.logits, dtype=object))
        and all(np.array_equal(a, b) for a, b in zip(result.hidden, ref.hidden, strict=True))
        and result.stats.saturations == ref.stats.saturations
        and result.stats.overflows == ref.stats.overflows
    )
    if not exact and limit is not None:
        return None  # the program needs more than 53 bits somewhere: float64 cannot referee it
    return exact


def _operation_columns(program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None) -> dict[str, Any]:
    """Operations per token of the recurrent layers, and of one output-layer evaluation."""
    counts = per_token_counts(program, inputs, lengths)
    out_counts = counters.output_counts(program)
    per_token = ("adds", "shifts", "mults", "skips", "scale_mults", "table_lookups")
    return {
        **{name: _number(counts[name]) for name in per_token},
        **{f"output_{name}": int(out_counts[name]) for name in ("mults", "adds", "shifts")},
    }


def _weight_kinds(program: ModelProgram) -> str:
    kinds = [f"L{layer.index}:x={layer.wx.kind_label},h={layer.wh.kind_label}" for layer in program.layers]
    return " ".join([*kinds, f"out={program.output.w.kind_label}"])


def simulate(
    model: ExportedModel, sample: EvalSample, config: SimConfig, max_items: int = 0, reference: bool = True
) -> dict[str, Any]:
    program = build_program(model, config)
    inputs, lengths, targets, float_predictions = sample_inputs(sample, max_items)
    result = engine.run(program, inputs, lengths)
    limit = referee_limit(program)
    exact = _refereed(program, result, inputs, lengths, limit) if reference else None
    sim_logits = dequantize(result.logits, program.output.acc_frac)
    float_logits = float_model.forward(model, inputs, lengths)
    sim_metric = evaluation.task_metric(model.task, sim_logits, targets)
    float64_metric = evaluation.task_metric(model.task, float_logits, targets)
    reported = evaluation.reported_float_metric(model.task, sample.float_metrics)
    predictions = np.argmax(sim_logits, axis=1)
    if float_predictions is None or np.shape(float_predictions) != predictions.shape:
        float_predictions = np.argmax(float_logits, axis=1)
    adder_max = max(
        engine.adder_abs_max(layer, x, h)
        for layer, x, h in zip(program.layers, result.layer_inputs, result.hidden, strict=True)
    )
    is_lm = model.task == "language-model"
    return {
        "sim_exact": exact,
        "sim_metric": sim_metric,
        "float_metric": reported if reported is not None else float64_metric,
        "float64_metric": float64_metric,
        "sim_bpc": sim_metric if is_lm else None,
        "sim_accuracy": None if is_lm else sim_metric,
        "sim_max_abs_error": float(np.max(np.abs(sim_logits - float_logits), initial=0.0)),
        "sim_agreement": evaluation.agreement(predictions, float_predictions),
        **_operation_columns(program, inputs, lengths),
        "acc_bits_max": int(result.stats.acc_bits_max),
        "adder_bits_max": int(adder_max).bit_length() + 1,
        "acc_bits_bound": int(max(layer.acc_bound_bits for layer in program.layers)),
        "overflows": int(result.stats.overflows),
        "saturations": int(result.stats.total_saturations),
        "sim_weight_kinds": _weight_kinds(program),
        "sim_formats": _formats_label(config),
        "op_widths": _widths_label(program, int(adder_max).bit_length() + 1),
        "sim_requantized": bool(program.requantized),
        "sim_output_requantized": bool(program.output.w.requantized),
        "sim_reference_exact": limit is None,
        "sim_reference_limit": _referee_note(limit, reference),
        "sim_tokens": int(len(targets) if lengths is None else int(np.sum(lengths))),
    }
