"""Each conformance check FAILS on a deliberately broken component (a check that cannot fail tests nothing).

Every test below builds one realistic mistake and runs the kit check that must catch it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

import pytest

import qbench
from qbench.testing.cells import CellContract
from qbench.testing.quantizers import ROLE_CASES, QuantizerContract
from qbench.training import build_stack

torch = pytest.importorskip("torch")

from qbench_builtins.cells.recurrent import GRUCell, IndRNNCell, MinGRUCell  # noqa: E402
from qbench_builtins.quantizers.learned import LSQQuantizer  # noqa: E402

State = tuple[Any, ...]


def cells() -> CellContract:
    return CellContract()


def quantizers() -> QuantizerContract:
    return QuantizerContract()


# -- cells ----------------------------------------------------------------------------------------


class ResetBeforeProduct(GRUCell):
    """Claims torch's fused GRU but computes the other convention: r * h before the product."""

    name = "gru-reset-before"

    def step(self, x: Any, state: State, w: Mapping[str, Any]) -> State:
        (h,) = state
        xr, xz, xn = (x @ w["w_input"].t() + w["b_input"]).chunk(3, dim=-1)
        w_r, w_z, w_n = w["w_recurrent"].chunk(3, dim=0)
        b_r, b_z, b_n = w["b_recurrent"].chunk(3, dim=0)
        reset = torch.sigmoid(xr + h @ w_r.t() + b_r)
        update = torch.sigmoid(xz + h @ w_z.t() + b_z)
        candidate = torch.tanh(xn + (reset * h) @ w_n.t() + b_n)
        return ((1.0 - update) * candidate + update * h,)


def test_fused_vs_reference_fails_on_a_cell_whose_step_is_not_its_kernel():
    cell = ResetBeforeProduct(hidden=6)
    with pytest.raises(AssertionError):
        cells().test_fused_matches_reference(cell, qbench.create("quantizer", "float"))
    # the honest cell passes the same check
    cells().test_fused_matches_reference(GRUCell(hidden=6), qbench.create("quantizer", "float"))


class ScanWithoutTheInitialState(MinGRUCell):
    """A scan that forgets h_0 (starts every sequence from zero): the loop carries it."""

    name = "mingru-scan-from-zero"

    def scan(self, x: Any, state: State, w: Mapping[str, Any]) -> tuple[Any, State]:
        return super().scan(x, (torch.zeros_like(state[0]),), w)


def test_scan_vs_reference_fails_on_a_scan_that_is_not_its_step():
    with pytest.raises(AssertionError, match="the cell's scan and the per-step reference differ"):
        cells().test_scan_matches_reference(ScanWithoutTheInitialState(hidden=6), qbench.create("quantizer", "float"))
    # the honest cell passes the same check
    cells().test_scan_matches_reference(MinGRUCell(hidden=6), qbench.create("quantizer", "float"))


class TanhDeclaredReluComputed(IndRNNCell):
    """Declares a tanh per unit but its step applies a relu and a tanh."""

    name = "indrnn-miscounted"
    elementwise = {"tanhs": 1}  # noqa: RUF012 - a declaration, as in the built-ins

    def step(self, x: Any, state: State, w: Mapping[str, Any]) -> State:
        (h,) = state
        return (torch.tanh(torch.relu(x @ w["w_input"].t() + w["b_input"] + w["w_recurrent"] * h)),)


def test_counts_check_fails_when_step_does_other_work_than_declared():
    with pytest.raises(AssertionError, match="non-linearities"):
        cells().test_counts_equal_the_declaration(
            TanhDeclaredReluComputed(hidden=6), qbench.create("quantizer", "ternary")
        )
    cells().test_counts_equal_the_declaration(IndRNNCell(hidden=6), qbench.create("quantizer", "ternary"))


