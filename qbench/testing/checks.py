"""The kits' checks of learned quantizers and declared cells as plain functions: each raises
``AssertionError`` naming what is wrong.

The conformance kits (:mod:`qbench.testing.quantizers`, :mod:`qbench.testing.cells`) run them
under pytest; ``qbench plugins --check`` (:mod:`qbench.plugincheck`) runs the quick ones (no
training) on every installed component without pytest. One implementation, so the command and
the kits can never disagree about what the contract is.
"""

from __future__ import annotations

import dataclasses
import pickle
from typing import Any

import numpy as np
import torch

from qbench.components import QuantContext

TOLERANCE = 1e-5

#: what :func:`traced_operations` counts: the keys of the host's ``operations_per_step()``
COUNTED = ("products", "bias_adds", "mults", "adds", "sigmoids", "tanhs", "relus")

_NONLINEAR = {"sigmoid": "sigmoids", "tanh": "tanhs", "relu": "relus"}
_PRODUCTS = {"matmul", "rmatmul", "mm", "bmm", "linear", "addmm"}
_ADDS = {"add", "radd", "iadd", "sub", "rsub", "isub"}
_SUMS = {"add", "radd", "iadd"}
_MULTS = {"mul", "rmul", "imul"}
#: ops whose results are views or copies of their first argument (a gate block's chunk keeps its kind)
_VIEWS = {"t", "chunk", "split", "getitem", "view", "reshape", "contiguous", "unsqueeze", "squeeze",
          "narrow", "select", "expand", "transpose", "unbind", "T", "to", "clone"}


# -- learned quantizers ---------------------------------------------------------------------------


def check_owned_gradient(quantizer: Any, w: torch.Tensor, ctx: QuantContext) -> None:
    """``quantize`` is differentiable: finite gradients reach the weights (some non-zero) and every state entry."""
    w = w.detach().clone().requires_grad_(True)
    state = {k: v.detach().clone().requires_grad_(True) for k, v in quantizer.init_state(w.detach(), ctx).items()}
    ctx = dataclasses.replace(ctx, state=state or None)
    forward = quantizer.quantize(w, ctx)
    assert forward.requires_grad, "quantize returned a tensor without a gradient path (owns_gradient is True)"
    upstream = torch.randn(w.shape, generator=torch.Generator().manual_seed(9)).to(w.device)
    (forward * upstream).sum().backward()
    assert w.grad is not None and bool(torch.isfinite(w.grad).all()), "no finite gradient reaches the weights"
    assert bool((w.grad != 0).any()), "no gradient reaches the shadow weights"
    for name, value in state.items():
        assert value.grad is not None and bool(torch.isfinite(value.grad).all()), f"state {name!r}: no gradient"


def check_state_is_a_function_of_the_tensor(quantizer: Any, w: torch.Tensor, ctx: QuantContext) -> None:
    """``init_state`` twice on the same tensor gives the same finite state and draws nothing."""
    before = torch.get_rng_state()
    first, second = quantizer.init_state(w, ctx), quantizer.init_state(w, ctx)
    assert torch.equal(torch.get_rng_state(), before), "init_state drew from the global RNG"
    assert isinstance(first, dict) and sorted(first) == sorted(second), "init_state must return the same dict keys"
    for name, value in first.items():
        assert isinstance(value, torch.Tensor) and bool(torch.isfinite(value).all()), f"state {name!r} is not finite"
        assert torch.equal(value, second[name]), f"state {name!r} differs between two calls on the same tensor"
    if first and not quantizer.owns_gradient:
        raise AssertionError("learned state needs owns_gradient = True: the host's STE gives it no gradient")


