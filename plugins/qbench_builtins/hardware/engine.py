"""The vectorised integer engine: runs a :class:`~.program.ModelProgram` on integer codes.

Products go through one matrix multiply per layer and step (the input part of every step at
once, since it does not depend on the state) in the cheapest dtype that is provably exact:
float32 or float64 BLAS while the sums stay below 2**24 / 2**53, int64 below 2**62, Python
ints (object arrays) beyond. Everything after the products is integer: shifts, adds, table
lookups and rounding. Operation counts are not counted here: they follow from the non-zero
masks (:mod:`.counters`); what is data dependent (saturations, overflows, accumulator range)
is measured here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from qbench_builtins.hardware import fused
from qbench_builtins.hardware.formats import QFormat, RandomKey, requantize, wrap
from qbench_builtins.hardware.intops import (
    RunStats,
    abs_max,
    as_int,
    blas_product,
    recurrent_multiplier,
    row_scale,
    shl,
)
from qbench_builtins.hardware.program import (
    LayerProgram,
    ModelProgram,
    Site,
)

__all__ = ["RunResult", "RunStats", "adder_abs_max", "run", "run_layer", "select_final"]


@dataclass
class RunResult:
    hidden: list[np.ndarray]  # per layer, codes [T, B, h] in the activation format
    logits: np.ndarray  # integer codes [N, C] at program.output.acc_frac
    stats: RunStats
    layer_inputs: list[np.ndarray] = field(default_factory=list)  # what each layer's input part read


def _product(x: np.ndarray, codes_t: np.ndarray, dtype: type | str, out_dtype: type | str) -> np.ndarray:
    """Exact ``x @ codes_t`` (integers) computed in ``dtype``, returned as ``out_dtype`` ints."""
    return as_int(blas_product(x.astype(dtype), codes_t.astype(dtype)), out_dtype)


def _scale_align(sums: np.ndarray, scale: np.ndarray | None, shift: int, bias: np.ndarray) -> np.ndarray:
    """``(sums * scale) << shift + bias``; ``scale`` None when every mantissa is 1."""
    if scale is not None:
        sums = sums * scale
    if shift:
        sums = sums << shift
    return sums + bias


class _Accumulator:
    """Range tracking and the accumulator's wrap-around (acc_bits > 0)."""

    def __init__(self, width: int, stats: RunStats) -> None:
        self.width = width
        self.stats = stats

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        if acc.size == 0:
            return acc
        top = abs_max(acc)
        if top > self.stats.acc_abs_max:
            self.stats.acc_abs_max = top
        if self.width and top > (1 << (self.width - 1)) - 1:
            limit = 1 << (self.width - 1)
            self.stats.overflows += int(np.count_nonzero((acc < -limit) | (acc >= limit)))
            return wrap(acc, self.width)
        return acc


def input_part(layer: LayerProgram, x: np.ndarray) -> np.ndarray:
    """Accumulator contribution of the inputs for every step: [T, B, G*h] at acc_frac."""
    dtype = layer.arith_dtype
    codes_t = layer.wx.codes.T
    if layer.one_hot:
        sums = as_int(codes_t[x], dtype)
    else:
        sums = _product(x, codes_t, layer.matmul_x_dtype, dtype)
    return _scale_align(
        sums, row_scale(layer.wx.row_scale, dtype), layer.shift_x, as_int(layer.bias_x, dtype)
    )


def batchnorm_stage(program: ModelProgram, layer: LayerProgram, x: np.ndarray, stats: RunStats) -> np.ndarray:
    bn = layer.batchnorm
    assert bn is not None
    cfg = program.config
    wide = x.astype(object) if layer.arith_dtype is object else x
    value = wide * bn.scale + bn.shift
    key = RandomKey(cfg.seed, layer.index, Site.BATCHNORM, 0)
    codes, sat = requantize(
        value, cfg.activation.frac_bits + bn.scale_frac, cfg.activation, cfg.rounding, cfg.overflow, key
    )
    stats.saturated("batchnorm", sat)
    return codes


