"""The per-time-step reference: a declared cell's ``step`` looped over time.

The readable path the fused kernels are tested against, and the path of cells without a fused
kernel and of quantizers that quantize the hidden state at every step (slow: a Python loop).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch

Step = Callable[[torch.Tensor, tuple[torch.Tensor, ...], Mapping[str, torch.Tensor]], tuple[torch.Tensor, ...]]


def run_layer(
    step: Step,
    x: torch.Tensor,
    state: tuple[torch.Tensor, ...],
    tensors: Mapping[str, torch.Tensor],
    hidden: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
    """Run one layer over ``x [T, B, n]`` from ``state`` (tensors ``[1, B, h]``), like the fused call.

    ``hidden``, when given, maps the new hidden state at every step (the hidden-state quantizer)
    before it is output and carried.
    """
    outputs = []
    current = tuple(s[0] for s in state)
    # unbind, not x[t]: the backward of T selections would write T zero tensors of x's full size
    for x_t in x.unbind(0):
        current = tuple(step(x_t, current, tensors))
        if hidden is not None:
            current = (hidden(current[0]), *current[1:])
        outputs.append(current[0])
    return torch.stack(outputs), tuple(s.unsqueeze(0) for s in current)
