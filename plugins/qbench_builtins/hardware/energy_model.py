"""Prices the closed-form operation counts and weight reads of an exported model (batch 1).

Counts come from :mod:`.counters` with the real non-zero masks (so this works without the
simulator having run). Every token reads each weight it uses once (batch 1: no reuse), from
where the weights live (``memory``): an SRAM sized to the model, DRAM, registers, or
``hardwired`` logic (weights are wiring: no read energy, and a constant shift is free). The
state (h, and c for an LSTM) and the layer input are register reads and writes. Widths: a float
tensor anywhere makes the datapath fp32; otherwise activations have ``activation_bits``, each
matrix's weights its declared bits, and the accumulator of a matrix ``b_a + b_w + ceil(log2 N)``
(fixed), ``b_a + ceil(log2 N) + 1`` (binary / ternary) or ``b_a + (e_max - e_min) + ceil(log2
N) + 1`` (powers of two), N = fan-in + 1. A layer whose hidden state is quantized (a hidden-state
quantizer's declared ``role_bits("hidden")``) holds h at those bits: its state registers, the
products reading h (the recurrent tensors, and the next layer's input tensors) use that width.
Weight bytes count each tensor's declared learned state (``learned_state_bits`` per element) beside the
weights. A quantized output layer (``ExportedModel.output_tensor``, the matrix's ``roles.output``) is
priced at its declared bits and format, its learned state in ``output_weight_bytes``, its float bias
at ``output_bits``; a float one is priced at ``output_bits`` as always. Latency: products and element-wise operations on
``lanes`` parallel lanes at ``clock_mhz``, layers in sequence, no zero skipping in time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

import qbench
from qbench_builtins.hardware.counters import ELEMENTWISE, matrix_counts
from qbench_builtins.hardware.energy_tables import (
    TABLES,
    TechTable,
    node_factors,
    sram_pj_per_bit,
    table_label,
)
from qbench_builtins.hardware.weights import encode_matrix

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedLayer, ExportedModel, ExportedTensor

PLACEMENTS = ("sram", "dram", "registers", "hardwired")
STORAGE = ("dense", "packed")
TABLE_ENTRIES = 1024


@dataclass(frozen=True)
class EnergyConfig:
    table: str = "horowitz-45nm"
    node: str = "native"
    memory_scaling: str = "none"
    memory: str = "sram"
    storage: str = "dense"
    activation_bits: int = 16
    output_bits: int = 16
    scale_bits: int = 16
    lanes: int = 256
    clock_mhz: float = 200.0


@dataclass
class Ledger:
    """Operation counts per token, keyed by (category, operation, bits, floating), and their price."""

    counts: dict[tuple[str, str, float, bool], float] = field(default_factory=dict)

    def add(self, category: str, op: str, bits: float, count: float, floating: bool = False) -> None:
        if count:
            key = (category, op, float(bits), floating)
            self.counts[key] = self.counts.get(key, 0.0) + float(count)

    def scaled(self, factor: float) -> Ledger:
        return Ledger({key: value * factor for key, value in self.counts.items()})

    def merged(self, other: Ledger) -> Ledger:
        result = Ledger(dict(self.counts))
        for (category, op, bits, floating), count in other.counts.items():
            result.add(category, op, bits, count, floating)
        return result

    def price(self, table: TechTable, logic: float, memory: float, weight_pj_per_bit: float) -> dict[str, float]:
        """pJ by category: a linear function of the counts."""
        energy: dict[str, float] = {}
        for (category, op, bits, floating), count in self.counts.items():
            if op == "add":
                pj = table.add_pj(bits, floating) * logic
            elif op == "mult":
                pj = table.mult_pj(bits, bits, floating) * logic
            elif op.startswith("mult:"):
                pj = table.mult_pj(float(op[5:]), bits, floating) * logic
            elif op == "shift":
                pj = table.shift_pj(bits) * logic
            elif op == "register-bit":
                pj = table.register_pj_per_bit * logic
            elif op == "weight-bit":
                pj = weight_pj_per_bit * memory
            else:
                raise ValueError(f"unknown operation {op!r}")
            energy[category] = energy.get(category, 0.0) + count * pj
        return energy


@dataclass
class MatrixInfo:
    tensor: ExportedTensor
    kinds: list[str]
    scaled: list[bool]
    block_rows: int
    nonzero: np.ndarray
    bits: float
    exponent_span: int
    #: scale multiplies per output row: 2 for ternary with separate positive and negative scales (TTQ)
    scales_per_row: int = 1

    @property
    def floating(self) -> bool:
        return "float" in self.kinds


def matrix_info(tensor: ExportedTensor, block_rows: int, scale_bits: int) -> MatrixInfo:
    values = np.asarray(tensor.values, dtype=np.float64)
    if values.ndim == 1:
        values = values.reshape(-1, 1)
    try:
        enc = encode_matrix(values, block_rows, scale_bits)
        kinds, scaled = enc.block_kinds, enc.block_scaled
        span = max(enc.code_bits - 2, 0) if "pow2" in kinds else 0
        code_bits = enc.code_bits
    except qbench.Unsupported:
        blocks = values.shape[0] // block_rows
        if asymmetric_ternary(values) is not None:
            # {-W_n, 0, W_p}: add / subtract / skip into two accumulators, one scale multiply each per row
            bits = float(tensor.bits) if tensor.bits else 2.0
            return MatrixInfo(tensor, ["ternary"] * blocks, [True] * blocks, block_rows, values != 0, bits, 0, 2)
        kinds, scaled, span, code_bits = ["float"] * blocks, [False] * blocks, 0, 32
    bits = float(tensor.bits) if tensor.bits else inferred_bits(values, kinds, code_bits)
    return MatrixInfo(tensor, kinds, scaled, block_rows, values != 0, bits, span)


def asymmetric_ternary(values: np.ndarray) -> tuple[float, float] | None:
    """(W_n, W_p) when the non-zero values are exactly -W_n < 0 < W_p with W_n != W_p (TTQ), else None."""
    nonzero = np.unique(values[values != 0])
    if len(nonzero) != 2 or not (nonzero[0] < 0 < nonzero[1]) or -nonzero[0] == nonzero[1]:
        return None
    return float(-nonzero[0]), float(nonzero[1])


def inferred_bits(values: np.ndarray, kinds: list[str], code_bits: int) -> float:
    """Bits per weight when the tensor does not declare them (docs/hardware.md, "Bits per weight")."""
    if "float" in kinds:
        return 32.0
    if set(kinds) <= {"binary"}:
        return 1.0
    if set(kinds) <= {"binary", "ternary"}:
        return 2.0
    if set(kinds) <= {"binary", "ternary", "pow2"}:
        magnitudes = np.abs(values[values != 0])
        codes = len(np.unique(np.frexp(magnitudes)[1])) + int(np.any(values == 0))
        return 1.0 + math.ceil(math.log2(max(codes, 2)))
    return float(code_bits)


def accumulator_bits(info: MatrixInfo, b_a: float, fan_in: int) -> float:
    """Closed-form accumulator width that cannot overflow (docs/hardware.md)."""
    log_n = math.ceil(math.log2(fan_in + 1))
    if info.floating:
        return 32.0
    if set(info.kinds) <= {"binary", "ternary"}:
        return b_a + log_n + 1
    if "pow2" in info.kinds:
        return b_a + info.exponent_span + log_n + 1
    return b_a + info.bits + log_n


def stored_bits(info: MatrixInfo, storage: str) -> float:
    """Bits per stored weight: declared bits, or 1.6 for ternary packed five to a byte."""
    if storage == "packed" and info.tensor.scheme in ("ternary", "pow2-ternary") and info.bits == 2.0:
        return 1.6
    return info.bits


def weight_bytes(infos: list[MatrixInfo]) -> dict[str, float]:
    """Dense (declared bits), packed (5 ternary digits per byte), entropy bound and sparse (CSR) bytes."""
    dense = packed = entropy = sparse = 0.0
    for info in infos:
        values = np.asarray(info.tensor.values, dtype=np.float64).reshape(len(info.nonzero), -1)
        count = values.size
        dense += count * info.bits / 8 + info.tensor.state_elements * info.tensor.state_bits / 8
        packed_bits = stored_bits(info, "packed")
        packed += math.ceil(count / 5) if packed_bits == 1.6 else count * info.bits / 8
        _, freq = np.unique(values, return_counts=True)
        p = freq / count
        entropy += count * float(-(p * np.log2(p)).sum()) / 8
        # a learned step or scale is stored whatever the weights' format (declared state_bits)
        learned = info.tensor.state_elements * info.tensor.state_bits / 8
        packed += learned
        entropy += learned
        sparse += learned
        rows, cols = int(values.shape[0]), int(values.shape[1])
        nnz = int(np.count_nonzero(values))
        # CSR: each non-zero keeps its value without the zero code, plus a column index; row pointers
        value_bits = 32.0 if info.floating else max(info.bits - (1 if 0.0 in values else 0), 1.0)
        index_bits = max(math.ceil(math.log2(cols)), 1) if cols > 1 else 0
        pointer_bits = max(math.ceil(math.log2(nnz + 1)), 1)
        sparse += (nnz * (value_bits + index_bits) + (rows + 1) * pointer_bits) / 8
    return {"dense": dense, "packed": packed, "entropy": entropy, "sparse": sparse}


def _column_ids(sample: EvalSample | None, n: int) -> np.ndarray:
    if sample is not None and sample.tokens is not None and len(sample.tokens) > 1:
        return np.asarray(sample.tokens[:-1], dtype=np.int64)
    return np.arange(n)


def sequence_length(sample: EvalSample | None) -> float:
    if sample is None:
        return 1.0
    if sample.tokens is not None:
        return float(max(len(sample.tokens) - 1, 1))
    if sample.sequences is not None and len(sample.sequences):
        return float(np.mean(np.maximum(np.asarray(sample.sequences.lengths), 1)))
    return 1.0


def elementwise_ops(layer: ExportedLayer) -> tuple[int, int, int, int, int]:
    """(multiplies, add/sub, sigmoids, tanhs, relus) per hidden unit: the paper's cells, else the declaration."""
    if layer.elementwise:
        e = layer.elementwise
        return e.get("mults", 0), e.get("adds", 0), e.get("sigmoids", 0), e.get("tanhs", 0), e.get("relus", 0)
    return (*ELEMENTWISE[layer.cell], 0)


