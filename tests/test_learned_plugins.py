"""Contract 2 from the outside: the two example packages (a learned quantizer, a vector-recurrent cell),
the guide's code, and the learned / declared built-ins in one matrix on every executor."""

from __future__ import annotations

import importlib.util
import re
import sys
import types
from pathlib import Path

import pytest

import qbench
from qbench.training import build_stack

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {  # package directory -> module: one installed package per component
    "qbench-learnedbinary": "qbench_learnedbinary",
    "qbench-diagonalrnn": "qbench_diagonalrnn",
}
installed = pytest.mark.skipif(
    any(importlib.util.find_spec(module) is None for module in EXAMPLES.values()),
    reason="the example plugins are not installed: "
    "pip install ./examples/qbench-learnedbinary ./examples/qbench-diagonalrnn (as the README says)",
)


def python_blocks(markdown: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", markdown, flags=re.S)


def test_the_guide_shows_the_example_plugins_verbatim_and_they_run(monkeypatch):
    torch = pytest.importorskip("torch")
    from qbench.testing.quantizers import check_learned_state_trains

    blocks = python_blocks((ROOT / "docs" / "plugins.md").read_text())
    namespace: dict = {}
    for package, module_name in EXAMPLES.items():
        source = (ROOT / "examples" / package / module_name / "plugin.py").read_text()
        assert source in blocks, f"docs/plugins.md no longer shows examples/{package}'s plugin.py"
        module = types.ModuleType(f"guide_{module_name}")  # importable, so its classes pickle like a package's
        monkeypatch.setitem(sys.modules, module.__name__, module)
        exec(compile(source, "docs/plugins.md", "exec"), module.__dict__)  # noqa: S102 - the guide's own code
        namespace.update(module.__dict__)
    quantizer = namespace["LearnedBinary"]()
    check_learned_state_trains(quantizer)
    cell = namespace["DiagonalRNN"](hidden=4)
    stack = build_stack(cell, 3, quantizer, 0)
    y, h = stack(torch.randn(5, 2, 3))
    assert y.shape == (5, 2, 4) and h.shape == (1, 2, 4)
    assert stack.quantized_parameter_count() == 4 * 3 + 4 + 4  # the diagonal holds h weights, not h^2


def test_learned_quantizers_are_listed_with_their_papers(capsys):
    from qbench.cli import main

    assert main(["list", "quantizers"]) == 0
    out = capsys.readouterr().out
    assert "lsq" in out and "Esser et al. 2019" in out
    assert "ttq" in out and "Zhu et al. 2016" in out


@pytest.mark.slow
@installed
def test_learned_and_declared_components_run_in_one_matrix_on_every_executor(tmp_path, data_cache, monkeypatch):
    """Done-when: lsq (weights; weights and hidden state) / ttq / the plugin's learned-binary beside ternary,
    each package installed on its own, on indrnn and the plugin's
    diagonal-rnn: identical records with 1 and 2 workers and on Dask; energy prices the declared cells."""
    from qbench.matrix import expand, load_matrix
    from tests.matrices import write_matrix_file
    from tests.runs import records_per_executor
    from tests.test_executors import comparable

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    path = write_matrix_file(
        tmp_path, "learned",
        # lsq(hidden): its hidden step starts from the first training batch, in every worker alike
        quantizers=("ternary", "lsq", ("lsq", {"hidden": True}), "ttq", "learned-binary"),
        cells=(("indrnn", {"hidden": 8}), ("diagonal-rnn", {"hidden": 8})),
        datasets=(("pydoc-char", {"max_chars": 20000}),),
        hardware=("energy", "shift-add"),
        seeds=(0,), epochs=1, batch=8, bptt=20, max_steps=3, eval_tokens=300, hardware_tokens=60,
    )
    cases = expand(load_matrix(path))
    runs = records_per_executor(cases)
    reference = runs["workers-1"]
    assert len(reference) == 10
    for record in reference.values():
        assert record["status"] == "ok", record.get("error")
        assert record["hardware_status"]["energy"] == "ok", record["hardware_status"]
        assert record["energy_pj_per_token"] > 0
        status = record["hardware_status"]["shift-add"]
        assert status.startswith("unsupported: layer 0: the integer simulator has programs for rnn, gru, lstm only")
        assert record["cell"] in status
    for label, records in runs.items():
        assert sorted(records) == sorted(reference), label
        for case_id, record in records.items():
            assert comparable(record) == comparable(reference[case_id]), f"{label} differs on {case_id}"


def test_energy_prices_a_diagonal_as_h_weights():
    """The export keeps the diagonal a vector: weight memory counts h recurrent weights, not h^2."""
    pytest.importorskip("torch")
    from qbench.data import EvalSample  # noqa: F401 - the backend's sample type
    from qbench.export import ExportedModel

    cell = qbench.create("cell", "indrnn", hidden=6)
    stack = build_stack(cell, 4, qbench.create("quantizer", "ternary"), 0)
    layers = stack.export_layers()
    assert layers[0].tensors["w_recurrent"].values.shape == (6,)
    assert layers[0].tensors["w_recurrent"].layout == "diagonal"
    import numpy as np

    model = ExportedModel("indrnn", "classification", "features", 4, layers, np.ones((3, 6)), np.zeros(3))
    result = qbench.create("hardware", "energy").measure(model, None)
    # w_input 6 x 4, u 6, b 6: ternary at 2 bits
    assert result["weight_bytes_dense"] == (6 * 4 + 6 + 6) * 2 / 8
    assert result["energy_pj_per_token"] > 0
    with pytest.raises(qbench.Unsupported, match="cell 'indrnn' .*w_recurrent diagonal"):
        qbench.create("hardware", "shift-add").measure(model, None)


def test_ttq_is_priced_as_two_scale_ternary_and_shift_add_says_why_not():
    pytest.importorskip("torch")
    import numpy as np

    from qbench.export import ExportedModel

    stack = build_stack(qbench.create("cell", "rnn", hidden=6), 4, qbench.create("quantizer", "ttq"), 0)
    with __import__("torch").no_grad():  # make the scales differ, as training does
        stack.layers[0].quant_state["w_input"]["positive"].mul_(1.5)
    layers = stack.export_layers()
    model = ExportedModel("rnn", "classification", "features", 4, layers, np.ones((3, 6)), np.zeros(3))
    result = qbench.create("hardware", "energy").measure(model, None)
    assert result["datapath"] == "int16"  # not priced as a float model
    float_model = ExportedModel(
        "rnn", "classification", "features", 4,
        build_stack(qbench.create("cell", "rnn", hidden=6), 4, qbench.create("quantizer", "float"), 0).export_layers(),
        np.ones((3, 6)), np.zeros(3),
    )
    assert result["energy_pj_per_token"] < qbench.create("hardware", "energy").measure(float_model, None)[
        "energy_pj_per_token"
    ]
    with pytest.raises(qbench.Unsupported, match="layer 0 w_input: asymmetric ternary values .* TTQ"):
        qbench.create("hardware", "shift-add").measure(model, None)


@pytest.mark.slow
def test_lsq_and_ttq_on_a_leaderboard_beside_the_paper_methods(tmp_path, fresh_host, capsys):
    """Done-when: the learned built-ins run through ``qbench run`` with a paper method, and the
    leaderboard shows them with their energy figures and shift-add status."""
    import json as _json

    from qbench.cli import main
    from tests.matrices import write_matrix_file

    matrix = write_matrix_file(
        tmp_path, "learned-board", quantizers=("ternary", "lsq", "ttq"), hardware=("energy", "shift-add"),
        epochs=1, batch=16, bptt=20, max_steps=5, eval_tokens=800, hardware_tokens=100,
    )
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    capsys.readouterr()
    board = (out / "leaderboard.md").read_text()
    for name in ("ternary", "lsq", "ttq"):
        assert f"| {name}" in board or f" {name} " in board, name
    rows = _json.loads((out / "leaderboard.json").read_text())
    text = _json.dumps(rows)
    assert "lsq" in text and "ttq" in text and "energy_pj_per_token" in text
    import sqlite3

    db = sqlite3.connect(out / "qbench.sqlite")
    try:
        records = [_json.loads(r) for (r,) in db.execute("SELECT record FROM records")]
    finally:
        db.close()
    status = {r["quantizer"]: r["hardware_status"]["shift-add"] for r in records}
    assert status["ternary"] == "ok"
    assert status["lsq"] == "ok" or "the learned step" in status["lsq"], status["lsq"]  # a precise reason
    assert "asymmetric ternary" in status["ttq"] or status["ttq"] == "ok", status["ttq"]  # a precise reason
