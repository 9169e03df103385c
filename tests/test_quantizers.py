"""The built-in quantizers against the paper's formulas: boundaries, references, unbiasedness, parameters.

Each deterministic form is compared, exactly, with a scalar float64 reference written straight
from the formula (docs/paper.md); float32 inputs make the float64 arithmetic of the reference exact.
"""

from __future__ import annotations

import math
import subprocess
import sys

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import qbench
from qbench.testing.quantizers import make_context

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.cuda),
]


def f32(x: float) -> float:
    """``x`` rounded to float32, as a Python float."""
    return float(torch.tensor(x, dtype=torch.float32))


def below(x: float) -> float:
    """The float32 just below ``x``."""
    t = torch.tensor(x, dtype=torch.float32)
    return float(torch.nextafter(t, torch.tensor(-math.inf)))


def above(x: float) -> float:
    """The float32 just above ``x``."""
    t = torch.tensor(x, dtype=torch.float32)
    return float(torch.nextafter(t, torch.tensor(math.inf)))


def run(quantizer, values, ctx, device="cpu", dtype=torch.float32) -> list[float]:
    w = torch.tensor(values, dtype=dtype, device=device)
    return quantizer.quantize(w, ctx).cpu().tolist()


# --------------------------------------------------------------------------- scalar references


def sign(x: float) -> float:
    return (x > 0) - (x < 0)


def ref_binary(x: float, h: float) -> float:
    return h if x >= 0 else -h


def ref_ternary(x: float, w0: float) -> float:
    return w0 if x > w0 / 2 else (-w0 if x <= -w0 / 2 else 0.0)


def half_away(y: float) -> float:
    return sign(y) * math.floor(abs(y) + 0.5)


def ref_pow2_ternary(x: float, i: int, f: int) -> float:
    top = 2 ** (i + f) - 1
    return min(max(half_away(x * 2.0**f), -top), top) * 2.0**-f


def ref_fixed(x: float, k: int, f: int) -> float:
    return min(max(half_away(x * 2.0**f), -(2 ** (k - 1))), 2 ** (k - 1) - 1) * 2.0**-f


def ref_exponential(x: float, e_min: int, e_max: int, zero: str = "exact") -> float:
    if x == 0:
        return 0.0 if zero == "exact" else -(2.0**e_min)
    k = min(max(math.frexp(abs(x))[1] - 1, e_min), e_max)  # floor(log2 |x|), clipped
    p = abs(x) / 2.0**k - 1
    e = min(max(k + 1 if p > 0.5 else k, e_min), e_max)
    return sign(x) * 2.0**e


# --------------------------------------------------------------------------- exact boundaries


@pytest.mark.parametrize("device", DEVICES)
def test_binary_boundaries(device):
    q = qbench.create("quantizer", "binary")
    ctx = make_context("input", 64, 64, device=device)
    values = [0.0, -0.0, below(0.0), above(0.0), 1.0, -1.0, 3.0, -3.0]
    assert run(q, values, ctx, device) == [1.0, 1.0, -1.0, 1.0, 1.0, -1.0, 1.0, -1.0]


@pytest.mark.parametrize("device", DEVICES)
def test_ternary_thresholds_follow_the_reference_comparisons(device):
    q = qbench.create("quantizer", "ternary")
    ctx = make_context("recurrent", 100, 100, device=device)
    w0 = f32(ctx.glorot_bound)
    half = w0 / 2
    values = [half, above(half), below(half), -half, above(-half), below(-half), 0.0, w0, -w0, 5 * w0]
    expected = [0.0, w0, 0.0, -w0, 0.0, -w0, 0.0, w0, -w0, w0]
    assert run(q, values, ctx, device) == expected


