"""First-order element-wise linear recurrences, ``h_t = a_t * h_{t-1} + b_t``, solved for every t at once.

The training path a cell's :meth:`qbench.Cell.scan` can use when its state enters only
element-wise and linearly (minGRU, minLSTM, diagonal linear RNNs): the cell computes ``a`` and
``b`` for the whole sequence from its input (one large matrix product instead of T small ones),
and :func:`linear_recurrence` solves the recurrence. Two solvers, the same numbers:

* ``"sequential"``: T fused multiply-adds without autograd and a hand-written adjoint
  (``g_t = dL/dh_t + a_{t+1} g_{t+1}``, ``dL/da_t = g_t h_{t-1}``, ``dL/db_t = g_t``): exact, no
  logarithms, and on a CPU about nine times cheaper than the same loop under autograd
  (benchmarks/test_bench_cells.py). The default on the CPU.
* ``"log"``: the parallel form of "Were RNNs All We Needed?" (Feng et al. 2024, after Heinsen
  2023), for ``a > 0`` (the caller passes ``log_a``): ``h_t = A_t (h_0 + sum_{k<=t} b_k / A_k)``,
  ``A_t = prod_{k<=t} a_k``, with ``log A`` a cumulative sum and the sum a ``logcumsumexp``, in
  float64 (``log A_t`` reaches thousands over long sequences). ``b`` has either sign, so the sum
  runs over ``b_k + m`` (``m > max |b|``, a constant per unit) and ``m sum_k A_t / A_k`` is taken
  back out (a second ``logcumsumexp``); a zero ``b`` keeps its gradient, unlike a split into
  positive and negative parts. O(log T) depth: the default on a GPU; on a CPU ``logcumsumexp``
  costs more than the sequential solver.
"""

from __future__ import annotations

import functools
from typing import Any

import torch

SOLVERS = ("sequential", "log")


def linear_recurrence(a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor, *, log_a: torch.Tensor | None = None,
                      solver: str | None = None) -> torch.Tensor:  # fmt: skip
    """``h [T, B, h]`` with ``h_t = a_t * h_{t-1} + b_t`` from ``h0 [B, h]`` (``a``, ``b``: ``[T, B, h]``).

    ``log_a`` (= log a, so a > 0; more accurate than log(a) when a is tiny) allows the parallel
    ``"log"`` solver; ``solver`` None picks ``"log"`` on a GPU when ``log_a`` is given,
    ``"sequential"`` otherwise.
    """
    if solver is None:
        solver = "log" if (log_a is not None and b.is_cuda) else "sequential"
    if solver not in SOLVERS:
        raise ValueError(f"solver must be one of {SOLVERS}, got {solver!r}")
    if solver == "log":  # a > 0: log_a, when not given, is log(a)
        return _log_space(torch.log(a) if log_a is None else log_a, b, h0)
    return _sequential().apply(a, b, h0)


def _log_space(log_a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
    dtype = b.dtype
    log_a, b, h0 = log_a.double(), b.double(), h0.double()
    log_prefix = torch.cumsum(log_a, dim=0)  # log A_t
    shift = b.detach().abs().amax(dim=0, keepdim=True) + 1.0
    shifted = torch.logcumsumexp(torch.log(b + shift) - log_prefix, dim=0)
    weights = torch.logcumsumexp(-log_prefix, dim=0)  # log sum_k 1 / A_k
    h = torch.exp(log_prefix) * h0 + torch.exp(log_prefix + shifted) - shift * torch.exp(log_prefix + weights)
    return h.to(dtype)


@functools.cache
def _sequential() -> Any:
    class SequentialScan(torch.autograd.Function):
        """Forward: the recurrence step by step, outside autograd. Backward: its adjoint, backwards in time."""

        @staticmethod
        def forward(ctx: Any, a: torch.Tensor, b: torch.Tensor, h0: torch.Tensor) -> torch.Tensor:
            out = torch.empty_like(b)
            h = h0
            for t in range(b.shape[0]):
                h = torch.addcmul(b[t], a[t], h, out=out[t])  # written in place: one operation per step
            ctx.save_for_backward(a, out, h0)
            return out

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            a, out, h0 = ctx.saved_tensors
            steps = a.shape[0]
            grad_b = torch.empty_like(grad)
            g = grad_b[steps - 1].copy_(grad[steps - 1])
            for t in range(steps - 2, -1, -1):
                g = torch.addcmul(grad[t], a[t + 1], g, out=grad_b[t])
            grad_a = grad_h0 = None
            if ctx.needs_input_grad[0]:  # dL/da_t = g_t h_{t-1}, without a shifted copy of every h
                grad_a = torch.empty_like(grad_b)
                torch.mul(grad_b[0], h0, out=grad_a[0])
                torch.mul(grad_b[1:], out[:-1], out=grad_a[1:])
            if ctx.needs_input_grad[2]:
                grad_h0 = a[0] * grad_b[0]
            return grad_a, grad_b, grad_h0

    return SequentialScan
