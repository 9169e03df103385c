"""Registers the TWN quantizer with qbench (kept light: torch is imported only when quantizing)."""

from __future__ import annotations

import qbench


class TernaryWeightNetworks(qbench.Quantizer):
    """Ternary Weight Networks (Li & Liu, arXiv 1605.04711), applied per matrix.

    threshold  delta = t * mean(|W|)            (t = 0.7 in the paper)
    scale      alpha = mean(|W_i|  for |W_i| > delta)
    Wq         = alpha * sign(W) if |W| > delta, else 0

    Unlike TernaryConnect the scale follows the trained weights instead of the Glorot bound.
    Deterministic; no shadow-weight clipping.
    """

    name = "twn"
    description = "Ternary Weight Networks: threshold 0.7 mean|W|, learned-magnitude scale (Li & Liu 2016)"
    scheme = "ternary"
    params = {"threshold": qbench.Param(float, 0.7, "delta as a multiple of mean |W|", min=0.0)}

    def quantize(self, w, ctx):
        import torch

        # contiguous first: the mean's summation order (and so its last bit) must not depend on
        # how the caller laid the tensor out in memory
        magnitude = w.contiguous().abs()
        delta = self.threshold * magnitude.mean()
        keep = magnitude > delta
        count = keep.sum().clamp(min=1)
        alpha = (magnitude * keep).sum() / count
        return torch.where(keep, torch.sign(w) * alpha, torch.zeros_like(w))

    def bits_per_weight(self) -> float:
        return 2.0


@qbench.hookimpl
def qbench_register_quantizers():
    return [TernaryWeightNetworks]
