"""The fused rnn / gru / lstm loops: the same integers as :func:`.engine.run_layer`, fewer array passes.

Used when rounding is ``floor`` or ``half-up``, requantization saturates, accumulators are exact
and the tables cover the pre-activation format (see :func:`applies`); the simulator's speed on a
character stream (one sequence, batch 1) comes from here. Tests run both paths against each other
and against the float64 reference.
"""

from __future__ import annotations

import numpy as np

from qbench_builtins.hardware.engine import _MAX, _MIN, RunStats, _row_scale, _shl
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


def run_layer_fast(program: ModelProgram, layer: LayerProgram, xf: np.ndarray, stats: RunStats) -> np.ndarray:
    """rnn / lstm with floor or half-up rounding: the same integers as :func:`run_layer`, fewer passes.

    Half an LSB of the pre-activation rounding is preloaded with the biases; the pre-activation
    goes to the tables unsaturated (a table whose index clamps at the format's range returns what
    it returns for the saturated code) and its saturations are counted once at the end, like the
    accumulator range; the hidden state cannot leave its format when ``2**f <= hi`` (it is a
    rounded product or tanh of values in [-1, 1]), so it is checked only otherwise.
    """
    cfg = program.config
    act, pre_fmt, gate, cell_fmt = cfg.activation, cfg.preact, cfg.gate, cfg.cell
    steps, batch, rows = xf.shape
    hs = layer.hidden
    half_up = cfg.rounding == "half-up"

    def half(drop: int) -> int:
        return (1 << (drop - 1)) if half_up and drop > 0 else 0

    wh_t = np.ascontiguousarray(layer.wh.codes.T.astype(layer.matmul_h_dtype))
    matmul_dtype = layer.matmul_h_dtype
    scale = _row_scale(layer.wh.row_scale, np.int64)
    multiplier = None
    if scale is not None or layer.shift_h:
        multiplier = (scale if scale is not None else np.ones(rows, np.int64)) << layer.shift_h
    sf, af, cf = gate.frac_bits, act.frac_bits, cell_fmt.frac_bits
    pre_drop = layer.acc_frac - pre_fmt.frac_bits
    pre_half = half(pre_drop)
    xf = xf + (layer.bias_h.astype(np.int64) + pre_half)
    acc_log = np.empty((steps, batch, rows), dtype=np.int64)
    pre_log = np.empty((steps, batch, rows), dtype=np.int64)
    outputs = np.empty((steps, batch, hs), dtype=np.int64)
    h = np.zeros((batch, hs), dtype=np.int64)
    c = np.zeros((batch, hs), dtype=np.int64)
    h_drop = (sf if layer.cell == "rnn" else 2 * sf) - af
    h_half = half(h_drop)
    check_hidden = (1 << af) > act.hi or h_drop < 0
    wide = max(sf + cf, 2 * sf)
    c_drop, c_half = wide - cf, half(wide - cf)
    fc_shift, ig_shift = wide - sf - cf, wide - 2 * sf
    sigmoid, tanh, tanh_cell = layer.sigmoid, layer.tanh, layer.tanh_cell
    sat_cell = sat_hidden = 0
    lstm = layer.cell == "lstm"
    # the hidden state goes straight into the BLAS dtype when it is exact there (|h| <= 2**f)
    float_state = (
        not check_hidden
        and h_drop >= 0
        and matmul_dtype in (np.float32, np.float64)
        and act.width <= (24 if matmul_dtype is np.float32 else 53)
    )
    h_blas = np.zeros((batch, hs), dtype=matmul_dtype if float_state else np.int64)
    h_log = np.empty((steps, batch, hs), dtype=h_blas.dtype) if float_state else outputs
    for t in range(steps):
        hf = ((h_blas if float_state else h.astype(matmul_dtype)) @ wh_t).astype(np.int64)
        if multiplier is not None:
            hf *= multiplier
        acc = np.add(xf[t], hf, out=acc_log[t])
        pre = np.right_shift(acc, pre_drop, out=pre_log[t]) if pre_drop >= 0 else acc << -pre_drop
        if lstm:
            sg = sigmoid.clamped(pre)
            g = tanh.clamped(pre[:, 2 * hs : 3 * hs])
            total = _shl(sg[:, hs : 2 * hs] * c, fc_shift) + _shl(sg[:, :hs] * g, ig_shift)
            if c_half:
                total += c_half
            c = total >> c_drop if c_drop > 0 else total << -c_drop
            if _MIN(c, axis=None) < cell_fmt.lo or _MAX(c, axis=None) > cell_fmt.hi:
                sat_cell += int(np.count_nonzero((c < cell_fmt.lo) | (c > cell_fmt.hi)))
                c = np.minimum(np.maximum(c, cell_fmt.lo), cell_fmt.hi)
            assert tanh_cell is not None
            y = sg[:, 3 * hs :] * tanh_cell(c, cfg.rounding)
        else:
            y = tanh.clamped(pre)
        if h_half:
            y += h_half
        if float_state:
            h_blas = np.right_shift(y, h_drop, out=h_log[t], casting="unsafe")
            continue
        if h_drop >= 0:
            h = np.right_shift(y, h_drop, out=outputs[t])
        else:
            h = outputs[t]
            h[...] = y << -h_drop
        if check_hidden and (_MIN(h, axis=None) < act.lo or _MAX(h, axis=None) > act.hi):
            sat_hidden += int(np.count_nonzero((h < act.lo) | (h > act.hi)))
            h[...] = np.minimum(np.maximum(h, act.lo), act.hi)
    if float_state:
        outputs = h_log.astype(np.int64)
    if steps:
        top = max(int(_MAX(acc_log, axis=None)) - pre_half, pre_half - int(_MIN(acc_log, axis=None)))
        stats.acc_abs_max = max(stats.acc_abs_max, top)
        if pre_drop >= 0:
            stats.saturated("preact", int(np.count_nonzero((pre_log < pre_fmt.lo) | (pre_log > pre_fmt.hi))))
    stats.saturated("cell", sat_cell)
    stats.saturated("hidden", sat_hidden)
    return outputs


