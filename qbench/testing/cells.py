"""Conformance suite for cells: subclass :class:`CellContract` in your tests (test names are public API).

Provide two pytest fixtures in the subclass (or its module / conftest):

* ``cell``: a configured :class:`qbench.Cell` instance (e.g. ``qbench.create("cell", "gru", hidden=8)``);
* ``quantizer``: a configured :class:`qbench.Quantizer` (stochastic ones are welcome).

The cell must declare a ``hidden`` parameter (and ``layers`` if it stacks layers, default 1).
The suite builds ``cell.build(input_size, quantizer, seed)`` (converted to float64) and checks the stack contract of
:mod:`qbench.training`: output and state shapes, state carry across calls, the export (shapes
consistent with ``gate_blocks``, deterministic quantized values, folded batch norm, and for the
rnn / gru / lstm families that the exported layers reproduce ``eval()``), the count of
quantized weights, shadow clipping, that gradients reach every shadow tensor, seeded
initialisation, and -- for stacks that offer ``implementation = "loop"`` and ``seed_draws(seed)``
as :class:`qbench.training.stack.QuantizedRecurrentStack` does -- that the fused kernel matches
the per-time-step implementation on the same quantized draw (outputs and gradients).

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

TOLERANCE = 1e-5


def _states(state: Any) -> list[Any]:
    return list(state) if isinstance(state, tuple) else [state]


class CellContract:
    """Tests every cell must pass. Override the class attributes to change the sizes."""

    input_size = 5
    steps = 7
    batch = 3
    seed = 11

    # -- helpers ------------------------------------------------------------------------------

    def build(self, cell: Any, quantizer: Any, seed: int | None = None) -> Any:
        import torch

        torch.manual_seed(0)
        return cell.build(self.input_size, quantizer, self.seed if seed is None else seed).double()

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
        assert tuple(y.shape) == (self.steps, self.batch, cell.hidden)
        layers = getattr(cell, "layers", 1)
        for part in _states(state):
            assert tuple(part.shape) == (layers, self.batch, cell.hidden)
        assert bool(torch_isfinite(y))

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
        assert not torch.allclose(from_zero, from_state)

    def test_same_seed_same_weights(self, cell: Any, quantizer: Any) -> None:
        import torch

        a, b = self.build(cell, quantizer, seed=3), self.build(cell, quantizer, seed=3)
        c = self.build(cell, quantizer, seed=4)
        for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
            assert torch.equal(pa, pb)
        assert any(not torch.equal(pa, pc) for pa, pc in zip(a.parameters(), c.parameters(), strict=True))

    # -- training contract ----------------------------------------------------------------------

    def test_gradients_reach_shadow_weights(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer).train()
        y, _ = stack(self.inputs())
        (y * self.inputs(self.steps)[..., :1]).sum().backward()
        for parameter in self.shadow_parameters(stack):
            assert parameter.grad is not None
            assert bool(torch_isfinite(parameter.grad))

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
            assert bool((new.abs() <= old.abs()).all())

    def test_quantized_parameter_count(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        expected = 0
        for layer in stack.export_layers():
            for tensor in (layer.w_input, layer.w_recurrent, layer.b_input, layer.b_recurrent):
                expected += 0 if tensor is None else tensor.values.size
        assert stack.quantized_parameter_count() == expected

    # -- export -------------------------------------------------------------------------------

    def test_export_shapes(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        layers = stack.export_layers()
        assert len(layers) == getattr(cell, "layers", 1)
        rows = cell.gate_blocks * cell.hidden
        for index, layer in enumerate(layers):
            n = self.input_size if index == 0 else cell.hidden
            assert layer.cell == cell.name
            assert (layer.input_size, layer.hidden_size) == (n, cell.hidden)
            assert layer.gate_blocks == cell.gate_blocks
            assert layer.w_input.values.shape == (rows, n)
            assert layer.w_recurrent.values.shape == (rows, cell.hidden)
            assert layer.b_input is not None and layer.b_input.values.shape == (rows,)
            if layer.b_recurrent is not None:
                assert layer.b_recurrent.values.shape == (rows,)
            roles = (layer.w_input.role, layer.w_recurrent.role, layer.b_input.role)
            assert roles == ("input", "recurrent", "bias")
            for tensor in (layer.w_input, layer.w_recurrent, layer.b_input):
                assert tensor.values.dtype == np.float64
                assert tensor.scheme == quantizer.scheme
            if layer.input_scale is not None:
                assert layer.input_scale.shape == (n,) and layer.input_shift.shape == (n,)

    def test_export_is_deterministic(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        first, second = stack.export_layers(), stack.export_layers()
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a.w_input.values, b.w_input.values)
            np.testing.assert_array_equal(a.w_recurrent.values, b.w_recurrent.values)

    def test_export_matches_eval_forward(self, cell: Any, quantizer: Any) -> None:
        """Re-running the exported layers with the per-time-step cells reproduces ``eval()`` outputs."""
        import torch

        from qbench.training.stack import GATE_BLOCKS

        stack = self.build(cell, quantizer)
        if any(layer.cell not in GATE_BLOCKS for layer in stack.export_layers()):
            pytest.skip("no per-time-step reference for this cell family (rnn, gru, lstm only)")
        stack.train()
        with torch.no_grad():
            stack(self.inputs())  # moves batch-norm running statistics away from their start
        stack.eval()
        x = self.inputs()
        with torch.no_grad():
            expected, _ = stack(x)
        from qbench.training.reference import run_layer

        h = x
        for layer in stack.export_layers():
            if layer.input_scale is not None:
                h = h * torch.from_numpy(layer.input_scale) + torch.from_numpy(layer.input_shift)
            rows = layer.w_input.values.shape[0]
            b_recurrent = layer.b_recurrent.values if layer.b_recurrent is not None else np.zeros(rows)
            weights = [
                torch.from_numpy(v)
                for v in (layer.w_input.values, layer.w_recurrent.values, layer.b_input.values, b_recurrent)
            ]
            zeros = torch.zeros(1, self.batch, layer.hidden_size, dtype=torch.float64)
            state = (zeros, zeros) if layer.cell == "lstm" else zeros
            h, _ = run_layer(layer.cell, h, state, weights)
        torch.testing.assert_close(h, expected, atol=TOLERANCE, rtol=TOLERANCE)

    # -- fused kernel == per-time-step cells ----------------------------------------------------

    def test_fused_matches_reference(self, cell: Any, quantizer: Any) -> None:
        """Same draw, same inputs: outputs, final state and every gradient agree to 1e-5."""
        import torch

        stack = self.build(cell, quantizer).train()
        if not (hasattr(stack, "implementation") and hasattr(stack, "seed_draws")):
            pytest.skip("the stack offers no per-time-step implementation")
        x = self.inputs()
        results = []
        for implementation in ("fused", "loop"):
            stack.implementation = implementation
            stack.seed_draws(99)
            stack.zero_grad(set_to_none=True)
            y, state = stack(x)
            loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum() + sum(
                s.square().sum() for s in _states(state)
            )
            loss.backward()
            grads = [p.grad.detach().clone() for p in stack.parameters()]
            results.append((y.detach(), [s.detach() for s in _states(state)], grads))
        stack.implementation = "fused"
        (y_fused, s_fused, g_fused), (y_loop, s_loop, g_loop) = results
        torch.testing.assert_close(y_fused, y_loop, atol=TOLERANCE, rtol=TOLERANCE)
        for a, b in zip(s_fused + g_fused, s_loop + g_loop, strict=True):
            torch.testing.assert_close(a, b, atol=TOLERANCE, rtol=TOLERANCE)


def torch_isfinite(tensor: Any) -> Any:
    import torch

    return torch.isfinite(tensor).all()
