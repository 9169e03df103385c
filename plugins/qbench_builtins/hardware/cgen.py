"""C99 source of a :class:`~.program.ModelProgram`: the integer program the simulator runs, for a device.

The generated library executes exactly what :mod:`.engine` executes (same codes, formats,
rounding, saturation, accumulator wrap, scale mantissas, table reads, batch-norm stage and
output layer), so its hidden states and logits equal the simulator's bit for bit. Rules of the
emitted code (docs/deploy.md says why):

* C99, fixed-width integer types, no floating point, no dynamic memory, no library calls;
* no undefined behaviour: signed values are never shifted (``qb_asr`` / ``qb_shl`` shift the
  two's complement bits through ``uint64_t`` and convert back without an out-of-range
  conversion), and every sum provably fits 63 bits (programs that may not are refused);
* weights as ``const`` arrays in packed encodings: binary blocks one bit per weight, ternary
  blocks two bits (``01`` +1, ``11`` -1, ``00`` skip), power-of-two blocks one byte per weight
  (0: skip; else sign in bit 7 and ``exponent + 1`` in bits 0-5), fixed-point blocks their codes;
  the matrix kernels of binary, ternary and power-of-two blocks add, subtract, skip and shift:
  they contain no multiply. A row scale that is not a power of two is the program's one
  multiply per row; element-wise products of the cell equations are the program's too.

The model reads integer inputs: a token id (one-hot or embedding models: the embedding is a
const table of activation codes, folded batch norm included) or feature codes already in the
activation format (the float -> code converter of a sensor front end is not part of the integer
program; :meth:`.program.ModelProgram.input_codes` is its definition).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

import qbench
from qbench_builtins.hardware.program import INT64_SAFE_BITS, LayerProgram, ModelProgram, Site
from qbench_builtins.hardware.tables import Nonlinearity, hard_rounding
from qbench_builtins.hardware.weights import EncodedMatrix

#: widest format whose codes the library stores in ``int32_t``
MAX_C_FORMAT_BITS = 32
MASK64 = (1 << 64) - 1


@dataclass
class CLibrary:
    """The generated files (name -> text) and the facts the README and the backend report."""

    prefix: str
    files: dict[str, str]
    weight_bytes: int
    table_bytes: int
    state_bytes: int
    scratch_bytes: int
    kernels: list[str] = field(default_factory=list)  # the matrix-kernel functions in the library


def _check_supported(program: ModelProgram) -> None:
    """Raise :class:`qbench.Unsupported` for what the C emitter does not write (with the reason)."""
    cfg = program.config
    if cfg.nonlinearity == "exact":
        raise qbench.Unsupported(
            "nonlinearity 'exact' evaluates sigmoid / tanh in float64 (a check of the cell equations, not an "
            "integer circuit); export a program with nonlinearity 'table' or 'hard'"
        )
    for name, fmt in (("activation", cfg.activation), ("preact", cfg.preact), ("gate", cfg.gate),
                      ("cell", cfg.cell)):  # fmt: skip
        if fmt.width > MAX_C_FORMAT_BITS:
            raise qbench.Unsupported(
                f"the {name} format {fmt} is {fmt.width} bits wide; the C library stores codes in int32_t "
                f"(at most {MAX_C_FORMAT_BITS} bits)"
            )
    if cfg.acc_bits > 63:
        raise qbench.Unsupported(f"acc_bits = {cfg.acc_bits}: the C accumulators are 64 bits wide")
    for layer in program.layers:
        if layer.arith_dtype is object or layer.acc_bound_bits > INT64_SAFE_BITS:
            raise qbench.Unsupported(
                f"layer {layer.index}'s sums or element-wise products may need more than {INT64_SAFE_BITS} "
                "bits; the C library computes in int64_t (use narrower formats)"
            )
        if layer.batchnorm is not None and (
            np.asarray(layer.batchnorm.scale).dtype == object or np.asarray(layer.batchnorm.shift).dtype == object
        ):
            raise qbench.Unsupported(f"layer {layer.index}'s batch-norm constants exceed 64 bits")
        for matrix in (layer.wx, layer.wh):
            if int(np.max(np.abs(matrix.row_scale), initial=0)) >= 1 << 31:
                raise qbench.Unsupported(f"layer {layer.index}: a scale mantissa exceeds 31 bits")
    out = program.output
    if out.matmul_dtype is object or np.asarray(out.bias).dtype == object:
        raise qbench.Unsupported("the output layer's sums may exceed 62 bits; the C library computes in int64_t")
    if int(np.max(np.abs(out.w.row_scale), initial=0)) >= 1 << 31:  # a quantized output layer's scale
        raise qbench.Unsupported("the output layer: a scale mantissa exceeds 31 bits")
    if program.input_table is not None and program.input_table.dtype == object:
        raise qbench.Unsupported("the input table's codes exceed 64 bits")


# ---------------------------------------------------------------------------------------------
# small emit helpers
# ---------------------------------------------------------------------------------------------


def _int_literal(value: int) -> str:
    """A C99 integer constant of int64_t's range that never overflows (INT64_MIN spelled out)."""
    value = int(value)
    if value == -(1 << 63):
        return "(-INT64_C(9223372036854775807) - 1)"
    if -(1 << 31) < value < (1 << 31):
        return str(value)
    return f"INT64_C({value})"


def _array(ctype: str, name: str, values: list[int] | np.ndarray, per_line: int = 16) -> str:
    items = [_int_literal(int(v)) for v in np.asarray(values).reshape(-1).tolist()] or ["0"]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    body = ",\n    ".join(lines)
    return f"static const {ctype} {name}[{len(items)}] = {{\n    {body}\n}};\n"


