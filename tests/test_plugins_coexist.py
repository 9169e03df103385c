"""Plugins that coexist: a broken one is left out, names cannot collide silently, every author
mistake is refused before any case runs with one message naming the plugin and the fix."""

from __future__ import annotations

import sys
import textwrap

import pytest

import qbench
from qbench.cli import main
from qbench.host import get_host
from qbench.testing import registered_plugins
from qbench.testing.quantizers import QuantizerContract

from . import rowstep
from .fakes import HALVE_PLUGIN

HALVE = HALVE_PLUGIN

MATRIX = """
name = "coexist"
[[quantizer]]
name = "{quantizer}"
[[cell]]
name = "gru"
hidden = 4
[[dataset]]
name = "pydoc-char"
[train]
epochs = 1
"""


def dry_run(tmp_path, capsys, quantizer, *options):
    path = tmp_path / "matrix.toml"
    path.write_text(MATRIX.format(quantizer=quantizer))
    out = tmp_path / "out"
    code = main([*options, "run", "--matrix", str(path), "--out", str(out), "--dry-run"])
    stdout, stderr = capsys.readouterr()
    return code, stdout, stderr


def first_case_id(table):
    lines = table.splitlines()
    return lines[next(i for i, line in enumerate(lines) if line.startswith("-----")) + 1].split()[0]


# -- isolation ------------------------------------------------------------------------------------


def test_an_unrelated_broken_plugin_leaves_create_and_the_plugin_under_test_working(fake_distribution, caplog):
    fake_distribution("shiny-quant", {"shiny": "shiny_plugin"}, {"shiny_plugin": "raise RuntimeError('boom')\n"})
    with registered_plugins(rowstep) as host:
        assert isinstance(qbench.create("quantizer", "row-step"), rowstep.RowStepQuantizer)
        assert qbench.create("cell", "gru", hidden=4).hidden == 4
        assert [info.name for info in host.broken] == ["shiny"]
    assert "plugin left out: error importing plugin 'shiny'" in caplog.text


def test_a_matrix_naming_a_broken_plugins_component_exits_4_naming_the_plugin(tmp_path, capsys, fake_distribution):
    broken = HALVE.replace('qbench.Param(float, 0.5, "the factor")', 'qbench.Param(float, "half", "the factor")')
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": broken})
    code, _, err = dry_run(tmp_path, capsys, "ternary")  # a matrix that does not need it runs
    assert code == 0, err
    code, _, err = dry_run(tmp_path, capsys, "halve")
    assert code == 4 and "Traceback" not in err
    assert "quantizer 'halve' is not available: it is provided by plugin 'acme' (distribution acme-quant 1.0" in err
    assert "the default of parameter 'factor' is invalid" in err and "QBENCH_DISABLE_PLUGINS=acme" in err


def test_a_plugin_that_fails_to_import_is_named_when_a_matrix_asks_for_a_missing_name(tmp_path, capsys,
                                                                                    fake_distribution):  # fmt: skip
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": "import not_a_module_xyz\n"})
    code, _, err = dry_run(tmp_path, capsys, "halve")
    assert code == 4
    assert "unknown quantizer 'halve'" in err
    assert "plugin 'acme' (distribution acme-quant 1.0) was left out because it is broken" in err


@pytest.mark.parametrize("how", ["environment", "option", "distribution"])
def test_a_disabled_plugin_is_not_even_imported(tmp_path, capsys, monkeypatch, fake_distribution, how):
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": "raise RuntimeError('boom')\n"})
    options: tuple[str, ...] = ()
    if how == "environment":
        monkeypatch.setenv("QBENCH_DISABLE_PLUGINS", "other, acme")
    else:
        options = ("-p", "no:acme" if how == "option" else "no:acme-quant")
    code, out, err = dry_run(tmp_path, capsys, "ternary", *options)
    assert code == 0 and "boom" not in err and "acme_plugin" not in sys.modules
    code = main([*options, "plugins"])
    out, err = capsys.readouterr()
    assert code == 0 and "1 disabled plugin(s): acme" in out
    assert "DISABLED" in next(line for line in out.splitlines() if line.startswith("acme "))
    code, _, err = dry_run(tmp_path, capsys, "halve", *options)
    assert code == 4 and "plugin 'acme' (distribution acme-quant 1.0) is disabled" in err


