"""The numerics modes: pins, their checks, provenance, the matrix and CLI settings, audits by re-execution."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from qbench import numerics
from qbench.errors import MatrixError, UsageError
from qbench.rerun import DIFFERS, IDENTICAL, NOT_REBUILT, WITHIN, case_from_record, choose, compare

ROOT = Path(__file__).resolve().parents[1]
QUICKSTART_STORE = ROOT / "results" / "quickstart@cpu-2core" / "qbench.sqlite"
PORTABLE_HERE = not numerics.machine_problems(numerics.PORTABLE)

TINY = """
name = "tiny-numerics"
seeds = [0, 1]
{numerics}
[[quantizer]]
name = "ternary"
[[cell]]
name = "gru"
hidden = 16
[[dataset]]
name = "pydoc-char"
max_chars = 20000
[[hardware]]
name = "shift-add"
[train]
epochs = 1
batch = 16
bptt = 16
max_steps = 4
eval_tokens = 1000
hardware_tokens = 100
"""


def stored(path: Path) -> dict[str, dict]:
    with sqlite3.connect(path) as db:
        return {cid: json.loads(text) for cid, text in db.execute("SELECT case_id, record FROM records")}


def qbench(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "qbench", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600, check=False)  # fmt: skip


# --- pins and checks ------------------------------------------------------------------------------


def test_native_pins_nothing_and_portable_pins_every_library():
    assert numerics.pinned_environment(numerics.NATIVE) == {}
    pins = numerics.pinned_environment(numerics.PORTABLE)
    assert {"ATEN_CPU_CAPABILITY", "MKL_CBWR", "ONEDNN_MAX_CPU_ISA", "OPENBLAS_CORETYPE"} <= set(pins)
    assert numerics.problems(numerics.NATIVE) == []


def test_the_environment_for_children_is_restored(monkeypatch):
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")
    monkeypatch.delenv("ATEN_CPU_CAPABILITY", raising=False)
    with numerics.environment_for_children({"MKL_CBWR": "AVX2,STRICT", "ATEN_CPU_CAPABILITY": "avx2"}):
        assert os.environ["MKL_CBWR"] == "AVX2,STRICT" and os.environ["ATEN_CPU_CAPABILITY"] == "avx2"
    assert os.environ["MKL_CBWR"] == "COMPATIBLE" and "ATEN_CPU_CAPABILITY" not in os.environ


def test_a_process_loaded_without_the_pins_is_not_portable(monkeypatch):
    import torch  # noqa: F401  (loaded unpinned in the test process, unless the suite was started pinned)

    for name in numerics.PORTABLE_ENV:
        monkeypatch.delenv(name, raising=False)
    found = numerics.process_problems(numerics.PORTABLE)
    assert any("ATEN_CPU_CAPABILITY" in p for p in found)
    assert numerics.mode_of_this_process() == numerics.NATIVE


def test_provenance_names_the_cpu_the_kernels_and_the_mode():
    import torch  # noqa: F401

    from qbench.provenance import base_provenance

    facts = base_provenance("cpu")
    for key in ("numerics", "cpu_model", "cpu_flags", "aten_cpu_capability", "blas", "torch_threads"):
        assert key in facts, key
    assert facts["numerics"] in numerics.MODES
    assert facts["aten_cpu_capability"]


def test_signatures_and_notes_on_mixed_numerics():
    portable = {"numerics": "portable", "cpu_model": "A"}
    native = {"numerics": "native", "cpu_model": "B", "aten_cpu_capability": "AVX512"}
    assert numerics.numerics_signature(portable) == "portable"
    assert numerics.numerics_signature(None) == "unrecorded"
    assert "B" in numerics.numerics_signature(native)
    notes = numerics.mixed_numerics({"float / gru": [("A", portable), ("B", native)],
                                     "ternary / gru": [("A", portable), ("B", portable)]})  # fmt: skip
    assert len(notes) == 1 and notes[0].startswith("float / gru") and "A: portable" in notes[0]


# --- settings -------------------------------------------------------------------------------------


def test_the_matrix_sets_the_mode_and_refuses_a_bad_one(tmp_path):
    from qbench.matrix import load_matrix

    path = tmp_path / "m.toml"
    path.write_text(TINY.format(numerics='[numerics]\nmode = "portable"'))
    assert load_matrix(path).numerics == "portable"
    path.write_text(TINY.format(numerics=""))
    assert load_matrix(path).numerics == "native"
    for bad, words in (('[numerics]\nmode = "fast"', "is not a mode"), ('[numerics]\nkernels = "avx2"', "no key"),
                       ('numerics = "portable"', "must be a table")):  # fmt: skip
        path.write_text(TINY.format(numerics=bad))
        with pytest.raises(MatrixError, match=words):
            load_matrix(path)


def test_portable_numerics_on_a_gpu_is_refused_with_the_reason():
    from qbench.executors.config import _check_numerics

    with pytest.raises(UsageError, match="GPU"):
        _check_numerics("portable", "cuda")
    with pytest.raises(UsageError, match="unknown numerics mode"):
        _check_numerics("fastest", "cpu")


# --- audits by re-execution -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def quickstart_records():
    return stored(QUICKSTART_STORE)


def test_a_record_rebuilds_its_case_and_a_changed_recipe_does_not(quickstart_records):
    from qbench.host import get_host

    host = get_host()
    for record in list(quickstart_records.values())[:5]:
        assert case_from_record(record, host).case_id == record["case_id"]
    altered = dict(next(iter(quickstart_records.values())))
    altered["train"] = {**altered["train"], "lr": 0.5}
    with pytest.raises(ValueError, match="rebuilds case"):
        case_from_record(altered, host)


def test_the_draw_is_seeded_and_named_cases_come_first(quickstart_records):
    first = choose(quickstart_records, 3, [], seed=0)
    assert first == choose(quickstart_records, 3, [], seed=0) and len(set(first)) == 3
    named = sorted(quickstart_records)[-1]
    assert choose(quickstart_records, 1, [named], seed=0)[0] == named
    with pytest.raises(UsageError, match="no such case"):
        choose(quickstart_records, 1, ["0000"], seed=0)


def test_compare_is_exact_for_portable_records_and_tolerant_otherwise():
    base = {"status": "ok", "test_bpc": 3.0, "valid_bpc": 3.1, "provenance": {"numerics": "portable"},
            "train_seconds": 1.0, "curve": [{"epoch": 1, "seconds": 1.0, "valid_bpc": 3.2}]}  # fmt: skip
    timing = {**base, "train_seconds": 9.0, "curve": [{"epoch": 1, "seconds": 5.0, "valid_bpc": 3.2}]}
    assert compare(base, timing, 0.05)[0] == IDENTICAL
    newer = {**base, "declarations": {"quantizer": {"baseline": False}}}  # a field a later qbench writes
    assert compare(base, newer, 0.05)[0] == IDENTICAL and "declarations" in compare(base, newer, 0.05)[1]
    assert compare(newer, base, 0.05)[0] == DIFFERS  # a stored field the re-run lost
    nudged = {**base, "test_bpc": 3.0000001}
    assert compare(base, nudged, 0.05)[0] == DIFFERS  # both portable: the last bit counts
    native = {**nudged, "provenance": {"numerics": "native"}}
    assert compare(base, native, 0.05)[0] == WITHIN
    assert compare(base, {**native, "test_bpc": 3.5}, 0.05)[0] == DIFFERS
    assert compare(base, {**native, "status": "error", "error": "boom"}, 0.05)[0] == DIFFERS


# --- end to end -----------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.skipif(not PORTABLE_HERE, reason="this CPU cannot give the portable mode (x86-64 with AVX2 and FMA)")
def test_portable_runs_agree_across_workers_and_a_tampered_record_fails_its_rerun(tmp_path, data_cache, monkeypatch):
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    matrix = tmp_path / "tiny.toml"
    matrix.write_text(TINY.format(numerics='[numerics]\nmode = "portable"'))
    one, two, dask = tmp_path / "one", tmp_path / "two", tmp_path / "dask"
    for out, how in ((one, ["--workers", "1"]), (two, ["--workers", "2"]),
                     (dask, ["--executor", "dask", "--workers", "2"])):  # fmt: skip
        done = qbench("run", "--matrix", str(matrix), "--out", str(out), *how, "--no-progress", cwd=tmp_path)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "portable numerics" in done.stderr
    a = stored(one / "qbench.sqlite")
    assert len(a) == 2
    for other in (stored(two / "qbench.sqlite"), stored(dask / "qbench.sqlite")):
        assert set(other) == set(a)
        for case_id, record in a.items():
            assert record["provenance"]["numerics"] == "portable", record["provenance"]
            assert other[case_id]["provenance"]["numerics"] == "portable", other[case_id]["provenance"]
            assert record["provenance"]["aten_cpu_capability"] == "AVX2"
            assert compare(record, other[case_id], 0.0)[0] == IDENTICAL

    audit = qbench("validate", str(one), "--rerun", "1", cwd=tmp_path)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert ": identical: every stored field bit for bit" in audit.stdout

    # alter one record's metric in the store and rebuild every leaderboard file from it: consistent,
    # so recomputation finds nothing, but its re-run does
    victim = sorted(a)[0]
    record = a[victim]
    record["test_bpc"] += 0.01
    with sqlite3.connect(one / "qbench.sqlite") as db:
        db.execute("UPDATE records SET record = ? WHERE case_id = ?", (json.dumps(record), victim))
    rebuilt = qbench("leaderboard", "--store", str(one / "qbench.sqlite"), "--out", str(one), cwd=tmp_path)
    assert rebuilt.returncode == 0, rebuilt.stderr
    assert qbench("validate", str(one), cwd=tmp_path).returncode == 0
    audit = qbench("validate", str(one), "--rerun-case", victim, cwd=tmp_path)
    assert audit.returncode == 1, audit.stdout + audit.stderr
    assert f"re-run of {victim}" in audit.stdout and "differs" in audit.stdout
    # a merge that requires reproduction refuses the input, and writes nothing
    merged = qbench("merge", str(one), "--out", str(tmp_path / "site"), "--rerun", "2", cwd=tmp_path)
    assert merged.returncode == 1 and "merge refused" in merged.stdout, merged.stdout + merged.stderr
    assert not (tmp_path / "site").exists()


def test_rerun_asks_for_a_count_or_all(tmp_path):
    done = qbench("validate", str(tmp_path), "--rerun", "0", cwd=tmp_path)
    assert done.returncode == 4 and "must be at least 1" in done.stderr and "Traceback" not in done.stderr


# --- the other machine's records ------------------------------------------------------------------

REFERENCE = os.environ.get("QBENCH_REFERENCE_STORE")


@pytest.mark.slow
@pytest.mark.skipif(not REFERENCE, reason="set QBENCH_REFERENCE_STORE to a qbench.sqlite of the quickstart made "
                    "on another x86-64 machine in the portable mode (or with its AVX2 pins) to compare with it")
@pytest.mark.skipif(not PORTABLE_HERE, reason="this CPU cannot give the portable mode (x86-64 with AVX2 and FMA)")
def test_portable_records_match_another_machines(data_cache, monkeypatch):
    """Two cases of another machine's store, re-run here in the portable mode: identical bit for bit.

    Valid while the training path is the one that made the reference (the case ids say what each
    record is; a change that legitimately alters training changes the records on every machine)."""
    from qbench.host import get_host
    from qbench.rerun import rerun

    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    records = stored(Path(REFERENCE))
    for record in records.values():  # the reference was made with the pins set by hand
        record.setdefault("provenance", {})["numerics"] = "portable"
    chosen = choose(records, 2, [], seed=int(os.environ.get("QBENCH_REFERENCE_SEED", "0")))
    verdicts = rerun(records, chosen, get_host(), workers=1, echo=lambda _: None)
    assert [v.outcome for v in verdicts] == [IDENTICAL, IDENTICAL], [v.line() for v in verdicts]
    assert NOT_REBUILT not in {v.outcome for v in verdicts}


@pytest.mark.slow
@pytest.mark.skipif(not PORTABLE_HERE, reason="this CPU cannot give the portable mode (x86-64 with AVX2 and FMA)")
def test_starting_pinned_dask_workers_leaves_the_drivers_environment_as_it_was(monkeypatch):
    pytest.importorskip("distributed")
    from qbench.executors.dask_cluster import DaskExecutor
    from qbench.executors.runner import CaseRunner

    pins = numerics.pinned_environment(numerics.PORTABLE)
    for name in pins:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MKL_CBWR", "COMPATIBLE")  # the driver's own setting, to be kept
    executor = DaskExecutor(1, CaseRunner(numerics="portable"))
    try:
        assert os.environ["MKL_CBWR"] == "COMPATIBLE"
        assert not [name for name in pins if name != "MKL_CBWR" and name in os.environ]
        facts = executor.client.run(numerics.provenance_facts)
        assert [f["numerics"] for f in facts.values()] == ["portable"], facts
    finally:
        executor.close()
    assert os.environ["MKL_CBWR"] == "COMPATIBLE"
    assert not [name for name in pins if name != "MKL_CBWR" and name in os.environ]
