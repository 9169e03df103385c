"""A quantizer per role, declared costs, and cells beyond one recurrent matrix (issue 29)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

import qbench
from qbench.errors import MatrixError, PluginError
from qbench.matrix import expand, load_matrix, parse_matrix
from qbench.testing import registered_plugins

from .fakes import ClippedState

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


# -- an outside author's activation quantizer (a PACT-like clipped uniform state) -------------------


class Plugin:
    @qbench.hookimpl
    def qbench_register_quantizers(self) -> list[type]:
        return [ClippedState]


@pytest.fixture(scope="module")
def host() -> Any:
    with registered_plugins(Plugin()) as h:
        yield h


def _matrix(host: Any, quantizer_toml: str, cell: str = 'name = "rnn"\nhidden = 8') -> Any:
    import tomllib

    text = f"""
seeds = [0]
[[quantizer]]
{quantizer_toml}
[[cell]]
{cell}
[[dataset]]
name = "digits-rows"
"""
    return parse_matrix(tomllib.loads(text), "m.toml", "digest", host)


# -- a single [[quantizer]] means what it always meant ---------------------------------------------


def test_quickstart_case_ids_are_unchanged():
    """The ids recorded before quantizers per role existed (tests/snapshots/quickstart-case-ids.txt),
    of the quickstart matrix as it was then (its grid has changed since: tests/snapshots/
    quickstart-ce12cc1.toml keeps that version)."""
    expected = (ROOT / "tests/snapshots/quickstart-case-ids.txt").read_text().split()
    matrix = load_matrix(ROOT / "tests/snapshots/quickstart-ce12cc1.toml")
    assert [case.case_id for case in expand(matrix)] == expected


def test_a_plain_quantizer_spec_has_no_roles_in_its_payload(host):
    spec = _matrix(host, 'name = "ternary"').quantizers[0]
    assert spec.roles == () and spec.as_dict() == {"name": "ternary", "params": dict(spec.params)}
    assert spec.identity == "ternary" == spec.label


# -- a quantizer per role in the matrix ---------------------------------------------------------------


def test_roles_compose_plugins_and_name_every_role(host):
    matrix = _matrix(host, 'name = "ternary"\nroles.hidden = { name = "clipped-state", act_bits = 4 }')
    (spec,) = matrix.quantizers
    assert spec.label == "ternary+hidden=clipped-state(act_bits=4)" == spec.identity
    assert spec.as_dict()["roles"] == {"hidden": {"name": "clipped-state", "params": {"act_bits": 4}}}
    plain = _matrix(host, 'name = "ternary"')
    assert expand(matrix)[0].case_id != expand(plain)[0].case_id


def test_a_list_of_role_quantizers_is_an_axis(host):
    matrix = _matrix(host, 'name = "ternary"\nroles.hidden = [{ name = "clipped-state", act_bits = [2, 4] },'
                           ' { name = "lsq", hidden = true }]')  # fmt: skip
    labels = [spec.label for spec in matrix.quantizers]
    assert labels == ["ternary+hidden=clipped-state(act_bits=2)", "ternary+hidden=clipped-state(act_bits=4)",
                      "ternary+hidden=lsq(hidden=true)"]  # fmt: skip
    assert len({case.case_id for case in expand(matrix)}) == 3



def test_a_composed_case_is_rebuilt_from_its_record_alone(host):
    """``qbench validate --rerun`` rebuilds a case from its record: a composition's role quantizers
    come back from the label with the host's defaults, and the rebuilt id is the stored one."""
    from qbench import record as R
    from qbench.rerun import case_from_record

    matrix = _matrix(host, 'name = "ternary"\nroles.hidden = [{ name = "clipped-state", act_bits = 4 },'
                           ' { name = "lsq", bits = 4, hidden = true }]')  # fmt: skip
    for case in expand(matrix):
        record = {R.CASE_ID: case.case_id, R.SEED: case.seed, R.TRAIN: dict(case.train), R.HARDWARE: [],
                  R.MATRIX: case.matrix}  # fmt: skip
        for axis, spec in ((R.QUANTIZER, case.quantizer), (R.CELL, case.cell), (R.DATASET, case.dataset)):
            record.update({axis: spec.identity, f"{axis}_params": dict(spec.params), f"{axis}_label": spec.label})
        rebuilt = case_from_record(record, host)
        assert rebuilt.case_id == case.case_id and rebuilt.quantizer.label == case.quantizer.label
        # an altered role parameter is refused, as any altered recipe is
        record[R.QUANTIZER_LABEL] = record[R.QUANTIZER_LABEL].replace("4", "8")
        with pytest.raises(ValueError, match="rebuilds case"):
            case_from_record(record, host)

