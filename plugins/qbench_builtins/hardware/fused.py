"""The fused rnn / gru / lstm loops: the same integers as :func:`.engine.run_layer`, fewer array passes.

Used when rounding is ``floor`` or ``half-up``, requantization saturates, accumulators are exact
and the tables cover the pre-activation format (see :func:`applies`); the simulator's speed on a
character stream (one sequence, batch 1) comes from here. Tests run both paths against each other
and against the float64 reference.
"""

from __future__ import annotations

import numpy as np

from qbench_builtins.hardware.formats import QFormat, saturate
from qbench_builtins.hardware.intops import (
    RunStats,
    blas_product,
    recurrent_multiplier,
    reduce_max,
    reduce_min,
    shl,
)
from qbench_builtins.hardware.program import LayerProgram, ModelProgram

#: tests turn the fused path off to compare it with the general one
FAST_PATH = True


def applies(program: ModelProgram, layer: LayerProgram) -> bool:
    """Floor / half-up rounding, saturation, exact accumulators, tables covering the pre-activation range."""
    cfg = program.config
    return (
        FAST_PATH
        and layer.cell in ("rnn", "gru", "lstm")
        and cfg.rounding in ("floor", "half-up")
        and cfg.overflow == "saturate"
        and cfg.acc_bits == 0
        and layer.arith_dtype is not object
        and layer.tanh.covers_domain(cfg.preact)
        and (layer.cell == "rnn" or layer.sigmoid.covers_domain(cfg.preact))
        and (layer.cell != "gru" or layer.acc_frac >= cfg.preact.frac_bits)
    )


def _half(drop: int, half_up: bool) -> int:
    """Half an LSB of a rounding that drops ``drop`` bits (preloaded for half-up, 0 for floor)."""
    return (1 << (drop - 1)) if half_up and drop > 0 else 0


def _recurrent_matrix(layer: LayerProgram) -> tuple[np.ndarray, np.ndarray | None]:
    """The transposed recurrent codes in the BLAS dtype and the int64 row multiplier (or None)."""
    wh_t = np.ascontiguousarray(layer.wh.codes.T.astype(layer.matmul_h_dtype))
    return wh_t, recurrent_multiplier(layer.wh.row_scale, layer.shift_h, np.int64)


def _clip_in_place(x: np.ndarray, fmt: QFormat) -> int:
    """Saturate ``x`` into ``fmt`` in place; returns how many codes were outside."""
    clipped, count = saturate(x, fmt, "saturate")
    if count:
        x[...] = clipped
    return count


def _record_range(stats: RunStats, logs: list[tuple[np.ndarray, int]]) -> None:
    """The accumulator range of logged sums, each with the half LSB preloaded into it taken off."""
    top = 0
    for log, offset in logs:
        top = max(top, int(reduce_max(log, axis=None)) - offset, offset - int(reduce_min(log, axis=None)))
    stats.acc_abs_max = max(stats.acc_abs_max, top)


def _exact_in_blas(fmt: QFormat, matmul_dtype: type | str) -> bool:
    """Codes of ``fmt`` are exact in the BLAS dtype: the state can stay there between steps."""
    return matmul_dtype in (np.float32, np.float64) and fmt.width <= (24 if matmul_dtype is np.float32 else 53)


def _drop_bits(y: np.ndarray, drop: int, out: np.ndarray) -> np.ndarray:
    """``y >> drop`` (half an LSB already added when rounding half up) written into ``out``."""
    if drop >= 0:
        return np.right_shift(y, drop, out=out)
    out[...] = y << -drop
    return out


def _outside(codes: np.ndarray, fmt: QFormat) -> int:
    return int(np.count_nonzero((codes < fmt.lo) | (codes > fmt.hi)))


