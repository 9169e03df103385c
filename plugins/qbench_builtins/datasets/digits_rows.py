"""``digits-rows``: scikit-learn's bundled 8x8 digits, read row by row as 8 steps of 8 features."""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.prepared import prepared_path

from .base import CLASSIFICATION_PARAMS, PREP_VERSION, SequenceClassificationDataset

HOW_TO_GET = "install scikit-learn (pip install 'qbench[digits]' or pip install scikit-learn)"


def _source_release() -> str:
    try:
        return "scikit-learn " + importlib.metadata.version("scikit-learn")
    except importlib.metadata.PackageNotFoundError:
        raise DatasetError(f"digits-rows: scikit-learn is not installed; {HOW_TO_GET}") from None


def _load_digits() -> Any:
    if importlib.util.find_spec("sklearn") is None:
        raise DatasetError(f"digits-rows: scikit-learn is not installed; {HOW_TO_GET}")
    from sklearn.datasets import load_digits  # reads a CSV bundled in the wheel; no network

    return load_digits()


class DigitsRows(SequenceClassificationDataset):
    """UCI optdigits via scikit-learn: 1,797 images, 8 time steps of 8 pixels scaled to [0, 1]."""

    name: ClassVar[str] = "digits-rows"
    description: ClassVar[str] = "scikit-learn digits (1,797 8x8 images) as 8 steps x 8 features; quick"
    licence: ClassVar[str] = "CC BY 4.0 (UCI optdigits, via scikit-learn)"
    params: ClassVar[dict[str, Param]] = dict(CLASSIFICATION_PARAMS)

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        import numpy as np

        from .sequences import prepare_classification, stratified_split

        # The cache is keyed by the scikit-learn release that bundles the data, so that a cache hit
        # never imports scikit-learn (seconds); the prepared arrays carry a hash of the source.
        key = {"dataset": self.name, "version": PREP_VERSION, **self.split_key(), "source": _source_release()}

        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            bunch = _load_digits()
            images = np.ascontiguousarray(bunch.images, dtype=np.float64)
            labels = np.asarray(bunch.target, dtype=np.int64)
            source_sha256 = hashlib.sha256(images.tobytes() + labels.tobytes()).hexdigest()
            x = (images / 16.0).astype(np.float32)  # pixel counts 0..16 -> [0, 1]
            split = stratified_split(labels, self.split_seed, self.valid_fraction, self.test_fraction)
            arrays = {"x": x, "lengths": np.full(len(labels), x.shape[1], dtype=np.int64), "y": labels,
                      **{f"{name}_index": index for name, index in split.items()}}
            return arrays, {**key, "source_sha256": source_sha256, "class_names": [str(c) for c in range(10)]}

        return prepare_classification(prepared_path(cache_dir, self.name, key), self.name, build)

    def availability(self, cache_dir: str) -> str:
        if importlib.util.find_spec("sklearn") is None:
            return f"missing: {HOW_TO_GET}"
        return "ready"
