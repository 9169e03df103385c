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

    def derivative(self, saved: list[Any]) -> None:
        return None

    def state_gradients(self, grads: torch.Tensor, saved: list[Any]) -> dict[str, torch.Tensor]:
        return {}


class Workspace:
    """The layer's activation buffers, kept from one training step to the next.

    Fresh buffers of a few MB per step cost more than the arithmetic on one CPU thread: the
    allocator hands them back to the system after each step and every page faults again on the
    next (about a third of the rnn's step, measured). A forward leases the workspace until its
    backward has run (or its graph is dropped); a second forward meanwhile gets fresh buffers, so
    no buffer that a pending backward reads is overwritten. A graph kept for a second backward
    (``retain_graph``) finds its buffers as it left them unless another forward leased them since:
    then its backward raises instead of reading another step's values. Only buffers private to
    this module come from it, never an output.
    """

    def __init__(self) -> None:  # noqa: D107
        self.buffers: dict[str, torch.Tensor] = {}
        self.busy = False
        #: how many forwards have leased it (a retained graph checks that no other one did)
        self.generation = 0


class _Lease:
    """One forward's (and its backward's) use of a :class:`Workspace`, or fresh buffers without one."""

    def __init__(self, workspace: Workspace | None) -> None:
        # under inference_mode new buffers would be inference tensors, which a later training step
        # could not write: such a forward takes fresh ones
        usable = workspace is not None and not workspace.busy and not torch.is_inference_mode_enabled()
        self.workspace = workspace if usable else None
        self.held = self.workspace is not None
        if self.workspace is not None:
            self.workspace.busy = True
            self.workspace.generation += 1
            self.generation = self.workspace.generation

    def empty(self, name: str, like: torch.Tensor, *shape: int) -> torch.Tensor:
        workspace = self.workspace
        if workspace is None:
            return like.new_empty(shape)
        buffer = workspace.buffers.get(name)
        if buffer is None or buffer.shape != shape or buffer.dtype != like.dtype or buffer.device != like.device:
            buffer = workspace.buffers[name] = like.new_empty(shape)
        return buffer

    def check(self) -> None:
        """Before a backward reads the forward's buffers: they are still this forward's."""
        if self.workspace is not None and self.workspace.generation != self.generation:
            raise RuntimeError(
                "qbench sequence backward: a second backward through a retained graph after another forward "
                "of the same layer, whose buffers it shares; run the backward before the next forward, or set "
                "the stack's implementation = 'loop' (the per-step reference keeps every step's tensors)"
            )

    def release(self) -> None:
        if self.held and self.workspace is not None:
            self.workspace.busy = False
        self.held = False

    def __del__(self) -> None:
        # a graph dropped without its backward (or a forward without autograd) frees the workspace
        self.release()


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
              estimator: Any, workspace: Workspace | None = None
              ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:  # fmt: skip
    """One layer over ``x [T, B, n]`` from ``state`` (tensors ``[1, B, h]``), as
    :func:`qbench.training.reference.run_layer` with the hidden quantizer ``estimator``
    (``workspace``: the layer's buffers kept between steps)."""
    keys = tuple(estimator.state)
    b_recurrent = tensors.get("b_recurrent")
    h0 = state[0][0]
    c0 = state[1][0] if kernel == "lstm" else h0.new_zeros(())
    outputs = _function().apply(
        (kernel, estimator, keys, b_recurrent is not None, workspace), x, h0, c0,
        tensors["w_input"], tensors["w_recurrent"], tensors["b_input"],
        b_recurrent if b_recurrent is not None else h0.new_zeros(()),
        *(estimator.state[key] for key in keys),
    )  # fmt: skip
    y, h_last, c_last = outputs
    final = (h_last.unsqueeze(0), c_last.unsqueeze(0)) if kernel == "lstm" else (h_last.unsqueeze(0),)
    return y, final