Layers = list[tuple["ExportedLayer", list[MatrixInfo], list[MatrixInfo]]]


def layer_matrices(model: ExportedModel, cfg: EnergyConfig) -> Layers:
    """Each recurrent layer with what it multiplies (matrices, diagonals) and what it adds (bias vectors)."""
    layers = []
    for layer in model.layers:
        h = layer.hidden_size
        if layer.tensors:  # a declared cell: every matrix and diagonal multiplies, every vector adds
            pair = [matrix_info(t, h, cfg.scale_bits) for t in layer.tensors.values() if t.layout != "vector"]
            biases = [matrix_info(t, h, cfg.scale_bits) for t in layer.tensors.values() if t.layout == "vector"]
        else:
            pair = [
                matrix_info(layer.w_input, h, cfg.scale_bits),
                matrix_info(layer.w_recurrent, h, cfg.scale_bits),
            ]
            biases = [matrix_info(b, h, cfg.scale_bits) for b in (layer.b_input, layer.b_recurrent) if b is not None]
        layers.append((layer, pair, biases))
    return layers


@dataclass
class StepCost:
    """What one time step of the recurrent layers costs: its ledger, cycles and bit operations."""

    ledger: Ledger = field(default_factory=Ledger)
    cycles: float = 0.0
    bops: float = 0.0