def _ctype_for(values: np.ndarray) -> tuple[str, int]:
    """Smallest signed fixed-width type holding every value, and its bytes."""
    top = int(np.max(np.abs(np.asarray(values, dtype=np.int64)), initial=0))
    for ctype, size in (("int8_t", 1), ("int16_t", 2), ("int32_t", 4)):
        if top < (1 << (8 * size - 1)):
            return ctype, size
    return "int64_t", 8


def _is_pow2(value: int) -> bool:
    return value > 0 and value & (value - 1) == 0


# ---------------------------------------------------------------------------------------------
# matrices: one packed encoding per gate block
# ---------------------------------------------------------------------------------------------


@dataclass
class _Block:
    """One gate block of a matrix as the C computes it: ``sum(code * x) * scale << shift``."""

    kind: str  # "binary", "ternary", "pow2", "fixed"
    rows: int
    cols: int
    data: str  # C array name
    data_bytes: int
    code_shift: int  # binary / ternary codes are +-2**code_shift
    scale_mult: int  # row scale mantissa; 1 when it is a shift (scale_shift)
    scale_shift: int
    fixed_ctype: str = ""
    narrow: bool = False  # the raw sums provably fit int32_t: the 32-bit kernel (cheaper on a 32-bit core)


def _block_kind(codes: np.ndarray) -> tuple[str, int]:
    nonzero = np.abs(codes[codes != 0])
    if nonzero.size == 0:
        return "ternary", 0
    if np.all(nonzero == nonzero[0]) and _is_pow2(int(nonzero[0])):
        shift = int(nonzero[0]).bit_length() - 1
        return ("binary" if nonzero.size == codes.size else "ternary"), shift
    if all(_is_pow2(int(v)) for v in np.unique(nonzero)) and int(nonzero.max()).bit_length() <= 62:
        return "pow2", 0
    return "fixed", 0