@pytest.mark.parametrize("device", DEVICES)
def test_pow2_ternary_defaults_give_half_steps_with_ties_away_from_zero(device):
    q = qbench.create("quantizer", "pow2-ternary")
    ctx = make_context(device=device)
    values = [0.25, below(0.25), -0.25, above(-0.25), 0.0, 0.5, 0.75, -9.0]
    assert run(q, values, ctx, device) == [0.5, 0.0, -0.5, 0.0, 0.0, 0.5, 0.5, -0.5]


@pytest.mark.parametrize("device", DEVICES)
def test_pow2_ternary_wider_format_rounds_half_away_and_saturates(device):
    q = qbench.create("quantizer", "pow2-ternary", int_bits=1, frac_bits=2)  # M = 7, step 1/4
    ctx = make_context(device=device)
    # 0.625 * 4 = 2.5: half-even would give 2; half away from zero gives 3
    values = [0.125, -0.125, 0.375, 0.625, -0.625, below(0.625), below(0.125), 2.0, -2.0, 1.75]
    expected = [0.25, -0.25, 0.5, 0.75, -0.75, 0.5, 0.0, 1.75, -1.75, 1.75]
    assert run(q, values, ctx, device) == expected


@pytest.mark.parametrize("device", DEVICES)
def test_fixed_rounds_half_away_and_saturates_in_twos_complement(device):
    q = qbench.create("quantizer", "fixed", bits=4, frac_bits=2)  # codes -8..7, step 1/4
    ctx = make_context(device=device)
    # below(0.125) * 4 is the float32 just below 0.5, which floor(y + 0.5) would round up
    values = [0.625, -0.625, 0.375, below(0.375), below(0.125), 1.9, 1.75, -1.875, -2.0, -2.1, 0.0]
    expected = [0.75, -0.75, 0.5, 0.25, 0.0, 1.75, 1.75, -2.0, -2.0, -2.0, 0.0]
    assert run(q, values, ctx, device) == expected


def test_fixed_defaults_are_q1_7():
    q = qbench.create("quantizer", "fixed")
    assert q.encoding(make_context()) == {
        "int_bits": 1,
        "frac_bits": 7,
        "bits": 8,
        "representation": "twos-complement",
        "code_min": -128,
        "code_max": 127,
    }
    assert run(q, [0.999, -1.5, 1 / 256, 3 / 256], make_context()) == [127 / 128, -1.0, 1 / 128, 2 / 128]


@pytest.mark.parametrize("device", DEVICES)
def test_exponential_midpoint_window_and_zero(device):
    q = qbench.create("quantizer", "exponential")
    ctx = make_context(device=device)
    values = [1.5, above(1.5), -1.5, below(-1.5), 0.75, above(0.75), 1.0, 2.0**-22, 2.0**-30, 2.0**9, 1000.0]
    expected = [1.0, 2.0, -1.0, -2.0, 0.5, 1.0, 1.0, 2.0**-22, 2.0**-22, 2.0**9, 2.0**9]
    assert run(q, values, ctx, device) == expected
    assert run(q, [0.0, -0.0], ctx, device) == [0.0, 0.0]
    reference_zero = qbench.create("quantizer", "exponential", zero="negative-min")
    assert run(reference_zero, [0.0, -0.0, 3.0, 3.5], ctx, device) == [-(2.0**-22), -(2.0**-22), 2.0, 4.0]


def test_exponential_narrow_window():
    q = qbench.create("quantizer", "exponential", e_min=-4, e_max=-1)
    values = [0.0, 0.001, 0.04, 0.1, 0.2, 0.4, 0.7, 0.8, 5.0, -0.3]
    assert run(q, values, make_context()) == [ref_exponential(v, -4, -1) for v in values]
    assert set(run(q, values, make_context())) <= set(q.value_set(make_context()))


# --------------------------------------------------------------------------- against the references


def scale(ctx, dtype) -> float:
    """W0 of ``ctx`` as the quantizer sees it in ``dtype``."""
    return f32(ctx.glorot_bound) if dtype == torch.float32 else ctx.glorot_bound