class ThreeMultiplyGRU(GRUCell):
    """Declares torch's 2 multiplies per unit (h' = n + z (h - n)) but computes (1 - z) n + z h: 3."""

    name = "gru-three-multiplies"

    def step(self, x: Any, state: State, w: Mapping[str, Any]) -> State:
        (h,) = state
        xr, xz, xn = (x @ w["w_input"].t() + w["b_input"]).chunk(3, dim=-1)
        hr, hz, hn = (h @ w["w_recurrent"].t() + w["b_recurrent"]).chunk(3, dim=-1)
        reset, update = torch.sigmoid(xr + hr), torch.sigmoid(xz + hz)
        candidate = torch.tanh(xn + reset * hn)
        return ((1.0 - update) * candidate + update * h,)


class DenseDiagonal(IndRNNCell):
    """Declares a diagonal recurrent weight (h products) but multiplies the state by diag(u): h^2."""

    name = "indrnn-dense-product"

    def step(self, x: Any, state: State, w: Mapping[str, Any]) -> State:
        (h,) = state
        return (torch.relu(x @ w["w_input"].t() + w["b_input"] + h @ torch.diag(w["w_recurrent"])),)


class UndeclaredScale(IndRNNCell):
    """Scales the pre-activation by 0.5 and adds 0.1 per unit without declaring them."""

    name = "indrnn-undeclared-ops"

    def step(self, x: Any, state: State, w: Mapping[str, Any]) -> State:
        (h,) = state
        return (torch.relu(0.5 * (x @ w["w_input"].t() + w["b_input"] + w["w_recurrent"] * h) + 0.1),)


@pytest.mark.parametrize(
    ("broken", "wrong"),
    [
        (ThreeMultiplyGRU(hidden=6), "'mults': 18"),
        (DenseDiagonal(hidden=6), "'products': 66"),
        (UndeclaredScale(hidden=6), "'mults': 6, 'adds': 6"),
    ],
    ids=["gru-extra-multiply", "diagonal-as-dense", "undeclared-scale-and-shift"],
)
def test_counts_check_fails_when_step_multiplies_or_adds_other_than_declared(broken, wrong):
    with pytest.raises(AssertionError, match=wrong):
        cells().test_counts_equal_the_declaration(broken, qbench.create("quantizer", "ternary"))
    honest = type(broken).__mro__[1](hidden=6)  # the built-in it breaks passes the same check
    cells().test_counts_equal_the_declaration(honest, qbench.create("quantizer", "ternary"))


class DenseCountCell(IndRNNCell):
    """A stack that reports the dense h^2 recurrent count although it holds a vector."""

    name = "indrnn-dense-count"

    def build(self, input_size: int, quantizer: qbench.Quantizer, seed: int) -> Any:
        stack = build_stack(IndRNNCell(**self.config), input_size, quantizer, seed)
        dense = stack.quantized_parameter_count() - self.hidden + self.hidden**2
        stack.quantized_parameter_count = lambda: dense
        return stack


def test_parameter_count_check_fails_on_a_dense_count_of_a_diagonal():
    with pytest.raises(AssertionError, match="declared tensors hold"):
        cells().test_quantized_parameter_count(DenseCountCell(hidden=6), qbench.create("quantizer", "ternary"))
    cells().test_quantized_parameter_count(IndRNNCell(hidden=6), qbench.create("quantizer", "ternary"))


class GradDependentLSQ(LSQQuantizer):
    """Owns its gradient but halves the values when the weights require grad (so the training-side
    forward and the no-grad export disagree)."""

    name = "lsq-grad-dependent"

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        q = super().quantize(w, ctx)
        return q * 0.5 if w.requires_grad else q


def test_export_check_fails_when_the_export_is_not_the_evaluation_forward():
    with pytest.raises(AssertionError):
        cells().test_export_matches_eval_forward(IndRNNCell(hidden=6), GradDependentLSQ())
    cells().test_export_matches_eval_forward(IndRNNCell(hidden=6), LSQQuantizer())