def test_the_plugin_under_test_is_not_dropped_quietly():
    class Broken:
        @staticmethod
        @qbench.hookimpl
        def qbench_register_quantizers():
            return [object]

    with pytest.raises(qbench.PluginError, match="not a subclass of qbench.Quantizer"):
        get_host((Broken(),), load_entry_points=False)


# -- names ------------------------------------------------------------------------------------------


def test_a_component_that_moved_to_another_distribution_is_refused_not_resumed(tmp_path, fake_distribution):
    from qbench.matrix import expand, parse_matrix
    from qbench.planning import stale_cases

    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": HALVE}, version="2.0")
    host = get_host()
    matrix = parse_matrix({"quantizer": [{"name": "halve"}], "cell": [{"name": "gru", "hidden": 4}],
                           "dataset": [{"name": "pydoc-char"}]}, "m.toml", "0", host)  # fmt: skip
    case = expand(matrix)[0]

    def stored(distribution, version):
        versions = {"plugin": "acme", "distribution": distribution, "version": version}
        return {case.case_id: {"provenance": {"plugins": {"quantizer": versions}}}}

    assert stale_cases([case], stored("acme-quant", "2.0"), host) == {}
    assert "acme-quant 1.0 -> acme-quant 2.0" in stale_cases([case], stored("acme-quant", "1.0"), host)[case.case_id]
    with pytest.raises(qbench.UsageError) as info:
        stale_cases([case], stored("qbench-halve", "1.0"), host)
    message = str(info.value)
    assert "quantizer 'halve' of 1 stored case(s) came from qbench-halve" in message
    assert "now names acme-quant's component" in message and "kept and not replaced" in message


def test_a_qualified_name_keeps_the_bare_names_case_id_apart_and_runs(tmp_path, capsys):
    code, bare, err = dry_run(tmp_path, capsys, "ternary")
    assert code == 0, err
    code, qualified, err = dry_run(tmp_path, capsys, "qbench:ternary")
    assert code == 0, err
    assert "qbench:ternary" in qualified
    assert first_case_id(bare) != first_case_id(qualified)
    code, _, err = dry_run(tmp_path, capsys, "nobody:ternary")
    assert code == 4 and "unknown quantizer 'nobody:ternary'" in err and "registered as qbench:ternary" in err


# -- guards: each author mistake, before any case runs ----------------------------------------------


def test_a_quantizer_returning_the_wrong_shape_is_refused_when_the_matrix_is_read(tmp_path, capsys,
                                                                                 fake_distribution):  # fmt: skip
    fake_distribution("acme-quant", {"acme": "acme_plugin"},
                      {"acme_plugin": HALVE.replace("return w * self.factor", "return (w * self.factor).sum(0)")})
    code, _, err = dry_run(tmp_path, capsys, "halve")
    assert code == 4 and not (tmp_path / "out").exists()
    assert "quantizer 'halve' of plugin 'acme' (distribution acme-quant 1.0)" in err
    assert "quantize returned shape (4,) torch.float32 for a (6, 4) torch.float32 tensor of role 'input'" in err
    assert "fix the plugin's quantize()" in err


def test_every_quantizer_of_a_matrix_that_fails_the_probe_is_named_at_once(tmp_path, capsys, fake_distribution):
    source = HALVE.replace("return w * self.factor", "return (w * self.factor).double()")
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": source})
    path = tmp_path / "matrix.toml"
    path.write_text(MATRIX.format(quantizer="halve").replace('name = "halve"', 'name = "halve"\nfactor = [0.5, 0.25]'))
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "out"), "--dry-run"]) == 4
    err = capsys.readouterr().err
    assert "(1) " in err and "(2) " in err and "halve(factor=0.25)" in err
    assert "quantize returned shape (6, 4) torch.float64 for a (6, 4) torch.float32 tensor" in err