class _LstmCell:
    """``c' = f c + i g`` rounded into the cell format (saturations counted), and ``o tanh(c')``."""

    def __init__(self, program: ModelProgram, layer: LayerProgram) -> None:
        cfg = program.config
        sf, cf = cfg.gate.frac_bits, cfg.cell.frac_bits
        wide = max(sf + cf, 2 * sf)
        self.hs, self.fmt, self.rounding = layer.hidden, cfg.cell, cfg.rounding
        self.drop, self.half = wide - cf, _half(wide - cf, cfg.rounding == "half-up")
        self.fc_shift, self.ig_shift = wide - sf - cf, wide - 2 * sf
        self.sigmoid, self.tanh = layer.sigmoid, layer.tanh
        assert layer.tanh_cell is not None
        self.tanh_cell = layer.tanh_cell
        self.saturations = 0

    def __call__(self, pre: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        hs = self.hs
        sg = self.sigmoid.clamped(pre)
        g = self.tanh.clamped(pre[:, 2 * hs : 3 * hs])
        total = shl(sg[:, hs : 2 * hs] * c, self.fc_shift) + shl(sg[:, :hs] * g, self.ig_shift)
        if self.half:
            total += self.half
        c = total >> self.drop if self.drop > 0 else total << -self.drop
        c, count = saturate(c, self.fmt, "saturate")
        self.saturations += count
        return sg[:, 3 * hs :] * self.tanh_cell(c, self.rounding), c


def run_layer_fast(program: ModelProgram, layer: LayerProgram, xf: np.ndarray, stats: RunStats) -> np.ndarray:
    """rnn / lstm with floor or half-up rounding: the same integers as :func:`run_layer`, fewer passes.

    Half an LSB of the pre-activation rounding is preloaded with the biases; the pre-activation
    goes to the tables unsaturated (a table whose index clamps at the format's range returns what
    it returns for the saturated code) and its saturations are counted once at the end, like the
    accumulator range; the hidden state cannot leave its format when ``2**f <= hi`` (it is a
    rounded product or tanh of values in [-1, 1]), so it is checked only otherwise.
    """
    cfg = program.config
    act, pre_fmt, gate = cfg.activation, cfg.preact, cfg.gate
    steps, batch, rows = xf.shape
    hs = layer.hidden
    half_up = cfg.rounding == "half-up"
    wh_t, multiplier = _recurrent_matrix(layer)
    matmul_dtype = layer.matmul_h_dtype
    sf, af = gate.frac_bits, act.frac_bits
    pre_drop = layer.acc_frac - pre_fmt.frac_bits
    pre_half = _half(pre_drop, half_up)
    xf = xf + (layer.bias_h.astype(np.int64) + pre_half)
    acc_log = np.empty((steps, batch, rows), dtype=np.int64)
    pre_log = np.empty((steps, batch, rows), dtype=np.int64)
    outputs = np.empty((steps, batch, hs), dtype=np.int64)
    h = np.zeros((batch, hs), dtype=np.int64)
    c = np.zeros((batch, hs), dtype=np.int64)
    h_drop = (sf if layer.cell == "rnn" else 2 * sf) - af
    h_half = _half(h_drop, half_up)
    check_hidden = (1 << af) > act.hi or h_drop < 0
    tanh = layer.tanh
    lstm = _LstmCell(program, layer) if layer.cell == "lstm" else None
    sat_hidden = 0
    float_state = not check_hidden and h_drop >= 0 and _exact_in_blas(act, matmul_dtype)
    h_blas = np.zeros((batch, hs), dtype=matmul_dtype if float_state else np.int64)
    h_log = np.empty((steps, batch, hs), dtype=h_blas.dtype) if float_state else outputs
    for t in range(steps):
        hf = blas_product(h_blas if float_state else h.astype(matmul_dtype), wh_t).astype(np.int64)
        if multiplier is not None:
            hf *= multiplier
        acc = np.add(xf[t], hf, out=acc_log[t])
        pre = np.right_shift(acc, pre_drop, out=pre_log[t]) if pre_drop >= 0 else acc << -pre_drop
        if lstm is not None:
            y, c = lstm(pre, c)
        else:
            y = tanh.clamped(pre)
        if h_half:
            y += h_half
        if float_state:
            h_blas = np.right_shift(y, h_drop, out=h_log[t], casting="unsafe")
            continue
        h = _drop_bits(y, h_drop, outputs[t])
        if check_hidden:
            sat_hidden += _clip_in_place(h, act)
    if float_state:
        outputs = h_log.astype(np.int64)
    if steps:
        _record_range(stats, [(acc_log, pre_half)])
        if pre_drop >= 0:
            stats.saturated("preact", _outside(pre_log, pre_fmt))
    stats.saturated("cell", 0 if lstm is None else lstm.saturations)
    stats.saturated("hidden", sat_hidden)
    return outputs


def run_gru_fast(program: ModelProgram, layer: LayerProgram, xf: np.ndarray, stats: RunStats) -> np.ndarray:
    """gru with floor or half-up rounding: the same integers as :func:`.engine.run_layer`.

    The candidate's input part ``xn`` does not depend on the state, so it is rounded for every
    step at once (and shifted into the ``r * hn`` sum's format); halves of an LSB are preloaded;
    r and z go to the sigmoid table unsaturated (counted at the end); the new state
    ``n + z (h - n)`` is a convex mix of values in [-1, 1] and is checked only when ``2**f > hi``.
    """
    cfg = program.config
    act, pre_fmt, gate = cfg.activation, cfg.preact, cfg.gate
    steps, batch, _rows = xf.shape
    hs = layer.hidden
    half_up = cfg.rounding == "half-up"
    matmul_dtype = layer.matmul_h_dtype
    wh_t, multiplier = _recurrent_matrix(layer)
    sf, af = gate.frac_bits, act.frac_bits
    pre_drop = layer.acc_frac - pre_fmt.frac_bits  # >= 0: the accumulator has at least pf bits
    pre_half = _half(pre_drop, half_up)
    bias_h = layer.bias_h.astype(np.int64)
    rz_in = xf[:, :, : 2 * hs] + (bias_h[: 2 * hs] + pre_half)
    xn = xf[:, :, 2 * hs :]
    xn_q, sat_xn = saturate((xn + pre_half) >> pre_drop, pre_fmt, "saturate")
    n_in = (xn_q << sf) + _half(sf, half_up)
    b_hn = bias_h[2 * hs :] + pre_half
    common = max(sf, af)
    h_drop = sf + common - af
    h_half = _half(h_drop, half_up)
    n_shift, h_shift = common - sf, common - af
    check_hidden = (1 << af) > act.hi
    acc_log = np.empty((steps, batch, 2 * hs), dtype=np.int64)
    pre_log = np.empty((steps, batch, 2 * hs), dtype=np.int64)
    hn_log = np.empty((steps, batch, hs), dtype=np.int64)
    outputs = np.empty((steps, batch, hs), dtype=np.int64)
    h = np.zeros((batch, hs), dtype=np.int64)
    sigmoid, tanh = layer.sigmoid, layer.tanh
    sat_pre = sat_xn
    sat_hidden = 0
    for t in range(steps):
        hf = blas_product(h.astype(matmul_dtype), wh_t).astype(np.int64)
        if multiplier is not None:
            hf *= multiplier
        acc = np.add(rz_in[t], hf[:, : 2 * hs], out=acc_log[t])
        rz = sigmoid.clamped(np.right_shift(acc, pre_drop, out=pre_log[t]))
        hn = np.add(hf[:, 2 * hs :], b_hn, out=hn_log[t])
        hn_q, sat = saturate(hn >> pre_drop, pre_fmt, "saturate")
        n_pre, sat_n = saturate((n_in[t] + rz[:, :hs] * hn_q) >> sf, pre_fmt, "saturate")
        sat_pre += sat + sat_n
        n_c = shl(tanh(n_pre, cfg.rounding), n_shift)
        total = (n_c << sf) + rz[:, hs:] * (shl(h, h_shift) - n_c)
        if h_half:
            total += h_half
        h = np.right_shift(total, h_drop, out=outputs[t])
        if check_hidden:
            sat_hidden += _clip_in_place(h, act)
    if steps:
        _record_range(stats, [(acc_log, pre_half), (hn_log, pre_half), (xn, 0)])
        sat_pre += _outside(pre_log, pre_fmt)
    stats.saturated("preact", sat_pre)
    stats.saturated("hidden", sat_hidden)
    return outputs