REFERENCES = {
    "binary": lambda ctx, dtype: lambda x: ref_binary(x, 1.0),
    "binary(glorot=true)": lambda ctx, dtype: lambda x: ref_binary(x, scale(ctx, dtype)),
    "ternary": lambda ctx, dtype: lambda x: ref_ternary(x, scale(ctx, dtype)),
    "pow2-ternary": lambda ctx, dtype: lambda x: ref_pow2_ternary(x, 0, 1),
    "pow2-ternary(frac_bits=3,int_bits=2)": lambda ctx, dtype: lambda x: ref_pow2_ternary(x, 2, 3),
    "fixed": lambda ctx, dtype: lambda x: ref_fixed(x, 8, 7),
    "fixed(bits=3,frac_bits=0)": lambda ctx, dtype: lambda x: ref_fixed(x, 3, 0),
    "fixed(bits=12,frac_bits=14)": lambda ctx, dtype: lambda x: ref_fixed(x, 12, 14),
    "exponential": lambda ctx, dtype: lambda x: ref_exponential(x, -22, 9),
    'exponential(e_max=0,e_min=-6,zero="negative-min")': lambda ctx, dtype: (
        lambda x: ref_exponential(x, -6, 0, "negative-min")
    ),
}


def _build(label: str):
    """Create a quantizer from a label such as ``fixed(bits=3,frac_bits=0)``."""
    name, _, inner = label.partition("(")
    params = {}
    for item in filter(None, inner.rstrip(")").split(",")):
        key, value = item.split("=")
        params[key] = {"true": True, "false": False}.get(value, value.strip('"'))
        if isinstance(params[key], str) and params[key].lstrip("-").isdigit():
            params[key] = int(params[key])
    quantizer = qbench.create("quantizer", name, **params)
    assert quantizer.label == label
    return quantizer


def magnitudes():
    """Floats across many binades, with the thresholds (halves, 1.5 2^k) and powers of two over-represented."""
    special = st.sampled_from([0.5, 0.25, 0.125, 1.5, 0.75, 0.375, 1.0, 2.0, 0.0625, 3.0, 2.5, 0.625])
    near = special.flatmap(lambda x: st.sampled_from([x, above(x), below(x)]))
    anywhere = st.floats(2.0**-30, 1024.0, allow_nan=False, allow_infinity=False, width=32)
    scaled = st.tuples(near, st.integers(-12, 4)).map(lambda t: t[0] * 2.0 ** t[1])
    signed = st.tuples(st.one_of(near, anywhere, scaled, st.just(0.0)), st.booleans())
    return signed.map(lambda t: -t[0] if t[1] else t[0])


@pytest.mark.parametrize("label", list(REFERENCES))
@settings(max_examples=40, deadline=None, database=None, derandomize=True)
@given(
    values=st.lists(magnitudes(), min_size=1, max_size=40),
    fan=st.integers(1, 2048),
    role=st.sampled_from(["input", "recurrent", "bias"]),
)
def test_deterministic_forms_equal_the_formula(label, values, fan, role):
    quantizer = _build(label)
    ctx = make_context(role, fan, 2 * fan, training=False)
    w = torch.tensor(values, dtype=torch.float32)
    for dtype in (torch.float32, torch.float64):
        reference = REFERENCES[label](ctx, dtype)
        # float32 inputs keep the float64 arithmetic of the reference exact
        expected = [reference(x) for x in w.tolist()]
        got = quantizer.quantize(w.to(dtype), ctx)
        assert got.tolist() == torch.tensor(expected, dtype=dtype).tolist(), dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_exponential_half_precision_matches_float32(dtype):
    q = qbench.create("quantizer", "exponential", e_min=-12, e_max=3)
    w = (torch.randn(1000, generator=torch.Generator().manual_seed(0)) * 0.3).to(dtype)
    got = q.quantize(w, make_context())
    assert got.dtype == dtype
    torch.testing.assert_close(got.float(), q.quantize(w.float(), make_context()), rtol=0, atol=0)


