"""The slow scalar interpreter (test code): walks every weight (skip / add / subtract / shift / multiply).

Python ints only, one element at a time, counting each operation as it does it. It re-implements
the rounding modes on scalars, so that for small models it checks the vectorised engine's
outputs *and* the closed-form counters (docs/hardware.md, check 2). Never used on real sizes.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field

import numpy as np
from qbench_builtins.hardware.formats import QFormat, counter_bits
from qbench_builtins.hardware.program import (
    LayerProgram,
    ModelProgram,
    Site,
)
from qbench_builtins.hardware.tables import Nonlinearity
from qbench_builtins.hardware.weights import EncodedMatrix


@dataclass
class InterpreterResult:
    hidden: list[list[list[list[int]]]]  # [layer][t][b][unit]
    logits: list[list[int]]
    counts: Counter
    output_counts: Counter
    saturations: dict[str, int] = field(default_factory=dict)


class Interpreter:
    def __init__(self, program: ModelProgram) -> None:
        self.program = program
        self.cfg = program.config
        self.counts: Counter = Counter()
        self.saturations: Counter = Counter()

    # ---- scalar arithmetic ------------------------------------------------------------------
    def round_shift(self, x: int, drop: int, site: tuple[int, int, int], element: int) -> int:
        if drop <= 0:
            return x << -drop
        mode, half = self.cfg.rounding, 1 << (drop - 1)
        low, remainder = x >> drop, x & ((1 << drop) - 1)
        if mode == "floor":
            return low
        if mode == "half-up":
            return low + (remainder >= half)
        if mode == "half-away":
            return low + (remainder > half or (remainder == half and x >= 0))
        if mode == "half-even":
            return low + (remainder > half or (remainder == half and low % 2 == 1))
        layer, kind, step = site
        draw = int(counter_bits(self.cfg.seed, layer, kind, step, np.array([element]), drop)[0])
        return low + (draw < remainder)

    def fit(self, x: int, fmt: QFormat, where: str) -> int:
        if fmt.lo <= x <= fmt.hi:
            return x
        self.saturations[where] += 1
        if self.cfg.overflow == "saturate":
            return fmt.lo if x < fmt.lo else fmt.hi
        span = 1 << fmt.width
        return ((x - fmt.lo) % span) + fmt.lo

    def requant(
        self, x: int, from_frac: int, fmt: QFormat, site: tuple[int, int, int], element: int, where: str
    ) -> int:
        return self.fit(self.round_shift(x, from_frac - fmt.frac_bits, site, element), fmt, where)

    def nonlinear(self, nl: Nonlinearity, x: int) -> int:
        self.counts["table_lookups"] += 1
        self.counts["sigmoids" if nl.function == "sigmoid" else "tanhs"] += 1
        if nl.kind == "table":
            assert nl.codes is not None
            offset = x - nl.offset_code
            index = offset >> nl.index_shift if nl.index_shift >= 0 else offset << -nl.index_shift
            return int(nl.codes[min(max(index, 0), nl.size - 1)])
        return int(nl(np.array([x], dtype=object), self.cfg.rounding)[0])

    def accumulate(self, acc: int) -> int:
        width = self.cfg.acc_bits
        if width and not -(1 << (width - 1)) <= acc < (1 << (width - 1)):
            self.counts["overflows"] += 1
            return ((acc + (1 << (width - 1))) % (1 << width)) - (1 << (width - 1))
        return acc

    def dot_row(
        self, w: EncodedMatrix, row: int, x: Mapping[int, int] | list[int], columns: list[int]
    ) -> int:
        """One row of W @ x, walking the weights literally."""
        kind = w.block_kinds[row // w.block_rows]
        acc = 0
        for j in columns:
            code = int(w.codes[row, j])
            if code == 0:
                if kind in ("fixed", "float"):
                    self.counts["mults"] += 1
                    self.counts["adds"] += 1
                else:
                    self.counts["skips"] += 1
                continue
            magnitude = abs(code)
            if kind in ("ternary", "binary"):
                term = x[j] << (magnitude.bit_length() - 1)  # block format alignment: wiring
                self.counts["adds"] += 1
            elif kind == "pow2":
                term = x[j] << (magnitude.bit_length() - 1)
                self.counts["shifts"] += 1
                self.counts["adds"] += 1
            else:
                term = magnitude * x[j]
                self.counts["mults"] += 1
                self.counts["adds"] += 1
            acc = acc - term if code < 0 else acc + term
        if w.block_scaled[row // w.block_rows]:
            self.counts["scale_mults"] += 1
            self.counts["mults"] += 1
        return acc * int(w.row_scale[row])

    # ---- the cells ---------------------------------------------------------------------------
    def step(self, layer: LayerProgram, t: int, b: int, x: list[int], h: list[int], c: list[int]):  # noqa: ANN201
        cfg, hs = self.cfg, layer.hidden
        sf, af, pf, cf = (
            cfg.gate.frac_bits,
            cfg.activation.frac_bits,
            cfg.preact.frac_bits,
            cfg.cell.frac_bits,
        )
        F, lid = layer.acc_frac, layer.index
        x_vec: Mapping[int, int] | list[int]
        if layer.one_hot:
            x_cols, x_vec = [x[0]], {x[0]: 1}
        else:
            x_cols, x_vec = list(range(layer.input_size)), x
        xs = [
            (self.dot_row(layer.wx, r, x_vec, x_cols) << layer.shift_x) + int(layer.bias_x[r])
            for r in range(layer.gates * hs)
        ]
        hsums = [
            (self.dot_row(layer.wh, r, h, list(range(hs))) << layer.shift_h) + int(layer.bias_h[r])
            for r in range(layer.gates * hs)
        ]

        def pre(value: int, row: int) -> int:
            return self.requant(
                self.accumulate(value), F, cfg.preact, (lid, Site.PREACT, t), b * n_pre + row, "preact"
            )

        new_h, new_c = [0] * hs, list(c)
        if layer.cell == "gru":
            n_pre = 2 * hs
            rz = [self.nonlinear(layer.sigmoid, pre(xs[r] + hsums[r], r)) for r in range(2 * hs)]
            for u in range(hs):
                xn, hn = (  # in this order: the input part is accumulated and rounded first
                    self.requant(self.accumulate(sums[2 * hs + u]), F, cfg.preact, (lid, site, t), b * hs + u, "preact")
                    for sums, site in ((xs, Site.GRU_XN), (hsums, Site.GRU_HN))
                )
                r, z = rz[u], rz[hs + u]
                self.counts["mults"] += 1
                self.counts["adds"] += 1
                npre = self.requant(
                    (xn << sf) + r * hn, pf + sf, cfg.preact, (lid, Site.GRU_N, t), b * hs + u, "preact"
                )
                n = self.nonlinear(layer.tanh, npre)
                common = max(sf, af)
                n_c = n << (common - sf)
                self.counts["adds"] += 2
                self.counts["mults"] += 1
                total = (n_c << sf) + z * ((h[u] << (common - af)) - n_c)
                new_h[u] = self.requant(
                    total, sf + common, cfg.activation, (lid, Site.HIDDEN, t), b * hs + u, "hidden"
                )
            return new_h, new_c
        n_pre = layer.gates * hs
        pres = [pre(xs[r] + hsums[r], r) for r in range(n_pre)]
        for u in range(hs):
            if layer.cell == "rnn":
                y = self.nonlinear(layer.tanh, pres[u])
                new_h[u] = self.requant(y, sf, cfg.activation, (lid, Site.HIDDEN, t), b * hs + u, "hidden")
                continue
            i, f = self.nonlinear(layer.sigmoid, pres[u]), self.nonlinear(layer.sigmoid, pres[hs + u])
            g, o = (
                self.nonlinear(layer.tanh, pres[2 * hs + u]),
                self.nonlinear(layer.sigmoid, pres[3 * hs + u]),
            )
            wide = max(sf + cf, 2 * sf)
            self.counts["mults"] += 3
            self.counts["adds"] += 1
            total = ((f * c[u]) << (wide - sf - cf)) + ((i * g) << (wide - 2 * sf))
            new_c[u] = self.requant(total, wide, cfg.cell, (lid, Site.CELL, t), b * hs + u, "cell")
            assert layer.tanh_cell is not None
            tc = self.nonlinear(layer.tanh_cell, new_c[u])
            new_h[u] = self.requant(
                o * tc, 2 * sf, cfg.activation, (lid, Site.HIDDEN, t), b * hs + u, "hidden"
            )
        return new_h, new_c

    def batchnorm(self, layer: LayerProgram, x: list[int], flat_offset: int) -> list[int]:
        bn = layer.batchnorm
        assert bn is not None
        out = []
        for j, v in enumerate(x):
            self.counts["mults"] += 1
            self.counts["adds"] += 1
            value = v * int(bn.scale[j]) + int(bn.shift[j])
            out.append(
                self.requant(
                    value,
                    self.cfg.activation.frac_bits + bn.scale_frac,
                    self.cfg.activation,
                    (layer.index, Site.BATCHNORM, 0),
                    flat_offset + j,
                    "batchnorm",
                )
            )
        return out

    def run(self, inputs: np.ndarray, lengths: np.ndarray | None = None) -> InterpreterResult:
        program = self.program
        codes, _ = program.input_codes(inputs)
        steps, batch = codes.shape[0], codes.shape[1]
        seqs = [[[int(v) for v in np.atleast_1d(codes[t, b])] for b in range(batch)] for t in range(steps)]
        hidden_all = []
        for layer in program.layers:
            if layer.batchnorm is not None:
                n = layer.input_size
                seqs = [
                    [self.batchnorm(layer, seqs[t][b], (t * batch + b) * n) for b in range(batch)]
                    for t in range(steps)
                ]
            outputs = [[[0] * layer.hidden for _ in range(batch)] for _ in range(steps)]
            for b in range(batch):
                h, c = [0] * layer.hidden, [0] * layer.hidden
                for t in range(steps):
                    h, c = self.step(layer, t, b, seqs[t][b], h, c)
                    outputs[t][b] = h
            hidden_all.append(outputs)
            seqs = outputs
        recurrent_counts = Counter(self.counts)
        self.counts = Counter()
        last = hidden_all[-1]
        finals = (
            [last[t][0] for t in range(steps)]
            if lengths is None
            else [last[int(lengths[b]) - 1][b] for b in range(batch)]
        )
        out = program.output
        logits = []
        for hv in finals:
            row_logits = [
                self.dot_row(out.w, r, hv, list(range(len(hv)))) + int(out.bias[r])
                for r in range(out.w.codes.shape[0])
            ]
            logits.append(row_logits)
        output_counts = (
            Counter({k: v // len(finals) for k, v in self.counts.items()}) if finals else Counter()
        )
        return InterpreterResult(hidden_all, logits, recurrent_counts, output_counts, dict(self.saturations))
