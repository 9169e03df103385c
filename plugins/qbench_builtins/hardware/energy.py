"""``energy``: prices the operation counts and weight reads with a technology table.

Light module (no numpy at import): :mod:`.energy_model` is imported inside ``measure``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

import qbench
from qbench.params import Param

if TYPE_CHECKING:
    from qbench.data import EvalSample
    from qbench.export import ExportedModel

TABLE_NAMES = ("horowitz-45nm", "aladdin-40nm")
NODES = ("native", "45nm", "32nm", "16nm", "7nm-0.8v", "7nm-0.7v")


class EnergyModel(qbench.HardwareBackend):
    """Energy, memory and latency of batch-1 inference (docs/hardware.md, "Energy and memory").

    Counts every operation by the closed forms with the real non-zero masks (no simulator
    needed): add/sub, shifts and multiplies at their widths, table lookups, and one read of every
    weight used per token from ``memory`` (an SRAM sized to the model, DRAM, registers, or
    hard-wired logic), plus state register traffic; prices them with ``table`` scaled to
    ``node`` (Stillmaker-Baas factors for logic, ``memory_scaling`` for memory). Reports pJ per
    token (the output layer once per token for a language model, amortised over the sequence
    for classification) and per sequence (per token x length), the arithmetic / memory split,
    weight bytes (dense at declared bits, packed five ternary digits per byte, entropy bound,
    sparse CSR), BOPs ``G h K (p b_a b_w + b_a + b_w + log2 K)``, and a latency estimate on
    ``lanes`` lanes at ``clock_mhz``. ``energy_table`` labels every figure with its table and
    node; ratios between schemes are the robust result (tables disagree by 2-4x).
    """

    name = "energy"
    description = "energy per token / sequence, weight memory, BOPs and latency (technology table labelled)"
    params: ClassVar[dict[str, Param]] = {
        "table": Param(str, "horowitz-45nm", "technology table", choices=TABLE_NAMES),
        "node": Param(
            str, "native", "scale energies to this node ('native': the table's own)", choices=NODES
        ),
        "memory_scaling": Param(
            str,
            "none",
            "how memory energy follows the node: none, sqrt or logic",
            choices=("none", "sqrt", "logic"),
        ),
        "memory": Param(
            str, "sram", "where the weights live", choices=("sram", "dram", "registers", "hardwired")
        ),
        "storage": Param(
            str, "dense", "weight storage read per token: dense bits or packed", choices=("dense", "packed")
        ),
        "activation_bits": Param(int, 16, "activation width of an integer datapath", min=2, max=32),
        "output_bits": Param(
            int, 16, "weight bits of a float output layer on an integer datapath", min=2, max=32
        ),
        "lanes": Param(int, 256, "parallel adder / MAC lanes for the latency estimate", min=1),
        "clock_mhz": Param(float, 200.0, "clock for the latency estimate", min=1e-3),
    }
    headline: ClassVar[tuple[str, ...] | None] = ("energy_pj_per_token", "weight_bytes_dense", "weight_bytes_packed")
    cost_axes: ClassVar[tuple[str, ...]] = ("energy_pj_per_token",)
    columns: ClassVar[dict[str, str]] = {
        "energy_pj_per_token": "min",
        "energy_pj_per_sequence": "min",
        "energy_arith_pj_per_token": "min",
        "energy_memory_pj_per_token": "min",
        "energy_weights_pj_per_token": "min",
        "energy_state_pj_per_token": "min",
        "energy_output_pj_per_token": "min",
        "energy_add_pj_per_token": "min",
        "energy_mult_pj_per_token": "min",
        "energy_shift_pj_per_token": "min",
        "weight_bytes_dense": "min",
        "weight_bytes_packed": "min",
        "weight_bytes_sparse": "min",
        "weight_bytes_entropy": "min",
        "output_weight_bytes": "min",
        "state_bytes": "min",
        "table_bytes": "min",
        "bops_per_token": "min",
        "latency_us_per_token": "min",
        "energy_table": "",
        "memory_placement": "",
        "datapath": "",
    }

    def energy_config(self) -> Any:
        from qbench_builtins.hardware.energy_model import EnergyConfig

        c = self.config
        return EnergyConfig(
            table=c["table"],
            node=c["node"],
            memory_scaling=c["memory_scaling"],
            memory=c["memory"],
            storage=c["storage"],
            activation_bits=c["activation_bits"],
            output_bits=c["output_bits"],
            lanes=c["lanes"],
            clock_mhz=c["clock_mhz"],
        )

    def measure(self, model: ExportedModel, sample: EvalSample) -> dict[str, Any]:
        from qbench_builtins.hardware.counters import ELEMENTWISE

        for layer in model.layers:
            if layer.cell not in ELEMENTWISE and not layer.tensors:
                raise qbench.Unsupported(
                    f"no operation counts for cell {layer.cell!r}: it is not declared (declare its "
                    "tensors, state_size and elementwise operations, and energy prices it)"
                )
        from qbench_builtins.hardware.energy_model import analyse

        result = analyse(model, sample, self.energy_config())
        return {
            key: (float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
            for key, v in result.items()
        }