# --------------------------------------------------------------------------- stochastic forms

SAMPLES = 20_000


def two_point(label: str, x: float, ctx) -> tuple[float, float, float]:
    """(value if not up, value if up, P(up)) of the stochastic form at x, from the paper's formulas."""
    if label == "binary":
        return -1.0, 1.0, min(max((x + 1) / 2, 0.0), 1.0)
    if label == "ternary":
        w0 = f32(ctx.glorot_bound)
        return 0.0, sign(x) * w0, min(abs(x) / w0, 1.0)
    if label == "exponential":
        k = math.frexp(abs(x))[1] - 1
        return sign(x) * 2.0**k, sign(x) * 2.0 ** (k + 1), abs(x) / 2.0**k - 1
    if label == "fixed":
        y = x * 128
        return math.floor(y) / 128, (math.floor(y) + 1) / 128, y - math.floor(y)
    if label == "pow2-ternary":
        y = abs(x) * 2
        return sign(x) * math.floor(y) / 2, sign(x) * (math.floor(y) + 1) / 2, y - math.floor(y)
    raise AssertionError(label)


STOCHASTIC = {
    "binary": ({"stochastic": True}, [-1.0, -0.7, -0.2, 0.0, 0.05, 0.5, 0.9, 1.0]),
    "ternary": ({"stochastic": True}, [-0.1, -0.05, -0.01, 0.0, 0.02, 0.06, 0.09, 0.108]),
    "exponential": ({"stochastic": True}, [0.3, -0.3, 0.126, 0.7, -0.99, 1.0, 0.013, 3.3, 2.0**-5]),
    "fixed": ({"stochastic": True}, [0.3, -0.3, 0.0041, -0.0041, 0.5, 0.77, -0.9, 1 / 128]),
    "pow2-ternary": ({"stochastic_rounding": True}, [0.1, -0.1, 0.25, 0.4, -0.45, 0.5, 0.0]),
}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("label", list(STOCHASTIC))
def test_stochastic_forms_draw_the_two_neighbours_with_the_formula_probability(label, device):
    params, points = STOCHASTIC[label]
    quantizer = qbench.create("quantizer", label, **params)
    ctx = make_context("recurrent", 256, 256, training=True, seed=11, device=device)  # W0 = 0.108
    w = torch.tensor(points, dtype=torch.float32).unsqueeze(1).expand(-1, SAMPLES).contiguous().to(device)
    draws = quantizer.quantize(w, ctx).cpu().double()
    for row, x in zip(draws, w[:, 0].tolist(), strict=True):
        low, high, p = two_point(label, x, ctx)
        assert set(row.unique().tolist()) <= {f32(low), f32(high)}, x
        if p in (0.0, 1.0):
            assert row.eq(f32(high) if p == 1.0 else f32(low)).all(), x
            continue
        up = float(row.eq(f32(high)).double().mean())
        standard_error = math.sqrt(p * (1 - p) / SAMPLES)
        assert abs(up - p) < 5 * standard_error, (x, up, p)
        # unbiased (the paper's claim inside each range): E = clip(x, -H, H) for binary, x otherwise
        target = min(max(x, -1.0), 1.0) if label == "binary" else x
        assert abs(low + p * (high - low) - target) < 1e-6
        assert abs(float(row.mean()) - target) < 5 * standard_error * abs(high - low), (x, float(row.mean()))


@pytest.mark.parametrize("label", list(STOCHASTIC))
def test_stochastic_forms_are_deterministic_at_evaluation(label):
    params, points = STOCHASTIC[label]
    stochastic = qbench.create("quantizer", label, **params)
    deterministic = qbench.create("quantizer", label)
    ctx = make_context("recurrent", 256, 256, training=False, seed=3)
    w = torch.randn(64, 64, generator=torch.Generator().manual_seed(1)) * 0.2
    torch.testing.assert_close(stochastic.quantize(w, ctx), deterministic.quantize(w, ctx), rtol=0, atol=0)
    assert stochastic.stochastic and not deterministic.stochastic


