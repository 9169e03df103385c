"""The elementwise arithmetic of the built-in quantizers (imports torch: load it only to quantize).

Every function maps a float tensor to a new tensor of the same shape, dtype and device, in a
handful of vectorised passes, without host-device synchronisation. In-place passes on the
temporaries keep allocations (page faults, on a CPU) to one or two per call. Comparisons write straight
into float tensors (``torch.gt(..., out=float_tensor)``) because a boolean temporary followed by
a cast or ``torch.where`` costs several times more on CPU.

Exactness, which the tests check at the boundaries:

* thresholds are compared against the weights, never computed by dividing the weights, so a
  weight exactly on a boundary lands where the formula says;
* rounding is half away from zero, computed as ``floor(y) + (y - floor(y) >= 0.5)`` on the
  magnitude ``y``. The shorter ``floor(y + 0.5)`` is wrong for the float just below 0.5, where
  ``y + 0.5`` rounds up to 1.0 (in float32, 0.49999997 would round to 1);
* stochastic choices compare a uniform draw ``u`` in [0, 1) with an exactly computed fraction,
  so P(up) equals the formula's probability up to the 2^-24 resolution of ``torch.rand``.
"""

from __future__ import annotations

import torch

# Bit layouts for the power-of-two rounding of the exponential quantizer.
_FLOAT_BITS = {
    torch.float32: (torch.int32, 23),
    torch.float64: (torch.int64, 52),
}


