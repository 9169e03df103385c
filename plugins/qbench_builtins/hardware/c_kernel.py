"""``c-kernel``: the integer program compiled to C, run on this CPU and checked against the simulator.

Light module (no numpy at import): the generator, the build helpers and the measurement are
imported inside ``measure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import qbench
from qbench.params import Param
from qbench_builtins.hardware.shift_add import ShiftAddSimulator

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedModel

#: the shift-add parameters that define the integer program (the C runs the same program)
PROGRAM_PARAMS = (
    "activation_format", "preact_format", "gate_format", "cell_format", "rounding", "overflow", "acc_bits",
    "nonlinearity", "sigmoid_entries", "tanh_entries", "scale_bits", "float_weight_bits", "output_bits", "seed",
)  # fmt: skip


class CKernel(qbench.HardwareBackend):
    """The shift-add program as a C99 library (``qbench export --target c`` writes the same code).

    Generates the library, compiles it with the host C compiler (strict C99, ``-O2``), runs the
    evaluation sample through the compiled program and compares every hidden-state code and
    every logit with the simulator's integers: ``c_exact`` is the fraction identical (anything
    below 1.0 is a qbench bug). Sizes: ``c_flash_bytes`` (text + read-only data of the library's
    object file), ``c_ram_bytes`` (the state, static data and the stack bound of
    ``-fstack-usage``). Speed, on process CPU time over the same tokens: ``c_ns_per_token``,
    ``c_vs_torch`` (compiled tokens per second over torch float32 inference of the same weights
    at batch 1, one thread) and ``c_vs_simulator`` (over the numpy integer engine). With
    ``cortex_m`` (default) the library is also built for a Cortex-M3 (``arm-none-eabi-gcc -Os``,
    ``m3_flash_bytes``, ``m3_ram_bytes``) and its self-test run under QEMU's mps2-an385 board
    (``m3_exact``), counting its instructions per step (``m3_instructions_per_token``: QEMU's
    ``-icount shift=0`` clock read through SysTick, 40 instructions per tick); ``m3_status`` says
    why not when a tool is missing. The program's parameters
    are shift-add's (same names, same defaults).
    """

    name = "c-kernel"
    description = "the integer program compiled to C99: bit-exactness, flash / RAM, ns per token (host and Cortex-M3)"
    params: ClassVar[dict[str, Param]] = {
        **{key: ShiftAddSimulator.params[key] for key in PROGRAM_PARAMS},
        "max_tokens": Param(
            int, 1000, "run at most this many tokens / sequences of the sample; 0: all", min=0
        ),
        "timing": Param(bool, True, "measure ns per token and the ratios to torch and the simulator"),
        "cortex_m": Param(bool, True, "also build for a Cortex-M3 and run the self-test under QEMU"),
    }
    headline: ClassVar[tuple[str, ...] | None] = ("c_exact", "c_flash_bytes", "c_ram_bytes", "c_vs_torch")
    leading_columns: ClassVar[tuple[str, ...]] = ("c_exact", "c_flash_bytes", "c_ram_bytes", "c_ns_per_token")
    columns: ClassVar[dict[str, str]] = {
        "c_exact": "max",
        "c_outputs_checked": "",
        "c_flash_bytes": "min",
        "c_ram_bytes": "min",
        "c_stack_bytes": "min",
        "c_weight_bytes": "min",
        "c_ns_per_token": "min",
        "c_vs_torch": "max",
        "c_vs_simulator": "max",
        "m3_flash_bytes": "min",
        "m3_ram_bytes": "min",
        "m3_exact": "max",
        "m3_instructions_per_token": "min",
        "m3_status": "",
    }
    #: wall-clock measurements: present in every result, but not equal between two runs
    timed_columns: ClassVar[tuple[str, ...]] = ("c_ns_per_token", "c_vs_torch", "c_vs_simulator")

    def validate(self) -> None:
        ShiftAddSimulator.validate(self)  # the same program parameters, the same checks

    def sim_config(self) -> Any:
        return ShiftAddSimulator.sim_config(self)

    def measure(self, model: ExportedModel, sample: EvalSample) -> dict[str, Any]:
        from qbench_builtins.hardware.ckernel_measure import measure
        from qbench_builtins.hardware.shift_add import unsupported_reason

        unsupported_reason(model, self.config["float_weight_bits"], self.config["scale_bits"])
        return measure(model, sample, self.sim_config(), self.config["max_tokens"], self.config["timing"],
                       self.config["cortex_m"])  # fmt: skip