def _price_products(
    step: StepCost,
    products: list[MatrixInfo],
    ids: np.ndarray | None,
    cols_x: int,
    h: int,
    fan_in: int,
    b_a: float,
    cfg: EnergyConfig,
    widths: tuple[float, float] | None = None,
) -> int:
    """Adds one layer's matrix products to ``step``; returns the weights read per step (rows x columns used).

    ``widths``: the operand widths of the input and of the hidden state (default both ``b_a``)."""
    k = cols_x + h
    step_products = 0
    b_x, b_h = widths or (b_a, b_a)
    for info in products:
        reads_input = info.tensor.role == "input"
        b_op = b_x if reads_input else b_h
        column_ids = ids if reads_input else None
        # weights read per step: rows x the columns used (one column of a one-hot input)
        rows = info.nonzero.shape[0]
        cols = (cols_x if reads_input else h) if info.tensor.layout == "matrix" else 1
        step_products += rows * cols
        counts = matrix_counts(info.kinds, info.scaled, info.block_rows, info.nonzero, column_ids)
        evaluations = 1 if column_ids is None else len(column_ids)
        if info.scales_per_row > 1:
            extra = rows * evaluations * (info.scales_per_row - 1)
            counts["scale_mults"] += extra
            counts["mults"] += extra
        acc = accumulator_bits(info, b_a, fan_in)
        fl = info.floating
        scale_mults = counts["scale_mults"]
        step.ledger.add("add", "add", acc, counts["adds"] / evaluations, fl)
        step.ledger.add("mult", f"mult:{info.bits:g}", b_op, (counts["mults"] - scale_mults) / evaluations, fl)
        step.ledger.add("mult", f"mult:{cfg.scale_bits}", acc, scale_mults / evaluations)
        if cfg.memory != "hardwired":
            step.ledger.add("shift", "shift", acc, counts["shifts"] / evaluations)
            bits_read = rows * cols * stored_bits(info, cfg.storage)
            step.ledger.add("weights", "weight-bit", 0, bits_read)
        p = float(np.count_nonzero(info.nonzero)) / max(info.nonzero.size, 1)
        step.bops += rows * cols * (p * b_op * info.bits + b_op + info.bits + math.log2(k))
    return step_products


