"""A new cell with a vector recurrent weight, written only against qbench's public plugin contract.

docs/plugins.md shows this file; qbench's tests check that the two stay identical.
"""

from __future__ import annotations

import qbench


class DiagonalRNN(qbench.Cell):
    """h' = tanh(W x + b + u * h): a tanh RNN whose recurrent weight is a vector u (one per unit)."""

    name = "diagonal-rnn"
    description = "tanh RNN with a diagonal (vector) recurrent weight: h' = tanh(W x + b + u * h)"
    params = {
        "hidden": qbench.Param(int, 64, "units per layer", min=1),
        "layers": qbench.Param(int, 1, "stacked layers", min=1),
    }
    tensors = (
        qbench.TensorSpec("w_input", "input", "matrix", reads="input"),
        qbench.TensorSpec("u", "recurrent", "diagonal", fans=(3, 3)),  # W0 = 1: |u| <= 1
        qbench.TensorSpec("b", "bias", "vector", init="zeros"),
    )
    state_size = 1
    elementwise = {"tanhs": 1}  # per unit and step, besides the products and bias adds

    def step(self, x, state, w):
        import torch

        (h,) = state
        return (torch.tanh(x @ w["w_input"].t() + w["b"] + w["u"] * h),)


@qbench.hookimpl
def qbench_register_cells():
    return [DiagonalRNN]
