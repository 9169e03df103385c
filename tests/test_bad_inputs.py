"""Bad input, as a user gives it: every one is exit 4, one message, no traceback, and the store untouched.

Each case names the command line (built from a small world of files: a good matrix, a store
holding two records, a plain file) and a fragment the message must contain. Before and after,
every file of the store's folder is hashed: a usage error changes nothing.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from qbench.cli import main
from qbench.store import Store
from tests.matrices import matrix_toml

TINY = {"epochs": 1, "batch": 8, "bptt": 10, "max_steps": 2, "eval_tokens": 100, "hardware_tokens": 50}


@dataclass
class World:
    root: Path
    good: Path  # a valid tiny matrix
    res: Path  # a run folder holding a store of two records
    afile: Path

    def matrix(self, text: str, name: str = "bad.toml") -> Path:
        path = self.root / name
        path.write_text(text)
        return path

    def toml(self, extra: str = "", **kwargs) -> Path:
        text = matrix_toml("bad", **{**TINY, **kwargs})
        return self.matrix(text + extra)

    def train(self, key: str, toml_value: str) -> Path:
        """A matrix whose ``[train]`` sets ``key`` to a TOML value JSON cannot write (nan, inf)."""
        return self.matrix(matrix_toml("bad", **TINY) + f"{key} = {toml_value}\n")


def _record(case_id: str, seed: int) -> dict:
    return {"case_id": case_id, "matrix": "good", "status": "ok", "seed": seed, "dataset": "pydoc-char",
            "dataset_label": "pydoc-char", "cell": "rnn", "cell_label": "rnn", "quantizer": "float",
            "quantizer_label": "float", "test_bpc": 3.0 + seed, "directions": {"test_bpc": "min"}}  # fmt: skip


@pytest.fixture
def world(tmp_path, data_cache, monkeypatch):
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    monkeypatch.chdir(tmp_path)
    good = tmp_path / "good.toml"
    good.write_text(matrix_toml("good", **TINY))
    res = tmp_path / "res"
    with Store.in_dir(res) as store:
        store.put(_record("c0", 0))
        store.put(_record("c1", 1))
    afile = tmp_path / "afile"
    afile.write_text("not a folder\n")
    return World(tmp_path, good, res, afile)


def _damage(world: World, sql: str, *args) -> None:
    with sqlite3.connect(world.res / "qbench.sqlite") as db:
        db.execute(sql, args)
    db.close()


def _truncate(world: World) -> None:
    _damage(world, "UPDATE records SET record = substr(record, 1, 40) WHERE case_id = 'c1'")


def _not_object(world: World) -> None:
    _damage(world, "UPDATE records SET record = '[1, 2, 3]' WHERE case_id = 'c1'")


def _no_case_id(world: World) -> None:
    _damage(world, "UPDATE records SET record = '{\"status\": \"ok\"}' WHERE case_id = 'c1'")


def _leaderboard_then_truncate(world: World) -> None:
    assert main(["leaderboard", "--store", str(world.res)]) == 0
    _truncate(world)


def _garbage_store(world: World) -> None:
    (world.res / "qbench.sqlite").write_bytes(b"this is not sqlite" * 100)
    for extra in ("qbench.sqlite-wal", "qbench.sqlite-shm"):
        (world.res / extra).unlink(missing_ok=True)


def _readonly(world: World) -> None:
    folder = world.root / "ro"
    folder.mkdir()
    folder.chmod(0o500)


def _latin1_matrix(world: World) -> Path:
    path = world.root / "latin1.toml"
    path.write_bytes('name = "caf\u00e9"\n'.encode("latin-1"))
    return path


def _other_run(world: World) -> None:
    other = world.root / "other"
    with Store.in_dir(other) as store:
        store.put(_record("o0", 0))
    assert main(["leaderboard", "--store", str(other)]) == 0


def _fake_merge(world: World) -> None:
    """A folder a merge wrote (its qbench-files.json lists its leaderboard)."""
    import json

    merged = world.root / "merged"
    merged.mkdir()
    (merged / "leaderboard.json").write_text('{"schema": "qbench-leaderboard/1"}')
    digest = hashlib.sha256((merged / "leaderboard.json").read_bytes()).hexdigest()
    (merged / "qbench-files.json").write_text(json.dumps({"format": "qbench-files/1", "written_by": "merge",
                                                          "files": {"leaderboard.json": digest}}))  # fmt: skip


def _leaderboard(world: World) -> None:
    assert main(["leaderboard", "--store", str(world.res)]) == 0


def _foreign_sqlite(world: World) -> Path:
    path = world.root / "foreign.sqlite"
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE records (id INTEGER, payload TEXT)")
        db.execute("INSERT INTO records VALUES (1, 'x')")
    db.close()
    return path


def _edit_leaderboard(world: World, edit: Callable[[dict], None]) -> None:
    import json

    _leaderboard(world)
    document = json.loads((world.res / "leaderboard.json").read_text())
    edit(document)
    (world.res / "leaderboard.json").write_text(json.dumps(document))


def _short_row(world: World) -> None:
    _edit_leaderboard(world, lambda d: d["runs"]["rows"].__setitem__(0, d["runs"]["rows"][0][:3]))


def _schema_2(world: World) -> None:
    _edit_leaderboard(world, lambda d: d.__setitem__("schema", "qbench-leaderboard/2"))


W = World
Case = tuple[str, Callable[[W], list[str]], str, Callable[[W], None] | None]


def run(w: W, matrix: Path, *extra: str) -> list[str]:
    return ["run", "--matrix", str(matrix), "--out", str(w.res), "--no-progress", *extra]


def shift_add(**params) -> tuple:
    return (("shift-add", params),)


CASES: list[Case] = [
    # ---- matrix files
    ("matrix-missing", lambda w: run(w, w.root / "nope.toml"), "matrix file not found", None),
    ("matrix-not-toml", lambda w: run(w, w.matrix("name = [")), "malformed TOML", None),
    ("matrix-not-utf8", lambda w: run(w, _latin1_matrix(w)), "not a UTF-8", None),
    ("matrix-unknown-key", lambda w: run(w, w.matrix("colour = 1\n" + matrix_toml("bad", **TINY))),
     "unknown top-level key", None),
    ("lr-nan", lambda w: run(w, w.train("lr", "nan")), "'lr' must be a finite number", None),
    ("lr-inf", lambda w: run(w, w.train("lr", "inf")), "'lr' must be a finite number", None),
    ("grad-clip-nan", lambda w: run(w, w.train("grad_clip", "nan")), "'grad_clip' must be a finite", None),
    ("diverge-nan", lambda w: run(w, w.train("diverge_factor", "-inf")), "'diverge_factor' must be a finite", None),
    ("epochs-zero", lambda w: run(w, w.toml(epochs=0)), "'epochs' must be >= 1", None),
    ("seed-above-2-63", lambda w: run(w, w.toml(seeds=[2**63])), "at most 2**63 - 1", None),
    ("seeds-empty", lambda w: run(w, w.toml(seeds=[])), "'seeds' must be a non-empty list", None),
    ("seeds-twice", lambda w: run(w, w.toml(seeds=[1, 1])), "lists a seed twice", None),
    ("hidden-huge", lambda w: run(w, w.toml(cells=[("rnn", {"hidden": 1_000_000_000})])), "'hidden' must be <=", None),
    ("layers-huge", lambda w: run(w, w.toml(cells=[("rnn", {"layers": 10_000})])), "'layers' must be <=", None),
    ("max-chars-1", lambda w: run(w, w.toml(datasets=[("pydoc-char", {"max_chars": 1})])), "max_chars must be 0", None),
    ("max-chars-below-one-batch", lambda w: run(w, w.toml(datasets=[("pydoc-char", {"max_chars": 150})], batch=4,
                                                         bptt=50)), "at least batch x bptt + 1 = 201", None),
    ("max-chars-below-a-tuned-batch",
     lambda w: run(w, w.toml(datasets=[("pydoc-char", {"max_chars": 300})], batch=4, bptt=50,
                             tune={"train.batch": [4, 8]})), "batch = 8 and bptt = 50", None),
    ("unknown-quantizer", lambda w: run(w, w.toml(quantizers=["no-such-q"])), "no-such-q", None),
    ("unknown-cell-param", lambda w: run(w, w.toml(cells=[("rnn", {"hiden": 4})])), "unknown parameter 'hiden'", None),
    ("format-q999", lambda w: run(w, w.toml(hardware=shift_add(activation_format="Q999.999"))), "at most 64 bits",
     None),
    ("format-garbage", lambda w: run(w, w.toml(hardware=shift_add(gate_format="Qx"))), "not of the form", None),
    ("exclude-unknown-key", lambda w: run(w, w.toml('[[exclude]]\ncolour = "red"\n')), "unknown key 'colour'", None),
    ("exclude-seed-not-in-matrix", lambda w: run(w, w.toml("[[exclude]]\nseed = 7\n")), "seed 7 is not one", None),
    ("exclude-seed-string", lambda w: run(w, w.toml('[[exclude]]\nseed = "0"\n')), "seed must be an integer", None),
    ("exclude-param-matches-nothing",
     lambda w: run(w, w.toml('[[exclude]]\ncell = {name = "rnn", hidden = 999}\n')), "matches none", None),
    ("exclude-unknown-param",
     lambda w: run(w, w.toml('[[exclude]]\ncell = {name = "rnn", hiden = 16}\n')), "matches none", None),
    ("exclude-everything", lambda w: run(w, w.toml('[[exclude]]\nquantizer = "float"\n')), "remove every case", None),
    ("limits-negative", lambda w: run(w, w.toml("[limits]\ncase_timeout = -1\n")), "'case_timeout' must be >=", None),
    ("limits-string", lambda w: run(w, w.toml('[limits]\ncase_timeout = "ten"\n')), "'case_timeout' must be", None),
    ("limits-nan", lambda w: run(w, w.toml("[limits]\ncase_timeout = nan\n")), "finite number", None),
    ("limits-unknown", lambda w: run(w, w.toml("[limits]\ncase_time = 3\n")), "unknown parameter 'case_time'", None),
    ("limits-not-table", lambda w: run(w, w.matrix('limits = 3\n' + matrix_toml("bad", **TINY))), "[limits] must",
     None),
    # ---- the protocol's inputs (issue 26)
    ("tune-metric-typo", lambda w: run(w, w.toml(tune={"train.lr": [0.01, 0.03], "metric": "valid_bcp"})),
     "use one of: valid_bpc", None),
    ("baseline-not-a-quantizer", lambda w: run(w, w.matrix('baseline = "nope"\n' + matrix_toml("bad", **TINY))),
     "baseline = 'nope' is not a quantizer of this matrix; use one of: float", None),
    ("tune-value-twice-after-reading", lambda w: run(w, w.toml(tune={"train.grad_clip": [1, 1.0]})),
     "lists a value twice once read", None),
    ("seeds-list-too-long", lambda w: run(w, w.toml(seeds=list(range(1001)))), "at most 1000", None),
    ("seeds-list-too-long-dry-run", lambda w: run(w, w.toml(seeds=list(range(100_000))), "--dry-run"),
     "at most 1000", None),
    # ---- the command line
    ("workers-zero", lambda w: run(w, w.good, "--workers", "0"), "--workers must be at least 1", None),
    ("case-timeout-negative", lambda w: run(w, w.good, "--case-timeout", "-5"), "--case-timeout", None),
    ("case-timeout-text", lambda w: run(w, w.good, "--case-timeout", "soon"), "not a number of seconds", None),
    ("case-timeout-zero", lambda w: run(w, w.good, "--case-timeout", "0"), "must be a positive number", None),
    ("lock-wait-nan", lambda w: run(w, w.good, "--lock-wait", "nan"), "finite", None),
    ("unknown-option", lambda w: run(w, w.good, "--frobnicate"), "unrecognized arguments", None),
    ("unknown-executor", lambda w: run(w, w.good, "--executor", "slurm"), "invalid choice", None),
    # ---- output folders (all before any dataset is prepared)
    ("out-is-a-file", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.afile)], "is a file", None),
    ("out-under-a-file", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.afile / "sub")], "is a file",
     None),
    ("out-nul-byte", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.root / "a\0b")], "NUL byte", None),
    ("out-name-too-long", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.root / ("x" * 10_000))],
     "longer than", None),
    ("matrix-name-nul", lambda w: ["run", "--matrix", str(w.matrix(matrix_toml("a\0b", **TINY)))], "NUL byte", None),
    ("matrix-name-10000", lambda w: ["run", "--matrix", str(w.matrix(matrix_toml("n" * 10_000, **TINY)))],
     "longer than", None),
    ("out-read-only", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.root / "ro" / "sub")],
     "output folder", _readonly),
    ("out-read-only-itself", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.root / "ro")],
     "cannot write in it", _readonly),
    # ---- dataset paths
    ("dataset-path-missing", lambda w: run(w, w.toml(datasets=[("ptb-char", {"path": str(w.root / "nope")})])),
     "ptb", None),
    ("dataset-path-empty-folder",
     lambda w: run(w, w.toml(datasets=[("ptb-char", {"path": str(w.root)})])), "ptb", None),
    ("dataset-path-a-file", lambda w: run(w, w.toml(datasets=[("text8", {"path": str(w.afile)})])), "text8", None),
    # ---- store files
    ("store-missing", lambda w: ["leaderboard", "--store", str(w.root / "nowhere.sqlite")], "no qbench store", None),
    ("store-garbage-leaderboard", lambda w: ["leaderboard", "--store", str(w.res)], "not a qbench store",
     _garbage_store),
    ("store-garbage-run", lambda w: run(w, w.good), "not a readable qbench store", _garbage_store),
    ("store-unknown-matrix", lambda w: ["leaderboard", "--store", str(w.res), "--matrix", "zzz"], "no records", None),
    ("damaged-truncated-leaderboard", lambda w: ["leaderboard", "--store", str(w.res)], "case c1: not valid JSON",
     _truncate),
    ("damaged-not-object-leaderboard", lambda w: ["leaderboard", "--store", str(w.res)], "case c1: the JSON is a list",
     _not_object),
    ("damaged-no-case-id-leaderboard", lambda w: ["leaderboard", "--store", str(w.res)], "case c1: no 'case_id'",
     _no_case_id),
    ("damaged-compare", lambda w: ["compare", str(w.res), str(w.res)], "case c1: not valid JSON", _truncate),
    ("damaged-validate", lambda w: ["validate", str(w.res)], "case c1: not valid JSON", _leaderboard_then_truncate),
    ("compare-missing", lambda w: ["compare", str(w.res), str(w.root / "nope")], "no such run directory", None),
    # ---- issue 26: each of these ended in a traceback
    ("store-foreign-sqlite-with-records", lambda w: ["leaderboard", "--store", str(_foreign_sqlite(w)), "--out",
                                                     str(w.root / "lb")], "its 'records' table has no", None),
    ("store-foreign-sqlite-compare", lambda w: ["compare", str(_foreign_sqlite(w)), str(w.res)],
     "not a qbench store", None),
    ("site-out-a-file", lambda w: ["site", str(w.res), "--out", str(w.afile)], "is a file", _leaderboard),
    ("site-out-in-proc", lambda w: ["site", str(w.res), "--out", "/proc/qbench-no-such/site"], "output folder",
     _leaderboard),
    ("site-out-read-only", lambda w: ["site", str(w.res), "--out", str(w.root / "ro")], "cannot write in it",
     lambda w: (_leaderboard(w), _readonly(w))),
    ("site-out-another-run", lambda w: ["site", str(w.res), "--out", str(w.root / "other")],
     "holds files qbench site did not write", lambda w: (_leaderboard(w), _other_run(w))),
    ("site-short-row", lambda w: ["site", str(w.res), "--out", str(w.root / "site")], "row 0 does not have",
     _short_row),
    ("compare-short-row", lambda w: ["compare", str(w.res / "leaderboard.json"), str(w.res / "leaderboard.json")],
     "row 0 does not have", _short_row),
    ("site-schema-2", lambda w: ["site", str(w.res), "--out", str(w.root / "site")], "schema version 2",
     _schema_2),
    ("compare-schema-2", lambda w: ["compare", str(w.res / "leaderboard.json"), str(w.res / "leaderboard.json")],
     "schema version 2", _schema_2),
    ("pack-into-proc", lambda w: ["pack", str(w.res), "-o", "/proc/qbench-no-such/x.tar.gz"],
     "cannot write the bundle", _leaderboard),
    ("pack-onto-a-folder", lambda w: ["pack", str(w.res), "-o", str(w.root / "d.tar.gz")], "is a folder",
     lambda w: (_leaderboard(w), (w.root / "d.tar.gz").mkdir())),
    ("pack-onto-a-foreign-file", lambda w: ["pack", str(w.res), "-o", str(w.root / "f.zip")],
     "not a qbench bundle", lambda w: (_leaderboard(w), (w.root / "f.zip").write_text("mine\n"))),
    ("leaderboard-out-another-store", lambda w: ["leaderboard", "--store", str(w.res), "--out", str(w.root / "other")],
     "holds another store", _other_run),
    ("run-out-a-merge", lambda w: ["run", "--matrix", str(w.good), "--out", str(w.root / "merged")],
     "qbench merge wrote", _fake_merge),
    ("leaderboard-out-a-merge", lambda w: ["leaderboard", "--store", str(w.res), "--out", str(w.root / "merged")],
     "qbench merge wrote", _fake_merge),
]


def _snapshot(folder: Path) -> dict[str, str]:
    """sha256 of every file below ``folder``.

    SQLite's -wal/-shm side files come and go; ``qbench.lock`` is the driver lock a run takes before
    it reads the store (it holds who ran last, not results).
    """
    if not folder.is_dir():
        return {}
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*"))
            if p.is_file() and not p.name.endswith(("-wal", "-shm", ".lock"))}  # fmt: skip


@pytest.mark.parametrize(("argv", "fragment", "setup"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_one_message_exit_4_and_changes_nothing(world, capsys, argv, fragment, setup):
    if setup is not None:
        setup(world)
    if (world.root / "ro").is_dir() and os.access(world.root / "ro", os.W_OK):
        pytest.skip("running as a user who can write a read-only folder (root)")
    args = argv(world)
    before = _snapshot(world.res)
    around = _snapshot(world.root)
    code = main(args)
    out, err = capsys.readouterr()
    assert code == 4, err
    assert "Traceback" not in out + err
    errors = [line for line in err.splitlines() if line.startswith("qbench: error:")]
    assert len(errors) == 1, err
    assert fragment in err, err
    assert _snapshot(world.res) == before, "a usage error changed the store's folder"
    assert _snapshot(world.root) == around, "a usage error changed or left a file"
    assert not list(world.root.rglob(".qbench-tmp-*")), "a temporary file was left behind"
    assert not list(world.root.rglob("*.part")), "a partial file was left behind"


def test_bad_output_folders_are_refused_before_any_dataset_is_prepared(world, capsys):
    for target in (world.afile, world.afile / "sub", world.root / "a\0b", world.root / ("x" * 10_000)):
        assert main(["run", "--matrix", str(world.good), "--out", str(target), "--no-progress"]) == 4
        assert "preparing" not in capsys.readouterr().err


def test_bad_input_suite_is_at_least_40_cases():
    assert len(CASES) >= 40


def _console(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    script = Path(sys.executable).with_name("qbench")
    command = [str(script)] if script.exists() else [sys.executable, "-m", "qbench"]
    return subprocess.run([*command, *args], capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("case", ["matrix-missing", "damaged-truncated-leaderboard", "out-is-a-file"])
def test_bad_input_through_the_console_script(world, case):
    _, argv, fragment, setup = next(c for c in CASES if c[0] == case)
    if setup is not None:
        setup(world)
    before = _snapshot(world.res)
    done = _console(*argv(world), env={**os.environ})
    assert done.returncode == 4, done.stderr
    assert "Traceback" not in done.stdout + done.stderr
    assert done.stderr.count("qbench: error:") == 1 and fragment in done.stderr
    assert _snapshot(world.res) == before
