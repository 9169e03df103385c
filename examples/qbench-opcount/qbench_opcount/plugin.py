"""``opcount``: multiply-accumulates and nonzero weights per token, from the exported model.

A backend owns its columns (qbench refuses one named like the host's, a dataset metric's or
another backend's, naming both owners), declares their directions (``""``: reported, never
ranked) and which of them the leaderboard plots the primary metric against (``cost_axes``).
"""

from __future__ import annotations

from typing import Any, ClassVar

import qbench
from qbench import Param


class OpCount(qbench.HardwareBackend):
    """Counts the recurrent multiply-accumulates of one time step and the weights that are nonzero."""

    name: ClassVar[str] = "opcount"
    description: ClassVar[str] = "multiply-accumulates per token and nonzero weights, counted from the export"
    params: ClassVar[dict[str, Param]] = {
        "skip_zeros": Param(bool, True, "a zero weight costs no multiply-accumulate"),
    }
    columns: ClassVar[dict[str, str]] = {
        "opcount_macs_per_token": "min",
        "opcount_nonzero_fraction": "min",
        "opcount_layers": "",  # a fact, not better or worse: reported, never ranked
    }
    cost_axes: ClassVar[tuple[str, ...]] = ("opcount_macs_per_token",)

    def measure(self, model: Any, sample: Any) -> dict[str, Any]:
        import numpy as np

        macs, nonzero, total = 0.0, 0, 0
        for layer in model.layers:
            tensors = layer.tensors or {"w_input": layer.w_input, "w_recurrent": layer.w_recurrent}
            for name, tensor in tensors.items():
                if tensor is None or tensor.role == "bias":
                    continue
                values = np.asarray(tensor.values)
                count = int(np.count_nonzero(values))
                nonzero += count
                total += int(values.size)
                if name == "w_input" and model.input_kind == "one-hot" and values.ndim == 2:
                    # a one-hot token reads one column of the input matrix: its rows, on average
                    macs += count / values.shape[1] if self.skip_zeros else values.shape[0]
                else:
                    macs += count if self.skip_zeros else int(values.size)
        return {
            "opcount_macs_per_token": float(macs),
            "opcount_nonzero_fraction": nonzero / total if total else 0.0,
            "opcount_layers": len(model.layers),
        }


@qbench.hookimpl
def qbench_register_hardware() -> list[type]:
    return [OpCount]