def _forward(kernel: str, estimator: Any, lease: _Lease, x: torch.Tensor, h0: torch.Tensor, c0: torch.Tensor,
             w_input: torch.Tensor, w_recurrent: torch.Tensor, b_input: torch.Tensor,
             b_recurrent: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor, dict[str, Any]]:  # fmt: skip
    """The time loop; returns (y [T, B, h], final c (lstm) or an empty tensor, what the backward needs).

    Every value is computed as the cells' ``step`` computes it (same operations, same order of the
    additions; ``mm(h, W^T) + (x W_x^T + b)`` is exactly ``x W_x^T + b + h W^T``, unlike ``addmm``):
    the hidden states are the reference's bit for bit (``tests/test_sequence_bptt.py``). The
    activations are written into ``[T, B, ...]`` buffers, which the backward reads in whole-sequence
    operations.
    """
    steps, batch, _ = x.shape
    h = h0.shape[-1]
    # x_t W^T + b of all steps in one product: row for row the per-step products' values
    width = w_input.shape[0]
    product = torch.mm(x.reshape(steps * batch, -1), w_input.t(), out=lease.empty("inputs", x, steps * batch, width))
    inputs = product.add_(b_input).view(steps, batch, width).unbind(0)
    recurrent_t = w_recurrent.t()
    state, c = h0, c0
    ys: list[torch.Tensor] = []
    saved: list[Any] = []
    memory: dict[str, Any] = {"saved": saved}
    new = lease.empty("new", x, steps, batch, h)  # the state before the quantizer (rnn, gru: the cell's output)
    if kernel == "rnn_tanh":
        # (views made once: indexing a buffer at every step costs more than the step's additions)
        for inp, new_t in zip(inputs, new.unbind(0), strict=True):
            torch.tanh(torch.mm(state, recurrent_t).add_(inp), out=new_t)
            state, kept = estimator.forward(new_t)
            saved.append(kept)
            ys.append(state)
        memory["tanh"] = new
    elif kernel == "gru":
        assert b_recurrent is not None
        # h W^T + b_hr (its n block is read by the backward)
        hidden_gates = lease.empty("hidden_gates", x, steps, batch, 3 * h)
        reset_update = lease.empty("reset_update", x, steps, batch, 2 * h)
        candidates = lease.empty("candidates", x, steps, batch, h)
        views = zip(*[inputs, hidden_gates.unbind(0), reset_update.unbind(0), candidates.unbind(0), new.unbind(0)],
                    strict=True)  # fmt: skip
        for inp, hg, rz, candidate_t, new_t in views:
            torch.add(torch.mm(state, recurrent_t), b_recurrent, out=hg)
            # one call per gate block, as the step: a transcendental function's last bit may depend
            # on the layout it runs over (vectorised body or scalar tail), an addition's does not
            torch.sigmoid(inp[:, :h] + hg[:, :h], out=rz[:, :h])
            torch.sigmoid(inp[:, h : 2 * h] + hg[:, h : 2 * h], out=rz[:, h:])
            candidate = torch.tanh(inp[:, 2 * h :] + rz[:, :h] * hg[:, 2 * h :], out=candidate_t)
            torch.add(candidate, rz[:, h:] * (state - candidate), out=new_t)
            state, kept = estimator.forward(new_t)
            saved.append(kept)
            ys.append(state)
        memory.update(hidden_gates=hidden_gates, reset_update=reset_update, candidates=candidates)
    else:
        si, sf, tanh_g, so = (lease.empty(name, x, steps, batch, h) for name in ("si", "sf", "tanh_g", "so"))
        cells = lease.empty("cells", x, steps + 1, batch, h)
        cells[0] = c0
        tanh_c = lease.empty("tanh_c", x, steps, batch, h)
        views = zip(*[inputs, si.unbind(0), sf.unbind(0), tanh_g.unbind(0), so.unbind(0), cells[:-1].unbind(0),
                      cells[1:].unbind(0), tanh_c.unbind(0), new.unbind(0)], strict=True)  # fmt: skip
        for inp, i_t, f_t, g_t, o_t, c_t, c_next, tc_t, new_t in views:
            i, f, g, o = torch.mm(state, recurrent_t).add_(inp).chunk(4, dim=-1)
            torch.sigmoid(i, out=i_t)
            torch.sigmoid(f, out=f_t)
            torch.tanh(g, out=g_t)
            torch.sigmoid(o, out=o_t)
            torch.add(f_t * c_t, i_t * g_t, out=c_next)
            torch.mul(o_t, torch.tanh(c_next, out=tc_t), out=new_t)
            state, kept = estimator.forward(new_t)
            saved.append(kept)
            ys.append(state)
        c = cells[steps].clone()  # an output: not a workspace buffer
        memory.update(si=si, sf=sf, so=so, tanh_g=tanh_g, cells=cells, tanh_c=tanh_c)
    y = torch.stack(ys) if ys else x.new_empty(0, batch, h)
    return y, c, memory


