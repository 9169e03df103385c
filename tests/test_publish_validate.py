"""``qbench validate`` recomputes every published value from the stored records (issue 16).

A skeptical reader tampers with one published value at a time, in each format, and fixes the
file's sha256 in ``leaderboard.json`` so that only the recomputation can notice; validate must
name the file, the row and the column, with the published and the recomputed value.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import re
import shutil
import stat
from pathlib import Path

import pytest

from qbench.cli import main

pytestmark = pytest.mark.slow

VERDICTS = ("better", "worse", "inconclusive", "equivalent")


def rehash(folder: Path, name: str) -> None:
    """Put the tampered file's new sha256 into leaderboard.json, as a careful forger would."""
    path = folder / "leaderboard.json"
    document = json.loads(path.read_text())
    document["files"][name] = hashlib.sha256((folder / name).read_bytes()).hexdigest()
    path.write_text(json.dumps(document, ensure_ascii=False, separators=(",", ":")) + "\n")


def edit_text(folder: Path, name: str, line_pattern: str, old: str, new: str) -> None:
    """Replace ``old`` by ``new`` once, in the first line (or HTML row) matching ``line_pattern``."""
    path = folder / name
    text = path.read_text()
    pieces = re.split(r"(<tr>|\n)", text)
    for index, piece in enumerate(pieces):
        if re.search(line_pattern, piece) and re.search(old, piece):
            pieces[index] = re.sub(old, new, piece, count=1)
            break
    else:
        raise AssertionError(f"{name}: no line matches {line_pattern!r} and {old!r}")
    path.write_text("".join(pieces))
    rehash(folder, name)


def edit_csv(folder: Path, column: str, change) -> None:
    path = folder / "leaderboard.csv"
    rows = list(csv.reader(io.StringIO(path.read_text())))
    row = next(r for r in rows[1:] if r[rows[0].index("quantizer_label")] == "ternary")
    row[rows[0].index(column)] = change(row[rows[0].index(column)])
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    path.write_text(out.getvalue())
    rehash(folder, "leaderboard.csv")


def edit_json(folder: Path, table: str, column: str, change, where=lambda row: True) -> None:
    path = folder / "leaderboard.json"
    document = json.loads(path.read_text())
    columns = document[table]["columns"]
    row = next(r for r in document[table]["rows"] if where(dict(zip(columns, r, strict=True))))
    row[columns.index(column)] = change(row[columns.index(column)])
    path.write_text(json.dumps(document))


def other_verdict(text: str) -> str:
    return next(v for v in VERDICTS if v != text)


TERNARY_MD = r"^\| \d+ +\| ternary"
TERNARY_HTML = r'<td class="text">ternary</td>'
PAIRED_MD = r"^\| ternary .*(better|worse|inconclusive)"
PAIRED_HTML = r"ternary.*(better|worse|inconclusive)"
is_ternary = lambda row: row.get("quantizer_label") == "ternary"  # noqa: E731
VERDICT = r"better|worse|inconclusive"

