"""The sequence-level BPTT of a quantized hidden state (qbench.training.sequence) against the per-step
reference loop: the same forward values, the same gradients within float rounding (issue 29)."""

from __future__ import annotations

from typing import Any

import pytest

import qbench
from qbench.roles import RoleQuantizers

from .fakes import ClippedState

torch = pytest.importorskip("torch")

from qbench.training import sequence  # noqa: E402
from qbench.training.stack import QuantizedRecurrentStack  # noqa: E402

#: relative gradient tolerance by dtype (sums over steps and batch run in another order)
TOLERANCE = {torch.float64: 1e-11, torch.float32: 1e-4}


class OwnGradientState(ClippedState):
    """A plugin quantizer that owns its gradient and declares no estimator: the per-step reference runs."""

    name = "own-gradient-state"
    owns_gradient = True

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        clipped = w.clamp(-1, 1)
        return clipped + (super().quantize(w.detach(), ctx) - clipped).detach()


def _quantizers() -> dict[str, Any]:
    return {
        "lsq": lambda: qbench.create("quantizer", "lsq", hidden=True),
        "ternary+lsq": lambda: RoleQuantizers(
            qbench.create("quantizer", "ternary", stochastic=True),
            {"hidden": qbench.create("quantizer", "lsq", hidden=True, bits=3)},
        ),
        "ternary+clipped": lambda: RoleQuantizers(
            qbench.create("quantizer", "ternary"), {"hidden": ClippedState(act_bits=3)}
        ),
    }


def _stack(cell: str, quantizer: Any, dtype: Any, implementation: str | None) -> Any:
    stack = QuantizedRecurrentStack(
        qbench.create("cell", cell, hidden=7, layers=2), input_size=5, quantizer=quantizer, seed=3
    ).to(dtype)
    if implementation is not None:
        stack.implementation = implementation
    return stack.train()


def _step(stack: Any, dtype: Any) -> tuple[Any, dict[str, Any]]:
    """Two training passes (the learned hidden step initialised by the first), the second with a
    given initial state: outputs, final states and every gradient (parameters, input, initial state)."""
    generator = torch.Generator().manual_seed(5)
    x = torch.randn(9, 4, 5, generator=generator, dtype=dtype) * 2
    stack(x)  # the first training batch initialises LSQ's activation step
    with torch.no_grad():  # a smaller step, so that part of the state falls outside the clip range
        for layer in stack.layers:
            if "hidden" in layer.quant_state:
                layer.quant_state["hidden"]["step"].mul_(0.3)
    x = x.clone().requires_grad_(True)
    size = int(stack.cell_decl.state_size)
    states = tuple(torch.randn(2, 4, 7, generator=generator, dtype=dtype).requires_grad_(True) for _ in range(size))
    y, final = stack(x, states if size > 1 else states[0])
    final = final if isinstance(final, tuple) else (final,)
    weights = torch.randn(y.shape, generator=generator, dtype=dtype)
    loss = (y * weights).sum() + sum((f * f).sum() for f in final)
    loss.backward()
    grads = {name: p.grad for name, p in stack.named_parameters()}
    grads.update(x=x.grad, **{f"state{k}": s.grad for k, s in enumerate(states)})
    return (y.detach(), *(f.detach() for f in final)), grads


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["float64", "float32"])
@pytest.mark.parametrize("quantizer", sorted(_quantizers()))
@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_sequence_bptt_equals_the_per_step_reference(cell, quantizer, dtype):
    make = _quantizers()[quantizer]
    reference = _stack(cell, make(), dtype, "loop")
    fast = _stack(cell, make(), dtype, None)
    assert fast._sequence_estimator(0) is not None and reference._sequence_estimator(0) is None
    outputs_ref, grads_ref = _step(reference, dtype)
    outputs, grads = _step(fast, dtype)
    # the forward runs the same operations in the same order: the same values, bit for bit
    for a, b in zip(outputs_ref, outputs, strict=True):
        assert torch.equal(a, b)
    assert set(grads) == set(grads_ref)
    for name, expected in grads_ref.items():
        assert expected is not None and grads[name] is not None, name
        scale = expected.abs().max().clamp_min(1e-30)
        error = ((grads[name] - expected).abs().max() / scale).item()
        assert error <= TOLERANCE[dtype], f"{name}: relative error {error:.2e}"
    if "lsq" in quantizer:  # the learned hidden step gets a gradient on both paths
        assert grads_ref["layers.1.quant_state.hidden.step"].abs().item() > 0


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_comparison_sees_the_clip_range(cell, monkeypatch):
    """The states of the comparison above reach LSQ's clip range: an estimator that forgot it (the
    gradient passed everywhere) is caught."""
    from qbench_builtins.quantizers.learned import LSQHiddenEstimator

    make = _quantizers()["lsq"]
    _, grads_ref = _step(_stack(cell, make(), torch.float64, "loop"), torch.float64)
    monkeypatch.setattr(LSQHiddenEstimator, "derivative", lambda self, saved: None)
    _, grads = _step(_stack(cell, make(), torch.float64, None), torch.float64)
    worst = max(((grads[n] - g).abs().max() / g.abs().max().clamp_min(1e-30)).item() for n, g in grads_ref.items())
    assert worst > 1e-3


