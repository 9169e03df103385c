"""The one record definition (qbench/record.py): the runner, the store, the published schema and the
synthetic fixtures all derive from it, and a stored record's format version is read and checked."""

from __future__ import annotations

import json
import math
import sqlite3
from pathlib import Path

import pytest

from qbench import UsageError, record, schemas
from qbench.case_runner import base_record, error_record
from qbench.columns import HOST_COLUMNS
from qbench.matrix import Case, Spec
from qbench.store import Store
from tests.synthetic import HARDWARE_DIRECTIONS, make_record, make_records

SCHEMA_FILE = Path(schemas.__file__).parent / f"record-{record.SCHEMA_VERSION}.schema.json"


def case() -> Case:
    hardware = (Spec("shift-add"),)
    return Case("id", "m", Spec("q", {"bits": 2}), Spec("c", {"hidden": 8}), Spec("d"), hardware, 3, {"epochs": 1})


def test_the_published_schema_is_the_definition_written_out():
    shipped = json.loads(SCHEMA_FILE.read_text())
    assert shipped == record.json_schema(), f"regenerate it: python -m qbench.record > {SCHEMA_FILE}"
    assert set(shipped["properties"]) == set(record.FIELD_NAMES)
    assert shipped["required"] == [f.name for f in record.FIELDS if f.required]
    assert record.SCHEMA_VERSION == schemas.RECORD_VERSION


def test_the_runner_builds_its_records_with_the_definition():
    built = base_record(case())
    assert set(built) <= set(record.FIELD_NAMES) <= HOST_COLUMNS
    assert set(record.REQUIRED) <= set(built)
    assert built[record.QUANTIZER_PARAMS] == {"bits": 2} and built[record.HARDWARE] == ["shift-add"]
    failed = error_record(case(), "worker died", status="diverged")
    assert (failed[record.STATUS], failed[record.ERROR]) == ("diverged", "worker died")
    assert schemas.check(failed, schemas.load("record", record.SCHEMA_VERSION)) == []
    with pytest.raises(ValueError, match="not 'ok'"):
        error_record(case(), "fine", status="ok")


def test_a_record_with_a_column_of_neither_direction_meets_the_published_schema():
    # the runner writes every declared column, '' (neither better low nor high) included
    made = {**base_record(case()), record.DIRECTIONS: {"sim_exact": "", "test_bpc": "min"}, "sim_exact": True}
    assert schemas.check(made, schemas.load("record", record.SCHEMA_VERSION)) == []


def test_synthetic_records_are_records_of_the_definition():
    schema = schemas.load("record", record.SCHEMA_VERSION)
    for made in make_records(seeds=2, datasets=("pydoc-char", "digits")):
        assert schemas.check(made, schema) == []
        # the open part is exactly the declared columns (those of a failed case are absent)
        assert set(record.open_columns(made)) <= set(made[record.DIRECTIONS])
        if made[record.STATUS] == "ok":
            assert set(record.open_columns(made)) == set(made[record.DIRECTIONS])
        assert set(made[record.PROVENANCE]["plugins"]) == {"quantizer", "cell", "dataset"}
    assert HARDWARE_DIRECTIONS["sim_exact"] == ""  # shift-add declares it neither min nor max


@pytest.mark.parametrize("version", [None, 1])
def test_a_record_of_this_version_or_none_reads(tmp_path, version):
    made = make_record()
    if version is not None:
        made[record.SCHEMA] = version
    with Store(tmp_path / "qbench.sqlite") as store:
        store.put(made)
        assert store.records() == [made]
        assert store.records_for([made[record.CASE_ID]]) == {made[record.CASE_ID]: made}
    assert record.from_json(json.dumps(made)) == made


@pytest.mark.parametrize(("version", "says"), [(2, "newer than the version 1 this qbench reads: upgrade qbench"),
                                               ("x", "version 'x', which no qbench writes")])
def test_a_record_of_another_version_is_one_clear_usage_error(tmp_path, version, says):
    from qbench.leaderboard.compute.storeread import read_store

    made = {**make_record(), record.SCHEMA: version}
    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put(made)
        with pytest.raises(UsageError, match=says):
            store.records()
        with pytest.raises(UsageError, match=says):
            store.records_for([made[record.CASE_ID]])
    with pytest.raises(UsageError, match=says):
        read_store(path)
    with pytest.raises(UsageError, match=says):
        record.from_json(json.dumps(made))


def test_a_newer_record_ends_the_leaderboard_command_with_exit_4(tmp_path, capsys):
    from qbench.cli import main

    path = tmp_path / "qbench.sqlite"
    with Store(path) as store:
        store.put(make_record())
    db = sqlite3.connect(path)
    db.execute("UPDATE records SET record = json_set(record, '$.schema', 7)")
    db.commit()
    db.close()
    assert main(["leaderboard", "--store", str(path), "--out", str(tmp_path / "lb")]) == 4
    err = capsys.readouterr().err
    assert "record format version 7" in err and "upgrade qbench" in err and "Traceback" not in err
    assert not (tmp_path / "lb" / "leaderboard.md").exists()


def test_store_put_writes_the_record_byte_for_byte_as_before(tmp_path):
    # the stored text is the record's canonical JSON: stores written before the definition still hash the same
    made = make_record(metric=math.inf)
    with Store(tmp_path / "qbench.sqlite") as store:
        store.put(made)
    (text,) = sqlite3.connect(tmp_path / "qbench.sqlite").execute("SELECT record FROM records").fetchone()
    assert text == json.dumps(made, sort_keys=True, allow_nan=True)


def test_the_validator_names_the_field_a_broken_record_gets_wrong():
    """The compiled validator (fastjsonschema) answers yes or no fast; a no must still say where."""
    from tests.synthetic import make_many

    (original,) = make_many(1)
    assert schemas.problems(original, "record", record.SCHEMA_VERSION) == []
    missing = {k: v for k, v in original.items() if k not in ("seed", "status")}
    cases = [
        ({**original, "seed": "zero"}, ["seed: must be integer, found string"]),
        ({**original, "seed": True}, ["seed: must be integer, found boolean"]),
        ({**original, "status": "done"}, ["status: must be one of ['ok', 'diverged', 'error'], found 'done'"]),
        ({**original, "case_id": ""}, ["case_id: must not be empty"]),
        ({**original, "directions": {"test_bpc": "down"}},
         ["directions.test_bpc: must be one of ['min', 'max', ''], found 'down'"]),
        (missing, ["(top): 'status', 'seed' are missing"]),
        ({k: v for k, v in original.items() if k != "seed"}, ["(top): 'seed' is missing"]),
    ]  # fmt: skip
    if original.get("curve"):
        cases.append(({**original, "curve": [original["curve"][0], "x"]}, ["curve[1]: must be object, found string"]))
    for broken, expected in cases:
        assert sorted(schemas.problems(broken, "record", record.SCHEMA_VERSION)) == sorted(expected)
    assert schemas.check({"a": 1}, {"type": "object", "additionalProperties": False}) == ["(top): unexpected 'a'"]
