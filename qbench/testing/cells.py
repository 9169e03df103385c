"""Conformance suite for cells: subclass :class:`CellContract` in your tests (test names are public API).

Provide two pytest fixtures in the subclass (or its module / conftest):

* ``cell``: a configured :class:`qbench.Cell` instance (e.g. ``qbench.create("cell", "gru", hidden=8)``);
* ``quantizer``: a configured :class:`qbench.Quantizer` (stochastic ones are welcome).

The cell must declare a ``hidden`` parameter (and ``layers`` if it stacks layers, default 1).
The suite builds ``qbench.training.build_stack(cell, input_size, quantizer, seed)`` (converted to float64)
and checks the stack contract of
:mod:`qbench.training`: output and state shapes, state carry across calls, the export (every
declared tensor exported with its declared shape and layout, deterministic quantized values,
folded batch norm, and that the exported tensors run through the cell's ``step`` reproduce
``eval()``), the count of quantized weights (the declared count: a diagonal holds h weights),
shadow clipping, that gradients reach every shadow tensor, seeded initialisation, that the
fused kernel (when the cell names one) matches the per-time-step reference on the same
quantized draw (outputs and gradients), and that the operation counts follow the declaration:
one traced ``step`` computes exactly the declared weight products, bias adds, element-wise
multiplies and adds and sigmoid / tanh / relu elements (:func:`traced_operations`).

Checks that cannot apply to the cell (the fused-kernel check for a cell that names no kernel,
the counts for a cell that declares nothing) end as they start with the outcome "not applicable"
(not a skip) and are listed with the reason in pytest's terminal summary (``not_applicable``;
:mod:`qbench.testing.applicability`). Undeclared cells (``build`` overridden) skip the checks
that need a declared stack, saying so; declare the cell to get them.

Example::

    class TestMyCell(CellContract):
        @pytest.fixture
        def cell(self):
            return MyCell(hidden=8, layers=2)

        @pytest.fixture
        def quantizer(self):
            return qbench.create("quantizer", "ternary", stochastic=True)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from qbench.components import has_scan
from qbench.testing.applicability import JudgedKit
from qbench.testing.checks import TOLERANCE, check_counts, check_fused_matches_reference, traced_operations
from qbench.training.stack import build_stack

__all__ = ["CellContract", "declared_weight_count", "replay_export", "traced_nonlinearities", "traced_operations"]


def _states(state: Any) -> list[Any]:
    return list(state) if isinstance(state, tuple) else [state]


class CellContract(JudgedKit):
    """Tests every cell must pass. Override the class attributes to change the sizes."""

    input_size = 5
    steps = 7
    batch = 3
    seed = 11
    #: the fixtures that make the component, built first in each test and judged (see not_applicable)
    component_fixtures: tuple[str, ...] = ("cell", "quantizer")

    def not_applicable(self, test: str, fixtures: dict[str, Any]) -> str | None:
        """See :meth:`qbench.testing.applicability.JudgedKit.not_applicable`."""
        cell = fixtures.get("cell")
        if cell is None:
            return None
        declared = bool(getattr(cell, "tensors", ()))
        if test == "test_fused_matches_reference" and declared and not getattr(cell, "fused_kernel", None):
            return "the cell declares no fused kernel: the host runs its per-step reference only"
        if test == "test_scan_matches_reference" and not has_scan(cell):
            return "the cell offers no scan: the host runs its per-step reference (or fused kernel) only"
        if test == "test_counts_equal_the_declaration" and not declared:
            return "an undeclared cell (its own build) has no tensors: nothing to count (declare its tensors and step)"
        return None

    # -- helpers ------------------------------------------------------------------------------

    def build(self, cell: Any, quantizer: Any, seed: int | None = None) -> Any:
        import torch

        torch.manual_seed(0)
        return build_stack(cell, self.input_size, quantizer, self.seed if seed is None else seed).double()

    def inputs(self, steps: int | None = None) -> Any:
        import torch

        generator = torch.Generator().manual_seed(1234)
        shape = (steps or self.steps, self.batch, self.input_size)
        return torch.randn(shape, generator=generator, dtype=torch.float64)

    def shadow_parameters(self, stack: Any) -> list[Any]:
        """The shadow tensors of the stack (every parameter except batch norm's)."""
        return [p for name, p in stack.named_parameters() if ".norm." not in name]

    # -- shapes and state ---------------------------------------------------------------------

    def test_output_shapes(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        y, state = stack(self.inputs())
        assert tuple(y.shape) == (self.steps, self.batch, cell.hidden), (
            f"outputs: expected shape {(self.steps, self.batch, cell.hidden)} [T, B, hidden], got "
            f"{tuple(y.shape)}")  # fmt: skip
        layers = getattr(cell, "layers", 1)
        for part in _states(state):
            assert tuple(part.shape) == (layers, self.batch, cell.hidden), (
                f"state: expected each part of shape {(layers, self.batch, cell.hidden)} [layers, B, hidden], "
                f"got {tuple(part.shape)}")  # fmt: skip
        assert bool(torch_isfinite(y)), (
            "outputs: expected finite values, got NaN or inf")  # fmt: skip

    def test_state_carry(self, cell: Any, quantizer: Any) -> None:
        """Two calls with the state carried equal one call over the whole sequence (eval mode)."""
        import torch

        stack = self.build(cell, quantizer).eval()
        x = self.inputs()
        with torch.no_grad():
            whole, whole_state = stack(x)
            first, state = stack(x[:3])
            second, split_state = stack(x[3:], state)
        torch.testing.assert_close(torch.cat([first, second]), whole, atol=TOLERANCE, rtol=TOLERANCE)
        for a, b in zip(_states(split_state), _states(whole_state), strict=True):
            torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)

    def test_initial_state_is_used(self, cell: Any, quantizer: Any) -> None:
        import torch

        stack = self.build(cell, quantizer).eval()
        x = self.inputs()
        with torch.no_grad():
            _, state = stack(x)
            from_zero, _ = stack(x)
            from_state, _ = stack(x, state)
        assert not torch.allclose(from_zero, from_state), (
            "expected the outputs to depend on the initial state passed in, got the same outputs as from a "
            "zero state")  # fmt: skip

    def test_same_seed_same_weights(self, cell: Any, quantizer: Any) -> None:
        import torch

        a, b = self.build(cell, quantizer, seed=3), self.build(cell, quantizer, seed=3)
        c = self.build(cell, quantizer, seed=4)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb), (
                "expected the same seed to give the same initial weights, got different ones")  # fmt: skip
        assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True)), (
            "expected another seed to give other initial weights, got the same ones")  # fmt: skip

    # -- training contract ----------------------------------------------------------------------

    def test_gradients_reach_shadow_weights(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer).train()
        y, _ = stack(self.inputs())
        (y * self.inputs(self.steps)[..., :1]).sum().backward()
        for parameter in self.shadow_parameters(stack):
            assert parameter.grad is not None, (
                "expected a gradient on every shadow weight, got None (is the straight-through path cut?)")  # fmt: skip
            assert bool(torch_isfinite(parameter.grad)), (
                "expected finite gradients on the shadow weights, got NaN or inf")  # fmt: skip

    def test_clip_shadow_weights(self, cell: Any, quantizer: Any) -> None:
        import torch

        stack = self.build(cell, quantizer)
        with torch.no_grad():
            for parameter in self.shadow_parameters(stack):
                parameter.mul_(1000.0).add_(1.0)
        before = [p.detach().clone() for p in self.shadow_parameters(stack)]
        stack.clip_shadow_weights_()
        after = self.shadow_parameters(stack)
        # a quantizer without a bound leaves them alone; one with a bound brings them inside it
        for old, new in zip(before, after, strict=True):
            assert bool((new.abs() <= old.abs()).all()), (
                f"expected clipping to leave each weight at most as large as before, got larger values (max "
                f"{float(new.abs().max()):.3g})")  # fmt: skip

    def test_quantized_parameter_count(self, cell: Any, quantizer: Any) -> None:
        """The quantized weight count is what the cell declares (a diagonal counts h, not h^2)."""
        stack = self.build(cell, quantizer)
        layers = stack.export_layers()
        exported = 0
        for layer in layers:
            tensors = list(layer.tensors.values()) or [
                t for t in (layer.w_input, layer.w_recurrent, layer.b_input, layer.b_recurrent) if t is not None
            ]
            exported += sum(int(t.values.size) for t in tensors)
        declared = declared_weight_count(cell, self.input_size)
        count = stack.quantized_parameter_count()
        if declared is not None:
            assert count == declared, (
                f"quantized_parameter_count() is {count} but the declared tensors hold {declared} weights"
            )
        assert count == exported, f"quantized_parameter_count() is {count} but the export holds {exported} weights"

    # -- export -------------------------------------------------------------------------------

    def test_export_shapes(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        layers = stack.export_layers()
        assert len(layers) == getattr(cell, "layers", 1), (
            f"expected {getattr(cell, 'layers', 1)} exported layer(s), got {len(layers)}")  # fmt: skip
        for index, layer in enumerate(layers):
            n = self.input_size if index == 0 else cell.hidden
            assert layer.cell == cell.name, (
                f"layer {index}: expected cell {cell.name!r}, got {layer.cell!r}")  # fmt: skip
            assert (layer.input_size, layer.hidden_size) == (n, cell.hidden), (
                f"layer {index}: expected (input_size, hidden_size) {(n, cell.hidden)}, got "
                f"{(layer.input_size, layer.hidden_size)}")  # fmt: skip
            if layer.input_scale is not None:
                assert layer.input_scale.shape == (n,) and layer.input_shift.shape == (n,), (
                    f"layer {index}: expected batch-norm scale and shift of shape {(n,)}, got "
                    f"{layer.input_scale.shape} and {layer.input_shift.shape}")  # fmt: skip
            if getattr(cell, "tensors", ()):
                assert list(layer.tensors) == [spec.name for spec in cell.tensors], "export misses declared tensors"
                for spec in cell.tensors:
                    tensor = layer.tensors[spec.name]
                    expected = spec.shape(n, cell.hidden)
                    assert tensor.values.shape == expected, (
                        f"{spec.name}: exported shape {tensor.values.shape}, declared {spec.layout} {expected}"
                    )
                    assert (tensor.role, tensor.layout) == (spec.role, spec.layout), (
                        f"{spec.name}: expected role and layout {(spec.role, spec.layout)}, got "
                        f"{(tensor.role, tensor.layout)}")  # fmt: skip
                    owner = quantizer.for_role(spec.role)  # a quantizer per role: each role's own scheme
                    assert tensor.values.dtype == np.float64 and tensor.scheme == owner.scheme, (
                        f"{spec.name}: expected float64 values of scheme {owner.scheme!r}, got "
                        f"{tensor.values.dtype} of scheme {tensor.scheme!r}")  # fmt: skip
                continue
            # an undeclared cell's stack: torch's dense layout
            rows = cell.gate_blocks * cell.hidden
            assert layer.w_input.values.shape == (rows, n), (
                f"w_input: expected shape {(rows, n)}, got {layer.w_input.values.shape}")  # fmt: skip
            assert layer.w_recurrent.values.shape == (rows, cell.hidden), (
                f"w_recurrent: expected shape {(rows, cell.hidden)}, got {layer.w_recurrent.values.shape}")  # fmt: skip
            assert layer.b_input is not None and layer.b_input.values.shape == (rows,), (
                f"b_input: expected shape {(rows,)}, got "
                f"{None if layer.b_input is None else layer.b_input.values.shape}")  # fmt: skip
            roles = (layer.w_input.role, layer.w_recurrent.role, layer.b_input.role)
            assert roles == ("input", "recurrent", "bias"), (
                f"expected roles ('input', 'recurrent', 'bias'), got {roles}")  # fmt: skip

    def test_export_is_deterministic(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        first, second = stack.export_layers(), stack.export_layers()
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a.w_input.values, b.w_input.values)
            if a.w_recurrent is not None:  # None: a cell without a recurrent tensor
                np.testing.assert_array_equal(a.w_recurrent.values, b.w_recurrent.values)
            for name, tensor in a.tensors.items():
                np.testing.assert_array_equal(tensor.values, b.tensors[name].values)

    def test_export_matches_eval_forward(self, cell: Any, quantizer: Any) -> None:
        """Re-running the exported tensors through the cell's ``step`` reproduces ``eval()`` outputs."""
        import torch

        stack = self.build(cell, quantizer)
        stack.train()
        with torch.no_grad():
            stack(self.inputs())  # moves batch-norm running statistics away from their start
        stack.eval()
        x = self.inputs()
        with torch.no_grad():
            expected, _ = stack(x)
        h = replay_export(cell, quantizer, stack.export_layers(), x)
        torch.testing.assert_close(h, expected, atol=TOLERANCE, rtol=TOLERANCE)

    # -- fused kernel == per-time-step cells ----------------------------------------------------

    def test_fused_matches_reference(self, cell: Any, quantizer: Any) -> None:
        """Same draw, same inputs: outputs, final state and every gradient agree to 1e-5."""

        stack = self.build(cell, quantizer).train()
        if not getattr(cell, "fused_kernel", None) and getattr(cell, "tensors", None):
            pytest.skip("the cell declares no fused kernel: the host runs its per-step reference only")
        if not (hasattr(stack, "implementation") and hasattr(stack, "seed_draws")):
            pytest.skip("an undeclared cell's stack without implementation / seed_draws: declare its tensors and step")
        check_fused_matches_reference(stack, self.inputs())

    def test_scan_matches_reference(self, cell: Any, quantizer: Any) -> None:
        """The cell's scan and its per-step ``step`` agree: outputs, final state and every gradient."""
        if not has_scan(cell):
            pytest.skip("the cell offers no scan")
        check_fused_matches_reference(self.build(cell, quantizer).train(), self.inputs(), fast="scan")

    # -- operation counts -----------------------------------------------------------------------

    def test_counts_equal_the_declaration(self, cell: Any, quantizer: Any) -> None:
        """The host's counts follow the declaration, and one traced ``step`` does exactly the declared
        work: weight products, bias adds, element-wise multiplies and adds, sigmoid / tanh / relu."""
        if not getattr(cell, "tensors", ()):
            pytest.skip("an undeclared cell (its own build) has no tensors: nothing to count "
                        "(declare its tensors and step)")
        check_counts(cell, self.build(cell, quantizer))


def declared_weight_count(cell: Any, input_size: int) -> int | None:
    """Weights the declared tensors hold over all layers; None for an undeclared cell."""
    specs = getattr(cell, "tensors", ())
    if not specs:
        return None
    total = 0
    for index in range(getattr(cell, "layers", 1)):
        n = input_size if index == 0 else cell.hidden
        for spec in specs:
            size = 1
            for dim in spec.shape(n, cell.hidden):
                size *= dim
            total += size
    return total


def replay_export(cell: Any, quantizer: Any, layers: list[Any], x: Any) -> Any:
    """Run ``x [T, B, n]`` through exported layers with the cell's ``step`` (float64, per step)."""
    import torch

    import qbench
    from qbench.training.reference import run_layer

    stepper = cell
    if not getattr(cell, "tensors", None):
        if layers[0].cell not in ("rnn", "gru", "lstm"):
            pytest.skip("an undeclared cell (no declared step) cannot be replayed: declare its tensors and step")
        stepper = qbench.create("cell", layers[0].cell, hidden=layers[0].hidden_size)
    h = x
    for index, layer in enumerate(layers):
        if layer.input_scale is not None:
            h = h * torch.from_numpy(layer.input_scale) + torch.from_numpy(layer.input_shift)
        tensors = {name: torch.from_numpy(t.values) for name, t in layer.tensors.items()} or {
            name: torch.from_numpy(t.values)
            for name, t in (
                ("w_input", layer.w_input), ("w_recurrent", layer.w_recurrent),
                ("b_input", layer.b_input), ("b_recurrent", layer.b_recurrent),
            )
            if t is not None
        }
        if "b_recurrent" not in tensors and getattr(stepper, "name", "") == "gru":
            tensors["b_recurrent"] = torch.zeros_like(tensors["b_input"])
        hidden = None
        if layer.hidden_quantizer is not None:
            state = {k: torch.from_numpy(v) for k, v in layer.hidden_quantizer["state"].items()} or None
            ctx = qbench.QuantContext("hidden", layer.hidden_size, layer.hidden_size, False, None, index, state)

            def hidden(v: Any, ctx: Any = ctx) -> Any:
                with torch.no_grad():
                    return quantizer.quantize(v, ctx)

        zeros = torch.zeros(1, x.shape[1], layer.hidden_size, dtype=torch.float64)
        size = int(getattr(stepper, "state_size", 1))
        h, _ = run_layer(stepper.step, h, (zeros,) * size, tensors, hidden)
    return h


def traced_nonlinearities(cell: Any, stack: Any) -> dict[str, int]:
    """Elements that go through sigmoid / tanh / relu in one ``step`` of layer 0 with batch 1."""
    counts = traced_operations(cell, stack)
    return {key: counts[key] for key in ("sigmoids", "tanhs", "relus")}


def torch_isfinite(tensor: Any) -> Any:
    import torch

    return torch.isfinite(tensor).all()
