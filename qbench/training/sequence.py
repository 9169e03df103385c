"""Hand-written BPTT for the fused cells when the hidden state is quantized at every step.

A hidden-state quantizer keeps a cell out of torch's fused kernel: the state fed back at step
``t + 1`` is ``q(h_t)``. The per-step reference (:mod:`qbench.training.reference`) then builds an
autograd graph of about 20 nodes per step, and on one CPU thread that bookkeeping, not the
arithmetic, is most of the training step (benchmarks/RESULTS.md). This module runs the same
equations as one ``torch.autograd.Function`` over the whole sequence:

* forward, under ``no_grad``: the input product of all steps in one matrix product, then the
  time loop of the kernel's equations (rnn_tanh, gru, lstm; torch's gate order) with the
  quantizer applied to each new hidden state; it keeps only what the backward needs (gate
  activations, the quantized states) in ``[T, B, ...]`` buffers;
* backward: one reverse loop of the chain rule through the point-wise equations, the
  quantizer's estimator and the recurrent product; the weight and bias gradients and the
  input's gradient are then ONE product each over all time steps, and the quantizer's learned
  state gets its gradient from one reduction over the sequence.

The forward computes each value with the same operations, in the same order, as the cells'
``step`` (so the hidden states are those of the reference); the gradients are the reference's up
to float rounding (the sums run in another order): ``tests/test_sequence_bptt.py`` compares
both in float64 and float32.

What a quantizer must provide (:meth:`qbench.Quantizer.hidden_estimator`): a quantizer without
``owns_gradient`` needs nothing (the host's straight-through estimator is the identity); one that
owns its gradient returns an estimator object or None, and None keeps the per-step reference.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

from qbench.components import HIDDEN_ROLE, QuantContext, Quantizer

#: the fused kernels whose equations this module implements
KERNELS = ("rnn_tanh", "gru", "lstm")


class StraightThroughEstimator:
    """The host's estimator for a quantizer that does not own its gradient: ``quantize`` under
    ``no_grad`` at every step (the same calls, in the same order, so the same stochastic draws),
    the gradient passed through unchanged, no learned state."""

    state: dict[str, torch.Tensor] = {}  # noqa: RUF012 - never mutated

    def __init__(self, quantizer: Quantizer, ctx: QuantContext) -> None:  # noqa: D107
        self.quantizer = quantizer
        self.ctx = ctx

    def forward(self, h: torch.Tensor) -> tuple[torch.Tensor, None]:
        return self.quantizer.quantize(h, self.ctx), None

    def backward(self, grad: torch.Tensor, saved: None) -> torch.Tensor:
        return grad

    def state_gradients(self, grads: torch.Tensor, saved: list[Any]) -> dict[str, torch.Tensor]:
        return {}


def hidden_estimator(quantizer: Quantizer, ctx: QuantContext) -> Any:
    """The estimator of the hidden-state quantizer of ``ctx`` (a hidden-role context), or None when
    the quantizer owns its gradient and declares no estimator (the per-step reference runs then)."""
    owner = quantizer.for_role(HIDDEN_ROLE)
    if not owner.owns_gradient:
        return StraightThroughEstimator(quantizer, ctx)
    return owner.hidden_estimator(ctx)


def applies(kernel: str | None) -> bool:
    return kernel in KERNELS


def run_layer(kernel: str, x: torch.Tensor, state: tuple[torch.Tensor, ...], tensors: dict[str, torch.Tensor],
              estimator: Any) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # fmt: skip
    """One layer over ``x [T, B, n]`` from ``state`` (tensors ``[1, B, h]``), as
    :func:`qbench.training.reference.run_layer` with the hidden quantizer ``estimator``."""
    keys = tuple(estimator.state)
    b_recurrent = tensors.get("b_recurrent")
    h0 = state[0][0]
    c0 = state[1][0] if kernel == "lstm" else h0.new_zeros(())
    outputs = _function().apply(
        (kernel, estimator, keys, b_recurrent is not None), x, h0, c0,
        tensors["w_input"], tensors["w_recurrent"], tensors["b_input"],
        b_recurrent if b_recurrent is not None else h0.new_zeros(()),
        *(estimator.state[key] for key in keys),
    )  # fmt: skip
    y, h_last, c_last = outputs
    final = (h_last.unsqueeze(0), c_last.unsqueeze(0)) if kernel == "lstm" else (h_last.unsqueeze(0),)
    return y, final


def _forward(kernel: str, estimator: Any, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
             w_input: torch.Tensor, w_recurrent: torch.Tensor, b_input: torch.Tensor,
             b_recurrent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:  # fmt: skip
    """The time loop; returns (y [T, B, h], final c or an empty tensor, what the backward needs)."""
    steps = x.shape[0]
    # x_t @ W^T + b for all steps at once (the cells' step computes it per step: the same products)
    inputs = (x @ w_input.t() + b_input).unbind(0)
    recurrent_t = w_recurrent.t()
    h, c = h0, c0
    ys: list[torch.Tensor] = []
    saved: list[Any] = []
    acts: list[tuple[torch.Tensor, ...]] = []
    cs: list[torch.Tensor] = []
    for t in range(steps):
        if kernel == "rnn_tanh":
            h_new = torch.tanh(inputs[t] + h @ recurrent_t)
            acts.append((h_new,))
        elif kernel == "gru":
            xr, xz, xn = inputs[t].chunk(3, dim=-1)
            hr, hz, hn = (h @ recurrent_t + b_recurrent).chunk(3, dim=-1)
            reset = torch.sigmoid(xr + hr)
            update = torch.sigmoid(xz + hz)
            candidate = torch.tanh(xn + reset * hn)
            h_new = candidate + update * (h - candidate)
            acts.append((reset, update, candidate, hn))
        else:
            gates = inputs[t] + h @ recurrent_t
            i, f, g, o = gates.chunk(4, dim=-1)
            si, sf, tg, so = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
            c_next = sf * c + si * tg
            tc = torch.tanh(c_next)
            h_new = so * tc
            acts.append((si, sf, tg, so, tc))
            cs.append(c)
            c = c_next
        h, kept = estimator.forward(h_new)
        saved.append(kept)
        ys.append(h)
    y = torch.stack(ys)
    return y, c, {"acts": acts, "saved": saved, "cs": cs}


@functools.cache
def _function() -> Any:
    class SequenceBPTT(torch.autograd.Function):
        """The whole layer as one node (module docstring)."""

        @staticmethod
        def forward(ctx: Any, spec: tuple[str, Any, tuple[str, ...], bool], x: torch.Tensor, h0: torch.Tensor,
                    c0: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor, b_input: torch.Tensor,
                    b_recurrent: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
            kernel, estimator, _keys, has_b_recurrent = spec
            y, c_last, memory = _forward(kernel, estimator, x, h0, c0, w_input, w_recurrent, b_input,
                                         b_recurrent if has_b_recurrent else None)  # fmt: skip
            ctx.spec = spec
            ctx.memory = memory
            ctx.save_for_backward(x, h0, w_input, w_recurrent, y)
            ctx.state_meta = [(s.dtype, s.shape) for s in state]
            # a copy: an output that is a view of another output would share its version counter
            h_last = (y[-1] if y.shape[0] else h0).clone()
            return y, h_last, (c_last if kernel == "lstm" else h0.new_zeros(()))

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad_y: torch.Tensor, grad_h: torch.Tensor, grad_c: torch.Tensor) -> tuple[Any, ...]:
            kernel, estimator, keys, has_b_recurrent = ctx.spec
            x, h0, w_input, w_recurrent, y = ctx.saved_tensors
            memory = ctx.memory
            del ctx.memory
            return _backward(kernel, estimator, keys, has_b_recurrent, memory, x, h0, w_input, w_recurrent,
                             y, grad_y, grad_h, grad_c, ctx.needs_input_grad)  # fmt: skip

    return SequenceBPTT


def _backward(kernel: str, estimator: Any, keys: tuple[str, ...], has_b_recurrent: bool, memory: dict[str, Any],
              x: torch.Tensor, h0: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor,
              y: torch.Tensor, grad_y: torch.Tensor | None, grad_h: torch.Tensor | None,
              grad_c: torch.Tensor | None, needs: tuple[bool, ...]) -> tuple[Any, ...]:  # fmt: skip
    steps, batch, _ = x.shape
    acts, saved, cs = memory["acts"], memory["saved"], memory["cs"]
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    dh = grad_h if grad_h is not None else torch.zeros_like(h0)  # into q(h_{T-1})
    dc = grad_c if (kernel == "lstm" and grad_c is not None) else None
    width = w_recurrent.shape[0]
    input_grads = y.new_empty(steps, batch, width)  # d(x_t W^T + b) per step
    recurrent_grads = input_grads if kernel != "gru" else y.new_empty(steps, batch, width)
    quantizer_grads = y.new_empty(y.shape) if keys else None  # d q(h_t): the learned state's gradient
    for t in range(steps - 1, -1, -1):
        dq = grad_y[t] + dh
        if quantizer_grads is not None:
            quantizer_grads[t] = dq
        d_new = estimator.backward(dq, saved[t])
        h_prev = y[t - 1] if t else h0
        if kernel == "rnn_tanh":
            (h_new,) = acts[t]
            torch.mul(d_new, 1 - h_new * h_new, out=input_grads[t])
            dh_direct = None
        elif kernel == "gru":
            reset, update, candidate, hn = acts[t]
            d_candidate = d_new - d_new * update
            d_update = d_new * (h_prev - candidate)
            dh_direct = d_new * update
            d_a = d_candidate * (1 - candidate * candidate)
            gi, gr = input_grads[t], recurrent_grads[t]
            h = reset.shape[-1]
            d_reset_pre = d_a * hn * reset * (1 - reset)
            d_update_pre = d_update * update * (1 - update)
            gi[:, :h] = d_reset_pre
            gi[:, h : 2 * h] = d_update_pre
            gi[:, 2 * h :] = d_a
            gr[:, :h] = d_reset_pre
            gr[:, h : 2 * h] = d_update_pre
            torch.mul(d_a, reset, out=gr[:, 2 * h :])
        else:
            si, sf, tg, so, tc = acts[t]
            c_prev = cs[t]
            dtc = d_new * so
            dc_t = dtc * (1 - tc * tc)
            if dc is not None:
                dc_t = dc_t + dc
            g = input_grads[t]
            h = si.shape[-1]
            torch.mul(dc_t * tg, si * (1 - si), out=g[:, :h])
            torch.mul(dc_t * c_prev, sf * (1 - sf), out=g[:, h : 2 * h])
            torch.mul(dc_t * si, 1 - tg * tg, out=g[:, 2 * h : 3 * h])
            torch.mul(d_new * tc, so * (1 - so), out=g[:, 3 * h :])
            dc = dc_t * sf
            dh_direct = None
        dh = recurrent_grads[t] @ w_recurrent
        if dh_direct is not None:
            dh = dh + dh_direct
    flat_in = input_grads.reshape(steps * batch, width)
    flat_rec = recurrent_grads.reshape(steps * batch, width)
    previous = torch.cat([h0.unsqueeze(0), y[:-1]]) if steps else h0.unsqueeze(0)
    grad_x = (input_grads @ w_input) if needs[1] else None
    grad_w_input = flat_in.t() @ x.reshape(steps * batch, -1) if needs[4] else None
    grad_w_recurrent = flat_rec.t() @ previous.reshape(steps * batch, -1) if needs[5] else None
    grad_b_input = flat_in.sum(0) if needs[6] else None
    grad_b_recurrent = flat_rec.sum(0) if (has_b_recurrent and needs[7]) else None
    grad_c0 = dc if (kernel == "lstm" and needs[3]) else None
    state_grads: dict[str, torch.Tensor] = {}
    if keys:
        state_grads = estimator.state_gradients(quantizer_grads, saved)
    return (None, grad_x, dh if needs[2] else None, grad_c0, grad_w_input, grad_w_recurrent, grad_b_input,
            grad_b_recurrent, *(state_grads.get(key) for key in keys))  # fmt: skip
