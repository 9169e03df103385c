"""The runs table's column-wise JSON encoder writes exactly what ``json.dumps`` writes."""

from __future__ import annotations

import json
import math
import struct
import time

import numpy as np
import pandas as pd
import pytest

from qbench.leaderboard.render.jsonrows import OPTIONS, SAMPLE, Column, columns_of, encode_rows


def _reference(frame: pd.DataFrame, python: set[str]) -> str:
    """What ``write_json`` wrote before: Python values per cell, NaN / NA as None, ``json.dumps``."""
    columns = []
    for name in frame.columns:
        values = frame[name].to_numpy(dtype=object) if name in python else frame[name].to_numpy()
        boxed = np.asarray(values).astype(object)
        boxed[pd.isna(boxed)] = None
        columns.append([v.item() if isinstance(v, np.generic) else v for v in boxed.tolist()])
    return json.dumps(list(zip(*columns, strict=True)), **OPTIONS)[1:-1]


def _encoded(frame: pd.DataFrame, python: set[str], chunk: int, blocks: bool = False) -> str:
    """``blocks``: adjacent float columns encoded together (``columns_of``, as the runs table is)."""
    if blocks:
        columns = columns_of([Column(frame[c], python=True) if c in python else frame[c].to_numpy()
                              for c in frame.columns])  # fmt: skip
    else:
        columns = [Column(frame[c], python=True) if c in python else Column(frame[c].to_numpy())
                   for c in frame.columns]  # fmt: skip
    parts = [encode_rows(columns, start, min(start + chunk, len(frame))) for start in range(0, len(frame), chunk)]
    return ",".join(parts)


def _awkward_frame(rows: int) -> pd.DataFrame:
    rng = np.random.default_rng(7)
    floats = rng.normal(size=rows) * 10.0 ** rng.integers(-8, 20, size=rows)
    floats[::7] = np.nan
    floats[1::11] = -0.0
    floats[2::11] = 0.0
    floats[3::13] = 1e16
    floats[4::13] = 1e-05
    few = rng.choice([0.0, -0.0, 1.0, 4056.0, 1e22, 0.1, np.nan], size=rows)  # formatted per distinct value
    text = rng.choice(["gru", 'quo"te', "back\\slash", "tab\there", "ünï", "\x01ctl", "", None], size=rows)
    return pd.DataFrame({
        "label": pd.Series(rng.choice(["a", "b", "é \"x\""], size=rows)).astype("category"),
        "text": pd.Series(text, dtype=object),
        "seed": rng.integers(-5, 10**12, size=rows),
        "steps": pd.Series(np.where(rng.random(rows) < 0.2, np.nan, rng.random(rows) * 100)),
        "floats": floats,
        "few": few,
        "ints": rng.integers(0, 5, size=rows),
        "flags": rng.random(rows) < 0.5,
    })  # fmt: skip


@pytest.mark.parametrize("blocks", [False, True])
@pytest.mark.parametrize("rows", [0, 1, 50, 3 * SAMPLE + 17])
def test_the_rows_are_json_dumps_bytes(rows, blocks):
    frame = _awkward_frame(rows)
    frame.insert(5, "more", frame["floats"].to_numpy()[::-1].copy())  # two float columns side by side: a block
    python = {"label", "text", "seed", "steps"}
    assert _encoded(frame, python, chunk=1000, blocks=blocks) == _reference(frame, python)
    if blocks:
        kinds = [type(c).__name__ for c in columns_of([frame[c].to_numpy() for c in frame.columns])]
        assert kinds.count("FloatBlock") == 1, kinds


def test_without_orjson_the_blocks_give_the_same_bytes(monkeypatch):
    from qbench.leaderboard.render import jsonrows

    monkeypatch.setattr(jsonrows, "orjson", None)
    frame = _awkward_frame(3 * SAMPLE + 17)
    frame.insert(5, "more", frame["floats"].to_numpy()[::-1].copy())
    assert _encoded(frame, set(), chunk=1000, blocks=True) == _reference(frame, set())


def test_an_infinity_raises_what_json_raises():
    frame = pd.DataFrame({"x": [1.0, math.inf, 2.0]})
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _encoded(frame, set(), chunk=10)
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _encoded(frame, {"x"}, chunk=10)
    frame["y"] = 1.0
    with pytest.raises(ValueError, match="Out of range float values are not JSON compliant"):
        _encoded(frame, set(), chunk=10, blocks=True)


def _every_kind_of_float() -> np.ndarray:
    """Random bit patterns (every exponent: half of them below 1e-4), metric-like values and the edges."""
    rng = np.random.default_rng(11)
    bits = rng.integers(-(2**63), 2**63 - 1, size=60000, dtype=np.int64).view(np.float64)
    metrics = rng.normal(size=60000) * 10.0 ** rng.integers(-12, 20, size=60000)
    edges = [0.0, -0.0, 1e-4, -1e-4, 9.999999999999999e-05, 1e-05, 5e-324, 2.2250738585072014e-308,
             1.7976931348623157e308, 1e16, 9999999999999998.0, 1e22, 0.1, 1.0, 4056.0, -123.456]  # fmt: skip
    values = np.concatenate([bits, metrics, edges])
    return values[np.isfinite(values)]