def test_a_tuned_quantizer_parameter_keeps_the_roles(host):
    import tomllib

    text = """
seeds = [0]
[[quantizer]]
name = "ternary"
roles.hidden = { name = "clipped-state" }
[[cell]]
name = "rnn"
[[dataset]]
name = "digits-rows"
[tune]
quantizer.stochastic = [false, true]
"""
    cases = expand(parse_matrix(tomllib.loads(text), "m.toml", "digest", host))
    assert len(cases) == 2 and all(case.quantizer.roles == cases[0].quantizer.roles != () for case in cases)
    assert {case.quantizer.params["stochastic"] for case in cases} == {False, True}
    assert all(case.method[2] == "ternary+hidden=clipped-state" for case in cases)


def test_tuning_a_roles_parameter_is_refused_with_the_axis_to_write_instead(host):
    import tomllib

    text = """
seeds = [0]
[[quantizer]]
name = "ternary"
roles.hidden = { name = "lsq", hidden = true }
[[cell]]
name = "rnn"
[[dataset]]
name = "digits-rows"
[tune]
roles.hidden.bits = [2, 4]
"""
    with pytest.raises(MatrixError, match=r"(?s)cannot tune a role's parameters.*roles.hidden = \[\{"):
        parse_matrix(tomllib.loads(text), "m.toml", "digest", host)


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "ternary"\nroles.hidden = { name = "ternary" }', "ternary does not quantize the hidden role"),
        ('name = "ternary"\nroles.input = { name = "clipped-state" }', "does not quantize the input role"),
        ('name = "ternary"\nroles.state = { name = "lsq" }', "unknown role.*'state'"),
        ('name = "ternary"\nroles.hidden = { name = "nope" }', "unknown quantizer 'nope'"),
        ('name = "ternary"\nroles.hidden = { bits = 4 }', "roles.hidden must be a table with a quantizer 'name'"),
        ('name = "ternary"\nroles = 3', "roles must be a table"),
    ],
)
def test_a_wrong_role_is_a_usage_error_naming_it(host, toml, message):
    with pytest.raises(MatrixError, match=message):
        _matrix(host, toml)


def test_composed_stack_quantizes_each_role_with_its_own_quantizer_and_exports_its_format(host):
    from qbench.matrix import build_quantizer
    from qbench.training import build_stack

    spec = _matrix(host, 'name = "ternary"\nroles.hidden = { name = "clipped-state", act_bits = 3 }').quantizers[0]
    quantizer = build_quantizer(spec, host)
    stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, quantizer, 0).eval()
    assert stack.quantize_hidden and not stack.fused
    y, _ = stack(torch.randn(5, 2, 4))
    assert set(np.unique(np.round(y.detach().numpy() * 3, 6))) <= {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    (layer,) = stack.export_layers()
    assert layer.tensors["w_input"].scheme == "ternary" and layer.tensors["w_input"].bits == 2.0
    assert layer.tensors["w_input"].quantizer == "ternary"
    assert layer.hidden_quantizer is not None
    assert layer.hidden_quantizer["bits"] == 3.0 and layer.hidden_quantizer["quantizer"] == "clipped-state(act_bits=3)"
    assert layer.hidden_bits == 3.0


def test_composed_learned_roles_train_their_own_state(host):
    """A learned weight quantizer (lsq) on the recurrent matrix only: its step is trained, the rest is ternary."""
    from qbench.matrix import build_quantizer
    from qbench.training import build_stack

    spec = _matrix(host, 'name = "ternary"\nroles.recurrent = { name = "lsq", bits = 3 }').quantizers[0]
    stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, build_quantizer(spec, host), 0).train()
    assert list(stack.layers[0].quant_state) == ["w_recurrent"]
    y, _ = stack(torch.randn(5, 2, 4))
    y.square().sum().backward()
    assert stack.layers[0].quant_state["w_recurrent"]["step"].grad is not None
    assert stack.layers[0].w_input.grad is not None  # the ternary role through the straight-through estimator
    exported = stack.export_layers()[0].tensors
    assert exported["w_recurrent"].bits == 3.0 and exported["w_recurrent"].scale is not None
    assert exported["w_input"].scale is None and exported["w_input"].scheme == "ternary"


