"""Sequence classification helpers: stratified seeded splits, padding, standardisation, caching.

Imported only inside ``prepare()`` (it imports numpy).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from qbench.data import ClassificationData, SequenceSplit
from qbench.datacache.prepared import load_or_prepare

SPLITS = ("train", "valid", "test")


def stratified_split(labels: np.ndarray, seed: int, valid_fraction: float,
                     test_fraction: float) -> dict[str, np.ndarray]:
    """Indices of a stratified split: within each class, a seeded permutation is cut into
    ``round(n * test_fraction)`` test, ``round(n * valid_fraction)`` valid and the rest train.

    Deterministic for a given ``seed`` on every platform (numpy's PCG64), independent of any
    training seed; each split's indices are sorted so its order follows the source file.
    """
    rng = np.random.Generator(np.random.PCG64(seed))
    parts: dict[str, list[np.ndarray]] = {name: [] for name in SPLITS}
    for label in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == label))
        n_test = int(round(members.size * test_fraction))
        n_valid = int(round(members.size * valid_fraction))
        parts["test"].append(members[:n_test])
        parts["valid"].append(members[n_test:n_test + n_valid])
        parts["train"].append(members[n_test + n_valid:])
    return {name: np.sort(np.concatenate(chunks)) for name, chunks in parts.items()}


def pad(sequences: list[np.ndarray], length: int | None = None) -> np.ndarray:
    """Stack ``[T_i, F]`` float arrays into ``[N, T, F]`` float32, zero-padded at the end."""
    length = length or max(s.shape[0] for s in sequences)
    out = np.zeros((len(sequences), length, sequences[0].shape[1]), dtype=np.float32)
    for row, seq in enumerate(sequences):
        out[row, : seq.shape[0]] = seq
    return out


def standardize(x: np.ndarray, lengths: np.ndarray, split: dict[str, np.ndarray]) -> tuple[np.ndarray,
                                                                                           np.ndarray,
                                                                                           np.ndarray]:
    """Scale features to zero mean and unit variance using the *training* frames only.

    Padding stays exactly zero. Returns ``(x, mean, std)``.
    """
    valid_frame = np.arange(x.shape[1])[None, :] < lengths[:, None]
    train_frames = x[split["train"]][valid_frame[split["train"]]].astype(np.float64)
    mean = train_frames.mean(axis=0)
    std = train_frames.std(axis=0)
    std[std == 0] = 1.0
    scaled = ((x - mean) / std).astype(np.float32)
    scaled[~valid_frame] = 0.0
    return scaled, mean.astype(np.float32), std.astype(np.float32)


def prepare_classification(path: Path, what: str,
                           build: Callable[[], tuple[dict[str, np.ndarray], dict[str, Any]]]
                           ) -> ClassificationData:
    """Load or build ``{x, lengths, y, train_index, valid_index, test_index}`` and serve the splits.

    ``x`` may be cached as uint8 (raw pixels, 4x smaller); it is then served as float32 / 255.
    """
    arrays, meta, digest = load_or_prepare(path, build, what)

    def split(name: str) -> SequenceSplit:
        index = arrays[f"{name}_index"]
        x = arrays["x"][index]
        if x.dtype == np.uint8:
            x = np.multiply(x, np.float32(1.0 / 255.0), dtype=np.float32)
        return SequenceSplit(x, arrays["lengths"][index].astype(np.int64), arrays["y"][index].astype(np.int64))

    return ClassificationData(split("train"), split("valid"), split("test"), tuple(meta["class_names"]), digest)
