"""A learned-scale quantizer, written only against qbench's public plugin contract.

docs/plugins.md shows this file; qbench's tests check that the two stay identical.
"""

from __future__ import annotations

import functools

import qbench


@functools.cache
def scaled_sign():
    import torch

    class ScaledSign(torch.autograd.Function):
        """Forward alpha * sign(w) (sign(0) = +1); backward: dL/dalpha = sum(g * sign(w)),
        dL/dw = alpha * g where |w| <= 1 (clipped straight-through), 0 elsewhere."""

        @staticmethod
        def forward(ctx, w, alpha):
            sign = torch.where(w.detach() >= 0, 1.0, -1.0).to(w.dtype)
            ctx.save_for_backward(w.detach(), sign, alpha.detach())
            return sign * alpha.detach().to(w.dtype)

        @staticmethod
        def backward(ctx, grad):
            w, sign, alpha = ctx.saved_tensors
            grad_w = grad * alpha.to(grad.dtype) * (w.abs() <= 1.0)
            grad_alpha = (grad * sign).sum().to(alpha.dtype).reshape(alpha.shape)
            return grad_w, grad_alpha

    return ScaledSign


class LearnedBinary(qbench.Quantizer):
    """Binary weights with a learned scale per tensor: Wq = alpha * sign(W).

    alpha starts at mean|W| (XNOR-Net's closed form, Rastegari et al. 2016; the tensor's W0
    for a tensor of zeros) and is then trained by the optimizer, as in LQ-Nets / LSQ.
    """

    name = "learned-binary"
    description = "binary weights times a learned scale per tensor (starts at mean |W|)"
    scheme = "custom"
    owns_gradient = True  # quantize() is differentiable and defines the gradient

    def init_state(self, w, ctx):
        import torch

        mean = float(w.detach().abs().double().mean()) if w.numel() else 0.0
        return {"alpha": torch.tensor(mean if mean > 0 else ctx.glorot_bound, dtype=w.dtype)}

    def quantize(self, w, ctx):
        state = ctx.state if ctx.state is not None else self.init_state(w, ctx)
        return scaled_sign().apply(w, state["alpha"])

    def bits_per_weight(self):
        return 1.0

    def value_set(self, ctx):
        if ctx.state is None:
            return None
        alpha = float(ctx.state["alpha"].detach())
        return (-alpha, alpha)

    def encoding(self, ctx):
        return {} if ctx.state is None else {"alpha": float(ctx.state["alpha"].detach())}


@qbench.hookimpl
def qbench_register_quantizers():
    return [LearnedBinary]
