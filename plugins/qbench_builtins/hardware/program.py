"""The fixed-point program of an exported model: formats, encoded weights, constants, tables.

Built once from a :class:`qbench.export.ExportedModel` and a :class:`SimConfig`; executed by the
vectorised integer engine (:mod:`.engine`), the float64 reference (:mod:`.reference`) and the
tests' scalar interpreter (``tests/hardware_interpreter.py``), which therefore run the *same*
program.

Per layer and time step (``A`` activations/hidden state, ``P`` gate pre-activations, ``S`` gate
outputs, ``C`` LSTM cell state; torch's gate order):

1. ``Ax = Wx_codes @ x`` and ``Ah = Wh_codes @ h`` exactly (integer sums; ternary/binary codes
   are add/subtract/skip, power-of-two codes are shifts aligned at the matrix's smallest
   exponent). Each row is multiplied once by its scale mantissa (1 unless the block's scale is
   not a power of two), aligned by a left shift to the accumulator's ``F`` fractional bits, and
   added to the bias preloaded at ``F`` bits (``b_ih`` with the input part, ``b_hh`` with the
   recurrent part). With ``acc_bits`` > 0 the accumulator wraps at that width (counted).
2. One rounding ``F -> P`` (saturation counted), then sigmoid / tanh into ``S``.
3. Cell update with exact products and one rounding per result:
   rnn ``h' = tanh(pre)``; gru ``n = tanh(xn + r * hn)`` (reset after the product, ``xn`` and
   ``hn`` rounded to ``P`` first), ``h' = n + z (h - n)``; lstm ``c' = f c + i g`` (into ``C``),
   ``h' = o tanh(c')``; ``h'`` is rounded into ``A``.

The input of layer 0 is converted once: one-hot ids select columns of the input matrix
(no products); embeddings and features are rounded half away from zero into ``A`` (folded
batch norm ``x * scale + shift`` is applied to the float input first, i.e. it is part of the
converter). Batch norm before a deeper layer is an integer multiply by the scale mantissa and
an add, rounded into ``A``. The output layer (own encoding; a float output layer is rounded
to ``output_bits`` fixed point, as labelled in the record) yields exact integer logits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING

import numpy as np

import qbench
from qbench_builtins.hardware.formats import STOCHASTIC_MAX_BITS, QFormat, round_half_away_float
from qbench_builtins.hardware.tables import Nonlinearity
from qbench_builtins.hardware.weights import EncodedMatrix, encode_matrix, fixed_point_constant

if TYPE_CHECKING:
    from qbench.export import ExportedLayer, ExportedModel

GATE_BLOCKS = {"rnn": 1, "gru": 3, "lstm": 4}


class Site(IntEnum):
    """Where a stochastic rounding happens: part of its random key, so the numbers never change."""

    PREACT = 0
    GRU_XN = 1
    GRU_HN = 2
    GRU_N = 3
    HIDDEN = 4
    CELL = 5
    BATCHNORM = 6

INT64_SAFE_BITS = 62


@dataclass(frozen=True)
class SimConfig:
    """Formats and policies of the integer program (the shift-add backend's parameters)."""

    activation: QFormat = QFormat(8, 8)
    preact: QFormat = QFormat(4, 12)
    gate: QFormat = QFormat(1, 15)
    cell: QFormat = QFormat(5, 11)
    rounding: str = "half-up"
    overflow: str = "saturate"
    acc_bits: int = 0
    nonlinearity: str = "table"
    sigmoid_entries: int = 1024
    tanh_entries: int = 1024
    scale_bits: int = 16
    float_weight_bits: int = 0
    output_bits: int = 16
    seed: int = 0


def _dtype_for(bound_bits: int) -> type | str:
    """Cheapest exact dtype for integer sums bounded by 2**bound_bits (BLAS when it is exact)."""
    if bound_bits <= 24:
        return np.float32
    if bound_bits <= 53:
        return np.float64
    if bound_bits <= INT64_SAFE_BITS:
        return np.int64
    return object


def _bits(value: int) -> int:
    return int(value).bit_length()


@dataclass
class BatchNormStage:
    """Integer batch norm before a deeper layer: ``round((x * m + t) * 2**-fs)`` into ``A``."""

    scale: np.ndarray  # int64 mantissas per channel
    scale_frac: int
    shift: np.ndarray  # int64 codes at af + scale_frac
    exact: bool


@dataclass
class LayerProgram:
    index: int
    cell: str
    input_size: int
    hidden: int
    gates: int
    one_hot: bool
    in_frac: int
    wx: EncodedMatrix
    wh: EncodedMatrix
    acc_frac: int
    shift_x: int
    shift_h: int
    bias_x: np.ndarray
    bias_h: np.ndarray
    bias_exact: bool
    sigmoid: Nonlinearity
    tanh: Nonlinearity
    tanh_cell: Nonlinearity | None
    matmul_x_dtype: type | str
    matmul_h_dtype: type | str
    arith_dtype: type | str
    acc_bound_bits: int
    batchnorm: BatchNormStage | None = None

    @property
    def weight_products(self) -> int:
        """Products per step: the selected column for one-hot inputs, else G h (n + h)."""
        cols = 1 if self.one_hot else self.input_size
        return self.gates * self.hidden * (cols + self.hidden)


@dataclass
class OutputProgram:
    w: EncodedMatrix
    acc_frac: int
    bias: np.ndarray
    bias_exact: bool
    matmul_dtype: type | str


@dataclass
class ModelProgram:
    config: SimConfig
    task: str
    input_kind: str
    input_table: np.ndarray | None  # [V, n] codes in A (embedding / one-hot with batch norm)
    input_scale: np.ndarray | None  # layer-0 folded batch norm for features
    input_shift: np.ndarray | None
    layers: list[LayerProgram]
    output: OutputProgram
    notes: list[str] = field(default_factory=list)
    input_table_saturations: np.ndarray | None = None

    @property
    def requantized(self) -> bool:
        return any(layer.wx.requantized or layer.wh.requantized for layer in self.layers)

    def input_codes(self, inputs: np.ndarray) -> tuple[np.ndarray, int]:
        """Layer 0's input: ids [T, B] for one-hot selection, else codes [T, B, n] in A; + saturations."""
        first = self.layers[0]
        fmt = self.config.activation
        if first.one_hot:
            return np.asarray(inputs, dtype=np.int64), 0
        if self.input_table is not None:
            ids = np.asarray(inputs, dtype=np.int64)
            saturated = (
                0 if self.input_table_saturations is None else int(self.input_table_saturations[ids].sum())
            )
            return self.input_table[ids], saturated
        x = np.asarray(inputs, dtype=np.float64)
        if self.input_scale is not None:
            x = x * self.input_scale + self.input_shift
        codes = round_half_away_float(x * 2.0**fmt.frac_bits)
        saturated = int(np.count_nonzero((codes < fmt.lo) | (codes > fmt.hi)))
        return np.clip(codes, fmt.lo, fmt.hi).astype(np.int64), saturated


def _layer_batchnorm(layer: ExportedLayer, config: SimConfig) -> BatchNormStage | None:
    if layer.input_scale is None:
        return None
    scale = np.asarray(layer.input_scale, dtype=np.float64)
    top = float(np.max(np.abs(scale), initial=0.0)) or 1.0
    scale_frac = config.scale_bits - int(np.frexp(top)[1])
    m, exact_m = fixed_point_constant(scale, scale_frac)
    shift_codes, exact_t = fixed_point_constant(
        np.zeros(layer.input_size) if layer.input_shift is None else layer.input_shift,
        config.activation.frac_bits + scale_frac,
    )
    return BatchNormStage(m, scale_frac, shift_codes, exact_m and exact_t)


@dataclass
class _Sums:
    """Where one layer's sums live: the accumulator's fractional bits, shifts and bounds."""

    acc_frac: int
    shift_x: int
    shift_h: int
    bound_x: int  # largest |Wx_codes @ x| (before scale and bias)
    bound_h: int  # largest |Wh_codes @ h|
    acc_bound: int  # largest |accumulator| (scaled, aligned, biases included)


def _encode_layer_weights(
    layer: ExportedLayer, index: int, config: SimConfig
) -> tuple[EncodedMatrix, EncodedMatrix]:
    """The input and recurrent matrices' integer encodings (Unsupported when not exact)."""
    cell = layer.cell
    if cell not in GATE_BLOCKS:
        raise qbench.Unsupported(f"cell {cell!r} is not one of {', '.join(GATE_BLOCKS)}")
    h, n, gates = layer.hidden_size, layer.input_size, GATE_BLOCKS[cell]
    if layer.w_input.values.shape != (gates * h, n) or layer.w_recurrent.values.shape != (gates * h, h):
        raise qbench.Unsupported(f"layer {index}: weight shapes do not match a {cell} of {n} -> {h}")
    what = f"layer {index}"
    wx = encode_matrix(
        layer.w_input.values, h, config.scale_bits, config.float_weight_bits, f"{what} input matrix"
    )
    wh = encode_matrix(
        layer.w_recurrent.values, h, config.scale_bits, config.float_weight_bits, f"{what} recurrent matrix"
    )
    return wx, wh


def _layer_biases(layer: ExportedLayer, rows: int, acc_frac: int) -> tuple[np.ndarray, np.ndarray, bool]:
    """``b_ih`` and ``b_hh`` as codes at the accumulator's fractional bits, and whether exact."""
    zeros = np.zeros(rows)
    b_in = zeros if layer.b_input is None else np.asarray(layer.b_input.values, np.float64).reshape(-1)
    b_rec = (
        zeros if layer.b_recurrent is None else np.asarray(layer.b_recurrent.values, np.float64).reshape(-1)
    )
    bias_x, exact_x = fixed_point_constant(b_in, acc_frac)
    bias_h, exact_h = fixed_point_constant(b_rec, acc_frac)
    return bias_x, bias_h, exact_x and exact_h


def _layer_sums(
    layer: ExportedLayer, index: int, config: SimConfig, one_hot: bool, wx: EncodedMatrix, wh: EncodedMatrix
) -> tuple[_Sums, np.ndarray, np.ndarray, bool]:
    """The accumulator's format and bounds from the weights and formats; and the biases in it."""
    act, pre = config.activation, config.preact
    in_frac = 0 if one_hot else act.frac_bits
    x_frac = wx.frac + wx.scale_frac + in_frac
    h_frac = wh.frac + wh.scale_frac + act.frac_bits
    acc_frac = max(x_frac, h_frac, pre.frac_bits)
    bias_x, bias_h, bias_exact = _layer_biases(layer, GATE_BLOCKS[layer.cell] * layer.hidden_size, acc_frac)
    act_max = 1 << (act.width - 1)
    # a hidden state is a rounded tanh, convex mix or product of gate values in [-1, 1]
    hidden_max = min(act_max, 1 << act.frac_bits)
    if one_hot:
        x_in_max = 1
    elif index > 0 and layer.input_scale is None:
        x_in_max = hidden_max
    else:
        x_in_max = act_max
    x_sum = np.max(np.abs(wx.codes), axis=1) if one_hot else np.sum(np.abs(wx.codes), axis=1)
    bound_x = int(np.max(x_sum, initial=0)) * x_in_max
    bound_h = int(np.max(np.sum(np.abs(wh.codes), axis=1), initial=0)) * hidden_max
    shift_x, shift_h = acc_frac - x_frac, acc_frac - h_frac
    acc_bound = (
        (bound_x * int(np.max(wx.row_scale)) << shift_x)
        + (bound_h * int(np.max(wh.row_scale)) << shift_h)
        + int(np.max(np.abs(bias_x), initial=0))
        + int(np.max(np.abs(bias_h), initial=0))
    )
    return _Sums(acc_frac, shift_x, shift_h, bound_x, bound_h, acc_bound), bias_x, bias_h, bias_exact


def _arith_dtype(config: SimConfig, acc_bound: int) -> type | str:
    """int64 when every accumulator and element-wise product provably fits 62 bits, else Python ints."""
    widths = [config.activation, config.preact, config.gate, config.cell]
    fracs = [f.frac_bits for f in widths]
    elementwise_bits = 2 * max(f.width for f in widths) + max(fracs) - min(fracs) + 4
    arith_bits = max(_bits(acc_bound) + 2, elementwise_bits, config.acc_bits + 2)
    return np.int64 if arith_bits <= INT64_SAFE_BITS else object


def _layer_nonlinearities(cell: str, config: SimConfig) -> tuple[Nonlinearity, Nonlinearity, Nonlinearity | None]:
    """sigmoid and tanh of the pre-activations, and the LSTM's tanh of the cell state."""
    pre = config.preact
    sig = Nonlinearity.build(
        "sigmoid", config.nonlinearity, pre.frac_bits, config.gate, config.sigmoid_entries
    )
    tanh = Nonlinearity.build("tanh", config.nonlinearity, pre.frac_bits, config.gate, config.tanh_entries)
    sig.cover(pre)
    tanh.cover(pre)
    tanh_cell = None
    if cell == "lstm":
        tanh_cell = Nonlinearity.build(
            "tanh", config.nonlinearity, config.cell.frac_bits, config.gate, config.tanh_entries
        )
        tanh_cell.cover(config.cell)
    return sig, tanh, tanh_cell


def build_layer(layer: ExportedLayer, index: int, config: SimConfig, one_hot: bool) -> LayerProgram:
    wx, wh = _encode_layer_weights(layer, index, config)
    sums, bias_x, bias_h, bias_exact = _layer_sums(layer, index, config, one_hot, wx, wh)
    sig, tanh, tanh_cell = _layer_nonlinearities(layer.cell, config)
    return LayerProgram(
        index=index,
        cell=layer.cell,
        input_size=layer.input_size,
        hidden=layer.hidden_size,
        gates=GATE_BLOCKS[layer.cell],
        one_hot=one_hot,
        in_frac=0 if one_hot else config.activation.frac_bits,
        wx=wx,
        wh=wh,
        acc_frac=sums.acc_frac,
        shift_x=sums.shift_x,
        shift_h=sums.shift_h,
        bias_x=bias_x,
        bias_h=bias_h,
        bias_exact=bias_exact,
        sigmoid=sig,
        tanh=tanh,
        tanh_cell=tanh_cell,
        matmul_x_dtype=np.int64 if one_hot else _dtype_for(_bits(sums.bound_x)),
        matmul_h_dtype=_dtype_for(_bits(sums.bound_h)),
        arith_dtype=_arith_dtype(config, sums.acc_bound),
        acc_bound_bits=_bits(sums.acc_bound) + 1,
        batchnorm=_layer_batchnorm(layer, config) if index > 0 else None,
    )


def stochastic_drops(config: SimConfig, layer: LayerProgram) -> dict[str, int]:
    """Fractional bits each stochastic rounding site of ``layer`` drops at once (docs/hardware.md)."""
    sf, af, cf = config.gate.frac_bits, config.activation.frac_bits, config.cell.frac_bits
    drops = {"pre-activation": layer.acc_frac - config.preact.frac_bits}
    if layer.cell == "gru":
        drops["gru candidate"] = sf
        drops["hidden state"] = sf + max(sf, af) - af
    elif layer.cell == "lstm":
        drops["cell state"] = max(sf + cf, 2 * sf) - cf
        drops["hidden state"] = 2 * sf - af
    else:
        drops["hidden state"] = sf - af
    if layer.batchnorm is not None:
        drops["batch norm"] = layer.batchnorm.scale_frac
    return drops


def _check_stochastic_drops(config: SimConfig, layers: list[LayerProgram]) -> None:
    """Stochastic rounding draws one 62-bit number per rounding: wider drops cannot be simulated."""
    if config.rounding != "stochastic":
        return
    for layer in layers:
        for site, drop in stochastic_drops(config, layer).items():
            if drop > STOCHASTIC_MAX_BITS:
                raise qbench.Unsupported(
                    f"stochastic rounding at layer {layer.index}'s {site} drops {drop} fractional bits "
                    f"at once; the counter-based generator draws at most {STOCHASTIC_MAX_BITS}: use "
                    "formats with fewer fractional bits (or a smaller scale_bits) or a deterministic rounding"
                )


@dataclass
class _InputConverter:
    """How layer 0 reads its input: one-hot selection, a table of codes, or rounded features."""

    one_hot: bool
    table: np.ndarray | None = None  # [V, n] codes in A
    table_saturations: np.ndarray | None = None  # saturated entries of each row: counted per token read
    scale: np.ndarray | None = None  # folded batch norm of features
    shift: np.ndarray | None = None
    notes: list[str] = field(default_factory=list)


def _input_converter(model: ExportedModel, config: SimConfig) -> _InputConverter:
    act = config.activation
    first = model.layers[0]
    converter = _InputConverter(one_hot=model.input_kind == "one-hot" and first.input_scale is None)
    if model.input_kind in ("one-hot", "embedding") and not converter.one_hot:
        if model.input_kind == "one-hot":
            table = np.eye(first.input_size)
        else:
            if model.embedding is None:
                raise qbench.Unsupported("input_kind 'embedding' without an embedding table")
            table = np.asarray(model.embedding, dtype=np.float64)
        if first.input_scale is not None:
            shift = 0.0 if first.input_shift is None else first.input_shift
            table = table * first.input_scale + shift
        codes = round_half_away_float(table * 2.0**act.frac_bits)
        outside = np.count_nonzero((codes < act.lo) | (codes > act.hi), axis=1)
        if np.any(outside):
            converter.notes.append("input table saturated into the activation format")
            converter.table_saturations = outside.astype(np.int64)
        converter.table = np.clip(codes, act.lo, act.hi).astype(np.int64)
    elif model.input_kind == "features":
        if first.input_scale is not None:
            converter.scale = np.asarray(first.input_scale, dtype=np.float64)
            converter.shift = np.zeros_like(converter.scale) if first.input_shift is None else first.input_shift
    elif model.input_kind != "one-hot":
        raise qbench.Unsupported(f"input_kind {model.input_kind!r} is not one-hot, embedding or features")
    return converter


def _output_program(model: ExportedModel, config: SimConfig) -> OutputProgram:
    """The output layer: its own encoding (a float one rounded to ``output_bits``), exact integer logits.

    A quantized output layer (``model.output_tensor``, the matrix's ``roles.output``) is encoded
    exactly, as the recurrent matrices are: never rounded to ``output_bits`` behind the record's back
    (``float_weight_bits`` requantizes it, as it does them; otherwise it is unsupported)."""
    act = config.activation
    w_out = np.asarray(model.output_weight, dtype=np.float64)
    declared = getattr(model, "output_tensor", None)
    try:
        wo = encode_matrix(w_out, w_out.shape[0], config.scale_bits, 0, "output layer")
    except qbench.Unsupported as exc:
        if declared is None:
            wo = encode_matrix(w_out, w_out.shape[0], config.scale_bits, config.output_bits, "output layer")
        elif config.float_weight_bits:
            wo = encode_matrix(w_out, w_out.shape[0], config.scale_bits, config.float_weight_bits, "output layer")
        else:
            raise qbench.Unsupported(
                f"the output layer is quantized by {declared.quantizer or declared.scheme} ({declared.scheme}, "
                f"{declared.bits:g} bits) but {exc}"
            ) from None
    out_frac = wo.frac + wo.scale_frac + act.frac_bits
    out_bias, out_exact = fixed_point_constant(
        np.asarray(model.output_bias, np.float64).reshape(-1), out_frac
    )
    bound = int(np.max(np.sum(np.abs(wo.codes), axis=1), initial=0)) * min(
        1 << (act.width - 1), 1 << act.frac_bits
    )
    bound_total = bound * int(np.max(wo.row_scale)) + int(np.max(np.abs(out_bias), initial=0))
    output = OutputProgram(wo, out_frac, out_bias, out_exact, _dtype_for(_bits(bound)))
    if _bits(bound_total) > INT64_SAFE_BITS:
        output.matmul_dtype = object
    return output


def build_program(model: ExportedModel, config: SimConfig) -> ModelProgram:
    """Encode every tensor of ``model``; raise :class:`qbench.Unsupported` where that is not exact."""
    if not model.layers:
        raise qbench.Unsupported("the exported model has no recurrent layer")
    converter = _input_converter(model, config)
    layers = [
        build_layer(layer, i, config, converter.one_hot and i == 0) for i, layer in enumerate(model.layers)
    ]
    _check_stochastic_drops(config, layers)
    for prev, layer in zip(layers, layers[1:], strict=False):
        if layer.input_size != prev.hidden:
            raise qbench.Unsupported(
                f"layer {layer.index} expects {layer.input_size} inputs, gets {prev.hidden}"
            )
    return ModelProgram(
        config,
        model.task,
        model.input_kind,
        converter.table,
        converter.scale,
        converter.shift,
        layers,
        _output_program(model, config),
        converter.notes,
        converter.table_saturations,
    )
