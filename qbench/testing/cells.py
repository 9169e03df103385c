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

Contract-1 cells (``build`` overridden, no ``tensors``) skip the checks that need a declaration,
saying so; declare the cell to get them.

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

from qbench.training.stack import build_stack

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
        assert len(layers) == getattr(cell, "layers", 1)
        for index, layer in enumerate(layers):
            n = self.input_size if index == 0 else cell.hidden
            assert layer.cell == cell.name
            assert (layer.input_size, layer.hidden_size) == (n, cell.hidden)
            if layer.input_scale is not None:
                assert layer.input_scale.shape == (n,) and layer.input_shift.shape == (n,)
            if getattr(cell, "tensors", ()):
                assert list(layer.tensors) == [spec.name for spec in cell.tensors], "export misses declared tensors"
                for spec in cell.tensors:
                    tensor = layer.tensors[spec.name]
                    expected = spec.shape(n, cell.hidden)
                    assert tensor.values.shape == expected, (
                        f"{spec.name}: exported shape {tensor.values.shape}, declared {spec.layout} {expected}"
                    )
                    assert (tensor.role, tensor.layout) == (spec.role, spec.layout)
                    assert tensor.values.dtype == np.float64 and tensor.scheme == quantizer.scheme
                continue
            # a contract-1 stack: torch's dense layout
            rows = cell.gate_blocks * cell.hidden
            assert layer.w_input.values.shape == (rows, n)
            assert layer.w_recurrent.values.shape == (rows, cell.hidden)
            assert layer.b_input is not None and layer.b_input.values.shape == (rows,)
            roles = (layer.w_input.role, layer.w_recurrent.role, layer.b_input.role)
            assert roles == ("input", "recurrent", "bias")

    def test_export_is_deterministic(self, cell: Any, quantizer: Any) -> None:
        stack = self.build(cell, quantizer)
        first, second = stack.export_layers(), stack.export_layers()
        for a, b in zip(first, second, strict=True):
            np.testing.assert_array_equal(a.w_input.values, b.w_input.values)
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
        import torch

        stack = self.build(cell, quantizer).train()
        if not getattr(cell, "fused_kernel", None) and getattr(cell, "tensors", None):
            pytest.skip("the cell declares no fused kernel: the host runs its per-step reference only")
        if not (hasattr(stack, "implementation") and hasattr(stack, "seed_draws")):
            pytest.skip("a contract-1 stack without implementation / seed_draws: declare the cell (contract 2)")
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

    # -- operation counts -----------------------------------------------------------------------

    def test_counts_equal_the_declaration(self, cell: Any, quantizer: Any) -> None:
        """The host's counts follow the declaration, and one traced ``step`` does exactly the declared
        work: weight products, bias adds, element-wise multiplies and adds, sigmoid / tanh / relu."""
        if not getattr(cell, "tensors", ()):
            pytest.skip("a contract-1 cell declares no tensors: nothing to count (declare the cell, contract 2)")
        stack = self.build(cell, quantizer)
        counts = stack.operations_per_step()
        for index, layer in enumerate(stack.export_layers()):
            products = sum(
                {"matrix": int(t.values.size), "diagonal": int(t.values.shape[0])}.get(t.layout, 0)
                for t in layer.tensors.values()
            )
            assert counts[index]["products"] == products == layer.products_per_step()
            assert counts[index]["bias_adds"] == sum(
                int(t.values.size) for t in layer.tensors.values() if t.layout == "vector"
            )
        observed = traced_operations(cell, stack)
        declared = {op: int(counts[0].get(op, 0)) for op in COUNTED}
        assert observed == declared, (
            f"one step() of layer 0 (batch 1) computes {observed}; the declaration gives {declared}: "
            "fix the cell's tensors / elementwise declaration or its step (products are weight "
            "products, non-linearities are sigmoid / tanh / relu elements)"
        )


def declared_weight_count(cell: Any, input_size: int) -> int | None:
    """Weights the declared tensors hold over all layers; None for a contract-1 cell."""
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
            pytest.skip("a contract-1 cell without a declared step cannot be replayed: declare it (contract 2)")
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


#: what :func:`traced_operations` counts: the keys of the host's ``operations_per_step()``
COUNTED = ("products", "bias_adds", "mults", "adds", "sigmoids", "tanhs", "relus")

