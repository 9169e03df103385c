"""Built-in hardware backends: the integer ``shift-add`` simulator, the ``energy`` model and ``c-kernel``.

Only the two light class modules are imported here; the numpy modules of the simulator
(formats, tables, weights, program, intops, engine, fused, reference, counters, energy tables) are
imported when a backend measures.
"""

from __future__ import annotations

import qbench
from qbench_builtins.hardware.c_kernel import CKernel
from qbench_builtins.hardware.energy import EnergyModel
from qbench_builtins.hardware.shift_add import ShiftAddSimulator


@qbench.hookimpl
def qbench_register_hardware() -> list[type]:
    return [ShiftAddSimulator, EnergyModel, CKernel]
