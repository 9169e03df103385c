"""The host side of the quantizer contract: straight-through estimator and shadow clipping."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from qbench.components import QuantContext, Quantizer


def quantize_ste(shadow: torch.Tensor, quantizer: Quantizer, ctx: QuantContext) -> torch.Tensor:
    """Forward: ``quantizer.quantize(shadow)``; backward: the gradient reaches ``shadow`` unchanged.

    The quantizer sees a detached tensor, so it may use any non-differentiable operation.
    """
    quantized = quantizer.quantize(shadow.detach(), ctx)
    return shadow + (quantized - shadow).detach()


def clip_shadow_(shadow: torch.Tensor, quantizer: Quantizer, ctx: QuantContext) -> None:
    """Clip shadow weights in place to the quantizer's bound (after each optimizer step)."""
    bound = quantizer.shadow_bound(ctx)
    if bound is not None:
        shadow.data.clamp_(-bound, bound)