def test_the_guides_activation_quantizer_composes_with_builtin_ternary_weights():
    """docs/plugins.md's ClippedState block, run as a plugin: ternary weights, a 4-bit state, priced at 4 bits."""
    import re
    import sys
    import tomllib
    import types

    from qbench.matrix import build_quantizer
    from qbench.training import build_stack

    guide = (ROOT / "docs" / "plugins.md").read_text()
    (source,) = [b for b in re.findall(r"```python\n(.*?)```", guide, flags=re.S) if "class ClippedState" in b]
    (matrix_toml,) = [b for b in re.findall(r"```toml\n(.*?)```", guide, flags=re.S) if "clipped-state" in b]
    module = types.ModuleType("guide_clipped_state")
    sys.modules[module.__name__] = module
    try:
        exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 - the guide's own code
        with registered_plugins(module) as guide_host:
            text = matrix_toml + '\n[[cell]]\nname = "rnn"\nhidden = 6\n[[dataset]]\nname = "digits-rows"\n'
            (spec,) = parse_matrix(tomllib.loads(text), "m.toml", "d", guide_host).quantizers
            assert spec.label == "ternary+hidden=clipped-state(act_bits=4)"
            stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, build_quantizer(spec, guide_host), 0)
            (layer,) = stack.export_layers()
            assert layer.tensors["w_recurrent"].scheme == "ternary" and layer.hidden_bits == 4.0
    finally:
        del sys.modules[module.__name__]


# -- declared costs ---------------------------------------------------------------------------------


def _model(stack: Any, cell: str = "rnn") -> Any:
    from qbench.export import ExportedModel

    hidden = stack.hidden
    return ExportedModel(cell, "classification", "features", 4, stack.export_layers(), np.ones((3, hidden)),
                         np.zeros(3))  # fmt: skip


def test_energy_prices_the_hidden_state_at_its_declared_bits(host):
    """The same model with a 4-bit and a 12-bit state: the state (and the products reading it) cost less."""
    from qbench.matrix import build_quantizer
    from qbench.training import build_stack

    energy = qbench.create("hardware", "energy")
    results = {}
    for bits in (4, 12):
        spec = _matrix(host, f'name = "ternary"\nroles.hidden = {{ name = "clipped-state", act_bits = {bits} }}')
        stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, build_quantizer(spec.quantizers[0], host), 0)
        results[bits] = energy.measure(_model(stack), None)
    plain = energy.measure(_model(build_stack(qbench.create("cell", "rnn", hidden=6), 4,
                                              qbench.create("quantizer", "ternary"), 0)), None)  # fmt: skip
    assert results[4]["energy_state_pj_per_token"] < results[12]["energy_state_pj_per_token"]
    assert results[12]["energy_state_pj_per_token"] < plain["energy_state_pj_per_token"]  # 16-bit activations
    assert results[4]["energy_pj_per_token"] < results[12]["energy_pj_per_token"] < plain["energy_pj_per_token"]
    assert results[4]["state_bytes"] == 6 * 4 / 8 and plain["state_bytes"] == 6 * 16 / 8
    assert results[4]["weight_bytes_dense"] == plain["weight_bytes_dense"]  # a state quantizer without state


def test_learned_state_is_counted_in_weight_bytes():
    """LSQ's step per tensor (declared state_bits 32) is stored beside the weights."""
    from qbench.case_runner import declared_storage
    from qbench.export import ExportedModel
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, qbench.create("quantizer", "lsq", bits=4), 0)
    model = ExportedModel("rnn", "classification", "features", 4, stack.export_layers(), np.ones((3, 6)), np.zeros(3))
    weights = 6 * 4 + 6 * 6 + 6
    assert declared_storage(model) == (weights * 4.0, 3 * 32.0)  # three tensors, one step each
    energy = qbench.create("hardware", "energy").measure(model, None)
    assert energy["weight_bytes_dense"] == (weights * 4 + 3 * 32) / 8


def test_a_plain_model_costs_what_it_cost_before():
    """No learned state, one width: weight_bytes is count x bits / 8 exactly (records unchanged)."""
    from qbench.case_runner import declared_storage
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "gru", hidden=5), 3, qbench.create("quantizer", "ternary"), 0)
    weights, learned = declared_storage(_model(stack, "gru"))
    assert learned == 0.0 and (weights + learned) / 8.0 == stack.quantized_parameter_count() * 2.0 / 8.0