def recurrent_step(
    model: ExportedModel, sample: EvalSample | None, cfg: EnergyConfig, layers: Layers, b_a: float, floating: bool
) -> StepCost:
    """One time step of every recurrent layer: products, biases, element-wise operations and state."""
    step = StepCost()
    b_x = b_a  # the first layer reads the input at the activation width
    for index, (layer, products, biases) in enumerate(layers):
        h, n = layer.hidden_size, layer.input_size
        b_h = hidden_width(layer, b_a, floating)
        one_hot = index == 0 and model.input_kind == "one-hot" and layer.input_scale is None
        ids = _column_ids(sample, n) if one_hot else None
        cols_x = 1 if one_hot else n
        step_products = _price_products(step, products, ids, cols_x, h, n + h, b_a, cfg, (b_x, b_h))
        per_step = step.ledger
        if cfg.memory != "hardwired":
            for info in biases:
                per_step.add("weights", "weight-bit", 0, info.nonzero.size * stored_bits(info, cfg.storage))
        mults, adds, sigmoids, tanhs, relus = elementwise_ops(layer)
        bn = n if layer.input_scale is not None and index > 0 else 0
        per_step.add("mult", "mult", b_a, mults * h + bn, floating)
        # a relu is a comparison with zero: priced as an add of the activation width
        per_step.add("add", "add", b_a if floating else 2 * b_a, (adds + relus) * h + bn, floating)
        per_step.add("tables", "register-bit", 0, (sigmoids + tanhs) * h * b_a)
        state_bits = h * b_h + (layer.state_size - 1) * h * b_a  # h at its declared width, c (an LSTM's) at b_a
        per_step.add("state", "register-bit", 0, 2 * state_bits + cols_x * b_x)
        b_x = b_h  # the next layer reads this layer's h
        step.cycles += math.ceil(step_products / cfg.lanes) + math.ceil(
            (mults + adds + sigmoids + tanhs + relus) * h / cfg.lanes
        )
    return step


def hidden_width(layer: ExportedLayer, b_a: float, floating: bool) -> float:
    """The width h is held at: the hidden-state quantizer's declared bits, else the activation width."""
    return b_a if floating or layer.hidden_bits is None else float(layer.hidden_bits)


@dataclass
class OutputCost:
    """The output layer, with its own scheme, evaluated once: ledger, weights, bit operations, cycles."""

    ledger: Ledger
    info: MatrixInfo
    weights: np.ndarray
    bops: float
    cycles: int


def output_layer(model: ExportedModel, cfg: EnergyConfig, b_a: float, floating: bool) -> OutputCost:
    from qbench.export import ExportedTensor

    w_out = np.asarray(model.output_weight, dtype=np.float64)
    n_out, hidden = w_out.shape
    declared = getattr(model, "output_tensor", None)
    if declared is not None:  # quantized by the output role: its declared bits and format
        out_tensor = declared
    else:
        out_tensor = ExportedTensor(w_out, "output", model.output_scheme or "float", 0.0)
    out_info = matrix_info(out_tensor, n_out, cfg.scale_bits)
    if out_info.floating and declared is None:
        out_info.bits = 32.0 if floating else float(cfg.output_bits)
        out_info.kinds = ["float"] if floating else ["fixed"]
    # a quantized output layer's bias stays full precision (qbench.training.output): output_bits on an
    # integer datapath; without one, the bias is priced at the layer's width, as it always was
    bias_bits = out_info.bits if declared is None else (32.0 if floating else float(cfg.output_bits))
    out_counts = matrix_counts(out_info.kinds, out_info.scaled, n_out, out_info.nonzero)
    output = Ledger()
    out_acc = accumulator_bits(out_info, b_a, hidden)
    output.add("add", "add", out_acc, out_counts["adds"], floating)
    output.add("mult", f"mult:{out_info.bits:g}", b_a, out_counts["mults"] - out_counts["scale_mults"], floating)
    output.add("mult", f"mult:{cfg.scale_bits}", out_acc, out_counts["scale_mults"])
    if cfg.memory != "hardwired":
        output.add("shift", "shift", out_acc, out_counts["shifts"])
        output.add("weights", "weight-bit", 0, w_out.size * out_info.bits + n_out * bias_bits)
    p_out = float(np.count_nonzero(w_out)) / max(w_out.size, 1)
    out_bops = n_out * hidden * (p_out * b_a * out_info.bits + b_a + out_info.bits + math.log2(max(hidden, 2)))
    return OutputCost(output, out_info, w_out, out_bops, math.ceil(n_out * hidden / cfg.lanes))


