"""qbench.datacache: cache folder, atomic writes, verification, prepared arrays and fingerprints."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from qbench import DatasetError, datacache


def test_cache_dir_follows_qbench_data(monkeypatch, tmp_path):
    monkeypatch.setenv("QBENCH_DATA", str(tmp_path / "c"))
    assert datacache.cache_dir() == tmp_path / "c"
    monkeypatch.setenv("QBENCH_DATA", "")
    assert datacache.cache_dir().parts[-2:] == (".cache", "qbench")
    assert datacache.resolve_cache("") == datacache.cache_dir()


def test_atomic_write_leaves_no_partial_file_on_failure(tmp_path):
    target = tmp_path / "a.bin"
    datacache.atomic_write_bytes(target, b"old")
    with pytest.raises(RuntimeError), datacache.atomic_path(target) as tmp:
        tmp.write_bytes(b"half of the new")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bin"]


def test_prepared_round_trip_and_stable_fingerprint(tmp_path):
    arrays = {"train": np.arange(10, dtype=np.uint8), "x": np.ones((2, 3), np.float32)}
    meta = {"vocab": ["a", "é", "<unk>"]}
    path = tmp_path / "prepared-x.npz"
    digest = datacache.save_prepared(path, arrays, meta)
    assert digest == datacache.fingerprint(dict(arrays), dict(meta))
    loaded, loaded_meta, loaded_digest = datacache.load_prepared(path)
    assert loaded_digest == digest and loaded_meta == meta
    assert all(np.array_equal(loaded[k], arrays[k]) and loaded[k].dtype == arrays[k].dtype for k in arrays)
    assert datacache.fingerprint({"train": np.arange(10, dtype=np.uint16), "x": arrays["x"]}, meta) != digest


def test_damaged_prepared_file_is_never_trusted(tmp_path, capsys):
    path = tmp_path / "prepared-x.npz"
    datacache.save_prepared(path, {"train": np.arange(1000, dtype=np.int64)}, {"v": 1})
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    assert datacache.load_prepared(path) is None and not path.exists()
    path.write_bytes(b"PK\x03\x04 truncated")
    assert datacache.load_prepared(path) is None
    assert "preparing again" in capsys.readouterr().err


def test_load_or_prepare_builds_once(tmp_path):
    calls = []

    def build():
        calls.append(1)
        return {"a": np.arange(3)}, {"k": "v"}

    first = datacache.load_or_prepare(tmp_path / "p.npz", build, "demo")
    second = datacache.load_or_prepare(tmp_path / "p.npz", build, "demo")
    assert len(calls) == 1 and first[2] == second[2]


def test_git_blob_id_matches_git(tmp_path):
    data = b"a e r _ b a n k\n"
    (tmp_path / "f").write_bytes(data)
    out = subprocess.run(["git", "hash-object", str(tmp_path / "f")], capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("git not available")
    assert datacache.git_blob_id(data) == out.stdout.strip()


def test_verify_file_says_what_was_expected_and_how_to_fix(tmp_path):
    f = tmp_path / "f.txt"
    f.write_bytes(b"hello")
    datacache.verify_file(f, {"size": 5, "sha1": datacache.digest_bytes(b"hello", "sha1")}, "demo", "fix it")
    with pytest.raises(DatasetError, match=r"is 5 bytes, expected 6 \(truncated.*fix it"):
        datacache.verify_file(f, {"size": 6}, "demo", "fix it")
    with pytest.raises(DatasetError, match=r"sha256 [0-9a-f]{64}, expected 00.*fix it"):
        datacache.verify_file(f, {"sha256": "00" * 32}, "demo", "fix it")
    with pytest.raises(DatasetError, match=r"git blob id .* expected"):
        datacache.verify_file(f, {"git_blob": "0" * 40}, "demo", "fix it")
    with pytest.raises(DatasetError, match="does not exist.*fix it"):
        datacache.verify_file(tmp_path / "nope", {"size": 1}, "demo", "fix it")


def test_download_refused_offline_with_instructions(monkeypatch, tmp_path):
    monkeypatch.setenv("QBENCH_OFFLINE", "1")
    with pytest.raises(DatasetError, match="QBENCH_OFFLINE.*put it here"):
        datacache.download("http://example.invalid/x", tmp_path / "x", "demo", "put it here")
    assert not (tmp_path / "x").exists()


def test_run_tool_reports_missing_tool_and_failure(tmp_path):
    with pytest.raises(DatasetError, match="not installed.*install it"):
        datacache.run_tool(["qbench-no-such-tool-xyz"], tmp_path, "demo", "install it")
    with pytest.raises(DatasetError, match="exit code 3.*boom.*try again"):
        datacache.run_tool(["sh", "-c", "echo boom >&2; exit 3"], tmp_path, "demo", "try again")


KILLED_WRITER = """
import os, signal, sys
import numpy as np
from qbench import datacache
with datacache.atomic_path(sys.argv[1]) as tmp:
    with open(tmp, "wb") as stream:
        stream.write(b"PK half an archive")
        stream.flush()
        os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_preparation_leaves_nothing_that_is_trusted(tmp_path):
    import os
    import sys
    import time

    target = tmp_path / "prepared-x.npz"
    done = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(target)], capture_output=True)
    assert done.returncode != 0
    leftovers = [p for p in tmp_path.iterdir() if p.name.endswith(".partial")]
    assert not target.exists() and len(leftovers) == 1
    assert datacache.load_prepared(target) is None
    assert datacache.sweep_stale(tmp_path) == [], "a young leftover may belong to a running process"
    old = time.time() - datacache.STALE_SECONDS - 60
    os.utime(leftovers[0], (old, old))
    assert datacache.sweep_stale(tmp_path) == leftovers and not leftovers[0].exists()