BACKEND = """
import numpy as np
import qbench

class Lut(qbench.HardwareBackend):
    name = "lut"
    description = "look-up tables"
    columns = {"luts": "min"}

    def measure(self, model, sample):
        return RESULT

@qbench.hookimpl
def qbench_register_hardware():
    return [Lut]
"""


@pytest.mark.parametrize("result, fragment", [
    ('{"luts": 3.0, "brams": 2}', "measure returned column(s) ['brams'] that it does not declare in columns"),
    ('{"luts": np.float32(3.0)}', "column 'luts' is np.float32(3.0) of type numpy.float32, not a JSON scalar"),
])  # fmt: skip
def test_undeclared_columns_and_non_json_values_are_refused_naming_the_column(capsys, fake_distribution, result,
                                                                              fragment):  # fmt: skip
    fake_distribution("acme-lut", {"lut": "lut_plugin"}, {"lut_plugin": BACKEND.replace("RESULT", result)})
    code = main(["plugins", "--check"])
    out, _ = capsys.readouterr()
    assert code == 1
    line = next(line for line in out.splitlines() if line.startswith("FAIL hardware lut"))
    assert fragment in line


def test_every_author_error_of_a_plugin_is_reported_at_once(fake_distribution):
    source = HALVE.replace("return [Halve]", "return [Halve, Second, Third]") + """
class Second(qbench.Quantizer):
    name = "Second One"

class Third(qbench.HardwareBackend):
    name = "third"

@qbench.hookimpl
def qbench_register_hardware():
    return [Third()]
"""
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": source})
    broken = next(info for info in get_host().plugins if info.name == "acme").broken
    assert "3 problem(s): (1)" in broken
    assert "class Second has name 'Second One'" in broken
    assert "qbench_register_quantizers returned <class 'acme_plugin.Third'>, which is not a subclass of " \
           "qbench.Quantizer" in broken  # fmt: skip
    assert "qbench_register_hardware returned <Third third>" in broken and "return the class itself" in broken


def test_a_hook_without_the_marker_fails_plugins_check(capsys, fake_distribution):
    source = HALVE.replace("@qbench.hookimpl\n", "")
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": source})
    code = main(["plugins", "--check"])  # reported, not warned: another package must not break a test session
    out, err = capsys.readouterr()
    assert "qbench: plugin problem: plugin 'acme'" in err and "has no @qbench.hookimpl marker" in err
    assert code == 1
    assert ("FAIL plugin acme: qbench_register_quantizers has no @qbench.hookimpl marker, so qbench ignores it; "
            "decorate it with @qbench.hookimpl") in out  # fmt: skip


def test_an_unmarked_misspelled_hook_names_the_right_one(fake_distribution):
    source = HALVE.replace("@qbench.hookimpl\ndef qbench_register_quantizers", "def qbench_register_quantizer")
    fake_distribution("acme-quant", {"acme": "acme_plugin"}, {"acme_plugin": source})
    host = get_host()
    (message,) = next(info for info in host.plugins if info.name == "acme").unmarked
    assert "qbench_register_quantizer is not a qbench hook" in message
    assert "did you mean 'qbench_register_quantizers'" in message