class _CellUpdate:
    """One layer's cell equations after the accumulators: any rounding, overflow policy and dtype.

    Each method takes one step's rounded pre-activations (and the state) and returns the new
    state; saturations are summed per site and reported once by :meth:`report`.
    """

    def __init__(self, program: ModelProgram, layer: LayerProgram) -> None:
        cfg = program.config
        self.cfg, self.layer = cfg, layer
        self.mode, self.policy = cfg.rounding, cfg.overflow
        self.stochastic = cfg.rounding == "stochastic"
        self.sat_pre = self.sat_cell = self.sat_hidden = 0
        sf, af, cf = cfg.gate.frac_bits, cfg.activation.frac_bits, cfg.cell.frac_bits
        self.common = max(sf, af)  # the GRU mixes n (gate format) and h (activation format) here
        self.wide = max(sf + cf, 2 * sf)  # the LSTM's f c and i g products, aligned

    def requantize(
        self, x: np.ndarray, from_frac: int, fmt: QFormat, site: int, step: int
    ) -> tuple[np.ndarray, int]:
        key = RandomKey(self.cfg.seed, self.layer.index, site, step) if self.stochastic else None
        return requantize(x, from_frac, fmt, self.mode, self.policy, key)

    def preact(self, acc: np.ndarray, step: int) -> np.ndarray:
        pre, sat = self.requantize(acc, self.layer.acc_frac, self.cfg.preact, Site.PREACT, step)
        self.sat_pre += sat
        return pre

    def hidden(self, total: np.ndarray, from_frac: int, step: int) -> np.ndarray:
        h, sat = self.requantize(total, from_frac, self.cfg.activation, Site.HIDDEN, step)
        self.sat_hidden += sat
        return h

    def rnn(self, pre: np.ndarray, step: int) -> np.ndarray:
        return self.hidden(self.layer.tanh(pre, self.mode), self.cfg.gate.frac_bits, step)

    def gru(self, pre: np.ndarray, xn: np.ndarray, hn: np.ndarray, h: np.ndarray, step: int) -> np.ndarray:
        layer, cfg, hs = self.layer, self.cfg, self.layer.hidden
        sf, af, F = cfg.gate.frac_bits, cfg.activation.frac_bits, layer.acc_frac
        rz = layer.sigmoid(pre, self.mode)
        r, z = rz[:, :hs], rz[:, hs:]
        xn_q, sat1 = self.requantize(xn, F, cfg.preact, Site.GRU_XN, step)
        hn_q, sat2 = self.requantize(hn, F, cfg.preact, Site.GRU_HN, step)
        n_pre, sat3 = self.requantize(
            (xn_q << sf) + r * hn_q, cfg.preact.frac_bits + sf, cfg.preact, Site.GRU_N, step
        )
        self.sat_pre += sat1 + sat2 + sat3
        n_c = shl(layer.tanh(n_pre, self.mode), self.common - sf)
        total = (n_c << sf) + z * (shl(h, self.common - af) - n_c)
        return self.hidden(total, sf + self.common, step)

    def lstm(self, pre: np.ndarray, c: np.ndarray, step: int) -> tuple[np.ndarray, np.ndarray]:
        layer, cfg, hs = self.layer, self.cfg, self.layer.hidden
        sf, cf = cfg.gate.frac_bits, cfg.cell.frac_bits
        sg = layer.sigmoid(pre, self.mode)
        g = layer.tanh(pre[:, 2 * hs : 3 * hs], self.mode)
        total = shl(sg[:, hs : 2 * hs] * c, self.wide - sf - cf) + shl(sg[:, :hs] * g, self.wide - 2 * sf)
        c, sat_c = self.requantize(total, self.wide, cfg.cell, Site.CELL, step)
        self.sat_cell += sat_c
        assert layer.tanh_cell is not None
        tc = layer.tanh_cell(c, self.mode)
        return self.hidden(sg[:, 3 * hs :] * tc, 2 * sf, step), c

    def report(self, stats: RunStats) -> None:
        stats.saturated("preact", self.sat_pre)
        stats.saturated("cell", self.sat_cell)
        stats.saturated("hidden", self.sat_hidden)


