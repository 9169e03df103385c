"""Issue 14, inside the host: a run's configuration is resolved once and the host is passed, not global.

The counting plugin's components subclass the built-ins and count their constructions and
``prepare`` calls, so the tests see exactly what the driver and the case runner build.
"""

from __future__ import annotations

import types
from collections import Counter

import pytest

import qbench
from qbench.driver import RunOptions, run_matrix
from qbench.errors import UsageError
from qbench.executors import resolve_run_config
from qbench.host import facade_host, facade_using, get_host
from qbench.testing import registered_plugins

from .matrices import write_matrix_file

COUNTS: Counter[str] = Counter()


def _counting(base: type, name: str) -> type:
    def __init__(self, **params):  # noqa: N807 - a constructor that counts itself
        COUNTS[f"{name} built"] += 1
        base.__init__(self, **params)

    namespace: dict[str, object] = {"name": name, "__init__": __init__}
    if issubclass(base, qbench.Dataset):

        def prepare(self, cache):
            COUNTS[f"{name} prepared"] += 1
            return base.prepare(self, cache)

        namespace["prepare"] = prepare
    return type(name.title().replace("-", ""), (base,), namespace)


def counting_plugin() -> types.SimpleNamespace:
    from qbench_builtins.cells.recurrent import RNNCell
    from qbench_builtins.datasets.pydoc_char import PydocChar
    from qbench_builtins.quantizers.connect import FloatQuantizer

    classes = {"quantizers": [_counting(FloatQuantizer, "counted-float")], "cells": [_counting(RNNCell, "counted-rnn")],
               "datasets": [_counting(PydocChar, "counted-char")]}  # fmt: skip
    plugin = types.SimpleNamespace(__name__="counting")
    for hook, found in classes.items():
        setattr(plugin, f"qbench_register_{hook}",
                qbench.hookimpl(specname=f"qbench_register_{hook}")(lambda found=found: list(found)))  # fmt: skip
    return plugin


def counted_matrix(directory, seeds):
    return write_matrix_file(directory, "counted", quantizers=("counted-float",),
                             cells=(("counted-rnn", {"hidden": 8}),),
                             datasets=(("counted-char", {"max_chars": 20000}),), seeds=seeds, epochs=1, batch=16,
                             bptt=20, max_steps=2, eval_tokens=300)  # fmt: skip


@pytest.mark.slow
def test_each_case_builds_each_component_once_and_the_run_prepares_each_dataset_once(tmp_path, data_cache,
                                                                                      monkeypatch):  # fmt: skip
    """Today's code prepared the dataset in the driver and again in every case (3 times for 2 cases)."""
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    with registered_plugins(counting_plugin(), load_entry_points=False) as host:
        COUNTS.clear()
        options = RunOptions(out=tmp_path / "out", workers=1, progress=False)
        assert run_matrix(counted_matrix(tmp_path, (0, 1)), options, host=host) == 0
    cases = 2
    # each spec is built once when the matrix is read (its configuration is canonicalised), the
    # dataset once more when the driver makes it ready, and every component once per case
    assert COUNTS == {"counted-float built": 1 + cases, "counted-rnn built": 1 + cases,
                      "counted-char built": 2 + cases, "counted-char prepared": 1}  # fmt: skip


@pytest.mark.slow
def test_the_driver_uses_the_host_it_is_given_not_a_process_wide_one(tmp_path, data_cache, monkeypatch):
    """A plugin in the given host only: today's runner looked components up in a global host and failed."""
    monkeypatch.setenv("QBENCH_DATA", str(data_cache))
    host = get_host((counting_plugin(),), load_entry_points=False)
    with facade_using(get_host(load_entry_points=False)):  # a process-wide host without the plugin
        assert "counted-float" not in facade_host().registry("quantizer")
        options = RunOptions(out=tmp_path / "out", workers=1, progress=False)
        assert run_matrix(counted_matrix(tmp_path, (0,)), options, host=host) == 0
    import sqlite3

    with sqlite3.connect(tmp_path / "out" / "qbench.sqlite") as db:
        assert [row[0] for row in db.execute("SELECT status FROM records")] == ["ok"]


def test_in_process_plugins_choose_one_worker_and_are_refused_by_worker_processes(tmp_path):
    host = get_host((counting_plugin(),), load_entry_points=False)
    assert resolve_run_config("local", None, host=host).sized_for(8).workers == 1
    assert resolve_run_config("local", None, host=get_host(load_entry_points=False)).sized_for(1).workers == 1
    with pytest.raises(UsageError, match=r"plugin\(s\) counting are registered in this process only.*"
                                         r"--executor local --workers 2 cannot load them"):  # fmt: skip
        run_matrix(counted_matrix(tmp_path, (0,)), RunOptions(out=tmp_path / "out", workers=2), host=host)
    assert not (tmp_path / "out").exists()  # refused before anything was prepared or stored


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"workers": 0}, "--workers must be at least 1, got 0"),
        ({"scheduler": "tcp://x:1"}, "--scheduler ADDR is only meaningful with --executor dask"),
        ({"device": "tpu"}, "--device 'tpu' is not supported"),
        ({"case_timeout": 0.0}, "--case-timeout must be a positive number of seconds"),
    ],
)
def test_every_executor_setting_is_checked_once_before_anything_runs(tmp_path, options, message):
    matrix = write_matrix_file(tmp_path, "m", quantizers=("float",))
    with pytest.raises(UsageError, match=message):
        run_matrix(matrix, RunOptions(out=tmp_path / "out", **options), host=get_host(load_entry_points=False))
    assert not (tmp_path / "out").exists()


def test_the_facade_host_is_only_the_public_facade_s():
    """Nothing in qbench/ but the facade itself reads the host behind ``qbench.create``."""
    from pathlib import Path

    root = Path(qbench.__file__).parent
    users = sorted(str(p.relative_to(root)) for p in root.rglob("*.py")
                   if "facade_host" in p.read_text() or "facade_using" in p.read_text())  # fmt: skip
    assert users == ["host.py", "testing/__init__.py"]


def test_a_case_leaves_the_prepared_arrays_it_reads_as_they_were():
    """The driver's prepared data is read by every in-process case: the classification task clamped
    the lengths of the dataset's own array in place (a later case saw other data)."""
    import numpy as np

    from qbench.data import CLASSIFICATION, ClassificationData, SequenceSplit
    from qbench.metrics import TASK_METRICS, MetricSet
    from qbench.trainconfig import resolve_train
    from qbench.training.tasks import ClassificationTask

    def split() -> SequenceSplit:
        return SequenceSplit(np.zeros((3, 4, 2), dtype=np.float32), np.array([4, 0, 2]), np.array([0, 1, 0]))

    data = ClassificationData(split(), split(), split(), ("a", "b"), "f")
    ClassificationTask(data, resolve_train({}), "cpu", MetricSet(CLASSIFICATION, TASK_METRICS[CLASSIFICATION]))
    assert data.train.lengths.tolist() == [4, 0, 2]
