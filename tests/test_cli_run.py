"""End to end: ``qbench run`` on real data (the embedded pydoc-char), resume, rebuild, SIGKILL."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from qbench.cli import main

from .matrices import write_matrix_file
from .runs import kill_when, stored

pytestmark = pytest.mark.slow

TINY = dict(
    quantizers=("float", "ternary"), hardware=("shift-add", "energy"),
    epochs=1, batch=16, bptt=20, max_steps=15, eval_tokens=2000, hardware_tokens=200,
)


def test_run_writes_leaderboards_and_resumes(tmp_path, capsys, fresh_host):
    matrix = write_matrix_file(tmp_path, "tiny", **TINY)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    for name in ("leaderboard.md", "leaderboard.csv", "leaderboard.json", "leaderboard.html", "run.json"):
        assert (out / name).is_file(), name
    records = stored(out)
    assert len(records) == 2
    for record in records.values():
        assert record["status"] == "ok", record.get("error")
        assert record["test_bpc"] > 0 and record["directions"]["test_bpc"] == "min"
        assert record["provenance"]["dataset_fingerprint"]
        assert record["provenance"]["matrix_hash"] == json.loads((out / "run.json").read_text())["matrix_hash"]
        assert record["hardware_status"]["energy"] == "ok" and "energy_pj_per_token" in record
    by_quantizer = {r["quantizer"]: r for r in records.values()}
    # float weights have no exact integer form: the simulator says so instead of failing the case
    assert by_quantizer["float"]["hardware_status"]["shift-add"].startswith("unsupported: ")
    assert by_quantizer["ternary"]["hardware_status"]["shift-add"] == "ok"
    assert by_quantizer["ternary"]["sim_exact"] is True
    assert by_quantizer["ternary"]["energy_pj_per_token"] < by_quantizer["float"]["energy_pj_per_token"]
    assert by_quantizer["float"]["weight_bytes"] == 16 * by_quantizer["ternary"]["weight_bytes"]
    capsys.readouterr()

    # a second run re-runs nothing and exits 0
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "2 already stored, 0 to run" in err
    assert stored(out) == records

    # the dry run shows what is stored; the leaderboards can be rebuilt from the store alone
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--dry-run"]) == 0
    table = capsys.readouterr().out
    assert table.count(" ok") >= 2 and "ternary" in table
    (out / "leaderboard.md").unlink()
    assert main(["leaderboard", "--store", str(out / "qbench.sqlite")]) == 0
    assert "ternary" in (out / "leaderboard.md").read_text()


def test_sigkill_loses_no_finished_case(tmp_path):
    matrix = write_matrix_file(tmp_path, "tiny", **{**TINY, "seeds": (0, 1, 2), "max_steps": 300, "epochs": 10})
    out = tmp_path / "out"
    command = [sys.executable, "-m", "qbench", "run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]
    kill_when(command, lambda: 1 <= len(stored(out)) < 6)
    before = stored(out)
    assert 1 <= len(before) < 6
    resumed = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{len(before)} already stored, {6 - len(before)} to run" in resumed.stderr
    after = stored(out)
    assert len(after) == 6
    assert all(after[case_id] == record for case_id, record in before.items())  # nothing re-run
