"""Conformance suite for quantizer plugins (contract: the class, fixture and test names are public).

A plugin author subclasses :class:`QuantizerContract` in their own tests and provides a
``quantizer`` fixture returning a configured instance::

    from qbench.testing.quantizers import QuantizerContract

    class TestMyQuantizer(QuantizerContract):
        @pytest.fixture
        def quantizer(self):
            return qbench.create("quantizer", "my-quantizer", stochastic=True)

Every ``test_*`` method then runs against it, once per role it declares (``applies_to``): input
matrix, recurrent matrix, bias, hidden state, and the output layer's ``[C, h]`` matrix (a matrix
may assign any weight quantizer to ``roles.output``). What the suite checks is the quantizer
contract of ``qbench.Quantizer``:

* ``quantize`` returns a tensor of the same shape, dtype and device and leaves the shadow
  weights alone (it may return them unchanged, as the identity does);
* finite inputs give finite outputs, inside ``value_set(ctx)`` when that set is given (compared
  after casting the set to the tensor's dtype);
* evaluation (``ctx.training`` False) is deterministic and ignores the generator; a
  deterministic quantizer gives the same values while training; a stochastic one draws only
  from ``ctx.generator``: the same seed gives the same values, another seed different ones,
  and the global RNG is left untouched;
* ``bits_per_weight() > 0``; ``shadow_bound(ctx)`` is None or positive and finite, clipping to
  it (``qbench.ste.clip_shadow_``) bounds the weights, and it is where the deterministic form
  saturates: clipping changes no evaluation value;
* through ``qbench.ste.quantize_ste`` the forward pass gives the quantized values and the
  gradient reaches the shadow weights unchanged;
* ``encoding(ctx)`` is a JSON-able dict; the instance rebuilds from its ``config``;
* learned quantizers: a quantizer that owns its gradient returns a differentiable
  tensor whose gradients reach the weights and the state; ``init_state`` is a deterministic
  function of the tensor (no random draws); in a real stack the state's gradients are
  non-zero, its values change under the optimizer, a pickled copy (what a worker gets)
  evaluates identically and the export carries the trained state;
* a hypothesis property test over random shapes, scales, fans and roles.

Checks that cannot apply to your quantizer (the straight-through check for one that owns its
gradient, the owned-gradient check for one that does not, the clipping check without a shadow
bound, the training check without learned state) are not run: each ends as it starts with the
outcome "not applicable" (not a skip) and pytest's terminal summary lists them with the reason
(``not_applicable``; :mod:`qbench.testing.applicability`). Override a test (for example with
``pytest.skip``) when your method deliberately departs from a check, and say why. Set the
class attribute ``device = "cuda"`` to run the suite on a GPU.

Helpers for your own tests: :func:`make_context`, :func:`shadow_weights`,
:func:`assert_values_in_set`, and :func:`variants` (the parameter sets worth checking for a
class: qbench runs the suite over every registered quantizer and each of its variants).
"""

from __future__ import annotations

import dataclasses
import json
import math
from typing import Any

import pytest
import torch

import qbench
from qbench.components import OUTPUT_ROLE, ROLES, SCHEMES
from qbench.ste import clip_shadow_, quantize_ste
from qbench.testing.applicability import JudgedKit
from qbench.testing.checks import (
    check_learned_state_round_trip,
    check_owned_gradient,
    check_sequence_backward,
    check_state_is_a_function_of_the_tensor,
)
from qbench.training.stack import build_stack

#: (role, fan_in, fan_out, shape of the tensor): a bias takes the fans of its input matrix; the
#: hidden state of one time step is [batch, hidden] (checked for quantizers whose applies_to takes it);
#: the output layer's weight is [C, hidden], fans (hidden, C)
ROLE_CASES = (
    ("input", 24, 48, (48, 24)),
    ("recurrent", 48, 48, (48, 48)),
    ("bias", 24, 48, (48,)),
    ("hidden", 48, 48, (3, 48)),
    ("output", 48, 10, (10, 48)),
)
#: the weight roles the property test draws from (those the quantizer declares)
WEIGHT_ROLES = (*ROLES, OUTPUT_ROLE)


