"""Issue 26: nothing lost, nothing faked.

No command removes or overwrites a store or a folder it did not write without ``--replace``
(site, merge, pack, leaderboard, run); validate never certifies a folder it could not trace to its
records; pack takes the run's own matrix file (found by its hash), nothing else; leftovers of a
killed leaderboard writer are cleaned by the next write; bundles are checked from their headers;
a case past its time limit is never ``ok``; a Ctrl-C while pool workers start prints no
fork-server traceback.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest

from qbench.cli import main
from qbench.store import Store


def _record(case_id: str, seed: int) -> dict:
    return {"case_id": case_id, "matrix": "good", "status": "ok", "seed": seed, "dataset": "pydoc-char",
            "dataset_label": "pydoc-char", "cell": "rnn", "cell_label": "rnn", "quantizer": "float",
            "quantizer_label": "float", "test_bpc": 3.0 + seed, "directions": {"test_bpc": "min"}}  # fmt: skip


def _run_folder(path: Path, *case_ids: str) -> Path:
    with Store.in_dir(path) as store:
        for seed, case_id in enumerate(case_ids):
            store.put(_record(case_id, seed))
    assert main(["leaderboard", "--store", str(path)]) == 0
    return path


def _snapshot(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}  # fmt: skip


# ------------------------------------------------------------------------------------ site --out


def test_site_never_replaces_another_run_s_store_without_replace(tmp_path, capsys):
    a = _run_folder(tmp_path / "a", "a0", "a1")
    b = _run_folder(tmp_path / "b", "b0", "b1", "b2")
    before = _snapshot(b)
    assert main(["site", str(a), "--out", str(b)]) == 4
    err = capsys.readouterr().err
    assert "holds files qbench site did not write" in err and "--replace" in err
    assert _snapshot(b) == before
    with Store.read_only(b / "qbench.sqlite") as store:
        assert store.count() == 3
    # with --replace, what has the same name is overwritten and the rest left alone
    (b / "notes.txt").write_text("mine\n")
    assert main(["site", str(a), "--out", str(b), "--replace"]) == 0
    assert (b / "notes.txt").read_text() == "mine\n"
    assert (b / "qbench.sqlite").read_bytes() == (a / "qbench.sqlite").read_bytes()


def test_a_site_rewrites_its_own_folder_and_only_its_own_files(tmp_path, capsys):
    a = _run_folder(tmp_path / "a", "a0", "a1")
    b = _run_folder(tmp_path / "b", "b0")
    site = tmp_path / "site"
    assert main(["site", str(a), "--out", str(site)]) == 0
    listed = json.loads((site / "qbench-files.json").read_text())
    assert listed["written_by"] == "site" and "index.html" in listed["files"] and "qbench.sqlite" in listed["files"]
    assert main(["site", str(b), "--out", str(site)]) == 0  # an earlier site's folder: replaced
    assert (site / "qbench.sqlite").read_bytes() == (b / "qbench.sqlite").read_bytes()
    assert set(_snapshot(site)) == set(json.loads((site / "qbench-files.json").read_text())["files"]) | {
        "qbench-files.json"}, "a file of the earlier site was left"
    # something put there since, or a file changed since, stops the next site
    (site / "mine.txt").write_text("x")
    assert main(["site", str(a), "--out", str(site)]) == 4
    assert "mine.txt" in capsys.readouterr().err
    (site / "mine.txt").unlink()
    (site / "index.html").write_text("edited by hand")
    assert main(["site", str(a), "--out", str(site)]) == 4
    assert (site / "index.html").read_text() == "edited by hand"
    # in place: the run folder's own files are the run's, the pages the site's
    assert main(["site", str(a), "--out", str(a)]) == 0
    assert main(["site", str(a), "--out", str(a)]) == 0
    assert main(["validate", str(a)]) in (0, 1)  # the folder is readable (records of this test are minimal)


# ------------------------------------------------------------------------------------ pack -o


def test_pack_replaces_an_earlier_bundle_but_no_other_file(tmp_path, capsys):
    a = _run_folder(tmp_path / "a", "a0")
    out = tmp_path / "a.qbench.tar.gz"
    assert main(["pack", str(a), "-o", str(out)]) == 0
    assert main(["pack", str(a), "-o", str(out)]) == 0  # an earlier bundle is replaced
    mine = tmp_path / "mine.zip"
    mine.write_bytes(b"PK not a bundle")
    assert main(["pack", str(a), "-o", str(mine)]) == 4
    assert mine.read_bytes() == b"PK not a bundle"
    assert main(["pack", str(a), "-o", str(mine), "--replace"]) == 0
    assert not list(tmp_path.glob("*.part")) and not list(tmp_path.glob(".qbench-tmp-*"))


def _run_json(folder: Path, matrix_path: str, matrix: Path | None, name: str = "good") -> None:
    digest = hashlib.sha256(matrix.read_bytes()).hexdigest() if matrix is not None else "0" * 64
    (folder / "run.json").write_text(json.dumps({"matrix": name, "matrix_path": matrix_path, "matrix_hash": digest}))


def _packed(bundle: Path) -> dict[str, bytes]:
    with tarfile.open(bundle) as archive:
        return {m.name: archive.extractfile(m).read() for m in archive if m.isfile()}


def test_pack_finds_the_run_s_matrix_from_any_folder_and_nothing_else(tmp_path, monkeypatch):
    project = tmp_path / "project"
    (project / "matrices").mkdir(parents=True)
    matrix = project / "matrices" / "good.toml"
    matrix.write_text('name = "good"\n# the one the run read\n')
    run = _run_folder(project / "results" / "good", "a0")
    _run_json(run, "matrices/good.toml", matrix)  # relative to the folder the run was started from
    # another working directory holding a different file of the same relative name
    elsewhere = tmp_path / "elsewhere"
    (elsewhere / "matrices").mkdir(parents=True)
    (elsewhere / "matrices" / "good.toml").write_text('name = "good"\n# edited since\n')
    monkeypatch.chdir(elsewhere)
    assert main(["pack", str(run), "-o", str(tmp_path / "b.tar.gz")]) == 0
    assert _packed(tmp_path / "b.tar.gz")["matrix.toml"] == matrix.read_bytes()
    # a hostile run.json naming another file (with that file's hash): never packed
    secret = tmp_path / "secret.toml"
    secret.write_text('token = "s3cr3t"\n')
    _run_json(run, str(secret), secret)
    assert main(["pack", str(run), "-o", str(tmp_path / "c.tar.gz")]) == 0
    assert "matrix.toml" not in _packed(tmp_path / "c.tar.gz")
    _run_json(run, "/etc/passwd", None)
    assert main(["pack", str(run), "-o", str(tmp_path / "d.tar.gz")]) == 0
    assert "matrix.toml" not in _packed(tmp_path / "d.tar.gz")


def test_pack_says_when_the_run_s_matrix_is_not_packed(tmp_path, monkeypatch, capsys):
    matrix = tmp_path / "matrices" / "good.toml"
    matrix.parent.mkdir()
    matrix.write_text('name = "good"\n')
    run = _run_folder(tmp_path / "run", "a0")
    _run_json(run, "matrices/good.toml", matrix)
    monkeypatch.chdir(tmp_path)
    assert main(["pack", str(run), "-o", str(tmp_path / "a.tar.gz")]) == 0
    assert "matrix.toml not packed" not in capsys.readouterr().out
    matrix.write_text('name = "good"\n# edited since the run\n')
    assert main(["pack", str(run), "-o", str(tmp_path / "b.tar.gz")]) == 0
    assert "note: matrix.toml not packed" in capsys.readouterr().out
    assert "matrix.toml" not in _packed(tmp_path / "b.tar.gz")


def test_validate_checks_matrix_toml_against_the_run_s_hash(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", "a0")
    matrix = tmp_path / "good.toml"
    matrix.write_text('name = "good"\n')
    _run_json(run, str(matrix), matrix)
    (run / "matrix.toml").write_text('name = "good"\n# not what the run read\n')
    main(["validate", str(run)])
    assert "matrix.toml: not the matrix the run read" in capsys.readouterr().out


# ------------------------------------------------------------------------------- validate, store


@pytest.mark.parametrize("how", ["removed", "a folder"])
def test_validate_never_certifies_a_folder_without_its_store(tmp_path, capsys, how):
    run = _run_folder(tmp_path / "run", "a0", "a1")
    (run / "qbench.sqlite").unlink()
    if how == "a folder":
        (run / "qbench.sqlite").mkdir()
    assert main(["validate", str(run)]) == 1
    out = capsys.readouterr().out
    assert "not traced to stored records, not certified" in out.splitlines()[-1]
    assert ": valid (" not in out


@pytest.mark.parametrize(("edit", "message"), [
    ("csv", "is not a number"),
    ("case_id", "runs[0].case_id: must be string, found array"),
])
def test_validate_reports_a_cell_of_the_wrong_type_without_a_traceback(tmp_path, capsys, edit, message):
    run = _run_folder(tmp_path / "run", "a0", "a1")
    if edit == "csv":
        lines = (run / "leaderboard.csv").read_text().splitlines()
        header = lines[0].split(",")
        cells = lines[1].split(",")
        cells[header.index("test_bpc_mean")] = "abc"
        lines[1] = ",".join(cells)
        (run / "leaderboard.csv").write_text("\n".join(lines) + "\n")
    else:
        document = json.loads((run / "leaderboard.json").read_text())
        document["runs"]["rows"][0][document["runs"]["columns"].index("case_id")] = ["a", "list"]
        (run / "leaderboard.json").write_text(json.dumps(document))
    assert main(["validate", str(run)]) == 1
    out, err = capsys.readouterr()
    assert message in out and "Traceback" not in out + err


# ---------------------------------------------------------------------------- temporary files


def test_a_killed_writer_s_temporary_files_are_cleaned_by_the_next_write(tmp_path, capsys):
    run = _run_folder(tmp_path / "run", "a0", "a1")
    plots = run / "plots"
    plots.mkdir(exist_ok=True)
    dead = plots / ".qbench-tmp-999999999-x.svg.abc123.svg"  # no process has this pid
    dead.write_text("half a plot")
    alive = plots / f".qbench-tmp-{os.getppid()}-y.svg.def456.svg"  # a writer still running
    alive.write_text("being written")
    mine = plots / "notes.svg.txt"
    assert main(["validate", str(run)]) in (0, 1)
    out = capsys.readouterr().out
    assert "a temporary file a killed leaderboard writer left" in out
    assert "files: plots/.qbench-tmp" not in out
    mine.write_text("not qbench's")
    assert main(["leaderboard", "--store", str(run)]) == 0
    assert not dead.exists() and alive.exists() and mine.exists()
    alive.unlink()
    mine.unlink()


# ------------------------------------------------------------------------------------- bundles


def _bundle(path: Path, files: dict[str, bytes], unlisted: dict[str, int] | None = None) -> Path:
    manifest = {"format": "qbench-bundle/1", "files": {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}}
    with tarfile.open(path, "w:gz", compresslevel=1) as archive:
        for name, data in {**files, "manifest.json": json.dumps(manifest).encode()}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))
        for name, size in (unlisted or {}).items():
            info = tarfile.TarInfo(name)
            info.size = size
            archive.addfile(info, _Zeros(size))
    return path


class _Zeros(io.RawIOBase):
    def __init__(self, size: int) -> None:
        self.left = size

    def readinto(self, buffer) -> int:  # type: ignore[no-untyped-def]
        count = min(len(buffer), self.left)
        buffer[:count] = bytes(count)
        self.left -= count
        return count


@pytest.mark.parametrize(("files", "message"), [
    ({"plots": b"a file", "plots/x.svg": b"<svg/>"}, "is both a file and a folder"),
    ({"x" * 300: b"long"}, "longer than 255 bytes"),
])
@pytest.mark.parametrize("command", ["validate", "merge"])
def test_a_bundle_the_file_system_cannot_hold_is_refused(tmp_path, capsys, files, message, command):
    bundle = _bundle(tmp_path / "b.qbench.tar.gz", files)
    argv = ["validate", str(bundle)] if command == "validate" else ["merge", str(bundle), "--out", str(tmp_path / "m")]
    assert main(argv) == 4
    out, err = capsys.readouterr()
    assert message in err and "Traceback" not in out + err
    assert not (tmp_path / "m").exists()


def test_an_unlisted_member_is_never_read(tmp_path, monkeypatch):
    import tracemalloc

    from qbench.publish.bundle import extract

    bundle = _bundle(tmp_path / "b.qbench.tar.gz", {"run.json": b"{}"}, unlisted={"zz.bin": 64 << 20})
    tracemalloc.start()
    try:
        extracted = extract(bundle, tmp_path / "x")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert any("zz.bin is not listed" in p for p in extracted.problems)
    assert not (tmp_path / "x" / "zz.bin").exists()
    assert peak < 16 << 20, f"{peak} bytes held while refusing a 64 MiB member"


# ------------------------------------------------------------------------------- time limits


def _slow_ok_record(case, device):  # type: ignore[no-untyped-def]
    import time

    from qbench.case_runner import base_record

    # SIGALRM held back, as in one long C call: the in-process timer cannot stop this case
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    time.sleep(0.3)
    record = base_record(case)
    record["status"] = "ok"
    return record


def _a_case():  # type: ignore[no-untyped-def]
    from qbench.matrix import Case, Spec

    spec = Spec("float", {}, ())
    return Case("c0", "m", spec, Spec("rnn", {}, ()), Spec("pydoc-char", {}, ()), (), 0, {})


@pytest.mark.skipif(not hasattr(signal, "pthread_sigmask"), reason="needs signal masks")
def test_a_case_that_finishes_past_its_time_limit_is_a_timeout(tmp_path):
    from qbench.executors.inprocess import InProcessExecutor
    from qbench.executors.policy import CasePolicy
    from qbench.executors.runner import CaseRunner

    case = _a_case()
    previous = signal.getsignal(signal.SIGALRM)
    try:
        runner = CaseRunner(run=_slow_ok_record, policy=CasePolicy(case_timeout=0.2))
        records = list(InProcessExecutor(runner).run([case]))
        assert records[0]["status"] == "error" and "timeout" in records[0]["error"]
        record = runner.bind()(case)  # what a pool or Dask worker runs
        assert record["status"] == "error" and "longer than the 0.2 s limit" in record["error"]
        assert CaseRunner(run=_slow_ok_record, policy=CasePolicy(case_timeout=5.0)).bind()(case)["status"] == "ok"
    finally:
        signal.signal(signal.SIGALRM, signal.SIG_IGN)  # the pending alarm, delivered and dropped
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGALRM})
        signal.signal(signal.SIGALRM, previous)


# ----------------------------------------------------------------------------- Ctrl-C at start


_START_AND_INTERRUPT = """
import os, signal, time
from multiprocessing import forkserver, util
from qbench.executors.pool import ProcessPoolExecutor

spawn = util.spawnv_passfds

def spawn_then_ctrl_c(*args):
    pid = spawn(*args)
    time.sleep(0.5)
    os.kill(pid, signal.SIGINT)  # a Ctrl-C reaches the whole group while the fork server imports torch
    return pid

util.spawnv_passfds = spawn_then_ctrl_c
pool = ProcessPoolExecutor(1)
worker = pool._spawn()
os.kill(worker.process.pid, signal.SIGINT)  # ... or while a worker starts
print(worker.conn.recv()[0], flush=True)  # the worker starts all the same
pool.close()
"""


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the fork server is a Linux/Unix start method")
def test_a_ctrl_c_while_workers_start_prints_no_fork_server_traceback():
    done = subprocess.run([sys.executable, "-c", _START_AND_INTERRUPT], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr, done.stderr
    assert done.stdout.strip() == "ready" and done.returncode == 0
