"""ptb-char and text8 on small files written here in the real formats, and their verification paths.

The real hash tables cannot match a small file, so the tests that prepare data patch the
module constant ``EXPECTED`` with the small files' own sizes and hashes; the tests of refusal
use the real tables. No test touches the network: the download URL points at a closed local port.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import zipfile

import numpy as np
import pytest
from qbench_builtins.datasets import ptb_char, text8

import qbench
from qbench import DatasetError
from qbench.datacache import git_blob_id
from qbench.testing.datasets import check_dataset

CLOSED_PORT_URL = "http://127.0.0.1:9/nothing-here"

SENTENCES = {
    "train": ["aer banknote berlitz calloway centrust", "pierre <unk> N years old will join the board",
              "mr. <unk> is chairman of <unk> n.v. the dutch publishing group"] * 40,
    "valid": ["consumers may want to move their telephones a little closer to the tv set"] * 3,
    "test": ["no it was n't black monday", "but while the new york stock exchange did n't fall apart"],
}


def ptb_char_text(sentences):
    """The ptb.char format: characters separated by spaces, ``_`` between words, one sentence a line."""
    return "".join(" " + " ".join("_".join(s.split(" "))) + "\n" for s in sentences).encode()


@pytest.fixture
def ptb_files(tmp_path, monkeypatch):
    folder = tmp_path / "simple-examples" / "data"
    folder.mkdir(parents=True)
    table = {}
    for split, sentences in SENTENCES.items():
        data = ptb_char_text(sentences)
        (folder / f"ptb.char.{split}.txt").write_bytes(data)
        table[f"ptb.char.{split}.txt"] = ({"git_blob": git_blob_id(data)} if split == "train" else
                                          {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    monkeypatch.setattr(ptb_char, "EXPECTED", table)
    monkeypatch.setattr(ptb_char, "URL", CLOSED_PORT_URL)
    return folder


def make_archive(folder, archive):
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(folder.parent, arcname="./simple-examples")
    return archive


def test_ptb_char_reads_the_real_format(ptb_files, tmp_path):
    data = qbench.create("dataset", "ptb-char", path=str(ptb_files)).prepare(str(tmp_path / "cache"))
    assert "_" in data.vocab and "\n" in data.vocab and " " not in data.vocab
    decoded = "".join(data.vocab[i] for i in data.test)
    # the apostrophe never occurs in this small training split, so it is the <unk> symbol
    assert data.vocab[-1] == "<unk>" and decoded.splitlines()[0] == "no_it_was_n<unk>t_black_monday"
    train = "".join(data.vocab[i] for i in data.train)
    assert train.splitlines()[1] == "pierre_<unk>_N_years_old_will_join_the_board"
    assert len(data.valid) == 3 * (len(SENTENCES["valid"][0]) + 1)


def test_ptb_char_same_data_from_folder_archive_and_cache(ptb_files, tmp_path):
    cache = tmp_path / "cache"
    direct = qbench.create("dataset", "ptb-char", path=str(ptb_files.parent.parent)).prepare(str(cache))
    archive = make_archive(ptb_files, tmp_path / "simple-examples.tgz")
    from_archive = qbench.create("dataset", "ptb-char", path=str(archive)).prepare(str(cache))
    assert from_archive.fingerprint == direct.fingerprint
    other_cache = tmp_path / "other"
    (other_cache / "ptb-char").mkdir(parents=True)
    (other_cache / "ptb-char" / "simple-examples.tgz").write_bytes(archive.read_bytes())
    dataset = qbench.create("dataset", "ptb-char")
    assert dataset.availability(str(other_cache)).startswith("ready (archive")
    assert check_dataset(dataset, other_cache).fingerprint == direct.fingerprint
    assert dataset.availability(str(other_cache)) == "ready"


def test_ptb_char_conforms_with_a_user_path(ptb_files, tmp_path):
    check_dataset(qbench.create("dataset", "ptb-char", path=str(ptb_files), max_chars=500), tmp_path / "c")


def test_ptb_char_refuses_small_files_against_the_real_hashes(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for split, sentences in SENTENCES.items():
        (folder / f"ptb.char.{split}.txt").write_bytes(ptb_char_text(sentences))
    with pytest.raises(DatasetError) as info:
        qbench.create("dataset", "ptb-char", path=str(folder)).prepare(str(tmp_path / "cache"))
    message = str(info.value)
    assert "git blob id" in message and "84b890a87aed6ad2989aa12d03f1129c41d727b2" in message
    assert "simple-examples.tgz" in message and "ptb.char.train.txt" in message
    (folder / "ptb.char.train.txt").unlink()
    with pytest.raises(DatasetError, match=r"holds neither ptb.char.train.txt.*simple-examples.tgz"):
        qbench.create("dataset", "ptb-char", path=str(folder)).prepare(str(tmp_path / "cache"))


def test_ptb_char_refuses_truncated_and_altered_copies(ptb_files, tmp_path):
    cache = str(tmp_path / "cache")
    valid = ptb_files / "ptb.char.valid.txt"
    good = valid.read_bytes()
    valid.write_bytes(good[:-10])
    size = len(good)
    with pytest.raises(DatasetError, match=rf"is {size - 10:,} bytes, expected {size:,} \(truncated"):
        qbench.create("dataset", "ptb-char", path=str(ptb_files)).prepare(cache)
    valid.write_bytes(good.replace(b"t v", b"t w", 1))
    with pytest.raises(DatasetError, match="ptb.char.valid.txt .* has sha256 .* expected"):
        qbench.create("dataset", "ptb-char", path=str(ptb_files)).prepare(cache)
    valid.write_bytes(good)
    train = ptb_files / "ptb.char.train.txt"
    train.write_bytes(train.read_bytes() + b" x\n")
    with pytest.raises(DatasetError, match="ptb.char.train.txt .* git blob id"):
        qbench.create("dataset", "ptb-char", path=str(ptb_files)).prepare(cache)


def test_ptb_char_refuses_a_truncated_archive_and_a_word_level_file(ptb_files, tmp_path, monkeypatch):
    archive = make_archive(ptb_files, tmp_path / "simple-examples.tgz")
    archive.write_bytes(archive.read_bytes()[:200])
    with pytest.raises(DatasetError, match="cannot read the archive .* truncated"):
        qbench.create("dataset", "ptb-char", path=str(archive)).prepare(str(tmp_path / "cache"))
    words = b" the dutch publishing group\n"
    (ptb_files / "ptb.char.test.txt").write_bytes(words)
    monkeypatch.setitem(ptb_char.EXPECTED, "ptb.char.test.txt", {"sha256": hashlib.sha256(words).hexdigest()})
    with pytest.raises(DatasetError, match="token 'the'.*word-level"):
        qbench.create("dataset", "ptb-char", path=str(ptb_files)).prepare(str(tmp_path / "cache"))


def test_ptb_char_missing_everywhere_says_where_to_put_the_files(ptb_files, tmp_path):
    cache = tmp_path / "empty"
    dataset = qbench.create("dataset", "ptb-char")
    assert dataset.availability(str(cache)).startswith("missing: put simple-examples.tgz")
    with pytest.raises(DatasetError) as info:
        dataset.prepare(str(cache))
    message = str(info.value)
    assert "could not download" in message and str(cache / "ptb-char") in message
    assert list((cache / "ptb-char").iterdir()) == [], "a failed download leaves no file behind"
    with pytest.raises(DatasetError, match="path '/no/such/ptb' does not exist"):
        qbench.create("dataset", "ptb-char", path="/no/such/ptb").prepare(str(cache))


# ------------------------------------------------------------------------------------------- text8

TEXT8 = (b" anarchism originated as a term of abuse first used against early working class radicals"
         b" including the diggers of the english revolution and the sans culottes of the french revolution") * 20


@pytest.fixture
def text8_file(tmp_path, monkeypatch):
    path = tmp_path / "text8"
    path.write_bytes(TEXT8)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("text8", TEXT8)
    (tmp_path / "zipped").mkdir()
    (tmp_path / "zipped" / "text8.zip").write_bytes(buffer.getvalue())
    monkeypatch.setattr(text8, "EXPECTED", {
        "text8": {"size": len(TEXT8), "sha1": hashlib.sha1(TEXT8).hexdigest()},
        "text8.zip": {"size": len(buffer.getvalue())},
    })
    monkeypatch.setattr(text8, "URL", CLOSED_PORT_URL)
    return path


def test_text8_split_and_vocab(text8_file, tmp_path):
    data = qbench.create("dataset", "text8", path=str(text8_file)).prepare(str(tmp_path / "cache"))
    n = len(TEXT8)
    assert (len(data.train), len(data.valid), len(data.test)) == (int(n * 0.9), int(n * 0.05),
                                                                    n - int(n * 0.9) - int(n * 0.05))
    assert data.vocab[0] == " " and all(c.isalpha() or c == " " or c == "<unk>" for c in data.vocab)
    assert "".join(data.vocab[i] for i in data.train).encode() == TEXT8[: int(n * 0.9)]
    zipped = qbench.create("dataset", "text8", path=str(text8_file.parent / "zipped")).prepare(
        str(tmp_path / "cache"))
    assert zipped.fingerprint == data.fingerprint and np.array_equal(zipped.test, data.test)


def test_text8_conforms_from_the_cache(text8_file, tmp_path):
    cache = tmp_path / "cache"
    (cache / "text8").mkdir(parents=True)
    (cache / "text8" / "text8.zip").write_bytes((text8_file.parent / "zipped" / "text8.zip").read_bytes())
    check_dataset(qbench.create("dataset", "text8"), cache)


def test_text8_refuses_wrong_copies(text8_file, tmp_path):
    cache = str(tmp_path / "cache")
    text8_file.write_bytes(TEXT8[:-1] + b"x")
    with pytest.raises(DatasetError, match="text8 from .* has sha1 .* expected .*text8.zip"):
        qbench.create("dataset", "text8", path=str(text8_file)).prepare(cache)
    text8_file.write_bytes(TEXT8[:100])
    with pytest.raises(DatasetError, match=rf"is 100 bytes, expected {len(TEXT8):,} \(truncated"):
        qbench.create("dataset", "text8", path=str(text8_file)).prepare(cache)
    with pytest.raises(DatasetError, match="holds neither text8 nor text8.zip"):
        qbench.create("dataset", "text8", path=str(tmp_path / "cache")).prepare(cache)


def test_text8_refuses_small_copies_against_the_real_table(tmp_path):
    (tmp_path / "text8").write_bytes(TEXT8)
    with pytest.raises(DatasetError, match=rf"is {len(TEXT8):,} bytes, expected 100,000,000 \(truncated"):
        qbench.create("dataset", "text8", path=str(tmp_path / "text8")).prepare(str(tmp_path / "cache"))


def test_text8_missing_says_where_to_put_it(text8_file, tmp_path):
    cache = tmp_path / "empty"
    with pytest.raises(DatasetError, match=rf"could not download .*put it in {cache / 'text8'}"):
        qbench.create("dataset", "text8").prepare(str(cache))
