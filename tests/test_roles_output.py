"""The output-layer role (issue 29): ``roles.output`` quantizes the network's ``Linear(h, C)``.

Without it the output layer stays full precision, every existing matrix keeps its case ids and
every record its numbers; with it the weight trains through the role's quantizer (the stack's
shadow-weight machinery), and the export, ``weight_bytes``, ``energy`` and the integer simulator
see its declared format.
"""

from __future__ import annotations

import json
import pickle
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import qbench
from qbench.errors import MatrixError
from qbench.matrix import build_quantizer, expand, load_matrix
from qbench.roles import RoleQuantizers, output_quantizer
from qbench.testing import registered_plugins

from .test_roles import ClippedState, Plugin, _matrix

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def host() -> Any:
    with registered_plugins(Plugin()) as h:
        yield h


def _composed(**roles: Any) -> RoleQuantizers:
    return RoleQuantizers(qbench.create("quantizer", "ternary"), roles)


def _model(quantizer: Any, hidden: int = 6, outputs: int = 3, seed: int = 0, cell: str = "gru") -> Any:
    from qbench.training.model import SequenceModel

    return SequenceModel(qbench.create("cell", cell, hidden=hidden), quantizer, "classification", 4, outputs, seed)


def _batch(seed: int = 0) -> tuple[Any, Any]:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(5, 7, 4, generator=generator), torch.tensor([7, 6, 5, 7, 3])


# -- backward compatible ----------------------------------------------------------------------------


@pytest.mark.parametrize("folder", ["roles@cpu-2core", "hardware@cpu-2core", "digits-quick@cpu-2core"])
def test_committed_matrices_keep_their_case_ids(folder):
    """The ids stored by committed runs made before the output role (plain and composed quantizers)."""
    run = json.loads((ROOT / "results" / folder / "run.json").read_text())
    matrix = load_matrix(ROOT / run["matrix_path"])
    assert sorted(case.case_id for case in expand(matrix)) == sorted(run["case_ids"])


def test_the_default_quantizer_never_reaches_the_output_layer(host):
    """A plain quantizer and a composition without roles.output keep the float nn.Linear."""
    from torch import nn

    hidden_only = build_quantizer(
        _matrix(host, 'name = "ternary"\nroles.hidden = { name = "lsq", hidden = true }').quantizers[0], host
    )
    for quantizer in (qbench.create("quantizer", "ternary"), qbench.create("quantizer", "lsq"), hidden_only):
        assert output_quantizer(quantizer) is None
        model = _model(quantizer)
        assert type(model.output) is nn.Linear and model.quantized_output is None
        assert model.quantized_parameter_count() == model.stack.quantized_parameter_count()
        exported = model.eval().export("classification")
        assert exported.output_tensor is None and exported.output_scheme == "float"
    assert not hidden_only.applies_to("output") and qbench.create("quantizer", "ternary").applies_to("output")


def test_a_float_output_model_is_built_as_before():
    """Same seed: the stack, the embedding and the output layer's float init are untouched by the role code."""
    torch.manual_seed(3)
    plain = _model(qbench.create("quantizer", "ternary"), seed=3)
    torch.manual_seed(3)
    composed = _model(_composed(output=qbench.create("quantizer", "exponential")), seed=3)
    for name, value in plain.stack.state_dict().items():
        assert torch.equal(value, composed.stack.state_dict()[name]), name
    assert torch.equal(plain.output.bias, composed.output.bias)  # the global RNG advanced the same way


# -- the matrix ---------------------------------------------------------------------------------------