TAMPERINGS = {
    # (format, value): (tamper, what the report names)
    ("json", "run value"): (lambda d: edit_json(d, "runs", "test_bpc", lambda v: v - 0.5, is_ternary),
                            "leaderboard.json runs row"),
    ("json", "aggregate"): (lambda d: edit_json(d, "aggregates", "test_bpc_mean", lambda v: v - 0.5, is_ternary),
                            "column test_bpc_mean"),
    ("json", "interval"): (lambda d: edit_json(d, "aggregates", "test_bpc_ci95", lambda v: v / 3, is_ternary),
                           "column test_bpc_ci95"),
    ("json", "n"): (lambda d: edit_json(d, "aggregates", "test_bpc_n", lambda v: v + 1, is_ternary),
                    "column test_bpc_n"),
    ("json", "rank"): (lambda d: edit_json(d, "aggregates", "rank", lambda v: 1, is_ternary), "column rank"),
    ("json", "paired difference"): (lambda d: edit_json(d, "paired", "diff_mean", lambda v: v - 0.2),
                                    "column diff_mean"),
    ("json", "verdict"): (lambda d: edit_json(d, "paired", "verdict", other_verdict), "column verdict"),
    ("csv", "aggregate"): (lambda d: edit_csv(d, "test_bpc_mean", lambda v: str(float(v) - 0.5)),
                           "leaderboard.csv row 2 (pydoc-char(max_chars=20000) / rnn(hidden=16) / ternary) "
                           "column test_bpc_mean"),
    ("csv", "interval"): (lambda d: edit_csv(d, "test_bpc_ci95", lambda v: str(float(v) / 3)),
                          "column test_bpc_ci95"),
    ("csv", "n"): (lambda d: edit_csv(d, "test_bpc_n", lambda v: str(int(v) + 1)), "column test_bpc_n"),
    ("csv", "rank"): (lambda d: edit_csv(d, "rank", lambda v: "1"), "column rank"),
    ("md", "aggregate"): (lambda d: edit_text(d, "leaderboard.md", TERNARY_MD, r"\| (\d)\.", r"| 1."),
                          "column 'test_bpc ↓'"),
    ("md", "interval"): (lambda d: edit_text(d, "leaderboard.md", TERNARY_MD, r"± [0-9.]+", "± 0.01"),
                         "column 'test_bpc ↓'"),
    ("md", "n"): (lambda d: edit_text(d, "leaderboard.md", TERNARY_MD, r"\| 3 ok", "| 4 ok"), "column 'seeds'"),
    ("md", "rank"): (lambda d: edit_text(d, "leaderboard.md", TERNARY_MD, r"^\| 2 ", "| 1 "), "column 'rank'"),
    ("md", "paired difference"): (lambda d: edit_text(d, "leaderboard.md", PAIRED_MD, r"\| ([+-])[0-9.]+",
                                                      r"| \g<1>9.99"), "column 'difference to float'"),
    ("md", "verdict"): (lambda d: edit_text(d, "leaderboard.md", PAIRED_MD, VERDICT, "better than ever"),
                        "column 'verdict'"),
    ("html", "aggregate"): (lambda d: edit_text(d, "leaderboard.html", TERNARY_HTML, r'">(\d)\.', r'">1.'),
                            "column 'test_bpc"),
    ("html", "raw value"): (lambda d: edit_text(d, "leaderboard.html", TERNARY_HTML, r'data-v="(\d)\.',
                                                'data-v="1.'), "column 'test_bpc"),
    ("html", "interval"): (lambda d: edit_text(d, "leaderboard.html", TERNARY_HTML, r"± [0-9.]+", "± 0.01"),
                           "column 'test_bpc"),
    ("html", "n"): (lambda d: edit_text(d, "leaderboard.html", TERNARY_HTML, r">3 ok<", ">4 ok<"),
                    "column 'seeds'"),
    ("html", "rank"): (lambda d: edit_text(d, "leaderboard.html", TERNARY_HTML, r'^<td data-v="2">2<',
                                           '<td data-v="1">1<'), "column 'rank'"),
    ("html", "verdict"): (lambda d: edit_text(d, "leaderboard.html", PAIRED_HTML, VERDICT, "better than ever"),
                          "column 'verdict'"),
}


@pytest.fixture
def run_a(published_runs, tmp_path):
    return Path(shutil.copytree(published_runs["a"], tmp_path / "a"))


def test_a_fresh_run_validates_with_every_value_recomputed(run_a, capsys):
    assert main(["validate", str(run_a)]) == 0
    assert "6 traced to stored records, every published value recomputed from them" in capsys.readouterr().out