def weight_pj_per_bit(cfg: EnergyConfig, table: TechTable, layers: Layers, output: OutputCost) -> float:
    """The read energy of one weight bit where the weights live (an SRAM is sized to all stored bits)."""
    if cfg.memory == "sram":
        infos = [info for _, pair, biases in layers for info in (*pair, *biases)]
        stored = sum(info.nonzero.size * stored_bits(info, cfg.storage) for info in infos)
        stored += output.weights.size * output.info.bits
        return sram_pj_per_bit(stored)
    return {"dram": table.dram_pj_per_bit, "registers": table.register_pj_per_bit, "hardwired": 0.0}[cfg.memory]


def analyse(model: ExportedModel, sample: EvalSample | None, cfg: EnergyConfig) -> dict[str, float | str | bool]:
    """All energy / memory / latency columns for ``model`` (see :class:`EnergyConfig`)."""
    table = TABLES[cfg.table]
    logic, memory_factor = node_factors(cfg.table, cfg.node, cfg.memory_scaling)
    layers = layer_matrices(model, cfg)
    floating = any(info.floating for _, pair, _ in layers for info in pair)
    b_a = 32.0 if floating else float(cfg.activation_bits)
    step = recurrent_step(model, sample, cfg, layers, b_a, floating)
    out = output_layer(model, cfg, b_a, floating)

    length = sequence_length(sample)
    # one output per token (next symbol, or one label per step); a classifier or a regression
    # (one target vector per sequence) reads one per sequence
    outputs_per_token = 1.0 / length if model.task in ("classification", "regression") else 1.0
    output_per_token = out.ledger.scaled(outputs_per_token)
    ledger = step.ledger.merged(output_per_token)
    pj_per_bit = weight_pj_per_bit(cfg, table, layers, out)
    energy = ledger.price(table, logic, memory_factor, pj_per_bit)
    arith = sum(energy.get(key, 0.0) for key in ("add", "mult", "shift"))
    mem = sum(energy.get(key, 0.0) for key in ("weights", "state", "tables"))
    output_pj = sum(output_per_token.price(table, logic, memory_factor, pj_per_bit).values())
    per_token = arith + mem
    sizes = weight_bytes([info for _, pair, biases in layers for info in (*pair, *biases)])
    hidden_state_bytes = sum(layer.state_storage_bits() for layer in model.layers) / 8
    sizes = {key: value + hidden_state_bytes for key, value in sizes.items()}
    # one shared 1024-entry table per function used (sigmoid, tanh; a relu needs none)
    used = [elementwise_ops(layer) for layer in model.layers]
    functions = int(any(ops[2] for ops in used)) + int(any(ops[3] for ops in used))
    table_bytes = functions * TABLE_ENTRIES * b_a / 8
    state_bytes = sum(
        (layer.hidden_size * hidden_width(layer, b_a, floating) + (layer.state_size - 1) * layer.hidden_size * b_a) / 8
        for layer in model.layers
    )
    return {
        "energy_pj_per_token": per_token,
        "energy_pj_per_sequence": per_token * length,
        "energy_arith_pj_per_token": arith,
        "energy_memory_pj_per_token": mem,
        "energy_weights_pj_per_token": energy.get("weights", 0.0),
        "energy_state_pj_per_token": energy.get("state", 0.0) + energy.get("tables", 0.0),
        "energy_output_pj_per_token": output_pj,
        "energy_add_pj_per_token": energy.get("add", 0.0),
        "energy_mult_pj_per_token": energy.get("mult", 0.0),
        "energy_shift_pj_per_token": energy.get("shift", 0.0),
        "weight_bytes_dense": sizes["dense"],
        "weight_bytes_packed": sizes["packed"],
        "weight_bytes_sparse": sizes["sparse"],
        "weight_bytes_entropy": sizes["entropy"],
        "output_weight_bytes": (out.weights.size * out.info.bits + out.info.tensor.state_elements
                                * out.info.tensor.state_bits) / 8,
        "state_bytes": float(state_bytes),
        "table_bytes": float(table_bytes),
        "bops_per_token": step.bops + out.bops * outputs_per_token,
        "latency_us_per_token": (step.cycles + out.cycles * outputs_per_token) / cfg.clock_mhz,
        "energy_table": table_label(cfg.table, cfg.node),
        "memory_placement": cfg.memory,
        "datapath": "fp32" if floating else f"int{cfg.activation_bits}",
    }
