"""Exponential (logarithmic, power-of-two) quantization, the method proposed by Ott et al. 2016."""

from __future__ import annotations

from typing import Any

import qbench
from qbench_builtins.quantizers.base import BuiltinQuantizer, stochastic_param

ZERO_CHOICES = ("exact", "negative-min")


class ExponentialQuantizer(BuiltinQuantizer):
    """Power-of-two weights: Wq = sign(W) 2^e, e in the window [e_min, e_max].

    k = clip(floor(log2 |W|), e_min, e_max),  p = |W| / 2^k - 1  (where |W| lies between 2^k and 2^(k+1))
    deterministic   e = k + 1 if p > 1/2 (|W| > 1.5 2^k, a linear midpoint), else k
    stochastic      e = k + 1 with probability clip(p, 0, 1), else k; E[Wq] = W for
                    2^e_min <= |W| <= 2^e_max
    then e is clipped to the window again, so every value is sign(W) 2^e with e_min <= e <= e_max
    (the reference code clips only k and could emit 2^(e_max + 1); with the default window this
    never matters, but it makes the window the exact set of exponents that are stored).

    Zero: ``zero = "exact"`` (default) maps W = 0 to an exact 0, a code of its own, the better
    hardware choice (a skipped product); ``zero = "negative-min"`` reproduces the reference code,
    which maps W = 0 to -2^e_min. Weights below 2^e_min in magnitude map to +-2^e_min either way.

    Storage: 1 sign bit + ceil(log2(e_max - e_min + 1 [+ 1 for the zero code])) exponent bits;
    7 bits with the defaults e_min = -22, e_max = 9. Shadow weights are clipped to [-2^e_max,
    2^e_max], where the rounding saturates (the paper is silent; a no-op for the default window).

    Reference: Ott, Lin, Zhang, Liu, Bengio, "Recurrent Neural Networks With Limited Numerical
    Precision", 2016 (arXiv 1608.06902), "exponential quantization".
    """

    name = "exponential"
    description = "power-of-two weights sign(W) 2^e, e in [e_min, e_max] (default -22..9); deterministic or stochastic"
    scheme = "exponential"
    params = {
        "e_min": qbench.Param(int, -22, "smallest exponent of the window", min=-126, max=127),
        "e_max": qbench.Param(int, 9, "largest exponent of the window", min=-126, max=127),
        "zero": qbench.Param(
            str,
            "exact",
            "what W = 0 maps to: an exact zero code, or -2^e_min as the reference code",
            choices=ZERO_CHOICES,
        ),
        "stochastic": stochastic_param(),
    }
    e_min: int
    e_max: int
    zero: str

    def validate(self) -> None:
        super().validate()
        if self.e_min > self.e_max:
            self._reject(
                f"the exponent window is empty: e_min = {self.e_min} is above e_max = {self.e_max}; set e_min <= e_max"
            )

    @property
    def exponent_count(self) -> int:
        """Distinct exponent codes, including the zero code when zero is exact."""
        return self.e_max - self.e_min + 1 + (1 if self.zero == "exact" else 0)

    @property
    def exponent_bits(self) -> int:
        """ceil(log2(exponent_count)), computed exactly on integers."""
        return (self.exponent_count - 1).bit_length()

    def quantize(self, w, ctx):
        from qbench_builtins.quantizers import kernels

        return kernels.power_of_two(
            w, self.e_min, self.e_max, self.zero == "negative-min", ctx.generator, self.sampling(ctx)
        )

    def bits_per_weight(self) -> float:
        return float(1 + self.exponent_bits)

    def shadow_bound(self, ctx: qbench.QuantContext) -> float:
        return 2.0**self.e_max

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...]:
        powers = [2.0**e for e in range(self.e_min, self.e_max + 1)]
        zero = (0.0,) if self.zero == "exact" else ()
        return tuple(-p for p in reversed(powers)) + zero + tuple(powers)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {
            "e_min": self.e_min,
            "e_max": self.e_max,
            "zero": self.zero,
            "exponent_bits": self.exponent_bits,
            "bits": 1 + self.exponent_bits,
        }