def test_roles_output_is_named_last_and_changes_the_case_id(host):
    text = ('name = "ternary"\nroles.output = { name = "exponential", e_min = -4, e_max = 0 }\n'
            'roles.hidden = { name = "lsq", bits = 4, hidden = true }')  # fmt: skip
    (spec,) = _matrix(host, text).quantizers
    assert spec.label == "ternary+hidden=lsq(bits=4,hidden=true)+output=exponential(e_max=0,e_min=-4)"
    assert spec.as_dict()["roles"]["output"] == {"name": "exponential", "params": dict(spec.roles[1][1].params)}
    hidden_only = _matrix(host, 'name = "ternary"\nroles.hidden = { name = "lsq", bits = 4, hidden = true }')
    assert expand(_matrix(host, text))[0].case_id != expand(hidden_only)[0].case_id
    quantizer = build_quantizer(spec, host)
    assert quantizer.applies_to("output") and output_quantizer(quantizer).name == "exponential"


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('name = "ternary"\nroles.output = { name = "clipped-state" }', "does not quantize the output role"),
        ('name = "ternary"\nroles.output = { name = "lsq", bits = 99 }', "roles.output.*bits"),
        ('name = "ternary"\nroles.output = { name = "nope" }', "roles.output.*unknown quantizer 'nope'"),
        ('name = "ternary"\nroles.outputs = { name = "ternary" }', "unknown role.*'outputs'"),
        ('name = "ternary"\nroles.output = []', "roles.output is an empty list"),
    ],
)
def test_a_wrong_output_role_is_a_usage_error_naming_it(host, toml, message):
    with pytest.raises(MatrixError, match=message):
        _matrix(host, toml)


def test_a_quantizer_that_breaks_on_the_output_matrix_is_probed_only_where_assigned():
    """A plugin written before the role, whose quantize fails on a [C, h] matrix: its matrices still
    load; assigning it to roles.output is refused before any case runs, saying how to opt out."""

    class RowsOnly(ClippedState):
        name = "rows-only"

        def applies_to(self, role: str) -> bool:
            return qbench.Quantizer.applies_to(self, role)

        def quantize(self, w: Any, ctx: qbench.QuantContext) -> Any:
            if ctx.role == "output":
                raise KeyError(ctx.role)
            return torch.sign(w)

    class Plugs:
        @qbench.hookimpl
        def qbench_register_quantizers(self) -> list[type]:
            return [RowsOnly]

    from qbench.quantprobe import probe_problems
    from qbench.testing.quantizers import ROLE_CASES

    # plugins --check and the kit check every role a quantizer declares, the output layer's included
    assert "output" in [case[0] for case in ROLE_CASES]
    (problem,) = probe_problems(RowsOnly())
    assert "role 'output'" in problem and "applies_to('output')" in problem
    with registered_plugins(Plugs()) as h:
        assert _matrix(h, 'name = "rows-only"').quantizers[0].label == "rows-only"
        with pytest.raises(qbench.PluginError, match=r"role 'output'.*applies_to\('output'\)"):
            _matrix(h, 'name = "ternary"\nroles.output = { name = "rows-only" }')


# -- training -----------------------------------------------------------------------------------------


def test_the_output_weight_trains_through_the_quantizer_and_is_clipped():
    model = _model(_composed(output=qbench.create("quantizer", "ternary")), hidden=8, outputs=5)
    out = model.quantized_output
    assert out is not None and model.quantized_parameter_count() == model.stack.quantized_parameter_count() + 40
    w0 = (6.0 / (8 + 5)) ** 0.5
    assert float(out.weight.detach().abs().max()) <= w0  # Glorot init of the (h -> C) map
    x, lengths = _batch()
    model.train()
    logits = model.forward_sequences(x, lengths)
    # the forward reads the ternary values {-W0, 0, W0}; the gradient reaches the float shadow weight
    y, _ = model.stack(x.transpose(0, 1).contiguous(), None)
    last = y[lengths - 1, torch.arange(5)]
    ternary = qbench.create("quantizer", "ternary").quantize(out.weight.detach(), out.context(False))
    assert set(np.unique(np.round(ternary.numpy() / w0, 6))) <= {-1.0, 0.0, 1.0}
    torch.testing.assert_close(logits, last @ ternary.T + out.bias)
    logits.square().sum().backward()
    assert out.weight.grad is not None and float(out.weight.grad.abs().sum()) > 0
    assert out.bias.grad is not None  # the bias stays float and trains
    with torch.no_grad():
        out.weight.mul_(10.0)
    model.clip_shadow_weights_()
    assert float(out.weight.detach().abs().max()) <= w0 + 1e-7


def test_a_learned_output_quantizer_trains_its_state_and_survives_pickling():
    model = _model(_composed(output=qbench.create("quantizer", "lsq", bits=3)))
    out = model.quantized_output
    step = out.quant_state["weight"]["step"]
    assert "output.quant_state.weight.step" in model.state_dict()
    x, lengths = _batch()
    model.train()
    model.forward_sequences(x, lengths).square().sum().backward()
    assert step.grad is not None and float(step.grad.abs()) > 0
    model.eval()
    copy = pickle.loads(pickle.dumps(model))
    torch.testing.assert_close(copy.forward_sequences(x, lengths), model.forward_sequences(x, lengths), rtol=0, atol=0)
    exported = model.export("classification").output_tensor
    assert exported.bits == 3.0 and exported.scale == pytest.approx(float(step.detach())) and "step" in exported.state
    assert exported.quantizer == "lsq(bits=3)" and exported.role == "output"