def test_the_simulator_reads_the_declared_scale_not_an_encoding_key():
    """A learned step with more significant bits than scale_bits is refused from ExportedTensor.scale."""
    from qbench.export import ExportedModel
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, qbench.create("quantizer", "lsq", bits=4), 0)
    layers = stack.export_layers()
    for tensor in layers[0].tensors.values():
        tensor.encoding = {}  # no quantizer-specific keys left: the declaration alone must suffice
    model = ExportedModel("rnn", "classification", "features", 4, layers, np.ones((3, 6)), np.zeros(3))
    with pytest.raises(qbench.Unsupported, match="learned step .* significant bits"):
        qbench.create("hardware", "shift-add", scale_bits=4).measure(model, None)


# -- cells beyond one recurrent matrix --------------------------------------------------------------


def test_mingru_has_no_recurrent_tensor_and_its_scan_equals_its_steps():
    from qbench.testing.checks import check_fused_matches_reference
    from qbench.training import build_stack

    cell = qbench.create("cell", "mingru", hidden=6)
    assert {spec.role for spec in cell.tensors} == {"input", "bias"}
    stack = build_stack(cell, 4, qbench.create("quantizer", "ternary"), 0).double().train()
    assert stack.implementation == "scan"
    check_fused_matches_reference(stack, torch.randn(40, 3, 4, dtype=torch.float64), fast="scan")
    assert stack.export_layers()[0].w_recurrent is None


def test_mingru_scan_keeps_the_gradient_of_a_zero_candidate():
    """A quantized row of zeros makes h~ exactly 0: its gradient is still z * dL/dh, as in the loop."""
    from qbench.testing.checks import check_fused_matches_reference
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "mingru", hidden=4), 3, qbench.create("quantizer", "float"), 0).double()
    with torch.no_grad():
        stack.layers[0].w_input[4:].zero_()  # the candidate block
    check_fused_matches_reference(stack.train(), torch.randn(9, 2, 3, dtype=torch.float64), fast="scan")


@pytest.mark.parametrize("solver", ["sequential", "log"])
def test_linear_recurrence_solvers_equal_the_autograd_loop(solver):
    """Both solvers give the loop's h and its gradients for a, b and h0 (a zero b included)."""
    from qbench.training.scan import linear_recurrence

    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(30, 3, 4, generator=generator, dtype=torch.float64)
    b = torch.randn(30, 3, 4, generator=generator, dtype=torch.float64)
    b[:, 0, 0] = 0.0
    h0 = torch.randn(3, 4, generator=generator, dtype=torch.float64)
    weights = torch.randn(30, 3, 4, generator=generator, dtype=torch.float64)
    results = []
    for run in ("loop", solver):
        leaves = [t.clone().requires_grad_(True) for t in (logits, b, h0)]
        a = torch.sigmoid(leaves[0])
        if run == "loop":
            h, outputs = leaves[2], []
            for t in range(30):
                h = a[t] * h + leaves[1][t]
                outputs.append(h)
            out = torch.stack(outputs)
        else:
            out = linear_recurrence(a, leaves[1], leaves[2], log_a=torch.nn.functional.logsigmoid(leaves[0]),
                                    solver=solver)  # fmt: skip
        (out * weights).sum().backward()
        results.append([out.detach(), *(leaf.grad for leaf in leaves)])
    for expected, got in zip(*results, strict=True):
        torch.testing.assert_close(got, expected, atol=1e-10, rtol=1e-10)


@pytest.mark.parametrize("solver", ["sequential", "log"])
def test_mingru_scan_is_stable_over_long_sequences(solver, monkeypatch):
    """Float32, 2000 steps, gates saturated both ways: each solver stays finite and on the loop."""
    import qbench.training.scan as scan
    from qbench.training import build_stack

    chosen = scan.linear_recurrence
    monkeypatch.setattr(scan, "linear_recurrence", lambda *a, **k: chosen(*a, **{**k, "solver": solver}))
    stack = build_stack(qbench.create("cell", "mingru", hidden=4), 3, qbench.create("quantizer", "float"), 0)
    with torch.no_grad():
        stack.layers[0].w_input.mul_(8.0)
    x = torch.randn(2000, 2, 3, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        scanned, _ = stack(x)
        stack.implementation = "loop"
        looped, _ = stack(x)
    assert bool(torch.isfinite(scanned).all())
    torch.testing.assert_close(scanned, looped, atol=1e-4, rtol=1e-4)


def test_mingru_is_priced_by_energy_and_refused_by_the_simulator_with_the_reason():
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "mingru", hidden=6), 4, qbench.create("quantizer", "ternary"), 0)
    model = _model(stack, "mingru")
    result = qbench.create("hardware", "energy").measure(model, None)
    assert result["energy_pj_per_token"] > 0
    assert result["weight_bytes_dense"] == (12 * 4 + 12) * 2 / 8  # two gate blocks, input matrix and bias only
    with pytest.raises(qbench.Unsupported, match="cell 'mingru'"):
        qbench.create("hardware", "shift-add").measure(model, None)


