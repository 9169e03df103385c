"""Plain per-time-step cells: the readable reference the fused kernel is tested against.

Each function applies one cell to one time step with the (already quantized) tensors
``w_input [G*h, n]``, ``w_recurrent [G*h, h]``, ``b_input [G*h]``, ``b_recurrent [G*h]`` in
torch's gate order. Slow (a Python loop over time); used by tests and by
``QuantizedRecurrentStack.implementation = "loop"``.
"""

from __future__ import annotations

import torch


def rnn_step(x: torch.Tensor, h: torch.Tensor, w: list[torch.Tensor]) -> torch.Tensor:
    """h' = tanh(W_x x + b + W_h h + b_h)."""
    return torch.tanh(x @ w[0].t() + w[2] + h @ w[1].t() + w[3])


def gru_step(x: torch.Tensor, h: torch.Tensor, w: list[torch.Tensor]) -> torch.Tensor:
    """r, z = sigmoid(.); n = tanh(W_xn x + b_n + r * (W_hn h + b_hn)); h' = (1 - z) n + z h."""
    xr, xz, xn = (x @ w[0].t() + w[2]).chunk(3, dim=-1)
    hr, hz, hn = (h @ w[1].t() + w[3]).chunk(3, dim=-1)
    reset = torch.sigmoid(xr + hr)
    update = torch.sigmoid(xz + hz)
    candidate = torch.tanh(xn + reset * hn)
    return (1.0 - update) * candidate + update * h


def lstm_step(
    x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor], w: list[torch.Tensor]
) -> tuple[torch.Tensor, torch.Tensor]:
    """i, f, o = sigmoid(.); g = tanh(.); c' = f c + i g; h' = o tanh(c') (no peepholes)."""
    h, c = state
    gates = x @ w[0].t() + w[2] + h @ w[1].t() + w[3]
    i, f, g, o = gates.chunk(4, dim=-1)
    c_next = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    h_next = torch.sigmoid(o) * torch.tanh(c_next)
    return h_next, c_next


def run_layer(
    cell: str, x: torch.Tensor, state: object, weights: list[torch.Tensor]
) -> tuple[torch.Tensor, object]:
    """Run one layer over ``x [T, B, n]`` from ``state`` (``[1, B, h]`` or a pair); like the fused call."""
    outputs = []
    if cell == "lstm":
        h, c = state[0][0], state[1][0]  # type: ignore[index]
        for t in range(x.shape[0]):
            h, c = lstm_step(x[t], (h, c), weights)
            outputs.append(h)
        return torch.stack(outputs), (h.unsqueeze(0), c.unsqueeze(0))
    step = gru_step if cell == "gru" else rnn_step
    h = state[0]  # type: ignore[index]
    for t in range(x.shape[0]):
        h = step(x[t], h, weights)
        outputs.append(h)
    return torch.stack(outputs), h.unsqueeze(0)
