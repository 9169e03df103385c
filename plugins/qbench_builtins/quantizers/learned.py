"""Learned quantizers: ``lsq`` (learned step size) and ``ttq`` (trained ternary scales).

Light module (no torch at import). Both declare per-tensor learned state (:meth:`init_state`),
which the host trains with the same optimizer, saves, exports and restores, and both own their
gradient (``owns_gradient = True``): their ``quantize`` is a custom autograd function with the
estimator of its paper instead of the host's plain straight-through estimator.
"""

from __future__ import annotations

import functools
import math
from typing import TYPE_CHECKING, Any, ClassVar

import qbench
from qbench.components import OUTPUT_ROLE, ROLES

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: smallest step / scale the forward uses, so a step trained through zero cannot divide by zero
EPS = 1e-8


@functools.cache
def _lsq_function() -> Any:
    import torch

    class LSQ(torch.autograd.Function):
        """v_hat = round(clip(v / s, -Q_N, Q_P)) * s, rounding half away from zero.

        Backward (Esser et al. 2019, eq. 3 and 4): dv_hat/dv = 1 inside the clip range, 0
        outside (straight-through round); dv_hat/ds = round(v/s) - v/s inside, -Q_N or Q_P
        outside, times the gradient scale g.
        """

        @staticmethod
        def forward(ctx: Any, w: torch.Tensor, step: torch.Tensor, g: float, qn: int, qp: int) -> torch.Tensor:
            s = step.detach().clamp_min(EPS).to(w.dtype)
            x = w.detach() / s
            clipped = x.clamp(-qn, qp)
            codes = torch.sign(clipped) * torch.floor(clipped.abs() + 0.5)
            ctx.save_for_backward(x, codes)
            ctx.g = g
            ctx.bounds = (qn, qp)
            ctx.step_dtype = step.dtype
            ctx.step_shape = step.shape
            return codes * s

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            x, codes = ctx.saved_tensors
            qn, qp = ctx.bounds
            inside = (x >= -qn) & (x <= qp)
            grad_w = grad * inside
            grad_s = (grad * torch.where(inside, codes - x, codes)).sum() * ctx.g
            return grad_w, grad_s.to(ctx.step_dtype).reshape(ctx.step_shape), None, None, None

    return LSQ


