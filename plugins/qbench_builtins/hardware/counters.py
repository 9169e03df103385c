"""Operation counts by closed form, from the non-zero masks (docs/hardware.md, "Operation counts").

Per time step of one layer (batch 1), with ``P`` the weight products, ``nnz`` the non-zero
weights among them and ``Z = P - nnz`` (biases are preloaded into the accumulators):

=============  ========  ======  ======  ===================  ============================
kind           add/sub   skips   shifts  multiplies           scale multiplies
=============  ========  ======  ======  ===================  ============================
fixed / float  P         0       0       P                    one per row if scaled
binary         P         0       0       0                    one per row unless 2**k
ternary        nnz       Z       0       0                    one per row unless 2**k
pow2           nnz       Z       nnz     0                    0
=============  ========  ======  ======  ===================  ============================

plus the element-wise work of the cell (rnn: h tanh; gru: 2h multiplies, 3h add/sub, 2h sigmoid,
h tanh; lstm: 3h multiplies, h add/sub, 3h sigmoid, 2h tanh) and, before a deeper layer with
batch norm, n multiplies and n adds. For one-hot inputs only the selected column is read, so
its products are counted per token from the token's column. ``mults`` in the records is the
sum of weight, element-wise and scale multiplies.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from qbench_builtins.hardware.program import LayerProgram, ModelProgram

COUNT_KEYS = ("adds", "shifts", "mults", "skips", "scale_mults", "table_lookups", "sigmoids", "tanhs")
ELEMENTWISE = {  # (multiplies, add/sub, sigmoids, tanhs) per hidden unit
    "rnn": (0, 0, 0, 1),
    "gru": (2, 3, 2, 1),
    "lstm": (3, 1, 3, 2),
}


def matrix_counts(
    kinds: list[str],
    scaled: list[bool],
    block_rows: int,
    nonzero: np.ndarray,
    column_ids: np.ndarray | None = None,
) -> Counter:
    """Counts of one evaluation of ``W @ x`` (or the sum over the selected ``column_ids``)."""
    counts: Counter = Counter()
    evaluations = 1 if column_ids is None else len(column_ids)
    for b, (kind, is_scaled) in enumerate(zip(kinds, scaled, strict=True)):
        block = nonzero[b * block_rows : (b + 1) * block_rows]
        if column_ids is None:
            products = block.size
            nnz = int(np.count_nonzero(block))
        else:
            products = block.shape[0] * len(column_ids)
            nnz = int(np.count_nonzero(block, axis=0)[column_ids].sum())
        if kind in ("fixed", "float"):
            counts["adds"] += products
            counts["mults"] += products
        else:
            counts["adds"] += nnz
            counts["skips"] += products - nnz
            if kind == "pow2":
                counts["shifts"] += nnz
        if is_scaled:
            counts["scale_mults"] += block.shape[0] * evaluations
            counts["mults"] += block.shape[0] * evaluations
    return counts


def elementwise_counts(cell: str, hidden: int, batchnorm_inputs: int = 0) -> Counter:
    mults, adds, sigmoids, tanhs = ELEMENTWISE[cell]
    return Counter(
        mults=mults * hidden + batchnorm_inputs,
        adds=adds * hidden + batchnorm_inputs,
        sigmoids=sigmoids * hidden,
        tanhs=tanhs * hidden,
        table_lookups=(sigmoids + tanhs) * hidden,
    )


def layer_counts(layer: LayerProgram, steps: int, column_ids: np.ndarray | None = None) -> Counter:
    """Total counts of ``steps`` steps (batch 1 each) of one layer; ``column_ids`` for one-hot."""
    counts: Counter = Counter()
    wx, wh = layer.wx, layer.wh
    if layer.one_hot:
        assert column_ids is not None and len(column_ids) == steps
        counts += matrix_counts(wx.block_kinds, wx.block_scaled, wx.block_rows, wx.nonzero_mask, column_ids)
    else:
        per_step = matrix_counts(wx.block_kinds, wx.block_scaled, wx.block_rows, wx.nonzero_mask)
        counts += Counter({k: v * steps for k, v in per_step.items()})
    per_step = matrix_counts(wh.block_kinds, wh.block_scaled, wh.block_rows, wh.nonzero_mask)
    per_step += elementwise_counts(layer.cell, layer.hidden, layer.input_size if layer.batchnorm else 0)
    counts += Counter({k: v * steps for k, v in per_step.items()})
    return counts


def program_counts(program: ModelProgram, steps: int, column_ids: np.ndarray | None = None) -> Counter:
    """Totals over all recurrent layers for ``steps`` steps (batch 1)."""
    total: Counter = Counter()
    for layer in program.layers:
        total += layer_counts(layer, steps, column_ids if layer.one_hot else None)
    return total


def output_counts(program: ModelProgram) -> Counter:
    """Counts of one evaluation of the output layer."""
    w = program.output.w
    return matrix_counts(w.block_kinds, w.block_scaled, w.block_rows, w.nonzero_mask)


def bops_per_step(gates: int, hidden: int, cols: int, p_nonzero: float, b_a: float, b_w: float) -> float:
    """BOPs = G h K (p b_a b_w + b_a + b_w + log2 K) with K the columns read per step."""
    k = cols + hidden
    return gates * hidden * k * (p_nonzero * b_a * b_w + b_a + b_w + float(np.log2(k)))