def uniform(w: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """U[0, 1) draws shaped like ``w``, on its device and in its dtype, from ``generator``."""
    return torch.rand(w.shape, generator=generator, device=w.device, dtype=w.dtype)


def indicator(compare, a: torch.Tensor, b, like: torch.Tensor, out: torch.Tensor | None = None) -> torch.Tensor:
    """``compare(a, b)`` as 0.0 / 1.0 in ``like``'s dtype, written without a boolean temporary."""
    if out is None:
        out = torch.empty_like(like)
    return compare(a, b, out=out)


# --------------------------------------------------------------------------- binary


def binary_deterministic(w: torch.Tensor, scale: float) -> torch.Tensor:
    """+H where w >= 0 (-0.0 included), else -H."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    q = indicator(torch.ge, w, 0.0, w)
    return q.mul_(2.0 * scale).sub_(scale)


def binary_stochastic(w: torch.Tensor, scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """+H with probability clip((w/H + 1)/2, 0, 1): +H exactly where w > H (2u - 1)."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    threshold = uniform(w, generator).mul_(2.0 * scale).sub_(scale)
    q = indicator(torch.gt, w, threshold, w, out=threshold)
    return q.mul_(2.0 * scale).sub_(scale)


# --------------------------------------------------------------------------- ternary


def ternary_deterministic(w: torch.Tensor, scale: float) -> torch.Tensor:
    """+W0 where w > W0/2, -W0 where w <= -W0/2, else 0 (the reference code's comparisons)."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    half = 0.5 * scale
    q = indicator(torch.gt, w, half, w)
    above_lower = indicator(torch.gt, w, -half, w)
    # [w > W0/2] + [w > -W0/2] - 1 is +1, 0 or -1
    return q.add_(above_lower).sub_(1.0).mul_(scale)


def ternary_stochastic(w: torch.Tensor, scale: float, generator: torch.Generator | None) -> torch.Tensor:
    """sign(w) W0 with probability clip(|w|/W0, 0, 1), else 0: kept where |w| > W0 u."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    threshold = uniform(w, generator).mul_(scale)
    q = indicator(torch.gt, w, threshold, w)
    threshold.neg_()
    negative = indicator(torch.lt, w, threshold, w, out=threshold)
    return q.sub_(negative).mul_(scale)


# --------------------------------------------------------------------------- fixed point


def _round_magnitude_half_away_(y: torch.Tensor) -> torch.Tensor:
    """Round a non-negative tensor half away from zero (in place on ``y``, which it returns)."""
    whole = torch.floor(y)
    y.sub_(whole)  # exact fractional part
    torch.ge(y, 0.5, out=y)
    return y.add_(whole)


def _round_stochastic_(y: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    """floor(y) + 1 with probability y - floor(y), for either sign (in place on ``y``, returned)."""
    whole = torch.floor(y)
    y.sub_(whole)
    u = uniform(y, generator)
    torch.lt(u, y, out=y)
    return y.add_(whole)


def sign_magnitude(
    w: torch.Tensor, frac_bits: int, max_code: int, generator: torch.Generator | None, stochastic: bool
) -> torch.Tensor:
    """sign(w) * min(round(|w| 2^f), M) * 2^-f: symmetric sign-magnitude fixed point (pow2-ternary)."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    step = 2.0**-frac_bits
    if max_code == 1 and not stochastic:
        # One level: round(|w| 2^f) >= 1 exactly when |w| >= 2^-(f+1), a single exact comparison.
        q = w.abs()
        torch.ge(q, 0.5 * step, out=q)
        return q.mul_(step).copysign_(w)
    y = w.abs().mul_(2.0**frac_bits)
    code = _round_stochastic_(y, generator) if stochastic else _round_magnitude_half_away_(y)
    return code.clamp_(max=float(max_code)).mul_(step).copysign_(w)


def twos_complement(
    w: torch.Tensor, bits: int, frac_bits: int, generator: torch.Generator | None, stochastic: bool
) -> torch.Tensor:
    """clamp(round(w 2^f), -2^(k-1), 2^(k-1) - 1) * 2^-f: k-bit two's complement Qm.f."""
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    lowest, highest = -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1.0
    if stochastic:
        code = _round_stochastic_(w.mul(2.0**frac_bits), generator)
    else:
        code = _round_magnitude_half_away_(w.abs().mul_(2.0**frac_bits)).copysign_(w)
    return code.clamp_(lowest, highest).mul_(2.0**-frac_bits)


# --------------------------------------------------------------------------- exponential


def _with_float_layout(w: torch.Tensor) -> tuple[torch.Tensor, torch.dtype, int]:
    """``w`` in a dtype whose bits the exponential quantizer reads (float32 or float64)."""
    if w.dtype in _FLOAT_BITS:
        integer, mantissa_bits = _FLOAT_BITS[w.dtype]
        return w, integer, mantissa_bits
    # half / bfloat16: every power of two of the window is exact in float32 and back
    wide = w.float()
    integer, mantissa_bits = _FLOAT_BITS[torch.float32]
    return wide, integer, mantissa_bits


def power_of_two(
    w: torch.Tensor,
    e_min: int,
    e_max: int,
    zero_to_negative_min: bool,
    generator: torch.Generator | None,
    stochastic: bool,
) -> torch.Tensor:
    """sign(w) 2^e, e = clip(floor(log2|w|) + up, e_min, e_max), computed on the float's bits.

    With k = floor(log2|w|), the exponent bits of |w| alone are 2^k exactly. Deterministic ``up``
    (|w| > 1.5 * 2^k, i.e. mantissa fraction > 1/2) is a carry: adding 2^(m-1) - 1 to the bits
    moves the exponent up by one exactly when the m-bit mantissa field exceeds 2^(m-1).
    Stochastic ``up`` has probability p = |w| / 2^k - 1, drawn as u 2^k < |w| - 2^k (both sides
    exact). Zero and subnormals fall to 2^e_min through the clamp; sign(0) = 0 keeps an exact zero.
    """
    w = w.detach()  # no autograd graph here even if called on a Parameter: the host owns the estimator
    source, integer, mantissa_bits = _with_float_layout(w)
    exponent_mask = -(1 << mantissa_bits)  # sign bit is already clear after abs()
    magnitude = source.abs()
    if stochastic:
        power = magnitude.view(integer).bitwise_and(exponent_mask).view(source.dtype)  # 2^k
        magnitude.sub_(power)  # |w| - 2^k, exact
        u = uniform(source, generator).mul_(power)
        torch.lt(u, magnitude, out=u)
        q = power.mul_(u.add_(1.0))
    else:
        bits = magnitude.view(integer)
        bits.add_((1 << (mantissa_bits - 1)) - 1).bitwise_and_(exponent_mask)
        q = magnitude
    q.clamp_(2.0**e_min, 2.0**e_max)
    if zero_to_negative_min:
        # the reference code: sign = +1 where w > 0, else -1 (so 0 maps to -2^e_min)
        sign = indicator(torch.gt, source, 0.0, source).mul_(2.0).sub_(1.0)
        q.mul_(sign)
    else:
        q.mul_(torch.sign(source))
    return q if q.dtype == w.dtype else q.to(w.dtype)