# -- learned quantizers -----------------------------------------------------------------------------


class DetachedLSQ(LSQQuantizer):
    """Claims to own its gradient but returns a detached tensor."""

    name = "lsq-detached"

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        return super().quantize(w, ctx).detach()


def test_owned_gradient_check_fails_on_a_detached_forward():
    with pytest.raises(AssertionError, match="without a gradient path"):
        quantizers().test_owned_gradient_is_finite_and_reaches_the_weights(DetachedLSQ(), ROLE_CASES[0])
    quantizers().test_owned_gradient_is_finite_and_reaches_the_weights(LSQQuantizer(), ROLE_CASES[0])


class RandomInitLSQ(LSQQuantizer):
    """Initialises its step with a random draw: every worker would start from another state."""

    name = "lsq-random-init"

    def init_state(self, w: Any, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {"step": torch.rand(()) + 0.01}


def test_state_check_fails_on_a_random_initialisation():
    with pytest.raises(AssertionError, match="global RNG"):
        quantizers().test_learned_state_is_a_function_of_the_tensor(RandomInitLSQ(), ROLE_CASES[1])


class FrozenStateLSQ(LSQQuantizer):
    """Declares a step but uses it detached: the optimizer never moves it."""

    name = "lsq-frozen"

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        state = {"step": ctx.state["step"].detach()} if ctx.state is not None else None
        return super().quantize(w, qbench.QuantContext(ctx.role, ctx.fan_in, ctx.fan_out, ctx.training,
                                                         ctx.generator, ctx.layer, state))


def test_training_check_fails_when_the_state_gets_no_gradient():
    with pytest.raises(AssertionError, match="no gradient"):
        quantizers().test_learned_state_trains_and_survives_pickling(FrozenStateLSQ())
    quantizers().test_learned_state_trains_and_survives_pickling(LSQQuantizer())


class UnpicklableLSQ(LSQQuantizer):
    """Keeps a lock: it cannot travel to a worker process."""

    name = "lsq-unpicklable"

    def __init__(self, **params: Any) -> None:
        super().__init__(**params)
        self.lock = threading.Lock()


def test_pickling_check_fails_on_a_quantizer_that_cannot_reach_a_worker():
    with pytest.raises(TypeError, match="pickle"):
        quantizers().test_learned_state_trains_and_survives_pickling(UnpicklableLSQ())


# -- the two checks that used to compare a value with itself ------------------------------------


class GeneratorInEval(qbench.Quantizer):
    """Uses the generator when one is given, even in evaluation (it must be deterministic there)."""

    name = "noisy-eval"
    scheme = "custom"

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        if ctx.generator is None:
            return w.sign()
        noise = torch.rand(w.shape, generator=ctx.generator, dtype=w.dtype, device=w.device)
        return torch.where(noise < 0.05, -w.sign(), w.sign())

    def bits_per_weight(self) -> float:
        return 1.0


def test_property_check_fails_on_an_evaluation_that_depends_on_the_generator():
    pytest.importorskip("hypothesis")
    with pytest.raises(AssertionError):
        quantizers().test_property_random_shapes_scales_and_roles(GeneratorInEval())


class TransposeBlind(qbench.Quantizer):
    """Reads a matrix in memory order: a transposed (column-major) layout gives other values."""

    name = "transpose-blind"
    scheme = "custom"

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        flat = torch.as_strided(w, (w.numel(),), (1,))  # ignores the strides: wrong for a transposed view
        return (flat.sign().reshape(w.shape) if w.dim() == 2 else w.sign()).to(w.dtype)

    def bits_per_weight(self) -> float:
        return 1.0


def test_layout_check_fails_on_a_quantizer_that_ignores_strides():
    with pytest.raises(AssertionError):
        quantizers().test_handles_non_contiguous_and_grad_requiring_weights(TransposeBlind(), ROLE_CASES[0])