@pytest.mark.parametrize("cell", ["gru", "lstm"])
def test_evaluation_forward_is_identical(cell):
    reference = _stack(cell, _quantizers()["lsq"](), torch.float32, "loop").eval()
    fast = _stack(cell, _quantizers()["lsq"](), torch.float32, None).eval()
    x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        y_ref, _ = reference(x)
        y, _ = fast(x)
    assert torch.equal(y, y_ref)


def test_a_quantizer_owning_its_gradient_without_an_estimator_keeps_the_reference(monkeypatch):
    """No hidden_estimator: the per-step reference runs, with exactly the reference's numbers."""
    quantizer = RoleQuantizers(qbench.create("quantizer", "ternary"), {"hidden": OwnGradientState(act_bits=3)})
    fast = _stack("lstm", quantizer, torch.float64, None)
    assert fast._sequence_estimator(0) is None

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the sequence path ran without an estimator")

    monkeypatch.setattr(sequence, "run_layer", refuse)
    outputs, grads = _step(fast, torch.float64)
    outputs_ref, grads_ref = _step(_stack("lstm", quantizer, torch.float64, "loop"), torch.float64)
    for a, b in zip(outputs_ref, outputs, strict=True):
        assert torch.equal(a, b)
    for name, expected in grads_ref.items():
        assert torch.equal(grads[name], expected), name


def test_a_cell_without_a_fused_kernel_keeps_the_reference():
    stack = QuantizedRecurrentStack(qbench.create("cell", "indrnn", hidden=4), input_size=3,
                                    quantizer=qbench.create("quantizer", "lsq", hidden=True), seed=0)  # fmt: skip
    assert stack._sequence_estimator(0) is None


def test_a_retained_graph_backs_up_twice_and_refuses_after_another_forward():
    """retain_graph: a second backward gives the same gradients again; after another forward of the
    layer (which took the shared buffers back) it raises rather than read that forward's values."""
    stack = _stack("lstm", _quantizers()["lsq"](), torch.float64, None)
    x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    stack(x)
    y, _ = stack(x)
    y.sum().backward(retain_graph=True)
    first = stack.layers[0].w_recurrent.grad.clone()
    y.sum().backward(retain_graph=True)
    torch.testing.assert_close(stack.layers[0].w_recurrent.grad, 2 * first, rtol=1e-12, atol=0)
    stack(x * 2).__getitem__(0).sum().backward()  # another forward and backward of the same layers
    with pytest.raises(RuntimeError, match="retained graph after another forward"):
        y.sum().backward()


def test_two_forwards_before_their_backwards_keep_their_own_buffers():
    """The second forward finds the workspace leased and takes fresh buffers: both backwards are right."""
    make = _quantizers()["lsq"]
    fast, reference = _stack("gru", make(), torch.float64, None), _stack("gru", make(), torch.float64, "loop")
    x = torch.randn(6, 3, 5, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    grads = []
    for stack in (fast, reference):
        stack(x)
        a, _ = stack(x)
        b, _ = stack(x * 0.5)
        (a.sum() + (b * b).sum()).backward()
        grads.append(stack.layers[1].w_input.grad)
    torch.testing.assert_close(grads[0], grads[1], rtol=1e-10, atol=1e-12)


def test_an_inference_mode_forward_leaves_the_workspace_usable_for_training():
    stack = _stack("rnn", _quantizers()["lsq"](), torch.float32, None)
    x = torch.randn(4, 2, 5, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        stack.eval()(x)
    y, _ = stack.train()(x)
    y.sum().backward()
    assert stack.layers[0].w_recurrent.grad is not None
