"""``qbench compare`` and ``qbench validate`` end to end, through ``qbench.cli.main``."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest

from qbench.cli import main
from qbench.leaderboard import write_leaderboards
from qbench.store import Store
from tests.synthetic import make_records

TERNARY = "ternary(stochastic=false)"


def publish(directory: Path, records: list[dict], plots: bool = False) -> Path:
    """A run directory as ``qbench run`` leaves it: the store and the leaderboards built from it."""
    with Store(directory / "qbench.sqlite") as store:
        for record in records:
            store.put(record)
        stored = store.records()
    write_leaderboards(stored, directory, "test run", plots=plots)
    return directory


@pytest.fixture(scope="module")
def pristine_run(tmp_path_factory):
    directory = tmp_path_factory.mktemp("pristine")
    return publish(directory, make_records(seeds=3, datasets=("pydoc-char", "digits")), plots=True)


@pytest.fixture
def run_a(pristine_run, tmp_path):
    """A private copy of the published run (tests edit it); the plots are drawn once per module."""
    return Path(shutil.copytree(pristine_run, tmp_path / "a"))


def shifted(delta_bpc: float = 0.0, delta_acc: float = 0.0) -> list[dict]:
    records = make_records(seeds=3, datasets=("pydoc-char", "digits"))
    for record in records:
        if record["quantizer_label"] == TERNARY and record["status"] == "ok":
            if "test_bpc" in record:
                record["test_bpc"] += delta_bpc
            else:
                record["test_accuracy"] += delta_acc
    return records


# ---------------------------------------------------------------------------------------- validate


def test_validate_accepts_a_fresh_leaderboard_and_traces_every_row(run_a, capsys):
    assert main(["validate", str(run_a)]) == 0
    out = capsys.readouterr().out
    assert "valid (20 rows, 60 runs, 60 traced to stored records, every published value recomputed" in out


def test_validate_without_a_store_checks_the_rest_and_certifies_nothing(tmp_path, capsys):
    out_dir = tmp_path / "published"
    write_leaderboards(make_records(seeds=2), out_dir, "no store", plots=False)
    assert main(["validate", str(out_dir)]) == 1
    out = capsys.readouterr().out
    assert "no published value is traced" in out and "not traced to stored records, not certified" in out
    assert "valid (" not in out


def test_validate_catches_an_edited_file(run_a, capsys):
    md = run_a / "leaderboard.md"
    md.write_text(md.read_text().replace("0.9", "0.8", 1))
    assert main(["validate", str(run_a)]) == 1
    assert "leaderboard.md does not match its sha256" in capsys.readouterr().out


def test_validate_catches_a_doctored_statistic_and_an_unlisted_plot(run_a, capsys):
    path = run_a / "leaderboard.json"
    document = json.loads(path.read_text())
    column = document["aggregates"]["columns"].index("test_accuracy_mean")
    document["aggregates"]["rows"][0][column] += 0.01
    path.write_text(json.dumps(document))
    (run_a / "plots" / "extra.png").write_bytes(b"\x89PNG not ours")
    assert main(["validate", str(run_a)]) == 1
    out = capsys.readouterr().out
    assert "test_accuracy mean is" in out and "the runs give" in out
    assert "plots/extra.png is not listed" in out


def test_validate_recomputes_the_paired_comparison(run_a, capsys):
    path = run_a / "leaderboard.json"
    document = json.loads(path.read_text())
    columns = document["paired"]["columns"]
    row = next(r for r in document["paired"]["rows"] if r[columns.index("verdict")] == "inconclusive")
    row[columns.index("verdict")] = "better"
    path.write_text(json.dumps(document))
    assert main(["validate", str(run_a)]) == 1
    assert "verdict 'better', the runs give 'inconclusive'" in capsys.readouterr().out


def test_validate_catches_a_row_not_traceable_to_its_record(run_a, capsys):
    db = sqlite3.connect(run_a / "qbench.sqlite")
    case_id, payload = db.execute("SELECT case_id, record FROM records WHERE status = 'ok' LIMIT 1").fetchone()
    record = json.loads(payload)
    record["seed"] = 99
    db.execute("UPDATE records SET record = ? WHERE case_id = ?", (json.dumps(record), case_id))
    db.commit()
    db.close()
    assert main(["validate", str(run_a)]) == 1
    assert f"run {case_id!r}: record_sha256 does not match the stored record" in capsys.readouterr().out


def test_validate_reports_a_broken_schema(tmp_path, capsys):
    (tmp_path / "leaderboard.json").write_text(json.dumps({"schema": "other/9", "runs": {"columns": [], "rows": []}}))
    assert main(["validate", str(tmp_path)]) == 1
    out = capsys.readouterr().out
    assert "schema: expected 'qbench-leaderboard/1'" in out and "'aggregates', 'paired' are missing" in out


def test_validate_usage_errors(tmp_path, capsys):
    assert main(["validate", str(tmp_path / "missing")]) == 4
    assert main(["validate", str(tmp_path)]) == 4
    assert "no leaderboard.json here" in capsys.readouterr().err


# ----------------------------------------------------------------------------------------- compare


def test_compare_identical_runs_passes(run_a, tmp_path, capsys):
    run_b = publish(tmp_path / "b", shifted())
    assert main(["compare", str(run_a), str(run_b)]) == 0
    out = capsys.readouterr().out
    assert "no regression past the threshold (1% of A)" in out
    assert out.count("within threshold") == 20


def test_compare_fails_on_a_regression_in_either_direction(run_a, tmp_path, capsys):
    run_b = publish(tmp_path / "b", shifted(delta_bpc=0.1, delta_acc=-0.05))
    assert main(["compare", str(run_a), str(run_b)]) == 1
    out = capsys.readouterr().out
    assert "4 regression(s)" in out  # ternary on two cells x two datasets (bpc up, accuracy down)
    regressions = [line for line in out.splitlines() if "REGRESSION" in line]
    assert len(regressions) == 4 and all(TERNARY in line for line in regressions)
    assert main(["compare", str(run_a), str(run_b), "--threshold", "0.11"]) == 0  # absolute, wide enough


def test_compare_improvement_is_not_a_regression(run_a, tmp_path, capsys):
    run_b = publish(tmp_path / "b", shifted(delta_bpc=-0.1, delta_acc=0.05))
    assert main(["compare", str(run_a), str(run_b), "--metric", "test_bpc"]) == 0
    out = capsys.readouterr().out
    assert out.count("improved") == 2 and "test_accuracy" not in out


def test_compare_a_method_that_no_longer_trains_is_a_regression(run_a, tmp_path, capsys):
    records = shifted()
    for record in records:
        if record["quantizer_label"] == TERNARY and record["cell_label"].startswith("gru"):
            record["status"] = "diverged"
    run_b = publish(tmp_path / "b", records)
    # B given as its store file and A as its leaderboard.json: every source form works.
    assert main(["compare", str(run_a / "leaderboard.json"), str(run_b / "qbench.sqlite")]) == 1
    out = capsys.readouterr().out
    assert "2 regression(s)" in out and "no ok seed" in out


def test_compare_usage_errors(run_a, tmp_path, capsys):
    assert main(["compare", str(run_a), str(tmp_path / "nowhere")]) == 4
    assert main(["compare", str(run_a), str(run_a), "--threshold", "lots"]) == 4
    assert main(["compare", str(run_a), str(run_a), "--metric", "test_bleu"]) == 4
    err = capsys.readouterr().err
    assert "no such run directory" in err and "--threshold" in err and "available: " in err
