"""The host side of contract 2: one straight-through estimator, declaration errors, learned state,
the hidden-state role, and a contract-1 cell (``build`` overridden) that keeps working."""

from __future__ import annotations

from typing import Any, ClassVar

import pytest

import qbench
from qbench import TensorSpec
from qbench.training import build_stack

torch = pytest.importorskip("torch")

from qbench_builtins.cells.recurrent import COMMON_PARAMS, RNNCell  # noqa: E402

from qbench.ste import straight_through  # noqa: E402
from qbench.testing.cells import CellContract  # noqa: E402
from qbench.training import stack as stack_module  # noqa: E402


def test_training_uses_the_one_straight_through_estimator_of_qbench_ste():
    assert not hasattr(stack_module, "StraightThrough"), "a second estimator is back in training/stack.py"
    stack = build_stack(qbench.create("cell", "gru", hidden=4), 3, qbench.create("quantizer", "ternary"), 0).train()
    tensor = stack.quantized_tensors(0)["w_input"]
    reference = straight_through(torch.ones(2, requires_grad=True), torch.zeros(2))
    assert type(tensor.grad_fn) is type(reference.grad_fn)


class NoGradientState(qbench.Quantizer):
    name = "state-without-gradient"
    scheme = "custom"

    def init_state(self, w: Any, ctx: qbench.QuantContext) -> dict[str, Any]:
        return {"scale": torch.tensor(1.0)}

    def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
        return w.sign()

    def bits_per_weight(self) -> float:
        return 1.0


def test_learned_state_without_an_owned_gradient_is_refused_with_the_fix():
    with pytest.raises(qbench.PluginError, match="set owns_gradient = True"):
        build_stack(qbench.create("cell", "rnn", hidden=4), 3, NoGradientState(), 0)


class BadFused(qbench.Cell):
    name = "bad-fused"
    params: ClassVar[dict[str, qbench.Param]] = COMMON_PARAMS
    tensors = (
        TensorSpec("w_input", "input"),
        TensorSpec("u", "recurrent", "diagonal"),
        TensorSpec("b_input", "bias", "vector"),
    )
    fused_kernel = "rnn_tanh"


class RepeatedNames(BadFused):
    name = "repeated-names"
    tensors = (TensorSpec("w", "input"), TensorSpec("w", "recurrent", "matrix", reads="hidden"))
    fused_kernel = None


@pytest.mark.parametrize(
    ("cell", "message"),
    [(BadFused, "fused_kernel 'rnn_tanh' needs a matrix 'w_recurrent'"), (RepeatedNames, "tensor names repeat")],
)
def test_a_wrong_declaration_is_a_plugin_error_naming_the_fix(cell, message):
    with pytest.raises(qbench.PluginError, match=message):
        build_stack(cell(hidden=4), 3, qbench.create("quantizer", "float"), 0)


def test_tensor_spec_rejects_unknown_layouts_and_roles():
    with pytest.raises(ValueError, match="layout must be one of"):
        TensorSpec("w", "input", "banded")
    with pytest.raises(ValueError, match="role must be one of"):
        TensorSpec("w", "output")


def test_hidden_state_quantizer_leaves_the_fused_kernel_and_quantizes_every_step():
    quantizer = qbench.create("quantizer", "lsq", bits=3, hidden=True)
    stack = build_stack(qbench.create("cell", "rnn", hidden=5), 3, quantizer, 0).eval()
    assert not stack.fused
    with torch.no_grad():
        y, _ = stack(torch.randn(6, 2, 3, generator=torch.Generator().manual_seed(0)))
    step = float(stack.context(0, "hidden", False).state["step"].detach())
    codes = y / step
    assert torch.allclose(codes, codes.round(), atol=1e-5)  # every output is a code times the learned step
    assert float(codes.abs().max()) <= 4
    exported = stack.export_layers()[0]
    assert exported.hidden_quantizer is not None and exported.hidden_quantizer["state"]["step"] == pytest.approx(step)