def run_layer(program: ModelProgram, layer: LayerProgram, xf: np.ndarray, stats: RunStats) -> np.ndarray:
    """Run one layer over all steps; ``xf`` from :func:`input_part`. Returns h codes [T, B, h].

    The recurrent biases are added to ``xf`` up front (except the GRU's ``b_hn``, which the
    reset gate multiplies), and the row scale and alignment shift are one multiplier: the same
    integers as the step-by-step formula in the module docstring, with fewer array passes.
    """
    cfg = program.config
    steps, batch, rows = xf.shape
    hs, dtype = layer.hidden, layer.arith_dtype
    int_dtype = object if dtype is object else np.int64
    wh_t = layer.wh.codes.T.astype(layer.matmul_h_dtype)
    multiplier = recurrent_multiplier(layer.wh.row_scale, layer.shift_h, dtype)
    bias_h = as_int(layer.bias_h, dtype)
    gru = layer.cell == "gru"
    split = 2 * hs if gru else rows  # rows whose recurrent bias joins the input part
    xf = xf.copy()
    xf[:, :, :split] += bias_h[:split]
    b_hn = bias_h[split:]
    # exact accumulators are range-checked once at the end, from these logs
    track_steps = cfg.acc_bits > 0
    acc_check = _Accumulator(cfg.acc_bits, stats)
    acc_log = None if track_steps else np.empty((steps, batch, split), dtype=int_dtype)
    hn_log = None if track_steps or not gru else np.empty((steps, batch, hs), dtype=int_dtype)
    zero = np.zeros((batch, hs), dtype=int_dtype)
    h, c = zero, zero
    outputs = np.empty((steps, batch, hs), dtype=int_dtype)
    update = _CellUpdate(program, layer)
    for t in range(steps):
        sums = blas_product(h.astype(layer.matmul_h_dtype), wh_t)
        hf = as_int(sums, dtype) if dtype is object else sums.astype(np.int64)
        if multiplier is not None:
            hf = hf * multiplier
        if acc_log is not None:
            acc = np.add(xf[t, :, :split], hf[:, :split], out=acc_log[t])
        else:
            acc = acc_check(xf[t, :, :split] + hf[:, :split])
        pre = update.preact(acc, t)
        if gru:
            if hn_log is not None:
                hn = np.add(hf[:, split:], b_hn, out=hn_log[t])
                xn = xf[t, :, split:]
            else:
                hn = acc_check(hf[:, split:] + b_hn)
                xn = acc_check(xf[t, :, split:])
            h = update.gru(pre, xn, hn, h, t)
        elif layer.cell == "rnn":
            h = update.rnn(pre, t)
        else:
            h, c = update.lstm(pre, c, t)
        outputs[t] = h
    for log in (acc_log, hn_log, xf[:, :, split:] if gru and acc_log is not None else None):
        if log is not None:
            acc_check(log)
    update.report(stats)
    return outputs


def adder_abs_max(layer: LayerProgram, x: np.ndarray, hidden: np.ndarray) -> int:
    """Largest |raw product sum| of the input and of the recurrent adder trees (before scale and bias).

    Computed after the run, for all steps at once: ``Wx_codes @ x_t`` and ``Wh_codes @ h_{t-1}``.
    """
    previous = np.concatenate([np.zeros_like(hidden[:1]), hidden[:-1]], axis=0)
    dtype = object if layer.arith_dtype is object else np.int64
    if layer.one_hot:
        sums_x = layer.wx.codes.T[x]
    else:
        sums_x = _product(x, layer.wx.codes.T, layer.matmul_x_dtype, dtype)
    sums_h = _product(previous, layer.wh.codes.T, layer.matmul_h_dtype, dtype)
    return max((abs_max(s) for s in (sums_x, sums_h) if s.size), default=0)


def select_final(hidden: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """[N, h]: every step of a single stream (LM), or each sequence's last valid step."""
    if lengths is None:
        return hidden[:, 0, :]
    lengths = np.asarray(lengths, dtype=np.int64)
    return hidden[lengths - 1, np.arange(hidden.shape[1])]


def output_layer(program: ModelProgram, h: np.ndarray) -> np.ndarray:
    out = program.output
    dtype = object if out.matmul_dtype is object else np.int64
    sums = _product(h, out.w.codes.T, out.matmul_dtype, dtype)
    return _scale_align(sums, row_scale(out.w.row_scale, dtype), 0, as_int(out.bias, dtype))


def run(program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None = None) -> RunResult:
    """Run the program on ``inputs`` (ids [T, B] or features [T, B, n], time-major)."""
    stats = RunStats()
    x, stats.input_saturations = program.input_codes(inputs)
    hidden: list[np.ndarray] = []
    inputs_read: list[np.ndarray] = []
    for layer in program.layers:
        if layer.batchnorm is not None:
            x = batchnorm_stage(program, layer, x, stats)
        run_one = run_layer
        if fused.applies(program, layer):
            run_one = fused.run_gru_fast if layer.cell == "gru" else fused.run_layer_fast
        inputs_read.append(x)
        x = run_one(program, layer, input_part(layer, x), stats)
        hidden.append(x)
    logits = output_layer(program, select_final(hidden[-1], lengths))
    return RunResult(hidden, logits, stats, inputs_read)
