"""The paper's three recurrent cells and IndRNN, written as declared cells (the public plugin contract).

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
* mingru (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201): z = sigmoid(W_z x + b_z),
  h~ = W_h x + b_h, h' = (1 - z) h + z h~: no recurrent tensor at all; trained with a parallel scan.
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


class MinGRUCell(RecurrentCell):
    """minGRU (Feng et al. 2024, "Were RNNs All We Needed?", arXiv 2410.01201, section 3.1).

    z_t = sigmoid(Linear(x_t)), h~_t = Linear(x_t), h_t = (1 - z_t) * h_{t-1} + z_t * h~_t: the
    gate and the candidate read only the input, so the layer has one input matrix of two gate
    blocks (z, h~) and its bias, and no recurrent tensor (the state enters element-wise only).
    ``step`` is the per-step reference, written ``h + z (h~ - h)`` (1 multiply, 2 adds per unit,
    the declared counts). ``scan`` computes the gate and candidate of every step in one matrix
    product and solves ``h_t = a_t h_{t-1} + b_t`` (``a = 1 - z``, ``b = z h~``) with
    :func:`qbench.training.scan.linear_recurrence`: the paper's log-space parallel scan on a GPU,
    a sequential solver with a hand-written adjoint on the CPU (cheaper there), the same numbers.
    The paper's log-space variant also replaces h~ by ``g(h~)`` to keep it positive; this cell
    keeps h~ = Linear(x), as the plain definition states (the solver handles either sign).
    """

    name = "mingru"
    description = "minGRU (Feng et al. 2024): h' = (1 - z) h + z h~, z and h~ from the input only (parallel scan)"
    gate_blocks = 2
    tensors = (
        TensorSpec("w_input", "input", "matrix", 2, reads="input"),
        TensorSpec("b_input", "bias", "vector", 2, init="zeros"),
    )
    elementwise: ClassVar[dict[str, int]] = {"mults": 1, "adds": 2, "sigmoids": 1}

    def step(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> State:
        import torch

        (h,) = state
        gate, candidate = (x @ w["w_input"].t() + w["b_input"]).chunk(2, dim=-1)
        z = torch.sigmoid(gate)
        return (h + z * (candidate - h),)

    def scan(self, x: torch.Tensor, state: State, w: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, State]:
        import torch
        from torch.nn.functional import logsigmoid

        from qbench.training.scan import linear_recurrence

        (h0,) = state
        gate, candidate = (x @ w["w_input"].t() + w["b_input"]).chunk(2, dim=-1)  # [T, B, h] each
        z = torch.sigmoid(gate)
        # h_t = (1 - z_t) h_{t-1} + z_t h~_t; 1 - z = sigmoid(-k) exactly, log(1 - z) = logsigmoid(-k)
        log_a = logsigmoid(-gate) if x.is_cuda else None  # the parallel log-space solver (GPU) only
        h = linear_recurrence(torch.sigmoid(-gate), z * candidate, h0, log_a=log_a)
        return h, (h[-1],)


BUILTIN_CELLS: tuple[type[RecurrentCell], ...] = (RNNCell, GRUCell, LSTMCell, IndRNNCell, MinGRUCell)