def test_a_hidden_state_quantizer_leaves_the_scan_for_the_loop():
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "mingru", hidden=6), 4, qbench.create("quantizer", "lsq", hidden=True), 0)
    assert stack.implementation == "scan" and not stack.scanned  # the state is quantized at every step


def test_an_init_range_draws_inside_it_from_the_seed():
    from qbench.training import build_stack

    class Decay(qbench.Cell):
        name = "decay-test"
        params: ClassVar[dict[str, qbench.Param]] = {"hidden": qbench.Param(int, 4, "units")}
        tensors = (
            qbench.TensorSpec("w_input", "input", "matrix"),
            qbench.TensorSpec("a", "recurrent", "diagonal", init=(0.9, 0.999)),
            qbench.TensorSpec("b", "bias", "vector", init=(1.0, 1.0)),
        )
        elementwise: ClassVar[dict[str, int]] = {}

        def step(self, x, state, w):
            return (w["a"] * state[0] + x @ w["w_input"].t() + w["b"],)

    cell = Decay(hidden=50)
    a = build_stack(cell, 3, qbench.create("quantizer", "float"), 7).layers[0]
    again = build_stack(cell, 3, qbench.create("quantizer", "float"), 7).layers[0]
    assert bool(((a.a >= 0.9) & (a.a <= 0.999)).all()) and torch.equal(a.a, again.a)
    assert torch.equal(a.b, torch.ones(50))
    with pytest.raises(ValueError, match="init range"):
        qbench.TensorSpec("a", "recurrent", "diagonal", init=(1.0, 0.5))


def _register(cell_cls: type) -> None:
    class Bad:
        @qbench.hookimpl
        def qbench_register_cells(self) -> list[type]:
            return [cell_cls]

    with registered_plugins(Bad()):
        pass


def test_declaration_rules_are_checked_at_registration():
    class NoInput(qbench.Cell):
        name = "no-input"
        params: ClassVar[dict[str, qbench.Param]] = {"hidden": qbench.Param(int, 4, "units")}
        tensors = (qbench.TensorSpec("u", "recurrent", "diagonal"),)

    class ScanAndKernel(qbench.Cell):
        name = "scan-and-kernel"
        params: ClassVar[dict[str, qbench.Param]] = {"hidden": qbench.Param(int, 4, "units")}
        tensors = (
            qbench.TensorSpec("w_input", "input", "matrix"),
            qbench.TensorSpec("w_recurrent", "recurrent", "matrix", reads="hidden"),
            qbench.TensorSpec("b_input", "bias", "vector"),
        )
        fused_kernel = "rnn_tanh"

        def scan(self, x, state, w):  # pragma: no cover - refused before use
            raise AssertionError

    for cls, message in ((NoInput, "needs at least one tensor of role 'input'"),
                         (ScanAndKernel, "both a fused_kernel and a scan")):
        with pytest.raises(PluginError, match=message):
            _register(cls)


def test_a_cell_without_a_recurrent_tensor_registers():
    class Leaky(qbench.Cell):
        name = "leaky-test"
        params: ClassVar[dict[str, qbench.Param]] = {"hidden": qbench.Param(int, 4, "units")}
        tensors = (qbench.TensorSpec("w_input", "input", "matrix"),)

        def step(self, x, state, w):
            return (0.5 * state[0] + x @ w["w_input"].t(),)

    class Only:
        @qbench.hookimpl
        def qbench_register_cells(self) -> list[type]:
            return [Leaky]

    with registered_plugins(Only()) as h:
        assert "leaky-test" in h.registry("cell")
    assert math.isfinite(1.0)
