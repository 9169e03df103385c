"""What plugins report reaches the leaderboards as declared: columns with direction "" in the CSV,
JSON and HTML, declared cost axes plotted, and a run whose every case failed still gets its pages."""

from __future__ import annotations

import csv
import json

from qbench.case_runner import error_record
from qbench.leaderboard import write_leaderboards
from qbench.matrix import Case, Spec
from tests.synthetic import make_record


def records_with_undirected_columns() -> list[dict]:
    records = []
    for quantizer in ("float", "ternary(stochastic=false)"):
        for seed in (0, 1):
            record = make_record(quantizer=quantizer, seed=seed)
            record["directions"].update(exact_run="", number_format="", widget_pj="min")
            record["exact_run"] = quantizer != "float"  # a bool: aggregates to the fraction of exact runs
            record["number_format"] = "Q8.8"  # text: no number to aggregate
            record["widget_pj"] = 10.0 + seed + (quantizer == "float")
            record["cost_axes"] = ["widget_pj"]
            records.append(record)
    return records


def test_columns_without_direction_reach_csv_json_and_html(tmp_path):
    write_leaderboards(records_with_undirected_columns(), tmp_path, "t")
    with open(tmp_path / "leaderboard.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert {row["quantizer"]: float(row["exact_run_mean"]) for row in rows} == {"float": 0.0, "ternary": 1.0}
    assert "number_format_mean" not in rows[0]  # text has no mean (it stays in each record)
    document = json.loads((tmp_path / "leaderboard.json").read_text())
    assert "exact_run" in document["runs"]["columns"]
    assert document["directions"]["exact_run"] == ""
    assert "exact_run" in (tmp_path / "leaderboard.html").read_text()


def test_plots_use_the_declared_cost_axes(tmp_path):
    paths = write_leaderboards(records_with_undirected_columns(), tmp_path, "t")
    stems = {path.stem for path in paths if path.parent.name == "plots"}
    assert "pydoc-char-test-bpc-vs-widget" in stems and "pydoc-char-test-bpc-vs-bits" in stems
    assert not any("vs-energy" in stem for stem in stems)  # not declared as a cost axis here


def test_a_run_whose_every_case_failed_before_training_gets_its_failure_table(tmp_path):
    spec = Spec("pydoc-char")
    cases = [Case(f"case{i}", "m", Spec("float"), Spec("rnn"), spec, (), i, {}) for i in range(2)]
    records = [error_record(case, "ValueError: the cell could not be built") for case in cases]
    write_leaderboards(records, tmp_path, "t")
    text = (tmp_path / "leaderboard.md").read_text()
    assert "Unranked: no case reported a metric" in text
    assert text.count("the cell could not be built") == 2
