"""Conformance kit for dataset plugins.

Two ways to use it:

* call :func:`check_dataset` on a configured dataset and a cache folder; it raises
  ``AssertionError`` naming the first broken rule and returns the prepared data;
* subclass :class:`DatasetContract` in a pytest module and provide two fixtures, ``dataset``
  (a configured instance) and ``dataset_cache`` (a folder, shared by the session so that the
  data is obtained once); every ``test_*`` method is a rule, and the test names are public API.

The rules (what the host relies on):

0. The task and the declared metrics are ones the host accepts (:class:`qbench.Metric`).
1. ``prepare(cache)`` returns :class:`~qbench.data.LanguageModelData` for ``task ==
   "language-model"``, :class:`~qbench.data.ClassificationData` for ``"classification"`` and
   :class:`~qbench.data.SequenceLabellingData` for ``"sequence-labelling"`` (``y`` is
   ``[N, T]``: one label per step, those past a sequence's length ignored).
2. Language models: three non-empty 1-D integer arrays with every id in ``range(len(vocab))``,
   vocabulary symbols unique non-empty strings. Classification: ``x`` float32 ``[N, T, F]`` with
   the same ``F`` in every split, ``1 <= lengths <= T``, zero padding past each length, labels in
   ``range(len(class_names))``, every split non-empty.
3. The fingerprint is a hex string, identical for a second ``prepare`` by a *fresh* instance with
   the same parameters (what a worker process does).
4. The second ``prepare`` is a cache hit: it writes, replaces or removes no file under the cache
   folder and returns equal arrays.
5. After a successful ``prepare``, ``availability(cache)`` starts with ``"ready"``.
"""

from __future__ import annotations

import os
import string
from pathlib import Path
from typing import Any

from qbench.components import Dataset
from qbench.data import (
    CLASSIFICATION,
    LANGUAGE_MODEL,
    REGRESSION,
    SEQUENCE_LABELLING,
    ClassificationData,
    LanguageModelData,
    RegressionData,
    SequenceLabellingData,
    SequenceSplit,
)

TASK_TYPES: dict[str, type] = {LANGUAGE_MODEL: LanguageModelData, CLASSIFICATION: ClassificationData,
                               SEQUENCE_LABELLING: SequenceLabellingData, REGRESSION: RegressionData}


def check_declared_metrics(dataset: Dataset) -> None:
    """The task and metrics declaration is one the host accepts (what registration checks)."""
    from qbench.metrics import MetricError, MetricSet

    try:
        MetricSet.of(dataset)
    except MetricError as exc:
        raise AssertionError(f"{dataset.name}: {exc}") from None


def snapshot(folder: str | os.PathLike[str]) -> dict[str, tuple[int, int]]:
    """``{relative path: (size, mtime_ns)}`` of every file under ``folder`` (to detect any write)."""
    root = Path(folder)
    if not root.exists():
        return {}
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def check_task_type(dataset: Dataset, data: Any) -> None:
    expected = TASK_TYPES.get(dataset.task)
    assert expected is not None, f"{dataset.name}: task {dataset.task!r} is not one of {sorted(TASK_TYPES)}"
    assert isinstance(data, expected), (
        f"{dataset.name}: task {dataset.task!r} must prepare {expected.__name__}, got {type(data).__name__}")
    assert getattr(data, "task", None) == dataset.task, f"{dataset.name}: data.task differs from the dataset's"


def check_fingerprint_format(dataset: Dataset, data: Any) -> None:
    fp = data.fingerprint
    assert isinstance(fp, str) and len(fp) >= 16 and set(fp) <= set(string.hexdigits), (
        f"{dataset.name}: fingerprint must be a hex digest, got {fp!r}")