def _pack_binary(codes: np.ndarray) -> list[int]:
    """One bit per weight (1: negative), rows padded to whole bytes, least significant bit first."""
    rows, cols = codes.shape
    stride = (cols + 7) // 8
    out = [0] * (rows * stride)
    for r in range(rows):
        for c in range(cols):
            if codes[r, c] < 0:
                out[r * stride + c // 8] |= 1 << (c % 8)
    return out


def _pack_ternary(codes: np.ndarray) -> list[int]:
    """Two bits per weight (01: +1, 11: -1, 00: skip), four per byte, rows padded to whole bytes."""
    rows, cols = codes.shape
    stride = (cols + 3) // 4
    out = [0] * (rows * stride)
    for r in range(rows):
        for c in range(cols):
            v = codes[r, c]
            if v:
                out[r * stride + c // 4] |= (1 if v > 0 else 3) << (2 * (c % 4))
    return out


def _pack_pow2(codes: np.ndarray) -> list[int]:
    """One byte per weight: 0 skip; else bit 7 the sign and bits 0-5 the exponent plus one."""
    flat = codes.reshape(-1)
    return [0 if v == 0 else ((0x80 if v < 0 else 0) | (abs(int(v)).bit_length())) for v in flat]


class _Emitter:
    """Collects const arrays and per-matrix block descriptions."""

    def __init__(self, prefix: str, activation_width: int) -> None:
        self.prefix = prefix
        self.activation_width = activation_width
        self.arrays: list[str] = []
        self.weight_bytes = 0
        self.table_bytes = 0
        self.kinds_used: set[str] = set()
        self.narrow_used: set[tuple[str, str]] = set()

    def constants(self, name: str, values: np.ndarray) -> None:
        """A const array of integer constants in the narrowest fixed-width type that holds them."""
        ctype, width = _ctype_for(np.asarray(values, dtype=np.int64))
        self.arrays.append(_array(ctype, name, values))
        self.weight_bytes += width * int(np.size(values))

    def matrix(self, name: str, matrix: EncodedMatrix, x_max: int) -> list[_Block]:
        """Encode ``matrix`` block by block; ``x_max`` bounds the magnitude of the codes it multiplies."""
        blocks = []
        for b, rows in enumerate(matrix.block_slices()):
            codes = np.asarray(matrix.codes[rows], dtype=np.int64)
            scale = int(matrix.row_scale[rows][0]) if codes.shape[0] else 1
            kind, code_shift = _block_kind(codes)
            data = f"{self.prefix}_{name}_{b}"
            ctype = ""
            if kind == "binary":
                packed, ctype_arr = _pack_binary(codes), "uint8_t"
                size = len(packed)
            elif kind == "ternary":
                packed, ctype_arr = _pack_ternary(codes), "uint8_t"
                size = len(packed)
            elif kind == "pow2":
                packed, ctype_arr = _pack_pow2(codes), "uint8_t"
                size = len(packed)
            else:
                ctype, width = _ctype_for(codes)
                packed, ctype_arr = codes.reshape(-1).tolist(), ctype
                size = len(packed) * width
            self.arrays.append(_array(ctype_arr, data, packed))
            self.weight_bytes += size
            self.kinds_used.add(kind)
            # what the kernel adds: +-x for binary / ternary digits, code * x otherwise
            kernel_codes = np.sign(codes) if kind in ("binary", "ternary") else codes
            bound = int(np.max(np.sum(np.abs(kernel_codes), axis=1), initial=0)) * x_max
            narrow = self.activation_width <= 31 and bound < (1 << 31)
            if narrow:
                self.narrow_used.add((kind, ctype))
            if _is_pow2(scale):
                mult, shift = 1, scale.bit_length() - 1
            else:
                mult, shift = scale, 0
            blocks.append(_Block(kind, codes.shape[0], codes.shape[1], data, size, code_shift, mult, shift, ctype,
                                 narrow))
        return blocks


# ---------------------------------------------------------------------------------------------
# the runtime: arithmetic helpers, rounding, generator
# ---------------------------------------------------------------------------------------------

_S64 = r"""
/* two's complement helpers without undefined or implementation-defined behaviour */
static int64_t qb_s64(uint64_t u)
{
    return u <= (uint64_t)INT64_MAX ? (int64_t)u : -(int64_t)(UINT64_MAX - u) - 1;
}
"""

_SHL = r"""
static int64_t qb_shl(int64_t x, unsigned s) /* x * 2**s (the program guarantees it fits) */
{
    return qb_s64((uint64_t)x << s);
}
"""

_ASR = r"""
static int64_t qb_asr(int64_t x, unsigned s) /* floor(x / 2**s) */
{
    return x < 0 ? ~(int64_t)((uint64_t)~x >> s) : (int64_t)((uint64_t)x >> s);
}
"""

_NEG_IF = r"""
static int64_t qb_neg_if(int64_t x, int negative) /* -x when negative, without a multiply */
{
    return negative ? -x : x;
}
"""

_WRAP = r"""
static int64_t qb_wrap(int64_t x, unsigned width) /* two's complement wrap to width bits (< 64) */
{
    uint64_t half = (uint64_t)1 << (width - 1);
    uint64_t u = ((uint64_t)x + half) & (((uint64_t)1 << width) - 1u);
    return (int64_t)u - (int64_t)half;
}
"""

_GENERATOR = r"""
/* counter-based generator of stochastic rounding: splitmix64's finaliser over a mixed key */
static uint64_t qb_mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * UINT64_C(0xBF58476D1CE4E5B9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94D049BB133111EB);
    return z ^ (z >> 31);
}
static uint64_t qb_key(uint64_t layer, uint64_t site, uint64_t step)
{
    static const uint64_t mult[4] = {
        UINT64_C(0x9E3779B97F4A7C15), UINT64_C(0xBF58476D1CE4E5B9),
        UINT64_C(0x94D049BB133111EB), UINT64_C(0xD6E8FEB86659FD93)
    };
    uint64_t values[4];
    uint64_t header = 0;
    int k;
    values[0] = QB_SEED; values[1] = layer; values[2] = site; values[3] = step;
    for (k = 0; k < 4; ++k)
        header = (header ^ values[k]) * mult[k] + UINT64_C(0x632BE59BD9B4E019);
    return header;
}
static int64_t qb_draw(uint64_t header, uint64_t element, unsigned bits)
{
    uint64_t z = qb_mix64(element * UINT64_C(0x9E3779B97F4A7C15) + header);
    z = qb_mix64(z);
    return (int64_t)(z >> (64u - bits));
}
"""


def _round_function(name: str, mode: str) -> str:
    """``name(x, s[, header, element])``: drop ``s`` > 0 fractional bits of ``x`` with ``mode``."""
    if mode == "stochastic":
        return (
            f"static int64_t {name}(int64_t x, unsigned s, uint64_t header, uint64_t element)\n{{\n"
            "    int64_t low = qb_asr(x, s);\n"
            "    int64_t rem = x - qb_shl(low, s);\n"
            "    return low + (qb_draw(header, element, s) < rem ? 1 : 0);\n}\n"
        )
    body = {
        "floor": "    return qb_asr(x, s);\n",
        "half-up": "    return qb_asr(x + qb_shl(1, s - 1u), s);\n",
        "half-away": "    return qb_asr(x + qb_shl(1, s - 1u) - (x < 0 ? 1 : 0), s);\n",
        "half-even": (
            "    int64_t low = qb_asr(x, s);\n"
            "    int64_t rem = x - qb_shl(low, s);\n"
            "    int64_t half = qb_shl(1, s - 1u);\n"
            "    return low + ((rem > half || (rem == half && (low & 1) != 0)) ? 1 : 0);\n"
        ),
    }[mode]
    return f"static int64_t {name}(int64_t x, unsigned s)\n{{\n{body}}}\n"


# ---------------------------------------------------------------------------------------------
# the generator
# ---------------------------------------------------------------------------------------------


class _Writer:
    def __init__(self, program: ModelProgram, prefix: str) -> None:
        self.p = program
        self.cfg = program.config
        self.prefix = prefix
        self.em = _Emitter(prefix, program.config.activation.width)
        self.stochastic = self.cfg.rounding == "stochastic"
        self.layer_blocks: list[tuple[list[_Block], list[_Block]]] = []
        self.out_blocks: list[_Block] = []
        self.tables: dict[tuple, str] = {}
        self.funcs: list[str] = []
        self.kernels: list[str] = []

    # ---- requantization -----------------------------------------------------------------

    def requant(self, expr: str, from_frac: int, fmt_name: str, layer: int, site: Site | None,
                element: str) -> str:  # fmt: skip
        """C expression: ``expr`` (at ``from_frac`` bits) rounded and fitted into a format."""
        fmt = getattr(self.cfg, fmt_name)
        shift = from_frac - fmt.frac_bits
        if shift <= 0:
            value = f"qb_shl({expr}, {-shift}u)" if shift else f"({expr})"
        elif self.stochastic:
            assert site is not None
            value = f"qb_round(({expr}), {shift}u, qb_key({layer}u, {int(site)}u, s->step), {element})"
        else:
            value = f"qb_round(({expr}), {shift}u)"
        return f"qb_fit_{fmt_name}({value})"

    def fit_function(self, fmt_name: str) -> str:
        fmt = getattr(self.cfg, fmt_name)
        lo, hi = _int_literal(fmt.lo), _int_literal(fmt.hi)
        if self.cfg.overflow == "saturate":
            body = f"    return x < {lo} ? {lo} : (x > {hi} ? {hi} : x);\n"
        else:
            body = f"    return qb_wrap(x, {fmt.width}u);\n"
        return f"static int64_t qb_fit_{fmt_name}(int64_t x) /* into {fmt} */\n{{\n{body}}}\n"

    # ---- nonlinearities -----------------------------------------------------------------

    def nonlinearity(self, nl: Nonlinearity, name: str) -> str:
        """Emit ``name(x)``: codes at ``nl.in_frac`` -> gate codes."""
        if nl.kind == "table":
            assert nl.codes is not None
            key = (nl.function, nl.size, nl.out)
            if key not in self.tables:
                table = f"{self.prefix}_{nl.function}_table_{len(self.tables)}"
                ctype, width = _ctype_for(nl.codes)
                self.em.arrays.append(_array(ctype, table, nl.codes))
                self.em.table_bytes += width * nl.size
                self.tables[key] = table
            table = self.tables[key]
            offset = _int_literal(nl.offset_code)
            if nl.index_shift >= 0:
                index = f"qb_asr(x - {offset}, {nl.index_shift}u)"
            else:
                index = f"qb_shl(x - {offset}, {-nl.index_shift}u)"
            body = (
                f"    int64_t k = {index};\n"
                f"    return {table}[k < 0 ? 0 : (k > {nl.size - 1} ? {nl.size - 1} : k)];\n"
            )
        else:  # hard: power-of-two slopes, deterministic rounding
            one = 1 << nl.out.frac_bits
            if nl.function == "sigmoid":
                drop = nl.in_frac + 2 - nl.out.frac_bits
                lo, hi = 0, min(one, nl.out.hi)
                add = one >> 1
            else:
                drop = nl.in_frac - nl.out.frac_bits
                lo, hi = max(-one, nl.out.lo), min(one, nl.out.hi)
                add = 0
            if drop > 0:
                shifted = f"qb_round_hard(x, {drop}u)"
            elif drop < 0:
                shifted = f"qb_shl(x, {-drop}u)"
            else:
                shifted = "x"
            body = (
                f"    int64_t y = {shifted} + {_int_literal(add)};\n"
                f"    return y < {_int_literal(lo)} ? {_int_literal(lo)} : (y > {_int_literal(hi)} ? "
                f"{_int_literal(hi)} : y);\n"
            )
        return f"static int64_t {name}(int64_t x)\n{{\n{body}}}\n"

    # ---- kernels ------------------------------------------------------------------------

    def kernel_functions(self) -> str:
        """Generic matrix kernels (external linkage: their object code is inspectable)."""
        p = self.prefix
        out = []
        kinds = self.em.kinds_used
        if "binary" in kinds:
            self.kernels += [f"{p}_sum_binary", f"{p}_col_binary"]
            out.append(
                "/* +-v without a multiply or a branch: n is all ones for a -1 digit, (v ^ n) - n is then -v */\n"
                "#define QB_B(v, bit) (((int64_t)(v) ^ -(int64_t)(bit)) + (int64_t)(bit))\n"
                f"void {p}_sum_binary(const uint8_t *bits, int rows, int cols, const int32_t *x, int64_t *sums)\n"
                "{\n    int stride = (cols + 7) / 8, whole = cols / 8, r, k, c;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                "        const uint8_t *row = bits + r * stride;\n"
                "        int64_t acc = 0;\n"
                "        for (k = 0; k < whole; ++k) {\n"
                "            unsigned b = row[k];\n"
                "            const int32_t *v = x + 8 * k;\n"
                "            acc += QB_B(v[0], b & 1u) + QB_B(v[1], (b >> 1) & 1u) + QB_B(v[2], (b >> 2) & 1u)\n"
                "                + QB_B(v[3], (b >> 3) & 1u) + QB_B(v[4], (b >> 4) & 1u) + QB_B(v[5], (b >> 5) & 1u)\n"
                "                + QB_B(v[6], (b >> 6) & 1u) + QB_B(v[7], b >> 7);\n"
                "        }\n"
                "        for (c = 8 * whole; c < cols; ++c)\n"
                "            acc += QB_B(x[c], (row[c >> 3] >> (c & 7)) & 1u);\n"
                "        sums[r] = acc;\n    }\n}\n"
                f"void {p}_col_binary(const uint8_t *bits, int rows, int cols, int col, int64_t *sums)\n"
                "{\n    int stride = (cols + 7) / 8, r;\n"
                "    for (r = 0; r < rows; ++r)\n"
                "        sums[r] = (bits[r * stride + (col >> 3)] >> (col & 7)) & 1u ? -1 : 1;\n}\n"
            )
        if "ternary" in kinds:
            self.kernels += [f"{p}_sum_ternary", f"{p}_col_ternary"]
            out.append(
                "/* a digit's term without a multiply or a branch: d & 1 keeps a non-zero digit (add or\n"
                " * subtract, else skip), d >> 1 negates a -1 digit (01: +v, 11: -v, 00: 0) */\n"
                "#define QB_T(v, d) ((((int64_t)(v) ^ -(int64_t)((d) >> 1)) + (int64_t)((d) >> 1)) "
                "& -(int64_t)((d) & 1u))\n"
                f"void {p}_sum_ternary(const uint8_t *digits, int rows, int cols, const int32_t *x, int64_t *sums)\n"
                "{\n    int stride = (cols + 3) / 4, whole = cols / 4, r, k, c;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                "        const uint8_t *row = digits + r * stride;\n"
                "        int64_t acc = 0;\n"
                "        for (k = 0; k < whole; ++k) { /* one byte: four digits, constant shifts */\n"
                "            unsigned b = row[k];\n"
                "            const int32_t *v = x + 4 * k;\n"
                "            acc += QB_T(v[0], b & 3u) + QB_T(v[1], (b >> 2) & 3u) + QB_T(v[2], (b >> 4) & 3u)\n"
                "                + QB_T(v[3], b >> 6);\n"
                "        }\n"
                "        for (c = 4 * whole; c < cols; ++c)\n"
                "            acc += QB_T(x[c], (row[c >> 2] >> ((c & 3) << 1)) & 3u);\n"
                "        sums[r] = acc;\n    }\n}\n"
                f"void {p}_col_ternary(const uint8_t *digits, int rows, int cols, int col, int64_t *sums)\n"
                "{\n    int stride = (cols + 3) / 4, r;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                "        unsigned d = (digits[r * stride + (col >> 2)] >> ((col & 3) << 1)) & 3u;\n"
                "        sums[r] = d == 1u ? 1 : (d == 3u ? -1 : 0);\n    }\n}\n"
            )
        if "pow2" in kinds:
            self.kernels += [f"{p}_sum_pow2", f"{p}_col_pow2"]
            out.append(
                f"void {p}_sum_pow2(const uint8_t *codes, int rows, int cols, const int32_t *x, int64_t *sums)\n"
                "{\n    int r, c;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                "        const uint8_t *row = codes + r * cols;\n"
                "        int64_t acc = 0;\n"
                "        for (c = 0; c < cols; ++c) {\n"
                "            /* branch-free: shift by the exponent, negate by the sign bit, mask a zero code */\n"
                "            unsigned e = row[c];\n"
                "            int64_t t = qb_shl(x[c], ((e & 63u) - 1u) & 63u);\n"
                "            int64_t m = -(int64_t)(e != 0u), n = -(int64_t)(e >> 7);\n"
                "            acc += ((t ^ n) - n) & m;\n"
                "        }\n        sums[r] = acc;\n    }\n}\n"
                f"void {p}_col_pow2(const uint8_t *codes, int rows, int cols, int col, int64_t *sums)\n"
                "{\n    int r;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                "        unsigned e = codes[r * cols + col];\n"
                "        sums[r] = e == 0u ? 0 : qb_neg_if(qb_shl(1, (e & 63u) - 1u), (e & 0x80u) != 0u);\n"
                "    }\n}\n"
            )
        fixed_types = sorted({b.fixed_ctype for blocks in self.all_blocks() for b in blocks if b.kind == "fixed"})
        for ctype in fixed_types:
            out.append(
                f"void {p}_sum_fixed_{ctype}(const {ctype} *codes, int rows, int cols, const int32_t *x, "
                "int64_t *sums)\n"
                "{\n    int r, c;\n"
                "    for (r = 0; r < rows; ++r) {\n"
                f"        const {ctype} *row = codes + r * cols;\n"
                "        int64_t acc = 0;\n"
                "        for (c = 0; c < cols; ++c)\n"
                "            acc += (int64_t)row[c] * x[c];\n"
                "        sums[r] = acc;\n    }\n}\n"
                f"void {p}_col_fixed_{ctype}(const {ctype} *codes, int rows, int cols, int col, int64_t *sums)\n"
                "{\n    int r;\n"
                "    for (r = 0; r < rows; ++r)\n"
                "        sums[r] = codes[r * cols + col];\n}\n"
            )
        out += [self.narrow_kernel("\n".join(out), kind, ctype) for kind, ctype in sorted(self.em.narrow_used)]
        return "\n".join(out)

    def narrow_kernel(self, source: str, kind: str, ctype: str) -> str:
        """The int32_t-accumulator twin of a sum kernel (used where the raw sums provably fit 31 bits)."""
        name = f"{self.prefix}_sum_{kind}" + (f"_{ctype}" if kind == "fixed" else "")
        start = source.index(f"void {name}(")
        end = source.index("\n}\n", start) + 3
        text = source[start:end].replace(f"void {name}(", f"void {name}32(", 1)
        for wide, narrow in (("int64_t acc", "int32_t acc"), ("QB_T(", "QB_T32("), ("QB_B(", "QB_B32("),
                             # the zero code is masked in 64 bits first: every converted value fits int32_t
                             ("int64_t t = qb_shl(x[c], ((e & 63u) - 1u) & 63u);\n"
                              "            int64_t m = -(int64_t)(e != 0u), n = -(int64_t)(e >> 7);\n"
                              "            acc += ((t ^ n) - n) & m;",
                              "int32_t t = (int32_t)(qb_shl(x[c], ((e & 63u) - 1u) & 63u) & -(int64_t)(e != 0u));\n"
                              "            int32_t n = -(int32_t)(e >> 7);\n"
                              "            acc += (t ^ n) - n;"),
                             ("(int64_t)row[c] * x[c]", "(int32_t)row[c] * x[c]")):  # fmt: skip
            text = text.replace(wide, narrow)
        self.kernels.append(f"{name}32")
        macros = {
            "ternary": "#define QB_T32(v, d) ((((int32_t)(v) ^ -(int32_t)((d) >> 1)) + (int32_t)((d) >> 1)) "
            "& -(int32_t)((d) & 1u))\n",
            "binary": "#define QB_B32(v, bit) (((int32_t)(v) ^ -(int32_t)(bit)) + (int32_t)(bit))\n",
        }
        return "/* 32-bit accumulator: |sum| < 2**31 for every row and input (the program's bounds) */\n" + macros.get(
            kind, "") + text

    def all_blocks(self) -> list[list[_Block]]:
        found = [self.out_blocks]
        for bx, bh in self.layer_blocks:
            found += [bx, bh]
        return found

    def matrix_call(self, blocks: list[_Block], x: str | None, col: str | None, sums: str) -> str:
        """Statements: raw sums of every block into ``sums``, then scale and code shift per row."""
        lines = []
        offset = 0
        for b in blocks:
            fn = f"{self.prefix}_{'sum' if x else 'col'}_{b.kind}" + (f"_{b.fixed_ctype}" if b.kind == "fixed" else "")
            if x and b.narrow:
                fn += "32"
            arg = x if x else col
            lines.append(f"    {fn}({b.data}, {b.rows}, {b.cols}, {arg}, {sums} + {offset});")
            shift = b.code_shift + b.scale_shift
            if b.scale_mult != 1 or shift:
                term = f"{sums}[r]"
                if b.scale_mult != 1:
                    term = f"{term} * {_int_literal(b.scale_mult)}"
                if shift:
                    term = f"qb_shl({term}, {shift}u)"
                lines.append(f"    for (r = {offset}; r < {offset + b.rows}; ++r)\n        {sums}[r] = {term};")
            offset += b.rows
        return "\n".join(lines)

    # ---- the layers ---------------------------------------------------------------------

    def layer_function(self, layer: LayerProgram, bx: list[_Block], bh: list[_Block]) -> str:
        cfg, p, i = self.cfg, self.prefix, layer.index
        hs, rows = layer.hidden, layer.gates * layer.hidden
        sf, af, cf = cfg.gate.frac_bits, cfg.activation.frac_bits, cfg.cell.frac_bits
        pf, F = cfg.preact.frac_bits, layer.acc_frac
        gru = layer.cell == "gru"
        split = 2 * hs if gru else rows
        self.em.constants(f"{p}_bias_x{i}", layer.bias_x)
        self.em.constants(f"{p}_bias_h{i}", layer.bias_h)
        el = "s->stream * {w}u + (uint64_t)j"
        acc_fit = (lambda e: f"qb_wrap({e}, {cfg.acc_bits}u)") if cfg.acc_bits else (lambda e: e)
        body = [f"static void {p}_layer{i}(qb_state *s, const int32_t *x, int input_id)\n{{"]
        body.append(f"    int64_t ax[{rows}], ah[{rows}];\n    int r, j;")
        body.append("    (void)x; (void)input_id; (void)r;")
        if layer.one_hot:
            body.append(self.matrix_call(bx, None, "input_id", "ax"))
        else:
            body.append(self.matrix_call(bx, "x", None, "ax"))
        body.append(self.matrix_call(bh, f"s->h{i}", None, "ah"))
        if layer.shift_x:
            body.append(f"    for (r = 0; r < {rows}; ++r)\n        ax[r] = qb_shl(ax[r], {layer.shift_x}u);")
        if layer.shift_h:
            body.append(f"    for (r = 0; r < {rows}; ++r)\n        ah[r] = qb_shl(ah[r], {layer.shift_h}u);")
        body.append(
            f"    for (r = 0; r < {rows}; ++r) {{\n        ax[r] += {p}_bias_x{i}[r];\n"
            f"        ah[r] += {p}_bias_h{i}[r];\n    }}"
        )
        pre = self.requant(acc_fit("ax[j] + ah[j]"), F, "preact", i, Site.PREACT, el.format(w=split))
        body.append(f"    {{\n        int64_t pre[{split}];\n        for (j = 0; j < {split}; ++j)\n"
                    f"            pre[j] = {pre};")  # fmt: skip
        h_el = el.format(w=hs)
        if layer.cell == "rnn":
            hexpr = self.requant(f"{p}_tanh{i}(pre[j])", sf, "activation", i, Site.HIDDEN, h_el)
            body.append(f"        for (j = 0; j < {hs}; ++j)\n            s->h{i}[j] = (int32_t){hexpr};")
        elif gru:
            common = max(sf, af)
            xn = self.requant(acc_fit(f"ax[{2 * hs} + j]"), F, "preact", i, Site.GRU_XN, h_el)
            hn = self.requant(acc_fit(f"ah[{2 * hs} + j]"), F, "preact", i, Site.GRU_HN, h_el)
            npre = self.requant(f"qb_shl(xn, {sf}u) + r_ * hn", pf + sf, "preact", i, Site.GRU_N, h_el)
            total = (f"qb_shl(n, {sf}u) + z * (qb_shl(s->h{i}[j], {common - af}u) - n)")
            hexpr = self.requant(total, sf + common, "activation", i, Site.HIDDEN, h_el)
            body.append(
                f"        for (j = 0; j < {hs}; ++j) {{\n"
                f"            int64_t r_ = {p}_sigmoid{i}(pre[j]);\n"
                f"            int64_t z = {p}_sigmoid{i}(pre[{hs} + j]);\n"
                f"            int64_t xn = {xn};\n"
                f"            int64_t hn = {hn};\n"
                f"            int64_t npre = {npre};\n"
                f"            int64_t n = qb_shl({p}_tanh{i}(npre), {common - sf}u);\n"
                f"            s->h{i}[j] = (int32_t){hexpr};\n"
                "        }"
            )
        else:
            wide = max(sf + cf, 2 * sf)
            cexpr = self.requant(
                f"qb_shl(f * s->c{i}[j], {wide - sf - cf}u) + qb_shl(ig * g, {wide - 2 * sf}u)",
                wide, "cell", i, Site.CELL, h_el,
            )
            hexpr = self.requant(f"o * {p}_tanhc{i}(c)", 2 * sf, "activation", i, Site.HIDDEN, h_el)
            body.append(
                f"        for (j = 0; j < {hs}; ++j) {{\n"
                f"            int64_t ig = {p}_sigmoid{i}(pre[j]);\n"
                f"            int64_t f = {p}_sigmoid{i}(pre[{hs} + j]);\n"
                f"            int64_t g = {p}_tanh{i}(pre[{2 * hs} + j]);\n"
                f"            int64_t o = {p}_sigmoid{i}(pre[{3 * hs} + j]);\n"
                f"            int64_t c = {cexpr};\n"
                f"            s->c{i}[j] = (int32_t)c;\n"
                f"            s->h{i}[j] = (int32_t){hexpr};\n"
                "        }"
            )
        body.append("    }\n}\n")
        # the nonlinearities this layer reads
        funcs = [self.nonlinearity(layer.tanh, f"{p}_tanh{i}")]
        if layer.cell != "rnn":
            funcs.append(self.nonlinearity(layer.sigmoid, f"{p}_sigmoid{i}"))
        if layer.tanh_cell is not None:
            funcs.append(self.nonlinearity(layer.tanh_cell, f"{p}_tanhc{i}"))
        return "\n".join(funcs) + "\n" + "\n".join(body)

    def batchnorm_function(self, layer: LayerProgram) -> str:
        bn = layer.batchnorm
        assert bn is not None
        p, i, n = self.prefix, layer.index, layer.input_size
        self.em.constants(f"{p}_bn_scale{i}", bn.scale)
        self.em.constants(f"{p}_bn_shift{i}", bn.shift)
        # the simulator rounds the whole [T, B, n] input at once, step key 0: element (t B + b) n + j
        element = f"((uint64_t)s->step * s->streams + s->stream) * {n}u + (uint64_t)j"
        expr = self.requant(f"(int64_t)x[j] * {p}_bn_scale{i}[j] + {p}_bn_shift{i}[j]", self.cfg.activation.frac_bits
                            + bn.scale_frac, "activation", i, Site.BATCHNORM, element)  # fmt: skip
        expr = expr.replace("s->step), ", "0u), ", 1) if self.stochastic else expr
        return (
            f"static void {p}_batchnorm{i}(const qb_state *s, const int32_t *x, int32_t *y)\n{{\n"
            f"    int j;\n    (void)s;\n    for (j = 0; j < {n}; ++j)\n        y[j] = (int32_t){expr};\n}}\n"
        )

    def output_function(self) -> str:
        p, out = self.prefix, self.p.output
        last = self.p.layers[-1]
        c = out.w.codes.shape[0]
        self.em.constants(f"{p}_bias_out", out.bias)
        return (
            f"void {p}_output(const qb_state *s, int64_t logits[{c}])\n{{\n    int r;\n    (void)r;\n"
            + self.matrix_call(self.out_blocks, f"s->h{last.index}", None, "logits")
            + f"\n    for (r = 0; r < {c}; ++r)\n        logits[r] += {p}_bias_out[r];\n}}\n"
        )

    # ---- the whole library --------------------------------------------------------------

    def generate(self) -> CLibrary:
        p, prog, cfg = self.prefix, self.p, self.cfg
        # the magnitudes the kernels multiply, as the program bounds them: any activation code, or a
        # hidden state (a rounded tanh, convex mix or product of values in [-1, 1])
        act = cfg.activation
        act_max = 1 << (act.width - 1)
        hidden_max = min(act_max, 1 << act.frac_bits)
        for layer in prog.layers:
            x_max = hidden_max if layer.index > 0 and layer.batchnorm is None else act_max
            self.layer_blocks.append((self.em.matrix(f"wx{layer.index}", layer.wx, x_max),
                                      self.em.matrix(f"wh{layer.index}", layer.wh, hidden_max)))  # fmt: skip
        self.out_blocks = self.em.matrix("wout", prog.output.w, hidden_max)
        first = prog.layers[0]
        if first.one_hot or prog.input_table is not None:
            input_kind, input_width = "token", 1
        else:
            input_kind, input_width = "codes", first.input_size
        if prog.input_table is not None:
            # int32_t like every activation vector: layer 0 reads the row in place
            self.em.arrays.append(_array("int32_t", f"{p}_input_table", prog.input_table))
            self.em.weight_bytes += 4 * prog.input_table.size
        layer_code = [self.layer_function(layer, bx, bh) for layer, (bx, bh) in zip(prog.layers, self.layer_blocks,
                                                                                     strict=True)]  # fmt: skip
        bn_code = [self.batchnorm_function(layer) for layer in prog.layers if layer.batchnorm is not None]
        output_code = self.output_function()
        kernels = self.kernel_functions()
        helpers = [_S64, _SHL, _ASR, _NEG_IF]
        if cfg.overflow == "wrap" or cfg.acc_bits:
            helpers.append(_WRAP)
        if self.stochastic:
            helpers.append(_GENERATOR)
            helpers.append(_round_function("qb_round", "stochastic"))
        else:
            helpers.append(_round_function("qb_round", cfg.rounding))
        if cfg.nonlinearity == "hard":
            helpers.append(_round_function("qb_round_hard", hard_rounding(cfg.rounding)))
        helpers += [self.fit_function(name) for name in ("activation", "preact", "gate", "cell")]
        n_out = prog.output.w.codes.shape[0]
        header = self.header(input_kind, input_width, n_out)
        step = self.step_function(input_kind)
        code = "\n".join([kernels, *bn_code, *layer_code, output_code, step])
        # only the helpers the program calls (an unused static function is a warning, and -Werror)
        while True:
            kept = [h for h in helpers if _called(h, code + "".join(helpers))]
            if len(kept) == len(helpers):
                break
            helpers = kept
        seed = f"#define QB_SEED UINT64_C({cfg.seed & MASK64})\n" if self.stochastic else ""
        source = "\n".join([
            f"/* {p}_model.c: generated by qbench (qbench export --target c); do not edit. */",
            f'#include "{p}_model.h"\n',
            seed,
            *self.em.arrays,
            *helpers,
            code,
        ])
        state_bytes = sum(4 * layer.hidden * (2 if layer.cell == "lstm" else 1) for layer in prog.layers) + 12
        scratch = max(8 * 3 * layer.gates * layer.hidden + 4 * layer.input_size for layer in prog.layers)
        return CLibrary(
            p, {f"{p}_model.h": header, f"{p}_model.c": source}, self.em.weight_bytes, self.em.table_bytes,
            state_bytes, scratch, list(self.kernels),
        )  # fmt: skip

    def header(self, input_kind: str, input_width: int, n_out: int) -> str:
        p, prog, cfg = self.prefix, self.p, self.cfg
        guard = f"{p.upper()}_MODEL_H"
        fields = []
        sizes = []
        for layer in prog.layers:
            fields.append(f"    int32_t h{layer.index}[{layer.hidden}]; /* hidden state, {cfg.activation} codes */")
            if layer.cell == "lstm":
                fields.append(f"    int32_t c{layer.index}[{layer.hidden}]; /* cell state, {cfg.cell} codes */")
            sizes.append(f"#define {p.upper()}_HIDDEN{layer.index} {layer.hidden}")
        cells = ", ".join(f"{layer.cell} {layer.input_size}->{layer.hidden}" for layer in prog.layers)
        return f"""/* {p}_model.h: generated by qbench (qbench export --target c); do not edit.
 *
 * Integer program of the shift-add simulator: {cells}; task {prog.task}.
 * Formats: activations / hidden {cfg.activation}, pre-activations {cfg.preact}, gates {cfg.gate},
 * cell {cfg.cell}; rounding {cfg.rounding}, overflow {cfg.overflow}, accumulator
 * {cfg.acc_bits or 'exact'}, nonlinearity {cfg.nonlinearity}; logits are integer codes with
 * {prog.output.acc_frac} fractional bits (value = code * 2**-{prog.output.acc_frac}).
 */
#ifndef {guard}
#define {guard}

#include <stdint.h>

#define {p.upper()}_INPUT_KIND_{input_kind.upper()} 1 /* token: input[0] is a token id; codes: {cfg.activation} codes */
#define {p.upper()}_INPUT_WIDTH {input_width}
#define {p.upper()}_OUTPUTS {n_out}
#define {p.upper()}_LAYERS {len(prog.layers)}
#define {p.upper()}_LOGIT_FRAC_BITS {prog.output.acc_frac}
#define {p.upper()}_ACTIVATION_FRAC_BITS {cfg.activation.frac_bits}
#define {p.upper()}_LANGUAGE_MODEL {1 if prog.task == "language-model" else 0}
{chr(10).join(sizes)}

typedef struct {{
{chr(10).join(fields)}
    uint32_t step;    /* time step since reset (key of stochastic rounding) */
    uint32_t stream;  /* which of `streams` sequences evaluated side by side this is (same) */
    uint32_t streams;
}} qb_state;

/* Zero state, step 0, stream 0 of 1. */
void {p}_reset(qb_state *s);
/* Zero state for sequence `stream` of `streams` (only stochastic rounding reads them). */
void {p}_reset_stream(qb_state *s, uint32_t stream, uint32_t streams);
/* One time step; logits (QB_OUTPUTS codes) are written when not NULL. */
void {p}_step(qb_state *s, const int32_t *input, int64_t *logits);
/* The output layer on the current hidden state of the last layer. */
void {p}_output(const qb_state *s, int64_t logits[{n_out}]);

#endif
"""

    def step_function(self, input_kind: str) -> str:
        p, prog = self.prefix, self.p
        lines = [
            f"void {p}_reset_stream(qb_state *s, uint32_t stream, uint32_t streams)\n{{\n    int j;",
        ]
        for layer in prog.layers:
            lines.append(f"    for (j = 0; j < {layer.hidden}; ++j)\n        s->h{layer.index}[j] = 0;")
            if layer.cell == "lstm":
                lines.append(f"    for (j = 0; j < {layer.hidden}; ++j)\n        s->c{layer.index}[j] = 0;")
        lines.append("    s->step = 0;\n    s->stream = stream;\n    s->streams = streams;\n}\n")
        lines.append(f"void {p}_reset(qb_state *s)\n{{\n    {p}_reset_stream(s, 0u, 1u);\n}}\n")
        step = [f"void {p}_step(qb_state *s, const int32_t *input, int64_t *logits)\n{{"]
        first = prog.layers[0]
        if first.one_hot:
            step.append(f"    {p}_layer0(s, input, (int)input[0]);")
        elif prog.input_table is not None:
            step.append(f"    {p}_layer0(s, {p}_input_table + (int)input[0] * {first.input_size}, 0);")
        else:
            step.append(f"    {p}_layer0(s, input, 0);")
        for layer in prog.layers[1:]:
            prev = f"s->h{layer.index - 1}"
            if layer.batchnorm is not None:
                step.append(
                    f"    {{\n        int32_t y[{layer.input_size}];\n"
                    f"        {p}_batchnorm{layer.index}(s, {prev}, y);\n"
                    f"        {p}_layer{layer.index}(s, y, 0);\n    }}"
                )
            else:
                step.append(f"    {p}_layer{layer.index}(s, {prev}, 0);")
        step.append(f"    s->step += 1u;\n    if (logits)\n        {p}_output(s, logits);\n}}\n")
        return "\n".join(lines + step)


def _called(helper: str, code: str) -> bool:
    """True when every static function ``helper`` defines is called somewhere in ``code``."""
    names = re.findall(r"^static \w+ (\w+)\(", helper, flags=re.M)
    return all(len(re.findall(rf"\b{name}\(", code)) > 1 for name in names)


def generate(program: ModelProgram, prefix: str = "qb") -> CLibrary:
    """The C library of ``program``; raises :class:`qbench.Unsupported` with the reason when it cannot."""
    _check_supported(program)
    return _Writer(program, prefix).generate()
