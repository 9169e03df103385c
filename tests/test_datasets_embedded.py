"""The embedded datasets on their real data: pydoc-char (CPython docs) and digits-rows (scikit-learn)."""

from __future__ import annotations

import numpy as np
import pytest
from qbench_builtins.datasets import charlm, pydoc_char

import qbench


def test_pydoc_split_is_disjoint_complete_and_about_90_5_5():
    topics = pydoc_char.read_topics()
    parts = pydoc_char.split_topics(topics)
    names = parts["train"] + parts["valid"] + parts["test"]
    assert sorted(names) == sorted(topics) and len(set(names)) == len(names)
    total = sum(map(len, topics.values()))
    share = {s: sum(len(topics[t]) for t in parts[s]) / total for s in parts}
    assert 0.04 <= share["valid"] <= 0.08 and 0.04 <= share["test"] <= 0.08, share
    assert parts == pydoc_char.split_topics(dict(reversed(list(topics.items())))), "must not depend on order"


def test_pydoc_char_data_matches_the_documentation_text(data_cache):
    data = qbench.create("dataset", "pydoc-char").prepare(str(data_cache))
    topics = pydoc_char.read_topics()
    parts = pydoc_char.split_topics(topics)
    expected_test = "\n".join(topics[t] for t in parts["test"])
    decoded = "".join(data.vocab[i] for i in data.test)
    # test characters unseen in training are <unk>; everything else round-trips exactly
    assert len(decoded.replace(charlm.UNK, "?")) == len(expected_test)
    assert decoded.replace(charlm.UNK, "") == "".join(c for c in expected_test if c in data.vocab)
    assert list(data.vocab[: len(data.vocab) - (charlm.UNK in data.vocab)]) == sorted(
        set("\n".join(topics[t] for t in parts["train"])))
    assert len(data.train) + len(data.valid) + len(data.test) == sum(map(len, topics.values())) + len(topics) - 3


def test_max_chars_caps_training_only_and_changes_the_fingerprint(data_cache):
    full = qbench.create("dataset", "pydoc-char").prepare(str(data_cache))
    capped = qbench.create("dataset", "pydoc-char", max_chars=1000).prepare(str(data_cache))
    assert len(capped.train) == 1000 and np.array_equal(capped.train, full.train[:1000])
    assert np.array_equal(capped.valid, full.valid) and np.array_equal(capped.test, full.test)
    assert capped.vocab == full.vocab and capped.fingerprint != full.fingerprint
    huge = qbench.create("dataset", "pydoc-char", max_chars=10**9).prepare(str(data_cache))
    assert huge.fingerprint == full.fingerprint
    assert full.train.dtype == np.int64


def test_unknown_characters_map_to_one_extra_symbol():
    arrays, vocab, unknown = charlm.encode_splits("abca", "abz", "é")
    assert vocab == ["a", "b", "c", charlm.UNK] and unknown == 2
    assert arrays["train"].tolist() == [0, 1, 2, 0]
    assert arrays["valid"].tolist() == [0, 1, 3] and arrays["test"].tolist() == [3]
    arrays, vocab, unknown = charlm.encode_splits(b"ab a", b"ba", b"  ")
    assert vocab == [" ", "a", "b"] and unknown == 0 and arrays["valid"].tolist() == [2, 1]


def test_digits_rows_real_data_and_stratified_split(data_cache):
    data = qbench.create("dataset", "digits-rows").prepare(str(data_cache))
    assert data.input_size == 8 and data.n_outputs == 10
    n = len(data.train) + len(data.valid) + len(data.test)
    assert n == 1797
    assert abs(len(data.test) - 0.2 * n) <= 10 and abs(len(data.valid) - 0.1 * n) <= 10
    for split in (data.train, data.valid, data.test):
        counts = np.bincount(split.y, minlength=10)
        assert counts.min() > 0 and counts.max() - counts.min() <= 0.05 * len(split) + 2
        assert split.x.min() >= 0 and split.x.max() <= 1 and (split.lengths == 8).all()
    from sklearn.datasets import load_digits

    images = load_digits().images / 16.0
    row = data.test.x[0]
    assert any(np.allclose(row, image) for image in images)


def test_digits_rows_split_seed_changes_split_not_the_case_seed(data_cache):
    a = qbench.create("dataset", "digits-rows").prepare(str(data_cache))
    b = qbench.create("dataset", "digits-rows", split_seed=1).prepare(str(data_cache))
    assert a.fingerprint != b.fingerprint and not np.array_equal(a.test.y, b.test.y)
    assert len(a.test) == len(b.test)


def test_classification_fractions_are_checked():
    with pytest.raises(qbench.ParamError, match="valid_fraction"):
        qbench.create("dataset", "digits-rows", valid_fraction=0.0)
    with pytest.raises(qbench.ParamError, match="0.9"):
        qbench.create("dataset", "digits-rows", valid_fraction=0.45, test_fraction=0.5)


def test_availability_of_embedded_datasets(tmp_path):
    pydoc = qbench.create("dataset", "pydoc-char")
    assert pydoc.availability(str(tmp_path)).startswith("ready")
    assert not (tmp_path / "pydoc-char").exists(), "availability must not create folders"
    pydoc.prepare(str(tmp_path))
    assert pydoc.availability(str(tmp_path)) == "ready"
    assert qbench.create("dataset", "digits-rows").availability(str(tmp_path)) == "ready"
