"""The float64 reference: the same fixed-point program, executed on float64 *values*.

Where the engine keeps integer codes and shifts them, this module keeps the dequantized values
(``code * 2**-frac``), multiplies the effective weight values with float64 BLAS and rounds with
``floor`` / ``rint`` on ``value * 2**frac``. Both agree bit for bit whenever every quantity fits
in float64's 53-bit significand, which :func:`exact_in_float64` checks from the program's
bounds; any mismatch then is a bug in one of them (docs/hardware.md, check 1).

The referee shares nothing with the engine but the program it runs (formats, encoded weights,
table entries, the random key): its input conversion, nonlinearities, run facts and final-step
selection are written here again, in float64, so that a bug in the engine's cannot hide.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

import numpy as np

from qbench_builtins.hardware.formats import QFormat, RandomKey, counter_bits
from qbench_builtins.hardware.program import (
    LayerProgram,
    ModelProgram,
    Site,
)
from qbench_builtins.hardware.tables import DOMAINS, FUNCTIONS, Nonlinearity, hard_rounding

FLOAT64_EXACT_BITS = 52


@dataclass
class ReferenceStats:
    """What the referee counts: saturations per site, accumulator overflows and range."""

    counts: Counter[str] = field(default_factory=Counter)  # saturations per site, zeros included
    overflows: int = 0
    acc_abs_max: int = 0
    input_saturations: int = 0

    @property
    def saturations(self) -> dict[str, int]:
        """The sites that saturated (the engine's form of the same facts)."""
        return {site: count for site, count in self.counts.items() if count}

    @property
    def total_saturations(self) -> int:
        return self.counts.total() + self.input_saturations


@dataclass
class ReferenceResult:
    hidden: list[np.ndarray]  # per layer, codes [T, B, h] recovered from the float64 values
    logits: np.ndarray  # integer codes [N, C] at program.output.acc_frac
    stats: ReferenceStats


def round_float(
    values: np.ndarray, frac: int, mode: str, drop: int = 0, key: RandomKey | None = None
) -> np.ndarray:
    """Round float64 ``values`` to multiples of ``2**-frac`` (``drop`` bits are discarded)."""
    if drop <= 0:
        return values
    t = values * 2.0**frac
    if mode == "floor":
        r = np.floor(t)
    elif mode == "half-up":
        r = np.floor(t + 0.5)
    elif mode == "half-away":
        r = np.sign(t) * np.floor(np.abs(t) + 0.5)
    elif mode == "half-even":
        r = np.rint(t)
    elif mode == "stochastic":
        assert key is not None
        low = np.floor(t)
        remainder = (t - low) * 2.0**drop
        draws = counter_bits(key.seed, key.layer, key.site, key.step, np.arange(np.size(t)), drop)
        r = low + (draws.reshape(np.shape(t)) < remainder)
    else:
        raise ValueError(f"unknown rounding mode {mode!r}")
    return r * 2.0**-frac


def saturate_float(values: np.ndarray, fmt: QFormat, policy: str) -> tuple[np.ndarray, int]:
    lo, hi = fmt.lo * 2.0**-fmt.frac_bits, fmt.hi * 2.0**-fmt.frac_bits
    outside = (values < lo) | (values > hi)
    count = int(np.count_nonzero(outside))
    if not count:
        return values, 0
    if policy == "saturate":
        return np.clip(values, lo, hi), count
    return wrap_float(values, fmt.frac_bits, fmt.width), count


def wrap_float(values: np.ndarray, frac: int, width: int) -> np.ndarray:
    t = values * 2.0**frac
    half = 2.0 ** (width - 1)
    return (np.mod(t + half, 2.0 * half) - half) * 2.0**-frac


def requantize_float(values, from_frac, fmt, mode, policy, key=None):  # noqa: ANN001, ANN201 - mirrors formats.requantize
    rounded = round_float(values, fmt.frac_bits, mode, from_frac - fmt.frac_bits, key)
    return saturate_float(rounded, fmt, policy)


def referee_limit(program: ModelProgram) -> str | None:
    """Why float64 cannot referee ``program`` bit for bit (None when it can).

    The reference still runs on such a program (its constants converted to the nearest float64),
    but a disagreement then proves nothing, so it must be reported, with this reason, not scored.
    """
    cfg = program.config
    formats = {"activation": cfg.activation, "preact": cfg.preact, "gate": cfg.gate, "cell": cfg.cell}
    widest = max(formats, key=lambda name: formats[name].width)
    element_bits = 2 * formats[widest].width + 2
    if element_bits > FLOAT64_EXACT_BITS:
        return (
            f"element-wise products of the {widest} format {formats[widest]} need {element_bits} bits; "
            f"float64 holds {FLOAT64_EXACT_BITS}"
        )
    if cfg.acc_bits > FLOAT64_EXACT_BITS:
        return f"acc_bits = {cfg.acc_bits} exceeds float64's {FLOAT64_EXACT_BITS} bits"
    for layer in program.layers:
        if layer.acc_bound_bits > FLOAT64_EXACT_BITS:
            return (
                f"layer {layer.index}'s accumulator may need {layer.acc_bound_bits} bits; "
                f"float64 holds {FLOAT64_EXACT_BITS}"
            )
    if program.output.matmul_dtype is object:
        return "the output layer's sums exceed 62 bits; float64 holds 52"
    return None


def exact_in_float64(program: ModelProgram) -> bool:
    """True when no intermediate of the program needs more than float64's significand."""
    return referee_limit(program) is None


def _values(codes: np.ndarray, frac: int) -> np.ndarray:
    """float64 values ``code * 2**-frac`` of program constants (Python-int codes of wide formats too)."""
    return np.asarray(codes, dtype=np.float64) * 2.0**-frac


def _codes(values: np.ndarray, frac: int) -> np.ndarray:
    """Integer codes of float64 values: int64, or Python ints where they do not fit 62 bits."""
    scaled = np.rint(values * 2.0**frac)
    if np.max(np.abs(scaled), initial=0.0) < 2.0**62:
        return scaled.astype(np.int64)
    return np.array([int(v) for v in scaled.reshape(-1)], dtype=object).reshape(scaled.shape)


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round half away from zero (the input converter's and the tables' rounding)."""
    return np.sign(values) * np.floor(np.abs(values) + 0.5)


def nonlinearity_float(nl: Nonlinearity, values: np.ndarray, mode: str) -> np.ndarray:
    """``nl`` on float64 values (multiples of ``2**-in_frac``); returns float64 values.

    Reads the program's table entries (the program is shared); the index, the hard slopes and
    the exact functions are computed here in float64.
    """
    scale = 2.0**nl.out.frac_bits
    if nl.kind == "table":
        assert nl.codes is not None
        lo, hi = DOMAINS[nl.function]
        step = (hi - lo) / nl.size
        index = np.clip(np.floor((values - lo) / step + 0.5), 0, nl.size - 1).astype(np.int64)
        return nl.codes[index] / scale
    if nl.kind == "hard":
        rounding = hard_rounding(mode)
        if nl.function == "sigmoid":
            drop = nl.in_frac + 2 - nl.out.frac_bits
            y = round_float(values / 4.0, nl.out.frac_bits, rounding, drop) + 0.5
            return np.clip(y, 0.0, min(1.0, nl.out.hi / scale))
        y = round_float(values, nl.out.frac_bits, rounding, nl.in_frac - nl.out.frac_bits)
        return np.clip(y, max(-1.0, nl.out.lo / scale), min(1.0, nl.out.hi / scale))
    codes = round_half_away(FUNCTIONS[nl.function](values) * scale)
    return np.clip(codes, nl.out.lo, nl.out.hi) / scale


class _AccumulatorFloat:
    def __init__(self, frac: int, width: int, stats: ReferenceStats) -> None:
        self.frac, self.width, self.stats = frac, width, stats

    def __call__(self, acc: np.ndarray) -> np.ndarray:
        top = float(np.max(np.abs(acc), initial=0.0)) * 2.0**self.frac
        self.stats.acc_abs_max = max(self.stats.acc_abs_max, int(top))
        if self.width and top > 2.0 ** (self.width - 1) - 1:
            limit = 2.0 ** (self.width - 1) * 2.0**-self.frac
            self.stats.overflows += int(np.count_nonzero((acc < -limit) | (acc >= limit)))
            return wrap_float(acc, self.frac, self.width)
        return acc


def _run_layer(program: ModelProgram, layer: LayerProgram, x: np.ndarray, stats: ReferenceStats) -> np.ndarray:
    cfg = program.config
    act, pre_fmt, gate, cell_fmt = cfg.activation, cfg.preact, cfg.gate, cfg.cell
    mode, policy = cfg.rounding, cfg.overflow
    sf, af, pf, cf = gate.frac_bits, act.frac_bits, pre_fmt.frac_bits, cell_fmt.frac_bits
    F, hs = layer.acc_frac, layer.hidden
    wx, wh = layer.wx.effective_values, layer.wh.effective_values
    bias_x, bias_h = _values(layer.bias_x, F), _values(layer.bias_h, F)
    xf = (wx.T[x] if layer.one_hot else x @ wx.T) + bias_x
    steps, batch = xf.shape[0], xf.shape[1]
    acc_check = _AccumulatorFloat(F, cfg.acc_bits, stats)
    h = np.zeros((batch, hs))
    c = np.zeros((batch, hs))
    outputs = np.empty((steps, batch, hs))

    def key(site: int, step: int) -> RandomKey:
        return RandomKey(cfg.seed, layer.index, site, step)

    for t in range(steps):
        hf = h @ wh.T + bias_h
        if layer.cell == "gru":
            acc = acc_check(xf[t, :, : 2 * hs] + hf[:, : 2 * hs])
            xn, hn = acc_check(xf[t, :, 2 * hs :]), acc_check(hf[:, 2 * hs :])
            pre, sat = requantize_float(acc, F, pre_fmt, mode, policy, key(Site.PREACT, t))
            stats.counts["preact"] += sat
            rz = nonlinearity_float(layer.sigmoid, pre, mode)
            r, z = rz[:, :hs], rz[:, hs:]
            xn_q, sat1 = requantize_float(xn, F, pre_fmt, mode, policy, key(Site.GRU_XN, t))
            hn_q, sat2 = requantize_float(hn, F, pre_fmt, mode, policy, key(Site.GRU_HN, t))
            n_pre, sat3 = requantize_float(
                xn_q + r * hn_q, pf + sf, pre_fmt, mode, policy, key(Site.GRU_N, t)
            )
            stats.counts["preact"] += sat1 + sat2 + sat3
            n = nonlinearity_float(layer.tanh, n_pre, mode)
            h, sat = requantize_float(
                n + z * (h - n), sf + max(sf, af), act, mode, policy, key(Site.HIDDEN, t)
            )
        else:
            acc = acc_check(xf[t] + hf)
            pre, sat = requantize_float(acc, F, pre_fmt, mode, policy, key(Site.PREACT, t))
            stats.counts["preact"] += sat
            if layer.cell == "rnn":
                y = nonlinearity_float(layer.tanh, pre, mode)
                h, sat = requantize_float(y, sf, act, mode, policy, key(Site.HIDDEN, t))
            else:
                sg = nonlinearity_float(layer.sigmoid, pre, mode)
                g = nonlinearity_float(layer.tanh, pre[:, 2 * hs : 3 * hs], mode)
                i, f, o = sg[:, :hs], sg[:, hs : 2 * hs], sg[:, 3 * hs :]
                wide = max(sf + cf, 2 * sf)
                c, sat_c = requantize_float(f * c + i * g, wide, cell_fmt, mode, policy, key(Site.CELL, t))
                stats.counts["cell"] += sat_c
                assert layer.tanh_cell is not None
                tc = nonlinearity_float(layer.tanh_cell, c, mode)
                h, sat = requantize_float(o * tc, 2 * sf, act, mode, policy, key(Site.HIDDEN, t))
        stats.counts["hidden"] += sat
        outputs[t] = h
    return outputs


def _input_values(program: ModelProgram, inputs: np.ndarray, stats: ReferenceStats) -> np.ndarray:
    """Layer 0's input: ids for one-hot selection, else float64 values in the activation format."""
    fmt = program.config.activation
    scale = 2.0**-fmt.frac_bits
    if program.layers[0].one_hot:
        return np.asarray(inputs, dtype=np.int64)
    if program.input_table is not None:  # the program's converter table (already in A)
        ids = np.asarray(inputs, dtype=np.int64)
        if program.input_table_saturations is not None:
            stats.input_saturations = int(np.sum(program.input_table_saturations[ids]))
        return program.input_table[ids] * scale
    x = np.asarray(inputs, dtype=np.float64)
    if program.input_scale is not None:
        x = x * program.input_scale + program.input_shift
    codes = round_half_away(x / scale)
    stats.input_saturations = int(np.count_nonzero((codes < fmt.lo) | (codes > fmt.hi)))
    return np.clip(codes, fmt.lo, fmt.hi) * scale


def _last_steps(hidden: np.ndarray, lengths: np.ndarray | None) -> np.ndarray:
    """[N, h]: every step of the one stream (language model), or each sequence's last valid step."""
    if lengths is None:
        return hidden[:, 0, :]
    rows = [hidden[int(n) - 1, b] for b, n in enumerate(lengths)]
    return np.array(rows, dtype=hidden.dtype).reshape(len(rows), hidden.shape[2])


def run_reference(
    program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None = None
) -> ReferenceResult:
    """Same contract as :func:`.engine.run`, with codes recovered from the float64 values.

    Some OpenBLAS kernels leave the floating-point 'invalid' flag set after a correct product, which
    numpy reports as a RuntimeWarning now and then; it is ignored here: a real NaN would still show,
    as codes that differ from the engine's.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        return _run_reference(program, inputs, lengths)


def _run_reference(program: ModelProgram, inputs: np.ndarray, lengths: np.ndarray | None) -> ReferenceResult:
    cfg = program.config
    af = cfg.activation.frac_bits
    stats = ReferenceStats()
    x = _input_values(program, inputs, stats)
    hidden = []
    for layer in program.layers:
        bn = layer.batchnorm
        if bn is not None:
            value = x * _values(bn.scale, bn.scale_frac) + _values(bn.shift, af + bn.scale_frac)
            key = RandomKey(cfg.seed, layer.index, Site.BATCHNORM, 0)
            x, sat = requantize_float(
                value, af + bn.scale_frac, cfg.activation, cfg.rounding, cfg.overflow, key
            )
            stats.counts["batchnorm"] += sat
        x = _run_layer(program, layer, x, stats)
        hidden.append(x)
    out = program.output
    final = _last_steps(hidden[-1], lengths)
    logits = final @ out.w.effective_values.T + _values(out.bias, out.acc_frac)
    hidden_codes = [_codes(h, af) for h in hidden]
    logit_codes = _codes(logits, out.acc_frac)
    return ReferenceResult(hidden_codes, logit_codes, stats)
