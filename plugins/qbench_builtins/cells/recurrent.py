"""The paper's three recurrent cells and IndRNN, written as declared cells (the public contract 2).

Light module (no torch at import): each cell declares its tensors and its ``step``; the host
(:mod:`qbench.training.stack`) provides initialisation, quantization, the fused kernel, the
per-step reference, the export and the operation counts.

Formulas (Ott et al. 2016, section "Cells" of docs/paper.md; gate order as torch):

* rnn:  h' = tanh(W_x x + W_h h + b)
* gru:  r, z = sigmoid(W_xr x + b_r + W_hr h + b_hr), ...;
  n = tanh(W_xn x + b_n + r * (W_hn h + b_hn)); h' = (1 - z) n + z h (torch's nn.GRU convention,
  ``z = 1 - u`` of the paper's update gate)
* lstm: i, f, o = sigmoid(...), g = tanh(...); c' = f c + i g; h' = o tanh(c') (no peepholes)
* indrnn (Li et al. 2018, arXiv 1803.04831): h' = relu(W_x x + b + u * h), the recurrent weight
  ``u`` a vector (one weight per unit, an element-wise product), beyond the paper.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar

import qbench
from qbench import Param, TensorSpec

if TYPE_CHECKING:  # pragma: no cover
    import torch

    State = tuple[torch.Tensor, ...]

COMMON_PARAMS: dict[str, Param] = {
    # upper bounds: beyond them the weights alone need tens of GB (refused before allocating)
    "hidden": Param(int, 128, "units per recurrent layer", min=1, max=16384),
    "layers": Param(int, 1, "stacked recurrent layers", min=1, max=64),
    "batch_norm": Param(bool, False, "batch norm over batch and time on each layer's input (gamma 0.1)"),
    "embedding": Param(int, 0, "token inputs: 0 = one-hot, >0 = full-precision embedding of that size", min=0,
                       max=16384),
}


def gated_tensors(blocks: int, recurrent_bias: bool) -> tuple[TensorSpec, ...]:
    """torch's layout: input and recurrent matrices of ``blocks`` gate blocks, one or two biases."""
    specs = (
        TensorSpec("w_input", "input", "matrix", blocks, reads="input"),
        TensorSpec("w_recurrent", "recurrent", "matrix", blocks, reads="hidden"),
        TensorSpec("b_input", "bias", "vector", blocks, init="zeros"),
    )
    if recurrent_bias:
        specs += (TensorSpec("b_recurrent", "bias", "vector", blocks, init="zeros"),)
    return specs


class RecurrentCell(qbench.Cell):
    """Common parameters of the built-in cells; subclasses declare tensors and ``step``."""

    params: ClassVar[dict[str, Param]] = COMMON_PARAMS


class RNNCell(RecurrentCell):
    name = "rnn"
    description = "Elman RNN, h' = tanh(W_x x + W_h h + b)"
    gate_blocks = 1
    tensors = gated_tensors(1, recurrent_bias=False)
    elementwise: ClassVar[dict[str, int]] = {"tanhs": 1}
    fused_kernel = "rnn_tanh"

    def step(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> State:
        import torch

        (h,) = state
        return (torch.tanh(x @ w["w_input"].t() + w["b_input"] + h @ w["w_recurrent"].t()),)


class GRUCell(RecurrentCell):
    name = "gru"
    description = "GRU, reset gate applied after the recurrent product (as the paper's code and torch)"
    gate_blocks = 3
    tensors = gated_tensors(3, recurrent_bias=True)
    elementwise: ClassVar[dict[str, int]] = {"mults": 2, "adds": 3, "sigmoids": 2, "tanhs": 1}
    fused_kernel = "gru"

    def step(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> State:
        """r, z = sigmoid(.); n = tanh(W_xn x + b_n + r * (W_hn h + b_hn)); h' = n + z (h - n).

        h' = (1 - z) n + z h written as torch's GRU kernel computes it: 2 multiplies and 3 adds per
        unit, the counts declared in ``elementwise`` (the kit traces ``step`` against them)."""
        import torch

        (h,) = state
        xr, xz, xn = (x @ w["w_input"].t() + w["b_input"]).chunk(3, dim=-1)
        hr, hz, hn = (h @ w["w_recurrent"].t() + w["b_recurrent"]).chunk(3, dim=-1)
        reset = torch.sigmoid(xr + hr)
        update = torch.sigmoid(xz + hz)
        candidate = torch.tanh(xn + reset * hn)
        return (candidate + update * (h - candidate),)


class LSTMCell(RecurrentCell):
    name = "lstm"
    description = "LSTM without peepholes (gates i, f, g, o)"
    gate_blocks = 4
    tensors = gated_tensors(4, recurrent_bias=False)
    state_size = 2
    elementwise: ClassVar[dict[str, int]] = {"mults": 3, "adds": 1, "sigmoids": 3, "tanhs": 2}
    fused_kernel = "lstm"

    def step(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> State:
        """i, f, o = sigmoid(.); g = tanh(.); c' = f c + i g; h' = o tanh(c') (no peepholes)."""
        import torch

        h, c = state
        gates = x @ w["w_input"].t() + w["b_input"] + h @ w["w_recurrent"].t()
        i, f, g, o = gates.chunk(4, dim=-1)
        c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        h_next = torch.sigmoid(o) * torch.tanh(c_next)
        return h_next, c_next


class IndRNNCell(RecurrentCell):
    """IndRNN (Li et al. 2018, "Independently Recurrent Neural Network", arXiv 1803.04831).

    h' = relu(W_x x + b + u * h): each unit sees only its own past through one recurrent weight,
    so the recurrent weight is a vector ``u [h]`` (a ``"diagonal"`` tensor: h products per step,
    not h^2). Its quantizer context has fans (3, 3), so W0 = 1: a ternary ``u`` is in {-1, 0, 1}
    and ``|u| <= 1`` keeps the relu recurrence from growing without bound (the paper constrains
    ``|u|`` for the same reason). No fused torch kernel: the host runs the per-step loop.
    """

    name = "indrnn"
    description = "IndRNN (Li et al. 2018): h' = relu(W_x x + b + u * h), vector recurrent weight u"
    gate_blocks = 1
    tensors = (
        TensorSpec("w_input", "input", "matrix", 1, reads="input"),
        TensorSpec("w_recurrent", "recurrent", "diagonal", 1, fans=(3, 3), init="positive"),
        TensorSpec("b_input", "bias", "vector", 1, init="zeros"),
    )
    elementwise: ClassVar[dict[str, int]] = {"relus": 1}

    def step(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> State:
        import torch

        (h,) = state
        return (torch.relu(x @ w["w_input"].t() + w["b_input"] + w["w_recurrent"] * h),)


BUILTIN_CELLS: tuple[type[RecurrentCell], ...] = (RNNCell, GRUCell, LSTMCell, IndRNNCell)
