"""What the host no longer spells: the baseline of the paired comparison (the matrix's, else the
quantizer declaring ``baseline = True``, else none, said so on the pages) and the order of the cost
columns (the host's weight columns, the backends' cost axes, their ``leading_columns``)."""

from __future__ import annotations

import json

import pytest

import qbench
from qbench import PluginError
from qbench.host import get_host
from qbench.leaderboard import write_frame
from qbench.leaderboard.compute.frame import column_sort_key, cost_order, load_runs
from qbench.matrix import MatrixError, parse_matrix
from tests.synthetic import make_records

RAW = {"name": "m", "quantizer": [{"name": "ternary"}, {"name": "binary"}], "cell": [{"name": "rnn"}],
       "dataset": [{"name": "pydoc-char"}]}  # fmt: skip


@pytest.fixture
def no_declared_baseline(monkeypatch):
    """No installed quantizer declares itself the baseline."""
    for _, entry in get_host().registry("quantizer").items():
        if getattr(entry.cls, "baseline", False):
            monkeypatch.setattr(entry.cls, "baseline", False)


def test_without_a_declared_or_named_baseline_the_matrix_has_none(no_declared_baseline):
    assert parse_matrix(RAW, "m.toml", "0", get_host()).protocol.baseline == ""
    assert parse_matrix({**RAW, "baseline": "ternary"}, "m.toml", "0", get_host()).protocol.baseline == "ternary"
    with pytest.raises(MatrixError, match="'baseline' must be a quantizer name"):
        parse_matrix({**RAW, "baseline": ""}, "m.toml", "0", get_host())


def test_without_a_baseline_the_pages_say_there_is_no_paired_comparison(tmp_path):
    # the leaderboard reads the declarations from the records, never from the installed plugins:
    # records whose quantizers all declared baseline = False (as the case runner writes them)
    records = make_records(seeds=2)
    for record in records:
        record["declarations"] = {"quantizer": {"name": record["quantizer"], "baseline": False}}
    write_frame(load_runs(records), tmp_path, "t", plots=False)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "No paired comparison: no quantizer of these runs declares itself the baseline" in markdown
    assert "Against the" not in markdown
    assert "baseline = True" in (tmp_path / "leaderboard.html").read_text()
    document = json.loads((tmp_path / "leaderboard.json").read_text())
    assert document["paired"]["rows"] == []


def test_the_declared_baseline_is_compared_with(tmp_path):
    write_frame(load_runs(make_records(seeds=2)), tmp_path, "t", plots=False)
    markdown = (tmp_path / "leaderboard.md").read_text()
    assert "### Against the float baseline" in markdown and "No paired comparison" not in markdown


def test_cost_columns_follow_the_declarations():
    order = cost_order(["e_pj"], ["m", "a", "e_pj"])
    assert order == ["weight_bits", "weight_bytes", "e_pj", "m", "a"]
    columns = ["z", "a", "tokens_per_second", "test_x", "m", "weight_bytes", "e_pj"]
    assert sorted(columns, key=column_sort_key(order)) == ["test_x", "weight_bytes", "e_pj", "m", "a", "z",
                                                          "tokens_per_second"]  # fmt: skip


def test_the_frame_orders_the_builtin_backends_columns_as_they_declare():
    frame = load_runs(make_records(seeds=1))
    costs = [c for c in frame.value_columns if not c.startswith(("test_", "valid_"))]
    assert costs == ["weight_bits", "weight_bytes", "energy_pj_per_token", "mults", "adds", "shifts", "sim_exact",
                     "sim_max_abs_error", "tokens_per_second", "train_seconds"]  # fmt: skip


def test_leading_columns_must_be_declared_columns():
    backend = type("Lead", (qbench.HardwareBackend,), {"name": "lead", "description": "d",
                                                       "columns": {"lead_x": "min"}, "leading_columns": ("lead_y",)})
    namespace = type("P", (), {"__name__": "lead"})()
    namespace.qbench_register_hardware = qbench.hookimpl(specname="qbench_register_hardware")(lambda: [backend])
    with pytest.raises(PluginError, match=r"leading_columns names \['lead_y'\]"):
        get_host((namespace,), load_entry_points=False)