_NONLINEAR = {"sigmoid": "sigmoids", "tanh": "tanhs", "relu": "relus"}
_PRODUCTS = {"matmul", "rmatmul", "mm", "bmm", "linear", "addmm"}
_ADDS = {"add", "radd", "iadd", "sub", "rsub", "isub"}
_MULTS = {"mul", "rmul", "imul"}
#: ops whose results are views of their first argument (a chunk of a gate block keeps its kind)
_VIEWS = {"t", "chunk", "split", "getitem", "view", "reshape", "contiguous", "unsqueeze", "squeeze",
          "narrow", "select", "expand", "transpose", "unbind", "T", "to", "clone"}


def traced_operations(cell: Any, stack: Any) -> dict[str, int]:
    """The operations one ``step`` of layer 0 really computes for one token (batch 1), by kind.

    A ``__torch_function__`` mode follows the values: a product with a declared matrix (``@``,
    ``linear``) or diagonal (``*``) counts its weight products and yields a pre-activation sum;
    adding a declared bias vector to it is a bias add; summing two pre-activation sums is the
    accumulation the products already count; every other ``+`` / ``-`` is an element-wise add
    and every other ``*`` an element-wise multiply; sigmoid / tanh / relu count their elements.
    The keys are those of the host's ``operations_per_step()`` (:data:`COUNTED`).
    """
    import torch
    from torch.overrides import TorchFunctionMode

    seen = dict.fromkeys(COUNTED, 0)
    kinds: dict[int, str] = {}  # id(tensor) -> "matrix" | "diagonal" | "vector" | "sum"
    alive: list[Any] = []  # keeps every tagged tensor alive, so that an id is never reused

    def kind(value: Any) -> str | None:
        return kinds.get(id(value)) if isinstance(value, torch.Tensor) else None

    def tag(value: Any, label: str | None) -> None:
        for item in value if isinstance(value, (tuple, list)) else (value,):
            if label is not None and isinstance(item, torch.Tensor):
                kinds[id(item)] = label
                alive.append(item)

    def count(name: str, args: tuple[Any, ...], result: Any) -> str | None:
        """Counts one call; returns the kind of its result."""
        size = result.numel() if isinstance(result, torch.Tensor) else 0
        operands = [kind(a) for a in args[:2]]
        if name in _NONLINEAR:
            seen[_NONLINEAR[name]] += size
            return None
        if name in _PRODUCTS:
            # the summed dimension: the columns of the left operand (b @ a for a.__rmatmul__(b))
            left = {"rmatmul": args[1], "addmm": args[1]}.get(name, args[0])
            seen["products"] += size * int(left.shape[-1])
            if name == "addmm" or (name == "linear" and len(args) > 2 and args[2] is not None):
                seen["bias_adds"] += size
            return "sum"
        if name in _MULTS:
            if "diagonal" in operands:
                seen["products"] += size
                return "sum"
            seen["mults"] += size
            return None
        if name in _ADDS:
            if "vector" in operands and name in ("add", "radd", "iadd"):
                seen["bias_adds"] += size
                return "sum"
            if operands == ["sum", "sum"] and name in ("add", "radd", "iadd"):
                return "sum"  # accumulating products into one pre-activation: counted with the products
            seen["adds"] += size
            return None
        if name in _VIEWS:
            return operands[0]
        return None

    class Counter(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            result = func(*args, **(kwargs or {}))
            name = getattr(func, "__name__", "").strip("_")
            tag(result, count(name, tuple(args), result))
            return result

    layer = stack.recurrent_layers()[0]
    layouts = {spec.name: spec.layout for spec in cell.tensors}
    with torch.no_grad():
        tensors = {name: t.detach() for name, t in stack.quantized_tensors(0).items()}
        for name, tensor in tensors.items():
            tag(tensor, layouts.get(name))
        x = torch.zeros(1, layer.input_size, dtype=torch.float64)
        state = tuple(torch.zeros(1, cell.hidden, dtype=torch.float64) for _ in range(int(cell.state_size)))
        with Counter():
            cell.step(x, state, tensors)
    return seen


def traced_nonlinearities(cell: Any, stack: Any) -> dict[str, int]:
    """Elements that go through sigmoid / tanh / relu in one ``step`` of layer 0 with batch 1."""
    counts = traced_operations(cell, stack)
    return {key: counts[key] for key in ("sigmoids", "tanhs", "relus")}


def torch_isfinite(tensor: Any) -> Any:
    import torch

    return torch.isfinite(tensor).all()