def make_context(
    role: str = "recurrent",
    fan_in: int = 64,
    fan_out: int = 64,
    training: bool = False,
    seed: int | None = None,
    device: str | torch.device = "cpu",
    layer: int = 0,
) -> qbench.QuantContext:
    """A :class:`qbench.QuantContext`, with a generator on ``device`` seeded with ``seed`` (None: no generator)."""
    generator = None if seed is None else torch.Generator(device=device).manual_seed(seed)
    return qbench.QuantContext(role, fan_in, fan_out, training, generator, layer)


def shadow_weights(
    shape: tuple[int, ...],
    ctx: qbench.QuantContext,
    spread: float = 2.0,
    seed: int = 0,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
) -> torch.Tensor:
    """Weights uniform on (-spread W0, spread W0), W0 the Glorot bound of ``ctx``; spread > 1 reaches past the bound."""
    generator = torch.Generator().manual_seed(seed)
    unit = torch.rand(shape, generator=generator, dtype=torch.float64) * 2.0 - 1.0
    return (unit * spread * ctx.glorot_bound).to(dtype=dtype, device=device)


def assert_values_in_set(values: torch.Tensor, value_set: tuple[float, ...] | None) -> None:
    """Every element of ``values`` is one of ``value_set`` (cast to the tensor's dtype); None checks nothing."""
    if value_set is None:
        return
    allowed = torch.tensor(value_set, dtype=values.dtype, device=values.device)
    inside = torch.isin(values, allowed)
    if not bool(inside.all()):
        strays = values[~inside].unique()[:8].tolist()
        raise AssertionError(f"values outside value_set: {strays} (value_set has {len(value_set)} values)")


class _Stated:
    """The quantizer as the host calls it: a context without state gets the tensor's learned state
    (:meth:`qbench.Quantizer.init_state`), as every tensor of a built model has it."""

    def __init__(self, quantizer: qbench.Quantizer) -> None:
        self._quantizer = quantizer

    def __getattr__(self, name: str) -> Any:
        return getattr(self._quantizer, name)

    def quantize(self, w: torch.Tensor, ctx: qbench.QuantContext) -> torch.Tensor:
        if ctx.state is None:
            state = self._quantizer.init_state(w.detach(), ctx)
            if state:
                ctx = dataclasses.replace(ctx, state=state)
        return self._quantizer.quantize(w, ctx)


def _stated(quantizer: qbench.Quantizer) -> Any:
    return _Stated(quantizer)


