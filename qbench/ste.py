"""The host side of the quantizer contract: straight-through estimator and shadow clipping.

torch is imported on first use, so ``import qbench`` stays light.
"""

from __future__ import annotations

import functools
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import torch

    from qbench.components import QuantContext, Quantizer


@functools.cache
def _straight_through() -> Any:
    import torch

    class StraightThrough(torch.autograd.Function):
        """Forward: exactly the quantized tensor; backward: the gradient reaches the shadow tensor unchanged.

        One autograd node instead of ``shadow + (q - shadow).detach()``: that form costs two extra
        elementwise passes and can move q by an ulp.
        """

        @staticmethod
        def forward(ctx: Any, shadow: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
            return quantized.view_as(quantized)

        @staticmethod
        def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
            return grad, None

    return StraightThrough


def straight_through(shadow: torch.Tensor, quantized: torch.Tensor) -> torch.Tensor:
    """Forward ``quantized``; backward: the gradient with respect to it is applied to ``shadow``."""
    return _straight_through().apply(shadow, quantized)


def quantize_ste(shadow: torch.Tensor, quantizer: Quantizer, ctx: QuantContext) -> torch.Tensor:
    """Forward: ``quantizer.quantize(shadow)``; backward: the gradient reaches ``shadow`` unchanged.

    The quantizer sees a detached tensor, so it may use any non-differentiable operation.
    """
    return straight_through(shadow, quantizer.quantize(shadow.detach(), ctx))


def clip_shadow_(shadow: torch.Tensor, quantizer: Quantizer, ctx: QuantContext) -> None:
    """Clip shadow weights in place to the quantizer's bound (after each optimizer step)."""
    bound = quantizer.shadow_bound(ctx)
    if bound is not None:
        shadow.data.clamp_(-bound, bound)
