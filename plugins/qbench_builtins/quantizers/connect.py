"""The full-precision baseline and the Connect family: float, binary, ternary."""

from __future__ import annotations

from typing import Any

import qbench
from qbench_builtins.quantizers.base import BuiltinQuantizer, stochastic_param


class FloatQuantizer(BuiltinQuantizer):
    """Full precision: the identity, Wq = W.

    The baseline of every comparison in Ott et al. 2016 (arXiv 1608.06902), trained with the
    same recipe as the quantized models. ``quantize`` returns ``w`` itself (no copy); nothing is
    clipped; 32 bits per weight.
    """

    name = "float"
    description = "full precision (identity): the float32 baseline, same training recipe"
    scheme = "float"
    baseline = True  # the paired comparisons' reference unless a matrix names another
    params = {"stochastic": stochastic_param(available=False)}
    no_stochastic_form = "float is the full-precision baseline; it has no stochastic form (remove 'stochastic')"

    def quantize(self, w, ctx):
        return w

    def bits_per_weight(self) -> float:
        return 32.0

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {"bits": 32}


class BinaryQuantizer(BuiltinQuantizer):
    """BinaryConnect: Wq in {-H, +H}.

    deterministic   Wq = +H if W >= 0, else -H
    stochastic      Wq = +H with probability p = clip((W/H + 1)/2, 0, 1), else -H;
                    E[Wq] = clip(W, -H, H) (unbiased on [-H, H])
    shadow weights  clipped to [-H, H] after each update

    H = ``scale`` (1 in the reference code of Ott et al. 2016, which is the setting that fails
    for RNNs), or ``scale`` x W0 with ``glorot = true``, W0 = sqrt(6 / (fan_in + fan_out)).
    1 bit per weight. References: Courbariaux, Bengio, David, "BinaryConnect", NeurIPS 2015
    (arXiv 1511.00363); Ott et al. 2016 (arXiv 1608.06902).
    """

    name = "binary"
    description = "BinaryConnect: +-H, H = 1 (or a multiple of the Glorot bound); deterministic or stochastic"
    scheme = "binary"
    params = {
        "stochastic": stochastic_param(),
        "scale": qbench.Param(float, 1.0, "H, the magnitude of both values (> 0)", min=0.0),
        "glorot": qbench.Param(bool, False, "H = scale x W0 of each matrix instead of scale"),
    }
    scale: float
    glorot: bool

    def validate(self) -> None:
        super().validate()
        if not self.scale > 0.0:
            self._reject(f"scale must be > 0, got {self.scale!r}")

    def magnitude(self, ctx: qbench.QuantContext) -> float:
        """H for this matrix."""
        return self.scale * ctx.glorot_bound if self.glorot else self.scale

    def quantize(self, w, ctx):
        from qbench_builtins.quantizers import kernels

        if self.sampling(ctx):
            return kernels.binary_stochastic(w, self.magnitude(ctx), ctx.generator)
        return kernels.binary_deterministic(w, self.magnitude(ctx))

    def bits_per_weight(self) -> float:
        return 1.0

    def shadow_bound(self, ctx: qbench.QuantContext) -> float:
        return self.magnitude(ctx)

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...]:
        h = self.magnitude(ctx)
        return (-h, h)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {"scale": self.magnitude(ctx)}


class TernaryQuantizer(BuiltinQuantizer):
    """TernaryConnect with a per-matrix scale: Wq in {-W0, 0, +W0}, W0 = sqrt(6 / (fan_in + fan_out)).

    deterministic   Wq = +W0 if W > W0/2; -W0 if W <= -W0/2; 0 otherwise
                    (the reference code's comparisons, so +W0/2 maps to 0 and -W0/2 to -W0)
    stochastic      Wq = sign(W) W0 with probability clip(|W| / W0, 0, 1), else 0;
                    E[Wq] = W for |W| <= W0
    shadow weights  clipped to [-W0, W0] after each update

    W0 is the Glorot-uniform bound of the matrix (for a recurrent matrix of N units sqrt(3/N));
    a bias uses the W0 of its layer's input matrix (the host passes those fans). 2 bits per
    weight. References: Lin, Courbariaux, Memisevic, Bengio, "Neural Networks with Few
    Multiplications", ICLR 2016 (arXiv 1510.03009); Ott et al. 2016 (arXiv 1608.06902).
    """

    name = "ternary"
    description = "TernaryConnect: {-W0, 0, +W0}, W0 the Glorot bound of each matrix; deterministic or stochastic"
    scheme = "ternary"
    params = {"stochastic": stochastic_param()}

    def quantize(self, w, ctx):
        from qbench_builtins.quantizers import kernels

        if self.sampling(ctx):
            return kernels.ternary_stochastic(w, ctx.glorot_bound, ctx.generator)
        return kernels.ternary_deterministic(w, ctx.glorot_bound)

    def bits_per_weight(self) -> float:
        return 2.0

    def shadow_bound(self, ctx: qbench.QuantContext) -> float:
        return ctx.glorot_bound

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...]:
        w0 = ctx.glorot_bound
        return (-w0, 0.0, w0)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {"scale": ctx.glorot_bound}