class QuantizerContract(JudgedKit):
    """Subclass and provide the ``quantizer`` fixture (a configured :class:`qbench.Quantizer`)."""

    #: device the tensors live on; "cuda" runs the suite on the GPU (skipped when there is none)
    device: str = "cpu"
    #: dtypes checked for shape/dtype preservation and membership of the value set
    dtypes: tuple[torch.dtype, ...] = (torch.float32, torch.float64)

    #: the fixtures that make the component, built first in each test and judged (see not_applicable)
    component_fixtures: tuple[str, ...] = ("quantizer", "role_case")

    @pytest.fixture
    def quantizer(self) -> qbench.Quantizer:
        raise NotImplementedError("provide a `quantizer` fixture returning your configured quantizer")

    def not_applicable(self, test: str, fixtures: dict[str, Any]) -> str | None:
        """See :meth:`qbench.testing.applicability.JudgedKit.not_applicable`."""
        quantizer = fixtures.get("quantizer")
        if quantizer is None:
            return None
        role = fixtures["role_case"][0] if "role_case" in fixtures else None
        if role is not None and not quantizer.applies_to(role):
            return f"the quantizer does not quantize the {role!r} role (its applies_to says so)"
        if test == "test_straight_through_gradient_reaches_shadow_weights" and quantizer.owns_gradient:
            return "the quantizer owns its gradient (test_owned_gradient_is_finite_and_reaches_the_weights instead)"
        if test == "test_owned_gradient_is_finite_and_reaches_the_weights" and not quantizer.owns_gradient:
            return ("the host's straight-through estimator carries the gradient "
                    "(test_straight_through_gradient_reaches_shadow_weights instead)")
        if test == "test_clipping_keeps_the_evaluation_values" and "role_case" in fixtures:
            if quantizer.shadow_bound(self._context(fixtures["role_case"], False)) is None:
                return "no shadow bound for this role: clipping leaves the weights alone"
        if test == "test_sequence_backward_matches_the_per_step_loop":
            if not quantizer.applies_to("hidden"):
                return "the quantizer does not quantize the hidden state"
            if quantizer.for_role("hidden").owns_gradient and not _declares_hidden_estimator(quantizer):
                return "it owns its gradient and declares no hidden_estimator: the host keeps the per-step loop"
        if test == "test_learned_state_trains_and_survives_pickling":
            if not quantizer.init_state(torch.ones(4, 4), make_context()):
                return "no learned state (init_state returns {})"
        return None

    @pytest.fixture(params=ROLE_CASES, ids=[case[0] for case in ROLE_CASES])
    def role_case(self, request) -> tuple[str, int, int, tuple[int, ...]]:
        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available")
        return request.param

    def _context(self, role_case, training: bool, seed: int | None = None) -> qbench.QuantContext:
        role, fan_in, fan_out, _ = role_case
        return make_context(role, fan_in, fan_out, training, seed, self.device)

    def _weights(self, role_case, ctx, dtype=torch.float32, seed: int = 0, spread: float = 2.0) -> torch.Tensor:
        return shadow_weights(role_case[3], ctx, spread, seed, dtype, self.device)

    # ------------------------------------------------------------------ declarations

    def test_declares_name_scheme_and_description(self, quantizer):
        assert quantizer.name and quantizer.description, (
            f"expected a name and a description, got name {quantizer.name!r}, description "
            f"{quantizer.description!r}")  # fmt: skip
        assert quantizer.scheme in SCHEMES, (
            f"expected scheme in {SCHEMES}, got {quantizer.scheme!r}")  # fmt: skip
        assert isinstance(quantizer.stochastic, bool), (
            f"expected stochastic True or False, got {quantizer.stochastic!r}")  # fmt: skip

    def test_bits_per_weight_is_positive(self, quantizer):
        bits = quantizer.bits_per_weight()
        assert isinstance(bits, (int, float)) and not isinstance(bits, bool), (
            f"bits_per_weight: expected a number, got {bits!r}")  # fmt: skip
        assert math.isfinite(bits) and bits > 0, (
            f"bits_per_weight: expected a finite positive number, got {bits!r}")  # fmt: skip

    def test_encoding_is_a_json_dict(self, quantizer, role_case):
        encoding = quantizer.encoding(self._context(role_case, False))
        assert isinstance(encoding, dict), (
            f"encoding: expected a dict, got {type(encoding).__name__}")  # fmt: skip
        json.dumps(encoding)

    def test_value_set_is_finite_floats_or_none(self, quantizer, role_case):
        values = quantizer.value_set(self._context(role_case, False))
        if values is not None:
            assert len(values) > 0, (
                "value_set: expected at least one value or None, got an empty set")  # fmt: skip
            assert all(isinstance(v, float) and math.isfinite(v) for v in values), (
                f"value_set: expected finite Python floats, got {values!r}")  # fmt: skip

    def test_rebuilds_from_its_config(self, quantizer, role_case):
        copy = type(quantizer)(**quantizer.config)
        assert copy.label == quantizer.label, (
            f"a quantizer rebuilt from its config: expected label {quantizer.label!r}, got {copy.label!r}")  # fmt: skip
        ctx = self._context(role_case, False)
        w = self._weights(role_case, ctx)
        torch.testing.assert_close(_stated(copy).quantize(w, ctx), _stated(quantizer).quantize(w, ctx), rtol=0, atol=0)

    # ------------------------------------------------------------------ forward values

    @pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
    def test_preserves_shape_dtype_and_device(self, quantizer, role_case, training):
        for dtype in self.dtypes:
            ctx = self._context(role_case, training, seed=1)
            w = self._weights(role_case, ctx, dtype)
            q = _stated(quantizer).quantize(w, ctx)
            assert q.shape == w.shape and q.dtype == w.dtype and q.device == w.device, (
                f"expected shape {tuple(w.shape)} {w.dtype} on {w.device}, got {tuple(q.shape)} {q.dtype} on "
                f"{q.device}")  # fmt: skip

    def test_does_not_modify_the_shadow_weights(self, quantizer, role_case):
        for training in (False, True):
            ctx = self._context(role_case, training, seed=1)
            w = self._weights(role_case, ctx)
            before = w.clone()
            _stated(quantizer).quantize(w, ctx)
            torch.testing.assert_close(w, before, rtol=0, atol=0)

    def test_handles_non_contiguous_and_grad_requiring_weights(self, quantizer, role_case):
        ctx = self._context(role_case, False)
        w = self._weights(role_case, ctx)
        state = quantizer.init_state(w, ctx)  # one state for every layout, as the host builds it once
        ctx = dataclasses.replace(ctx, state=state) if state else ctx
        expected = _stated(quantizer).quantize(w, ctx)
        others = [
            _stated(quantizer).quantize(torch.stack([w, -w], dim=-1)[..., 0], ctx),  # strided view
            _stated(quantizer).quantize(torch.nn.Parameter(w.clone()), ctx),
        ]
        if w.dim() == 2:  # a transposed layout exists only for a matrix
            others.append(_stated(quantizer).quantize(w.t().contiguous().t(), ctx))
        for other in others:
            torch.testing.assert_close(other.detach(), expected.detach(), rtol=0, atol=0)

    @pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
    def test_values_belong_to_the_value_set(self, quantizer, role_case, training):
        for dtype in self.dtypes:
            ctx = self._context(role_case, training, seed=2)
            w = self._weights(role_case, ctx, dtype, spread=3.0)
            q = _stated(quantizer).quantize(w, ctx)
            assert bool(torch.isfinite(q).all()), "finite shadow weights gave non-finite values"
            assert_values_in_set(q, quantizer.value_set(ctx))

    def test_evaluation_is_deterministic(self, quantizer, role_case):
        w = self._weights(role_case, self._context(role_case, False))
        first = _stated(quantizer).quantize(w, self._context(role_case, False, seed=3))
        second = _stated(quantizer).quantize(w, self._context(role_case, False, seed=4))
        third = _stated(quantizer).quantize(w, self._context(role_case, False, seed=None))
        torch.testing.assert_close(first, second, rtol=0, atol=0)
        torch.testing.assert_close(first, third, rtol=0, atol=0)

    def test_training_is_seeded(self, quantizer, role_case):
        """Stochastic: same seed, same values; other seed, other values. Deterministic: as in evaluation."""
        ctx = self._context(role_case, True, seed=5)
        w = self._weights(role_case, ctx, spread=1.0)
        first = _stated(quantizer).quantize(w, ctx)
        again = _stated(quantizer).quantize(w, self._context(role_case, True, seed=5))
        torch.testing.assert_close(first, again, rtol=0, atol=0)
        other = _stated(quantizer).quantize(w, self._context(role_case, True, seed=6))
        if quantizer.stochastic:
            assert not torch.equal(first, other), "another seed gave the same draw"
        else:
            torch.testing.assert_close(first, other, rtol=0, atol=0)
            evaluation = _stated(quantizer).quantize(w, self._context(role_case, False))
            torch.testing.assert_close(first, evaluation, rtol=0, atol=0)

    def test_draws_only_from_the_context_generator(self, quantizer, role_case):
        ctx = self._context(role_case, True, seed=7)
        w = self._weights(role_case, ctx)
        before = torch.get_rng_state()
        cuda_before = torch.cuda.get_rng_state() if self.device == "cuda" else None
        _stated(quantizer).quantize(w, ctx)
        assert torch.equal(torch.get_rng_state(), before), "the global CPU RNG was used"
        if cuda_before is not None:
            assert torch.equal(torch.cuda.get_rng_state(), cuda_before), "the global CUDA RNG was used"

    # ------------------------------------------------------------------ shadow weights

    def test_shadow_bound_is_positive_or_none(self, quantizer, role_case):
        bound = quantizer.shadow_bound(self._context(role_case, False))
        if bound is not None:
            assert isinstance(bound, (int, float)) and math.isfinite(bound) and bound > 0, (
                f"shadow_bound: expected None or a finite positive number, got {bound!r}")  # fmt: skip

    def test_clipping_bounds_the_shadow_weights(self, quantizer, role_case):
        ctx = self._context(role_case, False)
        w = self._weights(role_case, ctx, spread=3.0)
        before = w.clone()
        clip_shadow_(w, quantizer, ctx)
        bound = quantizer.shadow_bound(ctx)
        if bound is None:
            torch.testing.assert_close(w, before, rtol=0, atol=0)
        else:
            assert float(w.abs().max()) <= bound, (
                f"expected shadow weights within [-{bound}, {bound}] after clipping, got max |w| = "
                f"{float(w.abs().max())}")  # fmt: skip
            inside = before.abs() <= bound
            torch.testing.assert_close(w[inside], before[inside], rtol=0, atol=0)

    def test_clipping_keeps_the_evaluation_values(self, quantizer, role_case):
        """The bound is where the deterministic form saturates: clipping loses no forward value."""
        ctx = self._context(role_case, False)
        bound = quantizer.shadow_bound(ctx)
        if bound is None:
            pytest.skip("no shadow bound")
        w = self._weights(role_case, ctx, spread=3.0)
        edges = torch.tensor([bound, -bound, 4 * bound, -4 * bound], dtype=w.dtype, device=w.device)
        w = torch.cat([w.flatten(), edges])
        clipped = w.clone()
        clip_shadow_(clipped, quantizer, ctx)
        stated = _stated(quantizer)
        torch.testing.assert_close(stated.quantize(clipped, ctx), stated.quantize(w, ctx), rtol=0, atol=0)

    @pytest.mark.parametrize("training", [False, True], ids=["eval", "train"])
    def test_straight_through_gradient_reaches_shadow_weights(self, quantizer, role_case, training):
        if quantizer.owns_gradient:
            pytest.skip("the quantizer owns its gradient: test_owned_gradient_is_finite_and_reaches_the_weights")
        ctx = self._context(role_case, training, seed=8)
        w = self._weights(role_case, ctx).requires_grad_(True)
        forward = quantize_ste(w, _stated(quantizer), ctx)
        expected = _stated(quantizer).quantize(w.detach(), self._context(role_case, training, seed=8))
        torch.testing.assert_close(forward.detach(), expected, rtol=0, atol=0)
        upstream = torch.randn(w.shape, generator=torch.Generator().manual_seed(9)).to(self.device)
        (forward * upstream).sum().backward()
        torch.testing.assert_close(w.grad, upstream, rtol=0, atol=0)

    # ------------------------------------------------------------------ learned quantizers

    def test_owned_gradient_is_finite_and_reaches_the_weights(self, quantizer, role_case):
        """A quantizer that owns its gradient: differentiable forward, finite non-zero gradients."""
        if not quantizer.owns_gradient:
            pytest.skip("the host's straight-through estimator carries the gradient (tested above)")
        ctx = self._context(role_case, True, seed=8)
        check_owned_gradient(quantizer, self._weights(role_case, ctx, spread=1.0), ctx)

    def test_learned_state_is_a_function_of_the_tensor(self, quantizer, role_case):
        """Every worker rebuilds the state: same tensor and context, same state; no random draws."""
        ctx = self._context(role_case, False)
        check_state_is_a_function_of_the_tensor(quantizer, self._weights(role_case, ctx), ctx)

    def test_learned_state_trains_and_survives_pickling(self, quantizer):
        """In a real stack: the state gets non-zero gradients, changes under Adam, and pickles to a worker."""
        if not quantizer.init_state(torch.ones(4, 4), make_context()):
            pytest.skip("no learned state")
        check_learned_state_trains(quantizer)

    def test_sequence_backward_matches_the_per_step_loop(self, quantizer):
        """A hidden-state quantizer through the host's sequence-level backward (its hidden_estimator,
        or the straight-through identity) gives the per-step autograd loop's values and gradients."""
        if not quantizer.applies_to("hidden"):
            pytest.skip("the quantizer does not quantize the hidden state")
        check_sequence_backward(quantizer)

    # ------------------------------------------------------------------ property test

    def test_property_random_shapes_scales_and_roles(self, quantizer):
        hypothesis = pytest.importorskip("hypothesis")
        st = pytest.importorskip("hypothesis.strategies")
        if self.device == "cuda" and not torch.cuda.is_available():
            pytest.skip("CUDA is not available")

        # no shrinking: the first failing example is reported at once (shrinking a torch check is slow)
        phases = (hypothesis.Phase.explicit, hypothesis.Phase.generate)

        @hypothesis.settings(max_examples=15, deadline=None, database=None, derandomize=True, phases=phases)
        @hypothesis.given(
            shape=st.lists(st.integers(1, 9), min_size=1, max_size=3).map(tuple),
            role=st.sampled_from([role for role in WEIGHT_ROLES if quantizer.applies_to(role)] or list(ROLES)),
            fan_in=st.integers(1, 4096),
            fan_out=st.integers(1, 4096),
            spread=st.floats(1e-3, 1e3),
            seed=st.integers(0, 2**31 - 1),
            training=st.booleans(),
        )
        def check(shape, role, fan_in, fan_out, spread, seed, training):
            ctx = make_context(role, fan_in, fan_out, training, seed, self.device)
            w = shadow_weights(shape, ctx, spread, seed, device=self.device)
            q = _stated(quantizer).quantize(w, ctx)
            assert q.shape == w.shape and q.dtype == w.dtype, (
                f"expected shape {tuple(w.shape)} {w.dtype}, got {tuple(q.shape)} {q.dtype}")  # fmt: skip
            assert bool(torch.isfinite(q).all()), (
                "expected finite values, got NaN or inf")  # fmt: skip
            assert_values_in_set(q, quantizer.value_set(ctx))
            # evaluation ignores the generator: no generator and another seed give the same values
            evaluation = make_context(role, fan_in, fan_out, False, None, self.device)
            seeded = make_context(role, fan_in, fan_out, False, seed + 1, self.device)
            torch.testing.assert_close(
                _stated(quantizer).quantize(w, evaluation), _stated(quantizer).quantize(w, seeded), rtol=0, atol=0
            )

        check()


