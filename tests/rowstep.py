"""A learned quantizer whose state is a vector: one LSQ-style step per row (per output unit).

The docs promise learned state of any shape as a float64 array; this one exercises it through the
kits, ``qbench plugins --check`` and a real stack, unmodified.
"""

from __future__ import annotations

import torch

import qbench


class _RowStep(torch.autograd.Function):
    """Ternary codes round(clip(w / s_row, -1, 1)) * s_row; straight-through inside, LSQ's step gradient."""

    @staticmethod
    def forward(ctx, w, step):
        s = step.clamp_min(1e-8).reshape(-1, *([1] * (w.dim() - 1))).to(w.dtype)
        x = w.detach() / s
        codes = x.clamp(-1, 1).round()
        ctx.save_for_backward(x, codes)
        ctx.step_shape, ctx.step_dtype = step.shape, step.dtype
        return codes * s

    @staticmethod
    def backward(ctx, grad):
        x, codes = ctx.saved_tensors
        inside = (x >= -1) & (x <= 1)
        per_element = grad * torch.where(inside, codes - x, codes)
        per_row = per_element.reshape(per_element.shape[0], -1).sum(dim=1)
        return grad * inside, per_row.reshape(ctx.step_shape).to(ctx.step_dtype)


class RowStepQuantizer(qbench.Quantizer):
    name = "row-step"
    description = "ternary codes times a learned step per row"
    scheme = "custom"
    owns_gradient = True

    def init_state(self, w, ctx):
        rows = w.detach().reshape(w.shape[0], -1) if w.dim() > 1 else w.detach().reshape(-1, 1)
        return {"step": rows.abs().mean(dim=1).clamp_min(1e-3).clone()}

    def quantize(self, w, ctx):
        return _RowStep.apply(w, ctx.state["step"])

    def bits_per_weight(self):
        return 2.0


@qbench.hookimpl
def qbench_register_quantizers():
    return [RowStepQuantizer]