def test_without_a_generator_the_global_rng_is_used():
    q = qbench.create("quantizer", "ternary", stochastic=True)
    ctx = make_context("recurrent", 64, 64, training=True, seed=None)
    w = torch.full((4096,), 0.1)
    torch.manual_seed(5)
    first = q.quantize(w, ctx)
    torch.manual_seed(5)
    torch.testing.assert_close(q.quantize(w, ctx), first, rtol=0, atol=0)


# --------------------------------------------------------------------------- declarations


@pytest.mark.parametrize(
    "name, params, bits",
    [
        ("float", {}, 32),
        ("binary", {}, 1),
        ("ternary", {}, 2),
        ("pow2-ternary", {}, 2),
        ("pow2-ternary", {"int_bits": 2, "frac_bits": 3}, 6),
        ("exponential", {}, 7),  # 32 exponents + zero = 33 codes: 6 bits, + sign
        ("exponential", {"zero": "negative-min"}, 6),  # 32 exponents: 5 bits, + sign
        ("exponential", {"e_min": -7, "e_max": 0}, 5),  # 8 + zero = 9 codes: 4 bits
        ("exponential", {"e_min": -7, "e_max": 0, "zero": "negative-min"}, 4),
        ("exponential", {"e_min": 3, "e_max": 3, "zero": "negative-min"}, 1),
        ("fixed", {}, 8),
        ("fixed", {"bits": 3}, 3),
    ],
)
def test_bits_per_weight(name, params, bits):
    assert qbench.create("quantizer", name, **params).bits_per_weight() == bits


def test_value_sets_and_encodings():
    ctx = make_context("input", 300, 100)
    w0 = ctx.glorot_bound
    binary = qbench.create("quantizer", "binary", scale=0.5)
    assert binary.value_set(ctx) == (-0.5, 0.5) and binary.encoding(ctx) == {"scale": 0.5}
    glorot = qbench.create("quantizer", "binary", glorot=True, scale=2.0)
    assert glorot.value_set(ctx) == (-2 * w0, 2 * w0) and glorot.shadow_bound(ctx) == 2 * w0
    ternary = qbench.create("quantizer", "ternary")
    assert ternary.value_set(ctx) == (-w0, 0.0, w0) and ternary.encoding(ctx) == {"scale": w0}
    assert ternary.shadow_bound(ctx) == w0
    pow2 = qbench.create("quantizer", "pow2-ternary")
    assert pow2.value_set(ctx) == (-0.5, 0.0, 0.5) and pow2.shadow_bound(ctx) == 0.5
    assert pow2.encoding(ctx)["int_bits"] == 0 and pow2.encoding(ctx)["frac_bits"] == 1
    exponential = qbench.create("quantizer", "exponential", e_min=-2, e_max=1)
    assert exponential.value_set(ctx) == (-2.0, -1.0, -0.5, -0.25, 0.0, 0.25, 0.5, 1.0, 2.0)
    assert exponential.encoding(ctx) == {"e_min": -2, "e_max": 1, "zero": "exact", "exponent_bits": 3, "bits": 4}
    assert exponential.shadow_bound(ctx) == 2.0
    assert qbench.create("quantizer", "fixed", bits=24).value_set(ctx) is None  # 2^24 values: not listed
    assert len(qbench.create("quantizer", "fixed", bits=4).value_set(ctx)) == 16
    assert qbench.create("quantizer", "float").value_set(ctx) is None
    assert qbench.create("quantizer", "float").shadow_bound(ctx) is None


def test_schemes():
    for name in ("float", "binary", "ternary", "pow2-ternary", "exponential", "fixed"):
        assert qbench.create("quantizer", name).scheme == name


def test_labels_name_the_extension():
    assert qbench.create("quantizer", "pow2-ternary", stochastic_rounding=True).label == (
        "pow2-ternary(stochastic_rounding=true)"
    )
    assert qbench.create("quantizer", "ternary", stochastic=True).label == "ternary(stochastic=true)"