def test_a_stochastic_output_quantizer_is_seeded():
    runs = []
    for _ in range(2):
        torch.manual_seed(5)  # the float bias, as the training loop seeds it
        model = _model(_composed(output=qbench.create("quantizer", "ternary", stochastic=True)), seed=5).train()
        x, lengths = _batch()
        runs.append(torch.stack([model.forward_sequences(x, lengths) for _ in range(3)]))
    torch.testing.assert_close(runs[0], runs[1], rtol=0, atol=0)
    assert not torch.equal(runs[0][0], runs[0][1])  # one draw per forward


# -- costs and hardware --------------------------------------------------------------------------------


def _exported(output: Any, hidden: int = 8, outputs: int = 5) -> Any:
    quantizer = qbench.create("quantizer", "ternary") if output is None else _composed(output=output)
    return _model(quantizer, hidden=hidden, outputs=outputs).eval().export("classification")


def test_weight_bytes_and_energy_price_the_output_layer_at_its_declared_bits():
    from qbench.case_runner import declared_storage

    energy = qbench.create("hardware", "energy")
    plain = _exported(None)
    ternary = _exported(qbench.create("quantizer", "ternary"))
    lsq = _exported(qbench.create("quantizer", "lsq", bits=4))
    stack_bits = declared_storage(plain)[0]
    assert declared_storage(ternary) == (stack_bits + 40 * 2.0, 0.0)
    assert declared_storage(lsq) == (stack_bits + 40 * 4.0, 32.0)  # its learned step, declared 32 bits
    costs = {name: energy.measure(model, None) for name, model in
             (("plain", plain), ("ternary", ternary), ("lsq", lsq))}  # fmt: skip
    assert costs["plain"]["output_weight_bytes"] == 40 * 16 / 8  # a float output layer: output_bits, as before
    assert costs["ternary"]["output_weight_bytes"] == 40 * 2 / 8
    assert costs["lsq"]["output_weight_bytes"] == (40 * 4 + 32) / 8
    assert costs["ternary"]["energy_output_pj_per_token"] < costs["plain"]["energy_output_pj_per_token"]
    assert costs["ternary"]["energy_pj_per_token"] < costs["plain"]["energy_pj_per_token"]
    # the recurrent layers' columns are the same model's
    assert costs["ternary"]["weight_bytes_dense"] == costs["plain"]["weight_bytes_dense"]


def test_a_float_output_layer_costs_what_it_cost_before():
    """Without output_tensor the energy backend prices the layer and its bias at output_bits, as always
    (the committed results rebuild byte for byte; this pins the rule)."""
    model = _exported(None)
    assert model.output_tensor is None
    c, h = model.output_weight.shape
    for bits in (16, 24):
        costs = qbench.create("hardware", "energy", output_bits=bits, memory="registers").measure(model, None)
        assert costs["output_weight_bytes"] == c * h * bits / 8
    weights = {bits: qbench.create("hardware", "energy", output_bits=bits, memory="registers").measure(model, None)
               for bits in (16, 24)}  # fmt: skip
    table = 0.009  # a register bit (docs/hardware.md); the classifier reads the layer once per sequence
    extra = (weights[24]["energy_weights_pj_per_token"] - weights[16]["energy_weights_pj_per_token"])
    assert extra == pytest.approx((c * h + c) * 8 * table, rel=0.05)


def _sample(model: Any) -> Any:
    from qbench.testing.hardware import random_sample

    return random_sample(model, length=5, sequences=4, seed=0)


def test_the_simulator_runs_a_quantized_output_layer_exactly():
    model = _exported(qbench.create("quantizer", "exponential", e_min=-6, e_max=0))
    result = qbench.create("hardware", "shift-add").measure(model, _sample(model))
    assert result["sim_output_requantized"] is False and "out=pow2" in result["sim_weight_kinds"]