def test_a_declared_cell_without_an_input_tensor_is_refused_at_registration(fake_distribution):
    """A recurrent tensor is optional (an element-wise recurrence such as minGRU's, issue 29); a tensor
    that reads the layer's input is not: the rule is checked when the plugin registers."""
    source = textwrap.dedent("""
    import qbench

    class Leaky(qbench.Cell):
        name = "leaky"
        params = {"hidden": qbench.Param(int, 8, "units")}
        tensors = (qbench.TensorSpec("w_input", "input"), qbench.TensorSpec("b_input", "bias", layout="vector"))

        def step(self, x, state, w):
            return (0.5 * state[0] + x @ w["w_input"].t() + w["b_input"],)

    class Constant(qbench.Cell):
        name = "constant"
        params = {"hidden": qbench.Param(int, 8, "units")}
        tensors = (qbench.TensorSpec("u", "recurrent", layout="diagonal"),)

        def step(self, x, state, w):
            return (w["u"] * state[0],)

    @qbench.hookimpl
    def qbench_register_cells():
        return [Leaky]
    """)
    broken_source = source.replace("return [Leaky]", "return [Constant]")
    fake_distribution("acme-cell", {"leaky": "leaky_plugin", "const": "const_plugin"},
                      {"leaky_plugin": source, "const_plugin": broken_source})  # fmt: skip
    plugins = {info.name: info for info in get_host().plugins}
    assert not plugins["leaky"].broken  # no recurrent tensor: accepted
    assert "cell 'constant': a declared cell needs at least one tensor of role 'input'" in plugins["const"].broken


# -- checks that fit the docs: learned state of any shape ------------------------------------------


def test_a_per_row_learned_step_passes_plugins_check(capsys, fake_distribution):
    fake_distribution("acme-rows", {"rows": "rows_plugin"}, {"rows_plugin": "from tests.rowstep import *\n"})
    code = main(["plugins", "--check"])
    out, _ = capsys.readouterr()
    assert code == 0, out
    assert "all ok" in out


class TestAPerRowLearnedStepPassesTheQuantizerKit(QuantizerContract):
    """Unmodified, a learned step per row (vector state) passes every check of the kit."""

    @pytest.fixture
    def quantizer(self):
        return rowstep.RowStepQuantizer()


def test_a_vector_state_reaches_the_export_as_an_array():
    import torch

    from qbench.testing.checks import check_learned_state_round_trip
    from qbench.training import build_stack

    stack = build_stack(qbench.create("cell", "gru", hidden=4), 3, rowstep.RowStepQuantizer(), 0)
    x = torch.randn(4, 2, 3, generator=torch.Generator().manual_seed(0))
    check_learned_state_round_trip(stack, x)
    state = stack.export_layers()[0].tensors["w_input"].state["step"]
    assert state.shape == (12,) and state.dtype.name == "float64"


def test_a_case_never_stores_an_undeclared_column_and_says_which(monkeypatch, data_cache):
    from qbench.case_runner import run_case
    from qbench.matrix import expand, parse_matrix

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    namespace: dict = {}
    exec(BACKEND.replace("RESULT", '{"luts": 3.0, "brams": np.int64(2)}'), namespace)  # noqa: S102 - our source
    plugin = type("LutPlugin", (), {"qbench_register_hardware": staticmethod(namespace["qbench_register_hardware"])})
    with registered_plugins(plugin(), load_entry_points=False) as host:
        raw = {"quantizer": [{"name": "ternary"}], "cell": [{"name": "rnn", "hidden": 4}],
               "dataset": [{"name": "pydoc-char"}], "hardware": [{"name": "lut"}],
               "train": {"epochs": 1, "batch": 4, "bptt": 8, "max_steps": 2, "eval_tokens": 64,
                         "hardware_tokens": 16}}  # fmt: skip
        record = run_case(expand(parse_matrix(raw, "m.toml", "0", host))[0], host=host)
    assert record["status"] == "ok", record.get("error")
    status = record["hardware_status"]["lut"]
    assert status.startswith("error: hardware 'lut': measure returned column(s) ['brams']")
    assert "column 'brams' is np.int64(2) of type numpy.int64, not a JSON scalar" in status
    assert "brams" not in record and "luts" not in record