def check_sequence_backward(quantizer: Any, cells: tuple[str, ...] = ("gru", "lstm")) -> None:
    """Two training passes of a small stack per cell, through the sequence-level backward and through
    the per-step loop (``implementation = "loop"``), from the same draws: the same outputs (the
    estimator's ``forward`` must return what ``quantize`` returns) and the same gradients of every
    parameter, the learned state included, to float rounding (float64)."""
    import qbench
    from qbench.components import ROLES
    from qbench.roles import RoleQuantizers
    from qbench.training.stack import build_stack

    if not all(quantizer.applies_to(role) for role in ROLES):  # an activation quantizer: float weights
        quantizer = RoleQuantizers(qbench.create("quantizer", "float"), {"hidden": quantizer})
    for cell in cells:
        results = []
        for implementation in ("fused", "loop"):
            stack = build_stack(qbench.create("cell", cell, hidden=6), 4, quantizer, 0).double().train()
            stack.implementation = implementation
            generator = torch.Generator().manual_seed(0)
            x = torch.randn(7, 3, 4, generator=generator, dtype=torch.float64) * 2
            # the first training batch initialises a learned hidden state: from small states, so that
            # the larger states of the checked pass reach its clip range (an estimator must see it)
            stack(x * 0.05)
            y, _ = stack(x * 1.5)
            (y * torch.randn(y.shape, generator=generator, dtype=torch.float64)).sum().backward()
            results.append((y.detach(), {name: p.grad for name, p in stack.named_parameters()}))
        (y_seq, grads_seq), (y_loop, grads_loop) = results
        where = f"{cell}: the sequence path's outputs differ from the loop's"
        torch.testing.assert_close(y_seq, y_loop, rtol=1e-12, atol=1e-12, msg=_prefixed(where))
        for name, expected in grads_loop.items():
            got = grads_seq[name]
            assert (got is None) == (expected is None), f"{cell}: {name} has a gradient on one path only"
            if expected is not None:
                torch.testing.assert_close(got, expected, rtol=1e-7, atol=1e-9 * float(expected.abs().max()),
                                           msg=_prefixed(f"{cell}: gradient of {name}"))  # fmt: skip


def _prefixed(where: str) -> Any:
    """An assert_close message callable that says where the mismatch is."""

    def message(detail: str) -> str:
        return f"{where}: {detail}"

    return message


def check_learned_state_round_trip(stack: Any, x: torch.Tensor) -> None:
    """A pickled copy of the stack (what a worker receives) evaluates identically and holds the same
    state, and the export carries every learned state value."""
    learned = stack.learned_state()
    stack.eval()
    copy = pickle.loads(pickle.dumps(stack))
    with torch.no_grad():
        assert torch.equal(copy(x)[0], stack(x)[0]), "a pickled copy (a worker's) evaluates differently"
    copied = copy.learned_state()
    assert sorted(copied) == sorted(learned), "a pickled copy lost learned state"
    for name, p in copied.items():
        assert torch.equal(p, learned[name]), f"learned state {name}: another value in a pickled copy"
    exported = stack.export_layers()[0]
    for name, tensor in exported.tensors.items():
        ctx = stack.context(0, name, False)
        for key, value in (ctx.state or {}).items():
            assert key in tensor.state, (
                f"the export of {name} misses learned state {key!r}: expected keys {sorted(ctx.state or {})}, "
                f"got {sorted(tensor.state)}")  # fmt: skip
            # the state may be a scalar, a vector (per row) or a matrix: compared as float64 arrays
            expected = value.detach().cpu().double().numpy()
            got = np.asarray(tensor.state[key], dtype=np.float64)
            assert got.shape == expected.shape and np.array_equal(got, expected), (
                f"the export of {name}: learned state {key!r} is stale: expected shape {expected.shape} "
                f"values {np.array2string(expected.ravel()[:4])}, got shape {got.shape} values "
                f"{np.array2string(got.ravel()[:4])}")  # fmt: skip


# -- declared cells -----------------------------------------------------------------------------