@functools.cache
def _function() -> Any:
    class SequenceBPTT(torch.autograd.Function):
        """The whole layer as one node (module docstring)."""

        @staticmethod
        def forward(ctx: Any, spec: tuple[str, Any, tuple[str, ...], bool, Any], x: torch.Tensor, h0: torch.Tensor,
                    c0: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor, b_input: torch.Tensor,
                    b_recurrent: torch.Tensor, *state: torch.Tensor) -> tuple[torch.Tensor, ...]:  # fmt: skip
            kernel, estimator, _keys, has_b_recurrent, workspace = spec
            lease = _Lease(workspace)
            y, c_last, memory = _forward(kernel, estimator, lease, x, h0, c0, w_input, w_recurrent, b_input,
                                         b_recurrent if has_b_recurrent else None)  # fmt: skip
            ctx.spec = spec
            ctx.memory = memory
            ctx.lease = lease
            ctx.save_for_backward(x, h0, w_input, w_recurrent, y)
            ctx.state_meta = [(s.dtype, s.shape) for s in state]
            # a copy: an output that is a view of another output would share its version counter
            h_last = (y[-1] if y.shape[0] else h0).clone()
            return y, h_last, (c_last if kernel == "lstm" else h0.new_zeros(()))

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad_y: torch.Tensor, grad_h: torch.Tensor, grad_c: torch.Tensor) -> tuple[Any, ...]:
            kernel, estimator, keys, has_b_recurrent, _workspace = ctx.spec
            x, h0, w_input, w_recurrent, y = ctx.saved_tensors
            memory, lease = ctx.memory, ctx.lease
            lease.check()
            try:
                return _backward(kernel, estimator, keys, has_b_recurrent, memory, lease, x, h0, w_input,
                                 w_recurrent, y, grad_y, grad_h, grad_c, ctx.needs_input_grad)  # fmt: skip
            finally:
                lease.release()

    return SequenceBPTT


