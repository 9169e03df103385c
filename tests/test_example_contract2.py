"""Done-when of contract 2, part 2: a per-step-labelling dataset and a backend with its own columns,
each in its own installed package (examples/qbench-steps, examples/qbench-opcount), run with the
built-ins on 1 and 2 workers and on Dask with identical records, and every declared column
reaches every leaderboard format."""

from __future__ import annotations

import csv
import json

import pytest

pytest.importorskip("qbench_steps", reason="pip install ./examples/qbench-steps")
pytest.importorskip("qbench_opcount", reason="pip install ./examples/qbench-opcount")

pytestmark = pytest.mark.slow


def test_example_dataset_and_backend_on_every_executor_and_every_format(tmp_path):
    from qbench.leaderboard import write_leaderboards
    from qbench.matrix import expand, load_matrix
    from tests.matrices import write_matrix_file
    from tests.runs import records_per_executor
    from tests.test_executors import comparable

    path = write_matrix_file(
        tmp_path, "examples",
        quantizers=("float", "ternary"), cells=(("gru", {"hidden": 8}),),
        datasets=(("delayed-copy", {"sequences": 60, "length": 10}),), hardware=("opcount", "energy"),
        seeds=(0,), epochs=1, batch=16, hardware_tokens=100,
    )
    cases = expand(load_matrix(path))
    runs = records_per_executor(cases)
    reference = runs["workers-1"]
    for record in reference.values():
        assert record["status"] == "ok", record.get("error")
        assert record["hardware_status"] == {"opcount": "ok", "energy": "ok"}
        assert record["primary_metric"] == "test_step_accuracy" and record["cost_axes"] == ["opcount_macs_per_token",
                                                                                             "energy_pj_per_token"]
        assert record["provenance"]["plugins"]["hardware:opcount"]["distribution"] == "qbench-opcount"
        assert record["provenance"]["plugins"]["dataset"]["distribution"] == "qbench-steps"
    for label, records in runs.items():
        assert sorted(records) == sorted(reference), label
        for case_id, record in records.items():
            assert comparable(record) == comparable(reference[case_id]), f"{label} differs on {case_id}"

    out = tmp_path / "board"
    paths = write_leaderboards(list(reference.values()), out, "examples")
    declared = ("test_step_accuracy", "test_step_bits", "opcount_macs_per_token", "opcount_nonzero_fraction",
                "opcount_layers")
    with open(out / "leaderboard.csv", newline="") as handle:
        header = next(csv.reader(handle))
    document = json.loads((out / "leaderboard.json").read_text())
    page = (out / "leaderboard.html").read_text()
    for column in declared:
        assert f"{column}_mean" in header, column
        assert column in document["runs"]["columns"], column
        assert column in page, column
    assert "test_step_accuracy" in (out / "leaderboard.md").read_text()
    assert any(p.stem.endswith("-vs-opcount") for p in paths)  # the declared cost axis is plotted
