"""Technology tables: energy per operation and per bit of memory access, with node scaling.

``horowitz-45nm`` (default): M. Horowitz, "Computing's energy problem (and what we can do about
it)", ISSCC 2014, 45 nm, 0.9 V: int8 / int32 add 0.03 / 0.1 pJ, int8 / int32 multiply 0.2 /
3.1 pJ, fp16 add / multiply 0.4 / 1.1 pJ, fp32 add / multiply 0.9 / 3.7 pJ, SRAM 64-bit access
10 / 20 / 100 pJ at 8 KB / 32 KB / 1 MB, DRAM about 20 pJ per bit.

``aladdin-40nm``: Y. S. Shao et al., Aladdin (ISCA 2014), 40 nm: 32-bit add 0.21 pJ, 32x32
multiply 12.68 pJ, register access 0.009 pJ per bit. Where it has no entry (other widths,
floating point, shifts, memories) Horowitz's value is used, times Aladdin's int32 ratio to
Horowitz for the same operation kind (add 2.1x, multiply 4.09x); those figures are labelled
``fitted``.

Width rules where a table has no entry (``fitted``): add linear in bits, 0.003125 pJ per bit;
multiply ``0.0029948 b**2 + 0.0010417 b`` with ``b = sqrt(b_w b_a)`` (0.2 pJ at 8 bits, 3.1 pJ at
32); shift 0.024 pJ at 8 bits and 0.13 pJ at 32 (ShiftAddNet), linear between; SRAM energy per bit
``9.024e-4 x**3 - 2.688e-2 x**2 + 0.2089 x`` with ``x = log2(size in bits)``, for macros of at
least 8 KB (smaller memories are priced as an 8 KB macro); registers 0.009 pJ per bit (Aladdin).

Node scaling (Stillmaker and Baas 2017, as used by Accelergy), energy relative to 45 nm / 0.9 V:
32 nm 0.64, 16 nm 0.142, 7 nm / 0.8 V 0.077, 7 nm / 0.7 V 0.057. It describes logic; memory is
scaled separately by ``memory_scaling``: ``none`` (default, the conservative choice), ``sqrt``
(the square root of the logic factor) or ``logic`` (the same factor).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

NODE_FACTORS = {"45nm": 1.0, "32nm": 0.64, "16nm": 0.142, "7nm-0.8v": 0.077, "7nm-0.7v": 0.057}
MEMORY_SCALING = ("none", "sqrt", "logic")
SRAM_MIN_BITS = 8 * 1024 * 8


def fitted_add_pj(bits: float) -> float:
    return 0.003125 * bits


def fitted_mult_pj(b_w: float, b_a: float) -> float:
    b = math.sqrt(b_w * b_a)
    return 0.0029948 * b * b + 0.0010417 * b


def fitted_shift_pj(bits: float) -> float:
    return 0.024 + (bits - 8.0) * (0.13 - 0.024) / 24.0


def sram_pj_per_bit(size_bits: float) -> float:
    """Per-bit access energy of an SRAM macro of ``size_bits`` (cubic fit, 8 KB minimum)."""
    x = math.log2(max(size_bits, SRAM_MIN_BITS))
    return 9.024e-4 * x**3 - 2.688e-2 * x**2 + 0.2089 * x


@dataclass(frozen=True)
class TechTable:
    """Energies in pJ at the table's own node; ``op_ratio`` rescales fitted values (Aladdin)."""

    name: str
    source: str
    int_add: dict[int, float]
    int_mult: dict[int, float]
    fp_add: dict[int, float]
    fp_mult: dict[int, float]
    register_pj_per_bit: float = 0.009
    dram_pj_per_bit: float = 20.0
    add_ratio: float = 1.0
    mult_ratio: float = 1.0

    def add_pj(self, bits: float, floating: bool = False) -> float:
        if floating:
            return self.fp_add.get(int(bits), HOROWITZ.fp_add.get(int(bits), 0.9) * self.add_ratio)
        if bits in self.int_add:
            return self.int_add[int(bits)]
        return fitted_add_pj(bits) * self.add_ratio

    def mult_pj(self, b_w: float, b_a: float, floating: bool = False) -> float:
        if floating:
            bits = int(max(b_w, b_a))
            return self.fp_mult.get(bits, HOROWITZ.fp_mult.get(bits, 3.7) * self.mult_ratio)
        if b_w == b_a and b_w in self.int_mult:
            return self.int_mult[int(b_w)]
        return fitted_mult_pj(b_w, b_a) * self.mult_ratio

    def shift_pj(self, bits: float) -> float:
        return fitted_shift_pj(bits) * self.add_ratio


HOROWITZ = TechTable(
    name="horowitz-45nm",
    source="Horowitz, ISSCC 2014, 45 nm 0.9 V",
    int_add={8: 0.03, 32: 0.1},
    int_mult={8: 0.2, 32: 3.1},
    fp_add={16: 0.4, 32: 0.9},
    fp_mult={16: 1.1, 32: 3.7},
)

ALADDIN = TechTable(
    name="aladdin-40nm",
    source="Shao et al., Aladdin, ISCA 2014, 40 nm (other entries Horowitz-fitted)",
    int_add={32: 0.21},
    int_mult={32: 12.68},
    fp_add={},
    fp_mult={},
    add_ratio=0.21 / 0.1,
    mult_ratio=12.68 / 3.1,
)

TABLES = {table.name: table for table in (HOROWITZ, ALADDIN)}
NATIVE_NODE = {"horowitz-45nm": "45nm", "aladdin-40nm": "45nm"}  # 40 nm is scaled as the 45 nm class


def node_factors(table: str, node: str, memory_scaling: str) -> tuple[float, float]:
    """(logic factor, memory factor) from the table's node to ``node`` ("native" keeps it)."""
    if node == "native":
        return 1.0, 1.0
    logic = NODE_FACTORS[node] / NODE_FACTORS[NATIVE_NODE[table]]
    memory = {"none": 1.0, "sqrt": math.sqrt(logic), "logic": logic}[memory_scaling]
    return logic, memory


def table_label(table: str, node: str) -> str:
    """``"horowitz-45nm@45nm"``: the table and the node its figures are scaled to."""
    if node == "native":
        node = table.rsplit("-", 1)[-1]
    return f"{table}@{node}"