def test_hidden_lsq_step_starts_from_the_first_training_batch():
    """LSQ's activation init (Esser et al. 2019): s = 2 <|v|> / sqrt(Q_P) over the first training
    batch's hidden states, once, deterministically (a worker's pickled copy gets the same value)."""
    import pickle

    from qbench.training.reference import run_layer

    quantizer = qbench.create("quantizer", "lsq", bits=4, hidden=True)
    cell = qbench.create("cell", "gru", hidden=6)
    stack = build_stack(cell, 5, quantizer, 0)
    worker = pickle.loads(pickle.dumps(stack))  # what another executor's worker builds from
    x = torch.randn(7, 3, 5, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():  # the layer's hidden states for this batch, deterministic weights, float recurrence
        tensors = {name: quantizer.quantize(w.detach(), stack.context(0, name, False))
                   for name, w in stack.recurrent_layers()[0].shadow_tensors()}
        activations, _ = run_layer(cell.step, x, (torch.zeros(1, 3, 6),), tensors)
    expected = 2.0 * float(activations.abs().double().mean()) / 7**0.5  # Q_P = 2^3 - 1
    param = stack.recurrent_layers()[0].quant_state["hidden"]["step"]

    def step():
        return float(param.detach())

    assert step() != pytest.approx(expected, rel=1e-3)  # the stand-in until training starts
    stack.train()(x)
    assert step() == pytest.approx(expected, rel=1e-6)
    worker.train()(x)
    assert torch.equal(worker.recurrent_layers()[0].quant_state["hidden"]["step"], param)
    stack(3.0 * x)  # a later batch does not initialise again
    assert step() == pytest.approx(expected, rel=1e-6)
    again = pickle.loads(pickle.dumps(stack))
    again.load_state_dict(stack.state_dict())
    again(3.0 * x)  # nor does a restored checkpoint
    assert torch.equal(again.recurrent_layers()[0].quant_state["hidden"]["step"], param)


def test_weight_only_stacks_hold_no_hidden_state_flag():
    """Weight-only cases keep their state_dict (stored checkpoints and results stay valid)."""
    stack = build_stack(qbench.create("cell", "gru", hidden=4), 3, qbench.create("quantizer", "lsq"), 0)
    assert not [name for name in stack.state_dict() if "hidden" in name]


def test_learned_state_is_in_the_state_dict_and_restores():
    quantizer = qbench.create("quantizer", "ttq")
    a = build_stack(qbench.create("cell", "lstm", hidden=4), 3, quantizer, 0)
    names = [name for name in a.state_dict() if ".quant_state." in name]
    assert sorted(names) == sorted(
        f"layers.0.quant_state.{tensor}.{key}" for tensor in ("w_input", "w_recurrent", "b_input")
        for key in ("positive", "negative")
    )
    with torch.no_grad():
        for p in a.learned_state().values():
            p.add_(0.25)
    b = build_stack(qbench.create("cell", "lstm", hidden=4), 3, quantizer, 0)
    b.load_state_dict(a.state_dict())
    x = torch.randn(4, 2, 3)
    with torch.no_grad():
        torch.testing.assert_close(a.eval()(x)[0], b.eval()(x)[0], rtol=0, atol=0)


class ContractOneCell(RNNCell):
    """A contract-1 plugin cell: overrides build and returns its own module (no declaration)."""

    name = "contract-one"
    tensors = ()

    def build(self, input_size: int, quantizer: qbench.Quantizer, seed: int) -> Any:
        stack = build_stack(RNNCell(**self.config), input_size, quantizer, seed)
        stack.cell = self.name  # its export names its own cell, as an undeclared cell's stack does
        return stack


class TestContractOneCellStillPassesTheKit(CellContract):
    @pytest.fixture
    def cell(self):
        return ContractOneCell(hidden=5)

    @pytest.fixture
    def quantizer(self):
        return qbench.create("quantizer", "ternary", stochastic=True)
