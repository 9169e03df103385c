"""``shift-add``: integer-only inference of the exported model, bit-exact and counted.

Light module (no numpy at import): the simulator's modules are imported inside ``measure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import qbench
from qbench.params import Param

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedModel

#: Widest format simulated: wider ones would make every accumulator a huge Python integer for nothing.
MAX_FORMAT_BITS = 64
_FORMAT_HELP = "fixed-point format 'Qi.f' (i integer bits including the sign, f fractional bits)"


class ShiftAddSimulator(qbench.HardwareBackend):
    """Integer shift-add simulator (docs/hardware.md).

    Every tensor is an integer code times a power of two. Ternary / binary products are add,
    subtract or skip; power-of-two products are exact left shifts aligned at the matrix's
    smallest exponent; a non-power-of-two ternary / binary scale ``W0`` is applied once per
    output row as one counted multiply by its ``scale_bits``-bit mantissa. Accumulators are
    exact (or wrap at ``acc_bits``, counted as overflows); each requantization rounds once
    (``rounding``) and saturates or wraps (``overflow``, counted); sigmoid / tanh are integer
    tables. The float output layer is rounded to ``output_bits`` fixed point (labelled by
    ``sim_output_requantized``). Float recurrent weights are ``unsupported`` unless
    ``float_weight_bits`` > 0 rounds them to fixed point (then ``sim_requantized`` is true).

    Reports the integer model's task metric beside the float model's, their agreement, the
    vectorised engine's bit-exact agreement with a float64 execution of the same program
    (``sim_exact``; None when some quantity of the program needs more than float64's 53 bits,
    as ``sim_reference_exact`` false and ``sim_reference_limit`` say, or when ``reference`` is off),
    operation counts per
    token (recurrent layers; the output layer apart, per output evaluation), the accumulator
    range and overflow / saturation counts.

    ``acc_bits_max``: two's complement bits of the largest accumulator seen where it is
    requantized (biases preloaded, scale mantissa applied, aligned at ``F`` fractional bits);
    ``acc_bits_bound`` its data-aware bound from the weights and formats; ``adder_bits_max``: the
    largest raw product sum of the input and recurrent adder trees (integer codes times activation
    codes, before the scale multiply and the biases), i.e. the adder width the trained weights need.
    """

    name = "shift-add"
    description = "bit-exact integer shift-add simulator: task metric, agreement and counts per token"
    params: ClassVar[dict[str, Param]] = {
        "activation_format": Param(str, "Q8.8", "inputs and hidden state: " + _FORMAT_HELP),
        "preact_format": Param(str, "Q4.12", "gate pre-activations: " + _FORMAT_HELP),
        "gate_format": Param(str, "Q1.15", "sigmoid / tanh outputs: " + _FORMAT_HELP),
        "cell_format": Param(str, "Q5.11", "LSTM cell state: " + _FORMAT_HELP),
        "rounding": Param(
            str,
            "half-up",
            "rounding at requantization (half-up: add half an LSB and truncate, the usual hardware choice)",
            choices=("floor", "half-up", "half-away", "half-even", "stochastic"),
        ),
        "overflow": Param(str, "saturate", "requantization overflow policy", choices=("saturate", "wrap")),
        "acc_bits": Param(
            int, 0, "accumulator width (wraps, counted); 0: exact, never overflows", min=0, max=200
        ),
        "nonlinearity": Param(
            str,
            "table",
            "sigmoid/tanh: integer table, hard (shifts), exact (float64, for checks)",
            choices=("table", "hard", "exact"),
        ),
        "sigmoid_entries": Param(int, 1024, "sigmoid table entries over [-8, 8) (power of two)", min=2),
        "tanh_entries": Param(int, 1024, "tanh table entries over [-4, 4) (power of two)", min=2),
        "scale_bits": Param(int, 16, "significant bits of a non-power-of-two weight scale", min=2, max=40),
        "float_weight_bits": Param(
            int,
            0,
            "round float recurrent weights to this many fixed-point bits; 0: unsupported",
            min=0,
            max=24,
        ),
        "output_bits": Param(int, 16, "fixed-point bits of a float output layer", min=2, max=24),
        "seed": Param(int, 0, "key of the counter-based generator of stochastic rounding"),
        "max_tokens": Param(
            int, 0, "simulate at most this many tokens / sequences of the sample; 0: all", min=0
        ),
        "reference": Param(bool, True, "also run the float64 reference (sim_exact); off saves time"),
    }
    headline: ClassVar[tuple[str, ...] | None] = (
        "sim_bpc", "sim_accuracy", "sim_agreement", "sim_max_abs_error", "adds", "shifts", "mults",
    )
    #: what a reader compares first: the operation counts, then whether the simulation was exact
    leading_columns: ClassVar[tuple[str, ...]] = ("mults", "adds", "shifts", "sim_exact", "sim_max_abs_error")
    columns: ClassVar[dict[str, str]] = {
        "sim_exact": "",
        "sim_metric": "",
        "float_metric": "",
        "float64_metric": "",
        "sim_bpc": "min",
        "sim_accuracy": "max",
        "sim_max_abs_error": "min",
        "sim_agreement": "max",
        "adds": "min",
        "shifts": "min",
        "mults": "min",
        "skips": "",
        "scale_mults": "min",
        "table_lookups": "min",
        "output_mults": "min",
        "output_adds": "min",
        "output_shifts": "min",
        "acc_bits_max": "min",
        "adder_bits_max": "min",
        "acc_bits_bound": "min",
        "overflows": "min",
        "saturations": "min",
        "sim_weight_kinds": "",
        "sim_formats": "",
        "op_widths": "",
        "sim_requantized": "",
        "sim_output_requantized": "",
        "sim_reference_exact": "",
        "sim_reference_limit": "",
        "sim_tokens": "",
    }

    def validate(self) -> None:
        from qbench_builtins.hardware.formats import QFormat

        for key in ("activation_format", "preact_format", "gate_format", "cell_format"):
            try:
                fmt = QFormat.parse(self.config[key])
            except ValueError as exc:
                self._reject(f"{key}: {exc}")
            if fmt.width > MAX_FORMAT_BITS:
                self._reject(f"{key}: format {self.config[key]!r} is {fmt.width} bits wide; at most "
                             f"{MAX_FORMAT_BITS} bits are simulated (e.g. 'Q8.36')")
        for key in ("sigmoid_entries", "tanh_entries"):
            entries = self.config[key]
            if entries & (entries - 1):
                self._reject(f"{key} must be a power of two (the table index is a shift), got {entries}")
        if self.config["rounding"] == "stochastic" and self.config["nonlinearity"] == "exact":
            self._reject(
                "nonlinearity 'exact' is a check of the cell equations; use a deterministic rounding"
            )

    def sim_config(self) -> Any:
        """The :class:`~qbench_builtins.hardware.program.SimConfig` of these parameters."""
        from qbench_builtins.hardware.formats import QFormat
        from qbench_builtins.hardware.program import SimConfig

        c = self.config
        return SimConfig(
            activation=QFormat.parse(c["activation_format"]),
            preact=QFormat.parse(c["preact_format"]),
            gate=QFormat.parse(c["gate_format"]),
            cell=QFormat.parse(c["cell_format"]),
            rounding=c["rounding"],
            overflow=c["overflow"],
            acc_bits=c["acc_bits"],
            nonlinearity=c["nonlinearity"],
            sigmoid_entries=c["sigmoid_entries"],
            tanh_entries=c["tanh_entries"],
            scale_bits=c["scale_bits"],
            float_weight_bits=c["float_weight_bits"],
            output_bits=c["output_bits"],
            seed=c["seed"],
        )

    def measure(self, model: ExportedModel, sample: EvalSample) -> dict[str, Any]:
        from qbench_builtins.hardware.simulate import simulate

        unsupported_reason(model, self.config["float_weight_bits"], self.config["scale_bits"])
        return simulate(model, sample, self.sim_config(), self.config["max_tokens"], self.config["reference"])


#: the tasks whose outputs the integer simulator reads (a token stream, or one label per sequence)
SIMULATED_TASKS = ("language-model", "classification")
#: the cells the integer simulator has programs for
SIMULATED_CELLS = ("rnn", "gru", "lstm")


def significant_bits(value: float) -> int:
    """Bits of the binary mantissa of ``value`` (0.75 -> 2, 0.1 in float32 -> 24)."""
    import math

    mantissa, _ = math.frexp(abs(value))
    bits = 0
    while mantissa != int(mantissa):
        mantissa *= 2
        bits += 1
    return max(bits, 1)


def unsupported_reason(model: ExportedModel, float_weight_bits: int = 0, scale_bits: int = 16) -> None:
    """Raise :class:`qbench.Unsupported` saying precisely what the simulator cannot run."""
    if model.task not in SIMULATED_TASKS:
        raise qbench.Unsupported(f"the integer simulator runs the {' and '.join(SIMULATED_TASKS)} tasks, "
                                 f"not {model.task!r} (its programs read one output per token or sequence)")
    for index, layer in enumerate(model.layers):
        if layer.cell not in SIMULATED_CELLS:
            declared = ", ".join(f"{name} {t.layout}" for name, t in layer.tensors.items()) or "not declared"
            ops = ", ".join(f"{k} {v}/unit" for k, v in sorted(layer.elementwise.items())) or "none declared"
            raise qbench.Unsupported(
                f"layer {index}: the integer simulator has programs for {', '.join(SIMULATED_CELLS)} only; "
                f"cell {layer.cell!r} (tensors: {declared}; element-wise: {ops}) would need its step compiled "
                "to integer operations (the energy backend prices it from its declaration)"
            )
        if layer.hidden_quantizer is not None:
            raise qbench.Unsupported(
                f"layer {index}: the hidden state is quantized by the model's quantizer "
                f"({layer.hidden_quantizer['scheme']}, {layer.hidden_quantizer['bits']:g} bits), and the "
                "simulator requantizes it to activation_format instead; it cannot reproduce that model"
            )
        if float_weight_bits:
            continue
        tensors = layer.tensors or {"w_input": layer.w_input, "w_recurrent": layer.w_recurrent}
        _check_exact_tensors(f"layer {index}", tensors, scale_bits)
    output = getattr(model, "output_tensor", None)
    if output is not None and not float_weight_bits:  # a quantized output layer (roles.output)
        _check_exact_tensors("the output layer", {"weight": output}, scale_bits)


def _check_exact_tensors(where: str, tensors: dict[str, Any], scale_bits: int) -> None:
    """Unsupported for a declared scale wider than ``scale_bits`` or asymmetric ternary values (the
    message begins with ``where`` and the tensor's name)."""
    import numpy as np

    for name, tensor in tensors.items():
        step = tensor.scale  # the declared scale (Quantizer.code_scale), whichever quantizer learned it
        if step is not None and significant_bits(step) > scale_bits:
            raise qbench.Unsupported(
                f"{where} {name}: the learned step {step:.6g} has {significant_bits(step)} significant "
                f"bits, more than scale_bits={scale_bits}; set scale_bits >= {significant_bits(step)} "
                "to simulate it exactly"
            )
        nonzero = np.unique(tensor.values[tensor.values != 0])
        if len(nonzero) == 2 and nonzero[0] < 0 < nonzero[1] and -nonzero[0] != nonzero[1]:
            raise qbench.Unsupported(
                f"{where} {name}: asymmetric ternary values {{{nonzero[0]:.6g}, 0, {nonzero[1]:.6g}}} "
                "(separate negative and positive scales, as TTQ learns) have no encoding in the simulator, "
                "whose ternary blocks share one scale; set float_weight_bits to simulate them in fixed point"
            )
