"""End to end: a matrix with float, ternary and exponential shows the hardware argument in the leaderboard."""

from __future__ import annotations

import json

import pytest

from qbench.cli import main

from .matrices import matrix_toml

pytestmark = pytest.mark.slow

MATRIX = matrix_toml(
    "hardware-check", quantizers=("float", "ternary", "exponential"), cells=(("gru", {"hidden": 16}),),
    hardware=("shift-add", "energy"),
    epochs=1, batch=16, bptt=20, max_steps=10, eval_tokens=1000, hardware_tokens=300,
)


def test_leaderboard_shows_memory_and_energy_of_ternary_and_exponential(tmp_path) -> None:
    path = tmp_path / "hardware.toml"
    path.write_text(MATRIX)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(path), "--out", str(out)]) == 0
    board = json.loads((out / "leaderboard.json").read_text())
    aggregates = board["aggregates"]
    if isinstance(aggregates, dict):  # split layout: {"columns": [...], "rows": [[...], ...]}
        columns = aggregates["columns"]
        table = [dict(zip(columns, row, strict=True)) for row in aggregates["rows"]]
    else:  # one object per row, statistics nested
        table = [
            {"quantizer_label": r["quantizer_label"]}
            | {f"{k}_mean": v["mean"] for k, v in r["stats"].items()}
            for r in aggregates
        ]
    rows = {row["quantizer_label"]: row for row in table}
    assert set(rows) == {"float", "ternary", "exponential"}

    def mean(quantizer: str, column: str) -> float:
        return rows[quantizer][f"{column}_mean"]

    assert mean("float", "weight_bytes_dense") == 16 * mean("ternary", "weight_bytes_dense")
    for scheme in ("ternary", "exponential"):
        assert mean(scheme, "energy_pj_per_token") < mean("float", "energy_pj_per_token")
        assert mean(scheme, "sim_agreement") > 0.5
    assert board["directions"]["energy_pj_per_token"] == "min"
    assert board["directions"]["sim_agreement"] == "max"
    from qbench.store import Store

    store = Store(out / "qbench.sqlite")
    statuses = {r["quantizer"]: r["hardware_status"] for r in store.records()}
    store.close()
    # a float model has no exact integer form: recorded as unsupported, not a crash
    assert statuses["float"]["shift-add"].startswith("unsupported:")
    assert statuses["float"]["energy"] == "ok"
    assert statuses["ternary"] == {"shift-add": "ok", "energy": "ok"}
    markdown = (out / "leaderboard.md").read_text()
    assert "energy_pj_per_token" in markdown and "weight_bytes_dense" in markdown