@pytest.mark.parametrize("form, value", sorted(TAMPERINGS), ids=[f"{f}-{v}" for f, v in sorted(TAMPERINGS)])
def test_every_tampered_value_is_caught_with_its_location(run_a, capsys, form, value):
    tamper, location = TAMPERINGS[(form, value)]
    tamper(run_a)
    assert main(["validate", str(run_a)]) == 1
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith(f"invalid: recomputed: leaderboard.{form}")]
    assert lines, out
    assert location in lines[0] and "published" in lines[0] and "the records give" in lines[0], lines[0]
    assert "does not match its sha256" not in out  # the forger fixed the hash: only the rebuild can tell


def test_a_run_left_out_of_the_leaderboard_is_caught(run_a, capsys):
    """Dropping an inconvenient seed from every table (and re-hashing) still fails: run.json names the cases."""
    from qbench.leaderboard import write_leaderboards
    from qbench.store import Store

    with Store.read_only(run_a / "qbench.sqlite") as store:
        records = store.records()
    dropped = next(r for r in records if r["quantizer_label"] == "ternary")
    write_leaderboards([r for r in records if r is not dropped], run_a, "pub", plots=True)
    assert main(["validate", str(run_a)]) == 1
    assert "invalid: recomputed: leaderboard.json" in capsys.readouterr().out


# --------------------------------------------------------------------------------- read-only use


def snapshot(folder: Path) -> dict[str, bytes]:
    return {p.relative_to(folder).as_posix(): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def set_writable(folder: Path, writable: bool) -> None:
    for path in [folder, *folder.rglob("*")]:
        mode = path.stat().st_mode
        bits = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
        path.chmod(mode | stat.S_IWUSR if writable else mode & ~bits)


def test_reading_commands_work_on_a_read_only_folder_and_change_nothing(run_a, tmp_path, monkeypatch):
    import qbench.store

    real_access = os.access
    # root ignores permission bits: make os.access answer as it would for anyone else (a no-op otherwise).
    monkeypatch.setattr(qbench.store.os, "access", lambda path, mode: False if mode == os.W_OK and
                        Path(path).is_relative_to(run_a) else real_access(path, mode))  # fmt: skip
    before = snapshot(run_a)
    set_writable(run_a, False)
    try:
        assert main(["validate", str(run_a)]) == 0
        assert main(["compare", str(run_a), str(run_a)]) == 0
        assert main(["leaderboard", "--store", str(run_a), "--out", str(tmp_path / "rebuilt")]) == 0
    finally:
        set_writable(run_a, True)
    assert snapshot(run_a) == before
    assert (tmp_path / "rebuilt" / "leaderboard.json").is_file()


def test_reading_commands_leave_a_writable_folder_byte_identical(run_a, tmp_path):
    """Even where it could write, a reading command adds no table, journal or file."""
    before = snapshot(run_a)
    assert main(["validate", str(run_a)]) == 0
    assert main(["compare", str(run_a), str(run_a)]) == 0
    assert main(["leaderboard", "--store", str(run_a), "--out", str(tmp_path / "rebuilt")]) == 0
    assert snapshot(run_a) == before


@pytest.mark.parametrize("content", [b"", b"not a database at all, just text\n" * 10])
def test_an_empty_or_foreign_file_is_refused_and_left_alone(tmp_path, capsys, content):
    store = tmp_path / "qbench.sqlite"
    store.write_bytes(content)
    for argv in (["compare", str(store), str(store)], ["leaderboard", "--store", str(store), "--out",
                                                         str(tmp_path / "out")]):  # fmt: skip
        assert main(argv) == 4
        assert "not a qbench store" in capsys.readouterr().err
    assert store.read_bytes() == content


def test_a_foreign_sqlite_database_gets_no_tables(tmp_path, capsys):
    import sqlite3

    path = tmp_path / "other.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE notes (text TEXT)")
    db.close()
    before = path.read_bytes()
    assert main(["compare", str(path), str(path)]) == 4
    assert "not a qbench store (no 'records' table)" in capsys.readouterr().err
    assert path.read_bytes() == before