def _backward(kernel: str, estimator: Any, keys: tuple[str, ...], has_b_recurrent: bool, memory: dict[str, Any],
              lease: _Lease, x: torch.Tensor, h0: torch.Tensor, w_input: torch.Tensor, w_recurrent: torch.Tensor,
              y: torch.Tensor, grad_y: torch.Tensor | None, grad_h: torch.Tensor | None,
              grad_c: torch.Tensor | None, needs: tuple[bool, ...]) -> tuple[Any, ...]:  # fmt: skip
    """The chain rule in one reverse loop of a few operations per step.

    Every factor that does not depend on the incoming gradient (the point-wise derivatives, the
    quantizer's derivative) is computed for all steps at once before the loop; the loop only
    multiplies the incoming gradient by them and runs the recurrent product.
    """
    steps, batch, _ = x.shape
    h = h0.shape[-1]
    saved = memory["saved"]
    if grad_y is None:
        grad_y = torch.zeros_like(y)
    dh = grad_h if grad_h is not None else torch.zeros_like(h0)  # the gradient reaching q(h_{t})
    derivative = estimator.derivative(saved) if steps else None  # dq/dh, element-wise; None: 1
    grads_q = lease.empty("grads_q", y, steps, batch, h)  # the gradient reaching each step's quantized state
    # the state each step read
    previous = None
    if kernel == "gru":  # the state each step read, for d h' / d z
        previous = torch.cat([h0.unsqueeze(0), y[:-1]], out=lease.empty("previous", y, steps, batch, h))
    grad_c0 = None
    if kernel == "rnn_tanh":
        tanh = memory["tanh"]
        factor = _one_minus_square(tanh, lease.empty("factor", y, steps, batch, h))  # 1 - h'^2
        if derivative is not None:
            factor.mul_(derivative)
        gates = lease.empty("gates", y, steps, batch, h)
        views = zip(*[grad_y.unbind(0), grads_q.unbind(0), factor.unbind(0), gates.unbind(0)], strict=True)
        for grad_y_t, grad_q_t, factor_t, gate in reversed(list(views)):
            dq = torch.add(grad_y_t, dh, out=grad_q_t)
            dh = torch.mm(torch.mul(dq, factor_t, out=gate), w_recurrent)
        input_gates = recurrent_gates = gates
    elif kernel == "gru":
        reset, update = memory["reset_update"].split(h, dim=-1)
        candidate = memory["candidates"]
        hidden_n = memory["hidden_gates"][..., 2 * h :]
        # d h' / d n = 1 - z, d n / d a = 1 - n^2 (a = x_n + r * hn); d h' / d z = h - n; d h' / d h = z
        to_a, to_z, slope = (lease.empty(name, y, steps, batch, h) for name in ("to_a", "to_z", "slope"))
        _one_minus_square(candidate, to_z)  # 1 - n^2
        torch.sub(update.new_ones(()), update, out=to_a).mul_(to_z)  # (1 - z)(1 - n^2)
        assert previous is not None
        torch.sub(previous, candidate, out=to_z).mul_(_sigmoid_slope(update, slope))  # (h - n) z (1 - z)
        to_h = update
        if derivative is not None:
            to_a.mul_(derivative)
            to_z.mul_(derivative)
            to_h = torch.mul(update, derivative, out=lease.empty("to_h", y, steps, batch, h))
        # per step: d a, then [d r_pre, d hn] = d a * [hn r (1 - r), r]
        from_a = lease.empty("from_a", y, steps, batch, 2, h)
        _sigmoid_slope(reset, from_a[:, :, 0]).mul_(hidden_n)  # hn r (1 - r)
        from_a[:, :, 1].copy_(reset)
        recurrent_gates = lease.empty("gates", y, steps, batch, 3, h)
        grad_a = lease.empty("grad_a", y, steps, batch, h)
        views = zip(*[grad_y.unbind(0), grads_q.unbind(0), to_a.unbind(0), grad_a.unbind(0), recurrent_gates.unbind(0),
                      from_a.unbind(0), to_z.unbind(0), to_h.unbind(0)], strict=True)  # fmt: skip
        for grad_y_t, grad_q_t, to_a_t, grad_a_t, gate, from_a_t, to_z_t, to_h_t in reversed(list(views)):
            dq = torch.add(grad_y_t, dh, out=grad_q_t)
            da = torch.mul(dq, to_a_t, out=grad_a_t)
            torch.mul(da.unsqueeze(1), from_a_t, out=gate[:, ::2])
            torch.mul(dq, to_z_t, out=gate[:, 1])
            dh = torch.addmm(dq * to_h_t, gate.view(batch, 3 * h), w_recurrent)
        recurrent_gates = recurrent_gates.view(steps, batch, 3 * h)
        input_gates = lease.empty("input_gates", y, steps, batch, 3 * h)
        input_gates.copy_(recurrent_gates)
        input_gates[..., 2 * h :] = grad_a
    else:
        si, sf, so = memory["si"], memory["sf"], memory["so"]
        tanh_g, tanh_c, cells = memory["tanh_g"], memory["tanh_c"], memory["cells"]
        # d c' from d h': o (1 - tanh(c')^2); gate pre-activations from d c': [g si', c sf', si (1 - g^2)]
        to_c, to_o = lease.empty("to_c", y, steps, batch, h), lease.empty("to_o", y, steps, batch, h)
        _one_minus_square(tanh_c, to_c).mul_(so)  # o (1 - tanh(c')^2)
        _sigmoid_slope(so, to_o).mul_(tanh_c)  # tanh(c') o (1 - o)
        if derivative is not None:
            to_c.mul_(derivative)
            to_o.mul_(derivative)
        from_c = lease.empty("from_c", y, steps, batch, 3, h)
        _sigmoid_slope(si, from_c[:, :, 0]).mul_(tanh_g)  # g i (1 - i)
        _sigmoid_slope(sf, from_c[:, :, 1]).mul_(cells[:-1])  # c f (1 - f)
        _one_minus_square(tanh_g, from_c[:, :, 2]).mul_(si)  # i (1 - g^2)
        gates = lease.empty("gates", y, steps, batch, 4, h)
        dc = grad_c if grad_c is not None else torch.zeros_like(h0)
        views = zip(*[grad_y.unbind(0), grads_q.unbind(0), to_c.unbind(0), gates.unbind(0), from_c.unbind(0),
                      to_o.unbind(0), sf.unbind(0)], strict=True)  # fmt: skip
        for grad_y_t, grad_q_t, to_c_t, gate, from_c_t, to_o_t, sf_t in reversed(list(views)):
            dq = torch.add(grad_y_t, dh, out=grad_q_t)
            dc_t = torch.addcmul(dc, dq, to_c_t)
            torch.mul(dc_t.unsqueeze(1), from_c_t, out=gate[:, :3])
            torch.mul(dq, to_o_t, out=gate[:, 3])
            dc = dc_t * sf_t
            dh = torch.mm(gate.view(batch, 4 * h), w_recurrent)
        grad_c0 = dc if needs[3] else None
        input_gates = recurrent_gates = gates.view(steps, batch, 4 * h)
    width = w_recurrent.shape[0]
    flat_in = input_gates.reshape(steps * batch, width)
    flat_rec = recurrent_gates.reshape(steps * batch, width)
    grad_x = (input_gates @ w_input) if needs[1] else None
    grad_w_input = flat_in.t() @ x.reshape(steps * batch, -1) if needs[4] else None
    grad_w_recurrent = None
    if needs[5]:  # sum over steps of d gates_t^T (the state step t read): h0 at the first, then y
        grad_w_recurrent = recurrent_gates[0].t() @ h0
        if steps > 1:
            grad_w_recurrent += flat_rec[batch:].t() @ y[:-1].reshape((steps - 1) * batch, -1)
    # the bias gradients as products with a vector of ones (a column sum runs several times slower)
    ones = y.new_ones(steps * batch)
    grad_b_input = torch.mv(flat_in.t(), ones) if needs[6] else None
    grad_b_recurrent = torch.mv(flat_rec.t(), ones) if (has_b_recurrent and needs[7]) else None
    state_grads = estimator.state_gradients(grads_q, saved) if keys else {}
    return (None, grad_x, dh if needs[2] else None, grad_c0, grad_w_input, grad_w_recurrent, grad_b_input,
            grad_b_recurrent, *(state_grads.get(key) for key in keys))  # fmt: skip


# The derivative factors, one pass over the sequence each (memory-bound there: a pass per factor,
# not per operation). Their rounding differs from autograd's formulas by an ulp of 1 at most,
# absolute: these only scale gradients.


def _one_minus_square(a: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """1 - a^2 (tanh's derivative from its output) into ``out``."""
    return torch.addcmul(a.new_ones(()), a, a, value=-1, out=out)


def _sigmoid_slope(s: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
    """s (1 - s) as s - s^2 (the sigmoid's derivative from its output) into ``out``."""
    return torch.addcmul(s, s, s, value=-1, out=out)