def test_a_declaration_that_raises_when_read_leaves_the_plugin_out_not_qbench(fake_distribution):
    source = BACKEND.replace('columns = {"luts": "min"}', 'columns = Columns({"luts": "min"})').replace(
        "class Lut(", "class Columns(dict):\n    def items(self):\n        raise RuntimeError('nope')\n\nclass Lut(")
    fake_distribution("acme-lut", {"lut": "lut_plugin"}, {"lut_plugin": source})
    broken = next(info for info in get_host().plugins if info.name == "lut").broken
    assert "hardware class Lut: reading its declaration raised RuntimeError: nope" in broken


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_the_kits_random_models_have_the_structure_of_real_exports(cell):
    from qbench.data import LANGUAGE_MODEL
    from qbench.testing.hardware import random_exported_model
    from qbench.training.model import SequenceModel

    real = SequenceModel(qbench.create("cell", cell, hidden=8), qbench.create("quantizer", "ternary"), LANGUAGE_MODEL,
                         5, 5, 0).eval().export(LANGUAGE_MODEL).layers[0]  # fmt: skip
    kit = random_exported_model(cell, "ternary", hidden=8, input_size=5).layers[0]

    def shape(layer):
        return ({name: (t.values.shape, t.role, t.layout) for name, t in layer.tensors.items()}, layer.state_size,
                layer.elementwise, layer.w_input is layer.tensors["w_input"], layer.gate_blocks)  # fmt: skip

    assert shape(kit) == shape(real)


def test_a_qualified_baseline_is_recognised():
    from qbench.matrix import parse_matrix

    host = get_host(load_entry_points=False)
    raw = {"quantizer": [{"name": "ternary"}, {"name": "qbench:float"}], "cell": [{"name": "rnn"}],
           "dataset": [{"name": "pydoc-char"}]}  # fmt: skip
    assert parse_matrix(raw, "m.toml", "0", host).protocol.baseline == "qbench:float"


def test_a_new_built_in_named_like_a_published_plugins_component(tmp_path, capsys, fake_distribution):
    """The issue's story: qbench gains a built-in `indrnn` while qbench-indrnn publishes one: both load,
    matrices that do not name it run, the bare name lists both, the qualified names run."""
    source = textwrap.dedent("""
    import qbench
    from qbench_builtins.cells.recurrent import IndRNNCell

    class PublishedIndRNN(IndRNNCell):
        description = "the published package's IndRNN"

    @qbench.hookimpl
    def qbench_register_cells():
        return [PublishedIndRNN]
    """)
    fake_distribution("qbench-indrnn", {"indrnn": "indrnn_plugin"}, {"indrnn_plugin": source})
    path = tmp_path / "m.toml"
    for cell, expected in (("gru", 0), ("indrnn", 4), ("qbench-indrnn:indrnn", 0), ("qbench:indrnn", 0)):
        path.write_text(MATRIX.format(quantizer="ternary").replace('name = "gru"', f'name = "{cell}"'))
        code = main(["run", "--matrix", str(path), "--out", str(tmp_path / cell.replace(":", "_")), "--dry-run"])
        out, err = capsys.readouterr()
        assert code == expected, (cell, err)
    path.write_text(MATRIX.format(quantizer="ternary").replace('name = "gru"', 'name = "indrnn"'))
    assert main(["run", "--matrix", str(path), "--out", str(tmp_path / "o"), "--dry-run"]) == 4
    err = capsys.readouterr().err
    assert "cell name 'indrnn' is ambiguous" in err
    assert "'qbench-indrnn:indrnn' (plugin 'indrnn' (distribution qbench-indrnn 1.0))" in err
    assert "'qbench:indrnn' (qbench's built-in (qbench " in err
    # the published package's own code and tests, written before the built-in, keep their meaning
    from qbench.host import get_host

    host = get_host()
    assert type(host.create("cell", "indrnn")).description == "the published package's IndRNN"
    assert type(host.create("cell", "qbench:indrnn")).description != "the published package's IndRNN"