class LSQHiddenEstimator:
    """LSQ step by step for the host's sequence-level backward (``Quantizer.hidden_estimator``):
    the values and gradients of :func:`_lsq_function`'s ``LSQ``, the step's gradient summed over
    the sequence in one reduction."""

    def __init__(self, step: torch.Tensor, qn: int, qp: int) -> None:  # noqa: D107
        self.state = {"step": step}
        self.qn, self.qp = qn, qp
        self._scale: torch.Tensor | None = None
        #: (saved, stacked v/s, stacked codes, inside) of the last derivative, reused by state_gradients
        self._batch: tuple[Any, torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    def forward(self, v: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        if self._scale is None or self._scale.dtype != v.dtype:
            # the step does not change during one forward: clamp and convert it once
            self._scale = self.state["step"].detach().clamp_min(EPS).to(v.dtype)
        s = self._scale
        x = v / s
        clipped = x.clamp(-self.qn, self.qp)
        # LSQ's own rounding, in place where it can be (trunc(c + copysign(1/2, c)) is the same
        # codes in fewer calls, but trunc runs several times slower than floor on this CPU build)
        codes = clipped.abs().add_(0.5).floor_().mul_(clipped.sign())
        return codes * s, (x, codes)

    def derivative(self, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """d v_hat / d v at every step: 1 inside the clip range, 0 outside (straight-through round)."""
        return self._prepare(saved)[3]

    def _prepare(self, saved: list[tuple[torch.Tensor, torch.Tensor]]) -> tuple[Any, torch.Tensor, torch.Tensor,
                                                                                   torch.Tensor]:  # fmt: skip
        """(saved, v/s and the codes of every step ``[T, B, h]``, inside the clip range as 0/1)."""
        import torch

        if self._batch is None or self._batch[0] is not saved:
            x = torch.stack([kept[0] for kept in saved])
            codes = torch.stack([kept[1] for kept in saved])
            inside = torch.eq(x.clamp(-self.qn, self.qp), x).to(x.dtype)
            self._batch = (saved, x, codes, inside)
        return self._batch

    def state_gradients(self, grads: torch.Tensor, saved: list[tuple[torch.Tensor, torch.Tensor]]
                        ) -> dict[str, torch.Tensor]:  # fmt: skip
        """dL/ds = g sum(dL/dv_hat (round(v/s) - v/s)) inside the clip range, the clipped code outside."""
        import torch

        step = self.state["step"]
        if not saved:
            return {"step": torch.zeros_like(step)}
        _, x, codes, inside = self._prepare(saved)
        self._batch = None
        factor = torch.addcmul(codes, x, inside, value=-1)  # codes - v/s inside, codes outside
        g = 1.0 / math.sqrt(max(saved[0][0].numel(), 1) * self.qp)  # per step, as LSQ.apply is called
        grad_s = (grads * factor).sum() * g
        return {"step": grad_s.to(step.dtype).reshape(step.shape)}


@functools.cache
def _ttq_function() -> Any:
    import torch

    class TTQ(torch.autograd.Function):
        """w_t = W_p where w > delta, -W_n where w < -delta, 0 otherwise.

        Backward (Zhu et al. 2016, eq. 7 and 8): dL/dW_p = sum of the gradient over the
        positive set, dL/dW_n = -(sum over the negative set); the shadow weights get the
        gradient scaled by W_p (positive set), 1 (zero set) or W_n (negative set).
        """

        @staticmethod
        def forward(ctx: Any, w: torch.Tensor, wp: torch.Tensor, wn: torch.Tensor, delta: float) -> torch.Tensor:
            w = w.detach()
            positive = (w > delta).to(w.dtype)
            negative = (w < -delta).to(w.dtype)
            ctx.save_for_backward(positive, negative, wp.detach(), wn.detach())
            return positive * wp.detach().to(w.dtype) - negative * wn.detach().to(w.dtype)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, ...]:
            positive, negative, wp, wn = ctx.saved_tensors
            middle = 1.0 - positive - negative
            scale = positive * wp.to(grad.dtype) + middle + negative * wn.to(grad.dtype)
            grad_wp = (grad * positive).sum().to(wp.dtype).reshape(wp.shape)
            grad_wn = -(grad * negative).sum().to(wn.dtype).reshape(wn.shape)
            return grad * scale, grad_wp, grad_wn, None

    return TTQ


class LSQQuantizer(qbench.Quantizer):
    """LSQ, learned step size quantization (Esser et al. 2019, arXiv 1902.08153), k-bit signed.

    Forward: ``v_hat = round(clip(v / s, -Q_N, Q_P)) * s`` with ``Q_N = 2^(k-1)``,
    ``Q_P = 2^(k-1) - 1`` and one learned step ``s`` per tensor, initialised to
    ``2 <|v|> / sqrt(Q_P)`` (a tensor of zeros, such as a bias at the start: ``W0 / Q_P``).
    Backward: straight-through round inside the clip range, and the step's gradient
    ``round(v/s) - v/s`` inside, ``-Q_N`` / ``Q_P`` outside, scaled by ``g = 1 / sqrt(N Q_P)``
    (N the tensor's elements). Rounds half away from zero (docs/paper.md). No shadow clipping.
    ``hidden = true`` also quantizes each layer's hidden state at every time step with its own
    learned step (weights and activations, as the paper compares), initialised like an
    activation step in the paper: ``2 <|v|> / sqrt(Q_P)`` over the hidden states of the first
    training batch (the host calls :meth:`init_state` with them). That leaves torch's fused
    kernel for the per-step loop.
    """

    name = "lsq"
    description = "LSQ: k-bit signed codes times a learned step size per tensor (Esser et al. 2019)"
    scheme = "custom"
    owns_gradient = True
    params: ClassVar[dict[str, qbench.Param]] = {
        "bits": qbench.Param(int, 4, "bits per weight (signed codes -2^(k-1) .. 2^(k-1)-1)", min=2, max=16),
        "hidden": qbench.Param(bool, False, "also quantize the hidden state at every step (leaves the fused kernel)"),
    }

    @property
    def code_range(self) -> tuple[int, int]:
        """(Q_N, Q_P)."""
        return 2 ** (self.bits - 1), 2 ** (self.bits - 1) - 1

    def applies_to(self, role: str) -> bool:
        return role in ROLES or role == OUTPUT_ROLE or (role == "hidden" and bool(self.hidden))

    def init_state(self, w: torch.Tensor, ctx: qbench.QuantContext) -> dict[str, torch.Tensor]:
        import torch

        _, qp = self.code_range
        mean = float(w.detach().abs().double().mean()) if w.numel() else 0.0
        step = 2.0 * mean / math.sqrt(qp) if mean > 0 else ctx.glorot_bound / qp
        return {"step": torch.tensor(step, dtype=w.dtype, device=w.device)}

    def quantize(self, w: torch.Tensor, ctx: qbench.QuantContext) -> torch.Tensor:
        state = ctx.state if ctx.state is not None else self.init_state(w, ctx)
        qn, qp = self.code_range
        g = 1.0 / math.sqrt(max(w.numel(), 1) * qp)
        return _lsq_function().apply(w, state["step"], g, qn, qp)

    def hidden_estimator(self, ctx: qbench.QuantContext) -> LSQHiddenEstimator | None:
        if ctx.state is None:
            return None
        qn, qp = self.code_range
        return LSQHiddenEstimator(ctx.state["step"], qn, qp)

    def bits_per_weight(self) -> float:
        return float(self.bits)

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...] | None:
        if ctx.state is None:
            return None
        qn, qp = self.code_range
        step = max(float(ctx.state["step"].detach()), EPS)
        return tuple(code * step for code in range(-qn, qp + 1))

    def code_scale(self, ctx: qbench.QuantContext) -> float | None:
        return None if ctx.state is None else max(float(ctx.state["step"].detach()), EPS)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        qn, qp = self.code_range
        facts: dict[str, Any] = {"code_min": -qn, "code_max": qp}
        if ctx.state is not None:
            facts["step"] = max(float(ctx.state["step"].detach()), EPS)
        return facts


class TTQQuantizer(qbench.Quantizer):
    """TTQ, trained ternary quantization (Zhu et al. 2016, arXiv 1612.01064).

    Forward: ``w_t = W_p`` where ``w > delta``, ``-W_n`` where ``w < -delta``, else 0, with
    ``delta = t * max|w|`` (``threshold`` t, recomputed at every call) and two learned scales per
    tensor, ``W_p`` and ``W_n``, initialised to the mean magnitude of the weights above / below
    the threshold (the tensor's W0 where that set is empty, e.g. a bias of zeros). Backward:
    ``dL/dW_p = sum_{w > delta} dL/dw_t``, ``dL/dW_n = -sum_{w < -delta} dL/dw_t``; the shadow
    weights get ``W_p dL/dw_t``, ``dL/dw_t`` or ``W_n dL/dw_t`` on the three sets. Two bits per
    weight; the scales are not powers of two, so a backend prices one multiply per row.
    """

    name = "ttq"
    description = "TTQ: ternary {-W_n, 0, W_p} with learned scales per tensor (Zhu et al. 2016)"
    scheme = "custom"
    owns_gradient = True
    params: ClassVar[dict[str, qbench.Param]] = {
        "threshold": qbench.Param(float, 0.05, "t: weights within t * max|w| of zero become 0", min=0.0, max=1.0),
    }

    def validate(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            self._reject(f"threshold must be strictly between 0 and 1, got {self.threshold}")

    def _delta(self, w: torch.Tensor) -> float:
        return self.threshold * float(w.detach().abs().max()) if w.numel() else 0.0

    def init_state(self, w: torch.Tensor, ctx: qbench.QuantContext) -> dict[str, torch.Tensor]:
        import torch

        v = w.detach().double()
        delta = self._delta(w)
        above, below = v[v > delta], -v[v < -delta]
        wp = float(above.mean()) if above.numel() else ctx.glorot_bound
        wn = float(below.mean()) if below.numel() else ctx.glorot_bound
        return {
            "positive": torch.tensor(wp, dtype=w.dtype, device=w.device),
            "negative": torch.tensor(wn, dtype=w.dtype, device=w.device),
        }

    def quantize(self, w: torch.Tensor, ctx: qbench.QuantContext) -> torch.Tensor:
        state = ctx.state if ctx.state is not None else self.init_state(w, ctx)
        return _ttq_function().apply(w, state["positive"], state["negative"], self._delta(w))

    def bits_per_weight(self) -> float:
        return 2.0

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...] | None:
        if ctx.state is None:
            return None
        return (-float(ctx.state["negative"].detach()), 0.0, float(ctx.state["positive"].detach()))

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        facts: dict[str, Any] = {"threshold": self.threshold}
        if ctx.state is not None:
            facts.update(positive=float(ctx.state["positive"].detach()), negative=float(ctx.state["negative"].detach()))
        return facts
