"""Fixed-point quantizers: the paper's pow2-ternary and ordinary k-bit Qm.f."""

from __future__ import annotations

import functools
from typing import Any

import qbench
from qbench_builtins.quantizers.base import MAX_LISTED_VALUES, BuiltinQuantizer, stochastic_param


@functools.lru_cache(maxsize=64)
def _grid(code_min: int, code_max: int, frac_bits: int) -> tuple[float, ...] | None:
    if code_max - code_min + 1 > MAX_LISTED_VALUES:
        return None
    step = 2.0**-frac_bits
    return tuple(code * step for code in range(code_min, code_max + 1))


class Pow2TernaryQuantizer(BuiltinQuantizer):
    """Fixed-point rounding with i integer and f fractional bits, sign-magnitude (pow2-ternary).

    Wq = clip(round(2^f W), -M, M) 2^-f,  M = 2^(i+f) - 1,  round = half away from zero.

    With the defaults (i = 0, f = 1) Wq is in {-0.5, 0, +0.5}: zero when |W| < 0.25, +-0.5
    otherwise, so a product is a one-bit shift and a sign. i + f + 1 bits per weight (2 by
    default). Shadow weights are clipped to [-M 2^-f, M 2^-f], where the rounding saturates (the
    paper is silent; clipping there changes no forward value).

    The paper's form is deterministic (``stochastic = true`` is rejected). ``stochastic_rounding
    = true`` is qbench's labelled extension, not the paper's method: while training, the code is
    floor(2^f |W|) + 1 with probability equal to the fractional part (unbiased inside the range).

    References: Stromatias et al., "Robustness of spiking Deep Belief Networks to noise and
    reduced bit precision of neuro-inspired hardware platforms", Front. Neurosci. 2015
    (doi:10.3389/fnins.2015.00222); Ott et al. 2016 (arXiv 1608.06902), "pow2-ternarization".
    """

    name = "pow2-ternary"
    description = "fixed point rounding (i.f bits, default {-0.5, 0, +0.5}, half away from zero); deterministic"
    scheme = "pow2-ternary"
    params = {
        "int_bits": qbench.Param(int, 0, "i, integer bits of the magnitude (sign not counted)", min=0, max=24),
        "frac_bits": qbench.Param(int, 1, "f, fractional bits: values are multiples of 2^-f", min=-24, max=32),
        "stochastic": stochastic_param(available=False),
        "stochastic_rounding": qbench.Param(
            bool, False, "extension (not in the paper): stochastic rounding while training"
        ),
    }
    no_stochastic_form = (
        "the paper's pow2-ternary is deterministic only; for qbench's stochastic-rounding "
        "extension set stochastic_rounding = true instead of stochastic"
    )
    int_bits: int
    frac_bits: int
    stochastic_rounding: bool

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.stochastic = self.stochastic_rounding

    def validate(self) -> None:
        super().validate()
        magnitude_bits = self.int_bits + self.frac_bits
        if not 1 <= magnitude_bits <= 24:
            self._reject(
                f"int_bits + frac_bits must be between 1 and 24 (got {self.int_bits} + {self.frac_bits} = "
                f"{magnitude_bits}); with fewer than 1 magnitude bit the only value would be 0"
            )

    @property
    def max_code(self) -> int:
        """M = 2^(i+f) - 1, the largest code magnitude."""
        return (1 << (self.int_bits + self.frac_bits)) - 1

    def quantize(self, w, ctx):
        from qbench_builtins.quantizers import kernels

        return kernels.sign_magnitude(w, self.frac_bits, self.max_code, ctx.generator, self.sampling(ctx))

    def bits_per_weight(self) -> float:
        return float(self.int_bits + self.frac_bits + 1)

    def shadow_bound(self, ctx: qbench.QuantContext) -> float:
        return self.max_code * 2.0**-self.frac_bits

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...] | None:
        return _grid(-self.max_code, self.max_code, self.frac_bits)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {
            "int_bits": self.int_bits,
            "frac_bits": self.frac_bits,
            "bits": self.int_bits + self.frac_bits + 1,
            "representation": "sign-magnitude",
            "code_min": -self.max_code,
            "code_max": self.max_code,
        }


class FixedPointQuantizer(BuiltinQuantizer):
    """k-bit two's complement fixed point Qm.f (m = k - f integer bits, sign bit included).

    deterministic   Wq = clip(round(2^f W), -2^(k-1), 2^(k-1) - 1) 2^-f, round = half away from zero
    stochastic      code = floor(2^f W) + 1 with probability 2^f W - floor(2^f W), then the same
                    clip; E[Wq] = W inside [-2^(k-1-f), (2^(k-1) - 1) 2^-f]
    shadow weights  clipped to [-2^(k-1-f), 2^(k-1-f)], where the rounding saturates

    ``frac_bits`` defaults to k - 1 (Q1.(k-1), values in [-1, 1)), the usual weight format of
    fixed-point RNN hardware (e.g. Q1.7 for 8 bits). k bits per weight. Not in Ott et al.
    2016; the ordinary baseline hardware designers compare against (stochastic rounding: Gupta
    et al., "Deep Learning with Limited Numerical Precision", ICML 2015, arXiv 1502.02551).
    """

    name = "fixed"
    description = "k-bit two's complement fixed point Qm.f (default Q1.7), deterministic or stochastic rounding"
    scheme = "fixed"
    params = {
        "bits": qbench.Param(int, 8, "k, total bits including the sign bit", min=1, max=32),
        "frac_bits": qbench.Param(
            (int, type(None)), None, "f, fractional bits (values are multiples of 2^-f); default k - 1"
        ),
        "stochastic": stochastic_param(),
    }
    bits: int
    frac_bits: int | None

    def validate(self) -> None:
        super().validate()
        f = self.fractional_bits
        if not -32 <= f <= 64:
            self._reject(f"frac_bits must be between -32 and 64, got {f}")

    @property
    def fractional_bits(self) -> int:
        """f, resolved (k - 1 when the parameter is left out)."""
        return self.bits - 1 if self.frac_bits is None else self.frac_bits

    def quantize(self, w, ctx):
        from qbench_builtins.quantizers import kernels

        return kernels.twos_complement(w, self.bits, self.fractional_bits, ctx.generator, self.sampling(ctx))

    def bits_per_weight(self) -> float:
        return float(self.bits)

    def shadow_bound(self, ctx: qbench.QuantContext) -> float:
        return 2.0 ** (self.bits - 1 - self.fractional_bits)

    def value_set(self, ctx: qbench.QuantContext) -> tuple[float, ...] | None:
        return _grid(-(1 << (self.bits - 1)), (1 << (self.bits - 1)) - 1, self.fractional_bits)

    def encoding(self, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {
            "int_bits": self.bits - self.fractional_bits,
            "frac_bits": self.fractional_bits,
            "bits": self.bits,
            "representation": "twos-complement",
            "code_min": -(1 << (self.bits - 1)),
            "code_max": (1 << (self.bits - 1)) - 1,
        }