def check_fused_matches_reference(stack: Any, x: torch.Tensor, fast: str = "fused") -> None:
    """Same draw, same inputs: the fused kernel (``fast = "scan"``: the cell's scan) and the per-step
    reference agree (outputs, state, gradients)."""
    results = []
    what_fast = "the fused kernel" if fast == "fused" else "the cell's scan"
    for implementation in (fast, "loop"):
        stack.implementation = implementation
        stack.seed_draws(99)
        stack.zero_grad(set_to_none=True)
        # two calls, the state carried: the second starts from a non-zero state, which a path that
        # ignores its initial state (h_0) gets wrong
        half = max(x.shape[0] // 2, 1)
        first, carried = stack(x[:half])
        rest, state = stack(x[half:], carried)
        y = torch.cat([first, rest])
        parts = list(state) if isinstance(state, tuple) else [state]
        loss = (y * torch.linspace(-1, 1, y.shape[-1], dtype=y.dtype)).sum() + sum(s.square().sum() for s in parts)
        loss.backward()
        grads = [p.grad.detach().clone() for p in stack.parameters()]
        results.append((y.detach(), [s.detach() for s in parts], grads))
    stack.implementation = fast
    (y_fused, s_fused, g_fused), (y_loop, s_loop, g_loop) = results
    for what, a, b in [("outputs", y_fused, y_loop)] + [
        ("state / gradients", a, b) for a, b in zip(s_fused + g_fused, s_loop + g_loop, strict=True)
    ]:
        if not torch.allclose(a, b, atol=TOLERANCE, rtol=TOLERANCE):
            raise AssertionError(
                f"{what_fast} and the per-step reference differ in the {what} "
                f"(max difference {float((a - b).abs().max()):.3g}): step() is not what {what_fast} computes"
            )


def check_counts(cell: Any, stack: Any) -> None:
    """The host's counts follow the declaration, and one traced ``step`` does exactly the declared work."""
    counts = stack.operations_per_step()
    for index, layer in enumerate(stack.export_layers()):
        products = sum(
            {"matrix": int(t.values.size), "diagonal": int(t.values.shape[0])}.get(t.layout, 0)
            for t in layer.tensors.values()
        )
        assert counts[index]["products"] == products == layer.products_per_step(), (
            f"layer {index}: {counts[index]['products']} products counted, the export holds {products}"
        )
        bias_adds = sum(int(t.values.size) for t in layer.tensors.values() if t.layout == "vector")
        assert counts[index]["bias_adds"] == bias_adds, f"layer {index}: bias adds are not the exported vectors"
    observed = traced_operations(cell, stack)
    declared = {op: int(counts[0].get(op, 0)) for op in COUNTED}
    assert observed == declared, (
        f"one step() of layer 0 (batch 1) computes {observed}; the declaration gives {declared}: "
        "fix the cell's tensors / elementwise declaration or its step (products are weight "
        "products, non-linearities are sigmoid / tanh / relu elements)"
    )


def traced_operations(cell: Any, stack: Any) -> dict[str, int]:
    """The operations one ``step`` of layer 0 really computes for one token (batch 1), by kind.

    A ``__torch_function__`` mode follows the values: a product with a declared matrix (``@``,
    ``linear``) or diagonal (``*``) counts its weight products and yields a pre-activation sum;
    adding a declared bias vector to it is a bias add; summing two pre-activation sums is the
    accumulation the products already count; every other ``+`` / ``-`` is an element-wise add
    and every other ``*`` an element-wise multiply; sigmoid / tanh / relu count their elements.
    The keys are those of the host's ``operations_per_step()`` (:data:`COUNTED`).
    """
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
            if "vector" in operands and name in _SUMS:
                seen["bias_adds"] += size
                return "sum"
            if operands == ["sum", "sum"] and name in _SUMS:
                return "sum"  # accumulating products into one pre-activation: counted with the products
            seen["adds"] += size
            return None
        return operands[0] if name in _VIEWS else None

    class Counter(TorchFunctionMode):
        def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
            result = func(*args, **(kwargs or {}))
            tag(result, count(getattr(func, "__name__", "").strip("_"), tuple(args), result))
            return result

    layer = stack.recurrent_layers()[0]
    layouts = {spec.name: spec.layout for spec in cell.tensors}
    with torch.no_grad():
        tensors = {name: t.detach() for name, t in stack.quantized_tensors(0).items()}
        for name, tensor in tensors.items():
            tag(tensor, layouts.get(name))
        dtype = next(iter(tensors.values())).dtype
        x = torch.zeros(1, layer.input_size, dtype=dtype)
        state = tuple(torch.zeros(1, cell.hidden, dtype=dtype) for _ in range(int(cell.state_size)))
        with Counter():
            cell.step(x, state, tensors)
    return seen