def check_language_model(data: LanguageModelData, name: str = "dataset") -> None:
    import numpy as np

    vocab = data.vocab
    assert len(vocab) >= 2, f"{name}: vocabulary has {len(vocab)} symbols"
    assert all(isinstance(s, str) and s for s in vocab), f"{name}: vocabulary symbols must be non-empty str"
    assert len(set(vocab)) == len(vocab), f"{name}: vocabulary symbols must be unique"
    for split in ("train", "valid", "test"):
        ids = getattr(data, split)
        assert isinstance(ids, np.ndarray) and ids.ndim == 1, f"{name}: {split} must be a 1-D numpy array"
        assert np.issubdtype(ids.dtype, np.integer), f"{name}: {split} ids must be integers, got {ids.dtype}"
        assert ids.size >= 2, f"{name}: {split} split is empty"
        low, high = int(ids.min()), int(ids.max())
        assert 0 <= low and high < len(vocab), (
            f"{name}: {split} ids span [{low}, {high}], outside range({len(vocab)})")


def _check_split(split: SequenceSplit, n_classes: int, features: int, where: str, per_step: bool = False) -> None:
    import numpy as np

    x, lengths, y = split.x, split.lengths, split.y
    if per_step:
        assert isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == x.shape[1], (
            f"{where}: per-step labels y must be [N, T] like x's first two axes, got {getattr(y, 'shape', '?')}")
        true_steps = np.arange(x.shape[1])[None, :] < np.asarray(lengths)[:, None]
        y = y[true_steps]  # labels past a sequence's length are padding: never read
    else:
        assert isinstance(y, np.ndarray) and y.ndim == 1, (
            f"{where}: one label per sequence: y must be [N], got {getattr(y, 'shape', '?')}")
    assert isinstance(x, np.ndarray) and x.dtype == np.float32 and x.ndim == 3, (
        f"{where}: x must be float32 [N, T, F], got {getattr(x, 'dtype', type(x))} {getattr(x, 'shape', '')}")
    assert x.shape[2] == features, f"{where}: {x.shape[2]} features, the training split has {features}"
    assert len(split) >= 1, f"{where}: empty split"
    assert x.shape[0] == lengths.shape[0] == split.y.shape[0], f"{where}: x, lengths and y disagree on N"
    assert np.issubdtype(lengths.dtype, np.integer) and np.issubdtype(y.dtype, np.integer), (
        f"{where}: lengths and y must be integer arrays")
    assert int(lengths.min()) >= 1 and int(lengths.max()) <= x.shape[1], (
        f"{where}: lengths must lie in [1, T={x.shape[1]}]")
    assert int(y.min()) >= 0 and int(y.max()) < n_classes, f"{where}: labels outside range({n_classes})"
    assert np.isfinite(x).all(), f"{where}: x has NaN or inf"
    padding = np.arange(x.shape[1])[None, :] >= lengths[:, None]
    assert not np.any(x[padding]), f"{where}: padding past each sequence's length must be zero"


def check_classification(data: ClassificationData | SequenceLabellingData, name: str = "dataset") -> None:
    assert len(data.class_names) >= 2, f"{name}: needs at least two classes"
    features = int(data.train.x.shape[2])
    per_step = data.task == SEQUENCE_LABELLING
    for split in ("train", "valid", "test"):
        _check_split(getattr(data, split), len(data.class_names), features, f"{name}: {split}", per_step)


def check_regression(data: RegressionData, name: str = "dataset") -> None:
    """x as for classification; y float [N, D], finite, D = len(target_names) >= 1."""
    import numpy as np

    targets = len(data.target_names)
    assert targets >= 1, f"{name}: needs at least one target (target_names)"
    features = int(data.train.x.shape[2])
    for split in ("train", "valid", "test"):
        part = getattr(data, split)
        where = f"{name}: {split}"
        y = part.y
        assert isinstance(y, np.ndarray) and y.ndim == 2 and y.shape[1] == targets, (
            f"{where}: regression targets y must be [N, {targets}], got {getattr(y, 'shape', '?')}")
        assert np.issubdtype(y.dtype, np.floating) and np.isfinite(y).all(), f"{where}: y must be finite floats"
        # x, lengths and padding: the classification rules, with a stand-in label per sequence
        _check_split(SequenceSplit(part.x, part.lengths, np.zeros(len(y), np.int64)), 1, features, where)