def _saturate_counted(x: np.ndarray, lo: int, hi: int) -> tuple[np.ndarray, int]:
    if x.size == 0 or (_MIN(x, axis=None) >= lo and _MAX(x, axis=None) <= hi):
        return x, 0
    count = int(np.count_nonzero((x < lo) | (x > hi)))
    return np.minimum(np.maximum(x, lo), hi), count


def run_gru_fast(program: ModelProgram, layer: LayerProgram, xf: np.ndarray, stats: RunStats) -> np.ndarray:
    """gru with floor or half-up rounding: the same integers as :func:`.engine.run_layer`.

    The candidate's input part ``xn`` does not depend on the state, so it is rounded for every
    step at once (and shifted into the ``r * hn`` sum's format); halves of an LSB are preloaded;
    r and z go to the sigmoid table unsaturated (counted at the end); the new state
    ``n + z (h - n)`` is a convex mix of values in [-1, 1] and is checked only when ``2**f > hi``.
    """
    cfg = program.config
    act, pre_fmt, gate = cfg.activation, cfg.preact, cfg.gate
    steps, batch, rows = xf.shape
    hs = layer.hidden
    half_up = cfg.rounding == "half-up"

    def half(drop: int) -> int:
        return (1 << (drop - 1)) if half_up and drop > 0 else 0

    matmul_dtype = layer.matmul_h_dtype
    wh_t = np.ascontiguousarray(layer.wh.codes.T.astype(matmul_dtype))
    scale = _row_scale(layer.wh.row_scale, np.int64)
    multiplier = None
    if scale is not None or layer.shift_h:
        multiplier = (scale if scale is not None else np.ones(rows, np.int64)) << layer.shift_h
    sf, af = gate.frac_bits, act.frac_bits
    pre_drop = layer.acc_frac - pre_fmt.frac_bits  # >= 0: the accumulator has at least pf bits
    pre_half = half(pre_drop)
    bias_h = layer.bias_h.astype(np.int64)
    rz_in = xf[:, :, : 2 * hs] + (bias_h[: 2 * hs] + pre_half)
    xn = xf[:, :, 2 * hs :]
    xn_q, sat_xn = _saturate_counted((xn + pre_half) >> pre_drop, pre_fmt.lo, pre_fmt.hi)
    n_in = (xn_q << sf) + half(sf)
    b_hn = bias_h[2 * hs :] + pre_half
    common = max(sf, af)
    h_drop = sf + common - af
    h_half = half(h_drop)
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
        hf = (h.astype(matmul_dtype) @ wh_t).astype(np.int64)
        if multiplier is not None:
            hf *= multiplier
        acc = np.add(rz_in[t], hf[:, : 2 * hs], out=acc_log[t])
        rz = sigmoid.clamped(np.right_shift(acc, pre_drop, out=pre_log[t]))
        hn = np.add(hf[:, 2 * hs :], b_hn, out=hn_log[t])
        hn_q, sat = _saturate_counted(hn >> pre_drop, pre_fmt.lo, pre_fmt.hi)
        n_pre, sat_n = _saturate_counted((n_in[t] + rz[:, :hs] * hn_q) >> sf, pre_fmt.lo, pre_fmt.hi)
        sat_pre += sat + sat_n
        n_c = _shl(tanh(n_pre, cfg.rounding), n_shift)
        total = (n_c << sf) + rz[:, hs:] * (_shl(h, h_shift) - n_c)
        if h_half:
            total += h_half
        h = np.right_shift(total, h_drop, out=outputs[t])
        if check_hidden and (_MIN(h, axis=None) < act.lo or _MAX(h, axis=None) > act.hi):
            sat_hidden += int(np.count_nonzero((h < act.lo) | (h > act.hi)))
            h[...] = np.minimum(np.maximum(h, act.lo), act.hi)
    if steps:
        top = 0
        for log, offset in ((acc_log, pre_half), (hn_log, pre_half), (xn, 0)):
            top = max(top, int(_MAX(log, axis=None)) - offset, offset - int(_MIN(log, axis=None)))
        stats.acc_abs_max = max(stats.acc_abs_max, top)
        sat_pre += int(np.count_nonzero((pre_log < pre_fmt.lo) | (pre_log > pre_fmt.hi)))
    stats.saturated("preact", sat_pre)
    stats.saturated("hidden", sat_hidden)
    return outputs