@pytest.mark.parametrize("formatter", ["orjson", "repr only"])
def test_floats_are_formatted_as_repr_formats_them(monkeypatch, formatter):
    """orjson's text is repr's except below 1e-4, where repr takes over: held on every kind of float."""
    from qbench.leaderboard.render import jsonrows

    if formatter == "orjson":
        assert jsonrows.orjson is not None, "orjson is a dependency of qbench"
    else:
        monkeypatch.setattr(jsonrows, "orjson", None)
    values = _every_kind_of_float()
    assert jsonrows.float_texts(values).tolist() == list(map(float.__repr__, values.tolist()))
    assert jsonrows.float_texts(values[::-2]).tolist() == list(map(float.__repr__, values[::-2].tolist()))
    assert jsonrows.float_texts(np.array([])).tolist() == []


# ---- the runs table encoded by a child process (qbench.leaderboard.render.runrows) --------------------


def _records():
    from tests.synthetic import make_records

    return make_records(seeds=3, datasets=("pydoc-char", "digits"))


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_child_encodes_the_runs_table_to_the_same_bytes(tmp_path, monkeypatch):
    import os

    from qbench.leaderboard import write_leaderboards
    from qbench.leaderboard.compute import forking
    from qbench.leaderboard.render import runrows

    records = _records()
    write_leaderboards(records, tmp_path / "here", "t", plots=False)
    forks = []
    real_fork = os.fork
    monkeypatch.setattr(runrows, "FORK_ROWS", 1)
    monkeypatch.setattr(forking.sys, "platform", "linux")
    monkeypatch.setattr(forking.os, "fork", lambda: forks.append(1) or real_fork())
    monkeypatch.setattr(runrows, "CHUNK", 2)  # many chunks: the child and this process each take some
    taken, parent = [], os.getpid()
    real_text = runrows.RunRows._text

    def text(self, index):
        if os.getpid() == parent:
            taken.append(index)
        else:  # the child waits until this process has taken a chunk from the back: both take some
            deadline = time.monotonic() + 30
            while struct.unpack_from("qq", self._shared)[1] == self.chunks and time.monotonic() < deadline:
                time.sleep(0.01)
        return real_text(self, index)

    monkeypatch.setattr(runrows.RunRows, "_text", text)
    write_leaderboards(records, tmp_path / "child", "t", plots=False)
    assert forks == [1] and len(records) > 20
    assert taken and len(taken) < len(records) / 2, "this process took the last chunks, the child the first"
    for name in ("leaderboard.json", "leaderboard.md", "leaderboard.csv", "leaderboard.html"):
        assert (tmp_path / "child" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name
    names = [sorted(p.name for p in (tmp_path / side).iterdir()) for side in ("child", "here")]
    assert names[0] == names[1], "no temporary file left"


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_failed_child_or_rebuild_leaves_no_file_or_process(tmp_path, monkeypatch):
    import os

    from qbench.leaderboard import write_leaderboards
    from qbench.leaderboard.compute import forking
    from qbench.leaderboard.render import runrows, writers

    monkeypatch.setattr(runrows, "FORK_ROWS", 1)
    monkeypatch.setattr(forking.sys, "platform", "linux")
    records = _records()
    records[0]["test_bpc"] = math.inf  # the child fails; the parent encodes again and raises json's error
    with pytest.raises(ValueError, match="Out of range float values"):
        write_leaderboards(records, tmp_path / "inf", "t", plots=False)
    assert list((tmp_path / "inf").iterdir()) == []
    children = []
    real_fork = os.fork

    def fork():
        pid = real_fork()
        children.append(pid)
        return pid

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(forking.os, "fork", fork)
    monkeypatch.setattr(writers, "write_json", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_leaderboards(_records(), tmp_path / "stopped", "t", plots=False)
    assert list((tmp_path / "stopped").iterdir()) == [], "no temporary file left"
    with pytest.raises(ChildProcessError):
        os.waitpid(children[0], os.WNOHANG)  # reaped


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="no fork on this platform")
def test_a_child_that_fails_or_hangs_is_told_apart_and_stopped():
    import os

    from qbench.leaderboard.compute import forking

    def fails():
        raise RuntimeError("no")

    assert forking.finished(forking.start(lambda: None), 30.0)
    assert not forking.finished(forking.start(fails), 30.0)
    stuck = forking.start(lambda: time.sleep(60))
    started = time.monotonic()
    assert not forking.finished(stuck, 0.2)
    assert time.monotonic() - started < 10
    with pytest.raises(ChildProcessError):
        os.waitpid(stuck, os.WNOHANG)  # killed and reaped


def test_a_refused_fork_encodes_the_table_here(tmp_path, monkeypatch):
    from qbench.leaderboard import write_leaderboards
    from qbench.leaderboard.compute import forking
    from qbench.leaderboard.render import runrows

    records = _records()
    write_leaderboards(records, tmp_path / "here", "t", plots=False)
    monkeypatch.setattr(runrows, "FORK_ROWS", 1)
    monkeypatch.setattr(forking.sys, "platform", "linux")

    def refused():
        raise OSError("refused")

    monkeypatch.setattr(forking.os, "fork", refused)
    write_leaderboards(records, tmp_path / "refused", "t", plots=False)
    for name in ("leaderboard.json", "leaderboard.md"):
        assert (tmp_path / "refused" / name).read_bytes() == (tmp_path / "here" / name).read_bytes(), name
    names = [sorted(p.name for p in (tmp_path / side).iterdir()) for side in ("refused", "here")]
    assert names[0] == names[1], "no temporary file left"
