"""Character streams for language modelling: vocabulary, encoding, caching, the training cap.

Imported only inside ``prepare()`` (it imports numpy).

Vocabulary rule (every character-level dataset here): the symbols are the sorted unique
characters (Unicode code points) of the *whole* training split. A valid or test character that
never occurs in training maps to one extra symbol ``"<unk>"``, appended last; the vocabulary has
it only when some valid/test character needs it. ``max_chars`` truncates the served training
stream after the split and after the vocabulary is fixed, so ids, valid and test do not change
with the cap; the fingerprint then records the cap.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qbench.data import LanguageModelData
from qbench.datacache.prepared import load_or_prepare

UNK = "<unk>"
SPLITS = ("train", "valid", "test")

#: Text of one split: ``str``, or ``bytes`` read as latin-1 (one byte, one character; fast for text8).
Text = str | bytes


def _code_points(text: Text) -> np.ndarray:
    if isinstance(text, bytes):
        return np.frombuffer(text, dtype=np.uint8)
    return np.frombuffer(text.encode("utf-32-le"), dtype="<u4")


def _id_dtype(vocab_size: int) -> np.dtype:
    return np.dtype(np.uint8 if vocab_size <= 256 else np.uint16 if vocab_size <= 65536 else np.int32)


def encode_splits(train: Text, valid: Text, test: Text) -> tuple[dict[str, np.ndarray], list[str], int]:
    """Encode three texts with the training vocabulary; return ``(arrays, vocab, n_unknown)``.

    Arrays use the smallest unsigned dtype that holds the ids (compact on disk);
    :func:`to_language_model_data` serves them as int64.
    """
    points = {name: _code_points(text) for name, text in zip(SPLITS, (train, valid, test), strict=True)}
    if points["train"].size == 0:
        raise ValueError("the training split is empty")
    present = np.flatnonzero(np.bincount(points["train"]))
    vocab = [chr(int(p)) for p in present]
    top = int(max(int(p.max()) if p.size else 0 for p in points.values()))
    lookup = np.full(top + 1, -1, dtype=np.int64)
    lookup[present] = np.arange(present.size)
    ids = {name: lookup[p] for name, p in points.items()}
    n_unknown = int(sum(int((a < 0).sum()) for a in ids.values()))
    if n_unknown:
        vocab.append(UNK)
        for array in ids.values():
            array[array < 0] = len(vocab) - 1
    dtype = _id_dtype(len(vocab))
    return {name: array.astype(dtype) for name, array in ids.items()}, vocab, n_unknown


def prepare_char_lm(path: Path, what: str, read_texts: Callable[[], tuple[Text, Text, Text]],
                    meta: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any], str]:
    """Load the prepared streams at ``path`` or build them from ``read_texts()`` and cache them."""

    def build() -> tuple[dict[str, np.ndarray], dict[str, Any]]:
        arrays, vocab, n_unknown = encode_splits(*read_texts())
        return arrays, {**meta, "vocab": vocab, "unknown_chars": n_unknown}

    return load_or_prepare(path, build, what)


def to_language_model_data(arrays: dict[str, np.ndarray], meta: dict[str, Any], digest: str,
                           max_chars: int = 0) -> LanguageModelData:
    """Serve cached streams as int64 ids, with the training split capped at ``max_chars`` (0: all)."""
    train = arrays["train"]
    if 0 < max_chars < train.size:
        train = train[:max_chars]
        digest = hashlib.sha256(f"{digest}|max_chars={max_chars}".encode()).hexdigest()
    return LanguageModelData(
        train=train.astype(np.int64),
        valid=arrays["valid"].astype(np.int64),
        test=arrays["test"].astype(np.int64),
        vocab=tuple(meta["vocab"]),
        fingerprint=digest,
    )