# ------------------------------------------------------------------------------------------ schema


def test_the_shipped_schemas_accept_what_qbench_writes(run_a):
    from qbench import schemas
    from qbench.store import Store

    document = json.loads((run_a / "leaderboard.json").read_text())
    assert schemas.check(document, schemas.load("leaderboard", 1)) == []
    with Store.read_only(run_a / "qbench.sqlite") as store:
        assert all(schemas.check(r, schemas.load("record", 1)) == [] for r in store.records())


def test_the_schema_states_the_runs_table_the_writer_writes(run_a):
    """The schema's #/$defs/run is the one statement of a run row: the writer's fixed columns, in order."""
    from qbench import schemas
    from qbench.leaderboard.compute.fairness import ROLES
    from qbench.leaderboard.compute.frame import STATUSES
    from qbench.leaderboard.render.runrows import RUN_COLUMNS

    run = schemas.load("leaderboard", 1)["$defs"]["run"]
    assert run["required"] == list(run["properties"]) == RUN_COLUMNS
    assert run["properties"]["status"]["enum"] == list(STATUSES)
    assert all(role in run["properties"]["role"]["description"] for role in ROLES)
    document = json.loads((run_a / "leaderboard.json").read_text())
    assert document["runs"]["columns"][: len(RUN_COLUMNS)] == RUN_COLUMNS


@pytest.mark.parametrize(("column", "value", "message"), [
    ("status", "lost", "runs[1].status: must be one of ['ok', 'diverged', 'error'], found 'lost'"),
    ("record_sha256", "abc", "runs[1].record_sha256: must match pattern ^[0-9a-f]{64}$, found 'abc'"),
    ("seed", "zero", "runs[1].seed: must be integer, found string"),
    ("test_bpc", "4.1", "runs[1].test_bpc: must be number or null, found string"),
])
def test_a_run_row_off_the_schema_is_named(run_a, capsys, column, value, message):
    path = run_a / "leaderboard.json"
    document = json.loads(path.read_text())
    document["runs"]["rows"][1][document["runs"]["columns"].index(column)] = value
    path.write_text(json.dumps(document))
    assert main(["validate", str(run_a)]) == 1
    assert message in capsys.readouterr().out


@pytest.mark.parametrize("version, words", [(2, "2 is newer"), (0, "0 is older")])
def test_a_leaderboard_of_another_schema_version_is_refused_naming_it(run_a, capsys, version, words):
    path = run_a / "leaderboard.json"
    document = json.loads(path.read_text())
    document["schema"] = f"qbench-leaderboard/{version}"
    path.write_text(json.dumps(document))
    assert main(["validate", str(run_a)]) == 1
    assert f"leaderboard schema version {words} than the version this qbench reads (1)" in capsys.readouterr().out


def test_a_store_of_another_schema_version_is_refused_naming_it(run_a, capsys):
    import sqlite3

    with sqlite3.connect(run_a / "qbench.sqlite") as db:
        db.execute("UPDATE meta SET value = '2' WHERE key = 'schema_version'")
    db.close()
    assert main(["compare", str(run_a), str(run_a)]) == 4
    assert "store schema version 2, this qbench reads version 1" in capsys.readouterr().err


def test_a_record_breaking_the_schema_is_named(run_a, capsys):
    import sqlite3

    with sqlite3.connect(run_a / "qbench.sqlite") as db:
        case_id, text = db.execute("SELECT case_id, record FROM records LIMIT 1").fetchone()
        record = json.loads(text)
        record["seed"] = "zero"  # readable as a record (so not damaged, see test_bad_inputs), but off the schema
        db.execute("UPDATE records SET record = ? WHERE case_id = ?", (json.dumps(record, sort_keys=True), case_id))
    db.close()
    assert main(["validate", str(run_a)]) == 1
    assert f"record {case_id!r} breaks qbench/schemas/record-1.schema.json: seed: must be" in \
        capsys.readouterr().out