@pytest.mark.parametrize(
    "name, params, words",
    [
        ("fixed", {"bits": 0}, ["'bits'", ">= 1"]),
        ("fixed", {"bits": 4, "frac_bits": 99}, ["frac_bits"]),
        ("fixed", {"bits": 2.5}, ["'bits'", "int"]),
        ("exponential", {"e_min": 3, "e_max": 2}, ["empty", "e_min"]),
        ("exponential", {"zero": "positive"}, ["'zero'", "exact"]),
        ("float", {"stochastic": True}, ["no stochastic form"]),
        ("pow2-ternary", {"stochastic": True}, ["deterministic only", "stochastic_rounding"]),
        ("pow2-ternary", {"int_bits": 0, "frac_bits": 0}, ["int_bits + frac_bits"]),
        ("binary", {"scale": 0.0}, ["scale", "> 0"]),
        ("ternary", {"stochastc": True}, ["did you mean 'stochastic'"]),
    ],
)
def test_invalid_parameters_are_rejected_at_construction(name, params, words):
    with pytest.raises(qbench.ParamError) as caught:
        qbench.create("quantizer", name, **params)
    message = str(caught.value)
    assert f"'{name}'" in message
    for word in words:
        assert word in message


def test_quantizer_modules_do_not_import_torch():
    code = (
        "import sys, qbench_builtins.quantizers as q\n"
        "assert q.BUILTIN_QUANTIZERS\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_docstrings_state_the_true_storage_cost_and_cite_real_identifiers():
    """The docstring is the quantizer's documentation (``qbench list``): it must not drift from the code.

    Where it states the default storage cost ("N bits per weight", or "(N by default)" after a
    formula), that is what ``bits_per_weight()`` returns; every reference is a well-formed arXiv
    id or DOI, and the quantizers of the paper cite it (arXiv 1608.06902).
    """
    import re

    from qbench_builtins.quantizers import BUILTIN_QUANTIZERS

    stated = 0
    for cls in BUILTIN_QUANTIZERS:
        doc = " ".join((cls.__doc__ or "").split())
        cost = re.search(r"bits per weight \((\d+) by default\)|(?<!\+ )\b(\d+) bits? per weight", doc)
        if cost is not None:
            stated += 1
            bits = float(cost.group(1) or cost.group(2))
            assert qbench.create("quantizer", cls.name).bits_per_weight() == bits, cls.name
        cited = re.findall(r"arXiv (\S+?)[);,]|doi:(\S+?)[);,]", doc)
        assert cited, f"{cls.name}: no arXiv id or DOI"
        for arxiv, doi in cited:
            assert re.fullmatch(r"\d{4}\.\d{4,5}", arxiv) if arxiv else re.fullmatch(r"10\.\d{4,}/\S+", doi), (
                f"{cls.name}: malformed reference {arxiv or doi!r}"
            )
        if cls.name not in ("fixed", "lsq", "ttq"):  # fixed point and the learned ones are not the paper's
            assert "arXiv 1608.06902" in doc, f"{cls.name}: does not cite the paper"
    assert stated >= 4, "most built-in docstrings state their storage cost"


@pytest.mark.cuda
def test_cuda_gives_the_cpu_values_at_evaluation():
    from qbench.testing.quantizers import variants

    registry = qbench.get_host().registry("quantizer")
    w = torch.randn(256, 512, generator=torch.Generator().manual_seed(0)) * 0.2
    for name in registry:
        for params in variants(registry.get(name).cls):
            q = qbench.create("quantizer", name, **params)
            ctx_cpu = make_context("input", 512, 256)
            ctx_cuda = make_context("input", 512, 256, device="cuda")
            torch.testing.assert_close(q.quantize(w.cuda(), ctx_cuda).cpu(), q.quantize(w, ctx_cpu), rtol=0, atol=0)