def variants(cls: type[qbench.Quantizer]) -> list[dict[str, Any]]:
    """Parameter sets worth checking for a quantizer class: the defaults, then each switch flipped.

    A boolean parameter that defaults to False is set True alone; an enumerated parameter takes
    each other choice alone. Sets that the class rejects (``qbench.ParamError``) are left out,
    so a ``stochastic`` parameter that exists only to be refused adds nothing.
    """
    found: list[dict[str, Any]] = [{}]
    for key, spec in cls.params.items():
        options: list[Any] = []
        if spec.type is bool and spec.default is False:
            options = [True]
        elif spec.choices is not None:
            options = [c for c in spec.choices if c != spec.default]
        for option in options:
            try:
                cls(**{key: option})
            except qbench.ParamError:
                continue
            found.append({key: option})
    return found


def _declares_hidden_estimator(quantizer: qbench.Quantizer) -> bool:
    owner = quantizer.for_role("hidden")
    return type(owner).hidden_estimator is not qbench.Quantizer.hidden_estimator


def check_learned_state_trains(quantizer: qbench.Quantizer, cell: str = "gru", steps: int = 3) -> None:
    """Train a small stack of ``cell`` with ``quantizer`` a few Adam steps and check its learned state.

    The state's gradients are non-zero, its values change, a pickled copy (what a worker
    receives) gives the same evaluation forward and state, and the export carries the state.
    """
    stack = build_stack(qbench.create("cell", cell, hidden=6), 4, quantizer, 0)
    learned = stack.learned_state()
    assert learned, "init_state returned state, but the stack holds no learned parameters"
    before = {name: p.detach().clone() for name, p in learned.items()}
    optimizer = torch.optim.Adam(stack.parameters(), lr=0.05)
    x = torch.randn(5, 3, 4, generator=torch.Generator().manual_seed(0))
    target = torch.randn(5, 3, 6, generator=torch.Generator().manual_seed(1))
    stack.train()
    # a tensor that starts at zero (a bias) may give its state a zero gradient at the first step
    reached: set[str] = set()
    for _ in range(steps):
        optimizer.zero_grad()
        y, _ = stack(x)
        ((y - target) ** 2).mean().backward()
        for name, p in learned.items():
            assert p.grad is not None, f"learned state {name}: no gradient (is quantize differentiable?)"
            assert bool(torch.isfinite(p.grad).all()), f"learned state {name}: non-finite gradient"
            if bool((p.grad != 0).any()):
                reached.add(name)
        optimizer.step()
        stack.clip_shadow_weights_()
    assert reached == set(learned), f"learned state with only zero gradients: {sorted(set(learned) - reached)}"
    changed = [name for name, p in learned.items() if not torch.equal(p.detach(), before[name])]
    assert changed == list(learned), f"learned state that did not change: {sorted(set(learned) - set(changed))}"
    check_learned_state_round_trip(stack, x)