def test_the_simulator_refuses_an_output_layer_it_cannot_encode_exactly():
    """A quantized output layer is never rounded to output_bits behind the record's back."""
    model = _exported(qbench.create("quantizer", "float"))
    assert model.output_tensor is not None and model.output_scheme == "float"
    simulator = qbench.create("hardware", "shift-add", float_weight_bits=0)
    model.layers = _exported(None).layers  # ternary recurrent layers: only the output layer is in question
    with pytest.raises(qbench.Unsupported, match="the output layer is quantized by float"):
        simulator.measure(model, _sample(model))
    requantized = qbench.create("hardware", "shift-add", float_weight_bits=12).measure(model, _sample(model))
    assert requantized["sim_output_requantized"] is True


def test_the_simulator_reads_the_output_layers_declared_scale():
    model = _exported(qbench.create("quantizer", "lsq", bits=4))
    with pytest.raises(qbench.Unsupported, match="the output layer weight: the learned step"):
        qbench.create("hardware", "shift-add", scale_bits=4).measure(model, _sample(model))


@pytest.mark.parametrize("output", [{"name": "exponential", "e_min": -6, "e_max": 0}, {"name": "lsq", "bits": 4}])
def test_the_c_library_computes_a_quantized_output_layer_bit_for_bit(output, tmp_path):
    """Power-of-two codes, and codes times a learned step (a scaled output row): the C library's
    logits equal the simulator's."""
    import shutil

    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler (Debian: apt-get install gcc)")
    from qbench_builtins.hardware.program import SimConfig, build_program

    from .test_c_export import assert_identical, compiled_outputs

    name, params = output["name"], {k: v for k, v in output.items() if k != "name"}
    model = _exported(qbench.create("quantizer", name, **params))
    config = SimConfig(scale_bits=24)  # wide enough for a learned float32 step
    assert not build_program(model, config).output.w.requantized
    assert_identical(*compiled_outputs(model, _sample(model), config, tmp_path))


# -- end to end ---------------------------------------------------------------------------------------

MATRIX = """
name = "outrole"
seeds = [0]
[[quantizer]]
name = "ternary"
[[quantizer]]
name = "ternary"
roles.output = { name = "exponential", e_min = -6, e_max = 0 }
[[cell]]
name = "gru"
hidden = 8
[[dataset]]
name = "digits-rows"
[[hardware]]
name = "energy"
[[hardware]]
name = "shift-add"
max_tokens = 64
[train]
epochs = 1
batch = 64
"""


def test_run_prices_and_labels_the_output_role(tmp_path, capsys, fresh_host):
    from qbench.cli import main

    from .runs import stored

    path = tmp_path / "outrole.toml"
    path.write_text(MATRIX)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    records = {r["quantizer_label"]: r for r in stored(out).values()}
    plain, composed = records["ternary"], records["ternary+output=exponential(e_max=0,e_min=-6)"]
    assert composed["status"] == "ok" and plain["status"] == "ok"
    assert plain["full_precision"] == ["input", "output"] and composed["full_precision"] == ["input", "output bias"]
    assert composed["weight_count"] == plain["weight_count"] + 10 * 8
    assert composed["weight_bytes"] > plain["weight_bytes"]
    assert composed["hardware_status"]["shift-add(max_tokens=64)"] == "ok"
    assert composed["sim_output_requantized"] is False
    assert composed["output_weight_bytes"] < plain["output_weight_bytes"]
    assert "ternary+output=exponential(e_max=0,e_min=-6)" in (out / "leaderboard.csv").read_text()
    assert "ternary+output=exponential(e\\_max=0,e\\_min=-6)" in (out / "leaderboard.md").read_text()


def test_a_bad_output_role_exits_4_with_one_message(tmp_path, capsys, fresh_host):
    from qbench.cli import main

    path = tmp_path / "bad.toml"
    path.write_text(MATRIX.replace('roles.output = { name = "exponential", e_min = -6, e_max = 0 }',
                                   'roles.output = { name = "ternary", bits = 2 }'))  # fmt: skip
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 4
    err = capsys.readouterr().err
    assert "roles.output" in err and "bits" in err and "Traceback" not in err
    assert not (tmp_path / "out" / "qbench.sqlite").exists()
    path.write_text(textwrap.dedent(MATRIX).replace('name = "exponential", e_min = -6, e_max = 0', 'name = "nope"'))
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--no-progress"]) == 4
    assert "roles.output" in capsys.readouterr().err