def check_contents(dataset: Dataset, data: Any) -> None:
    if dataset.task == LANGUAGE_MODEL:
        check_language_model(data, dataset.name)
    elif dataset.task == REGRESSION:
        check_regression(data, dataset.name)
    else:
        check_classification(data, dataset.name)


def _same_arrays(first: Any, second: Any) -> bool:
    import numpy as np

    if isinstance(first, LanguageModelData):
        return first.vocab == second.vocab and all(
            np.array_equal(getattr(first, s), getattr(second, s)) for s in ("train", "valid", "test"))
    names = "target_names" if isinstance(first, RegressionData) else "class_names"
    return getattr(first, names) == getattr(second, names) and all(
        np.array_equal(getattr(getattr(first, s), part), getattr(getattr(second, s), part))
        for s in ("train", "valid", "test") for part in ("x", "lengths", "y"))


def check_second_prepare(dataset: Dataset, cache_dir: str | os.PathLike[str], first: Any) -> Any:
    """A fresh instance's ``prepare`` gives the same fingerprint and arrays and writes nothing."""
    before = snapshot(cache_dir)
    again = type(dataset)(**dataset.config).prepare(str(cache_dir))
    after = snapshot(cache_dir)
    assert again.fingerprint == first.fingerprint, (
        f"{dataset.name}: fingerprint changed between two prepares ({first.fingerprint} -> {again.fingerprint})")
    changed = sorted(set(before.items()) ^ set(after.items()))
    assert not changed, f"{dataset.name}: the second prepare was not a cache hit; it touched {changed[:5]}"
    assert _same_arrays(first, again), f"{dataset.name}: the second prepare returned different arrays"
    return again


def check_ready(dataset: Dataset, cache_dir: str | os.PathLike[str]) -> None:
    state = dataset.availability(str(cache_dir))
    assert isinstance(state, str) and state.startswith("ready"), (
        f"{dataset.name}: availability after a successful prepare is {state!r}, expected 'ready...'")


def check_dataset(dataset: Dataset, cache_dir: str | os.PathLike[str]) -> Any:
    """Run every rule on ``dataset`` with data cached in ``cache_dir``; return the prepared data."""
    check_declared_metrics(dataset)
    data = dataset.prepare(str(cache_dir))
    check_task_type(dataset, data)
    check_fingerprint_format(dataset, data)
    check_contents(dataset, data)
    check_second_prepare(dataset, cache_dir, data)
    check_ready(dataset, cache_dir)
    return data


class DatasetContract:
    """Subclass in a pytest module and provide the fixtures ``dataset`` and ``dataset_cache``."""

    def test_declared_task_and_metrics(self, dataset: Dataset) -> None:
        check_declared_metrics(dataset)

    def test_prepare_returns_declared_task(self, dataset: Dataset, dataset_cache: Path) -> None:
        check_task_type(dataset, dataset.prepare(str(dataset_cache)))

    def test_fingerprint_is_hex(self, dataset: Dataset, dataset_cache: Path) -> None:
        check_fingerprint_format(dataset, dataset.prepare(str(dataset_cache)))

    def test_contents_in_range(self, dataset: Dataset, dataset_cache: Path) -> None:
        check_contents(dataset, dataset.prepare(str(dataset_cache)))

    def test_second_prepare_is_stable_cache_hit(self, dataset: Dataset, dataset_cache: Path) -> None:
        check_second_prepare(dataset, dataset_cache, dataset.prepare(str(dataset_cache)))

    def test_ready_after_prepare(self, dataset: Dataset, dataset_cache: Path) -> None:
        dataset.prepare(str(dataset_cache))
        check_ready(dataset, dataset_cache)
