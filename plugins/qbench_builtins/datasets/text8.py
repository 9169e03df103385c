"""``text8``: Mahoney's first 10^8 bytes of cleaned Wikipedia (a-z and space), split 90M / 5M / 5M."""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.hashing import verify_bytes, verify_file
from qbench.datacache.location import dataset_dir, resolve_cache
from qbench.datacache.obtaining import download
from qbench.datacache.prepared import prepared_path

from .base import LM_PARAMS, PATH_PARAM, PREP_VERSION, ObtainedCharLMDataset

URL = "http://mattmahoney.net/dc/text8.zip"
ZIP_NAME, TEXT_NAME = "text8.zip", "text8"
#: what correct files are (module constant so that tests can patch it); docs/data.md
EXPECTED: dict[str, dict[str, Any]] = {
    TEXT_NAME: {"size": 100_000_000, "sha1": "0dc3edebc970dcc96137e7deda4d9995af9d93de"},
    ZIP_NAME: {"size": 31_344_016},
}
#: the usual split: the first 90% of the bytes train, the next 5% valid, the last 5% test
TRAIN_SHARE, VALID_SHARE = 0.9, 0.05


def how_to_get(cache: Path) -> str:
    return (f"Get {ZIP_NAME} ({URL}; qbench downloads it itself when online) and either give it or the "
            f"unzipped {TEXT_NAME} as the dataset's `path` parameter, or put it in {cache / 'text8'}")


def read_text8(source: Path, fix: str) -> bytes:
    """The verified 10^8 bytes from ``text8`` or ``text8.zip`` (read with zipfile, nothing extracted)."""
    import zipfile

    if source.name.endswith(".zip") or zipfile.is_zipfile(source):
        verify_file(source, EXPECTED[ZIP_NAME], f"text8: {source.name}", fix)
        try:
            with zipfile.ZipFile(source) as archive:
                data = archive.read(TEXT_NAME)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise DatasetError(f"text8: cannot read {TEXT_NAME} from {source} ({exc}). {fix}") from exc
    else:
        verify_file(source, {"size": EXPECTED[TEXT_NAME]["size"]}, f"text8: {source.name}", fix)
        data = source.read_bytes()
    verify_bytes(data, EXPECTED[TEXT_NAME], f"text8: {TEXT_NAME} from {source}", fix)
    return data


def split(data: bytes) -> tuple[bytes, bytes, bytes]:
    n_train, n_valid = int(len(data) * TRAIN_SHARE), int(len(data) * VALID_SHARE)
    return data[:n_train], data[n_train:n_train + n_valid], data[n_train + n_valid:]


class Text8(ObtainedCharLMDataset):
    """text8 characters (27 symbols), 90M / 5M / 5M; your copy, verified by sha1."""

    name: ClassVar[str] = "text8"
    description: ClassVar[str] = "text8 (10^8 characters of Wikipedia, a-z and space), split 90M / 5M / 5M"
    licence: ClassVar[str] = "CC BY-SA (Wikipedia text, prepared by Matt Mahoney)"
    params: ClassVar[dict[str, Param]] = {**PATH_PARAM, **LM_PARAMS}
    path: str

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.name, "version": PREP_VERSION, "expected": EXPECTED[TEXT_NAME],
                "split": [TRAIN_SHARE, VALID_SHARE]}

    def _source(self, cache: Path, fix: str) -> Path:
        if self.path:
            given = Path(self.path).expanduser()
            if given.is_dir():
                found = [given / n for n in (TEXT_NAME, ZIP_NAME) if (given / n).is_file()]
                if not found:
                    raise DatasetError(f"text8: the folder {given} holds neither {TEXT_NAME} nor {ZIP_NAME}. {fix}")
                return found[0]
            if not given.is_file():
                raise DatasetError(f"text8: path {self.path!r} does not exist. {fix}")
            return given
        folder = dataset_dir(cache, self.name)
        for name in (TEXT_NAME, ZIP_NAME):
            if (folder / name).is_file():
                return folder / name
        download(URL, folder / ZIP_NAME, "text8", fix)
        return folder / ZIP_NAME

    def obtain(self, cache_dir: str) -> bytes:
        cache = resolve_cache(cache_dir)
        fix = how_to_get(cache)
        source = self._source(cache, fix)
        if not self.path:
            fix = f"Remove {source} and try again. {fix}"
        return read_text8(source, fix)

    def split_texts(self, source: bytes) -> tuple[bytes, bytes, bytes]:
        return split(source)

    def availability(self, cache_dir: str) -> str:
        cache = resolve_cache(cache_dir)
        if prepared_path(cache, self.name, self._key(), create=False).is_file():
            return "ready"
        if any((cache / self.name / n).is_file() for n in (TEXT_NAME, ZIP_NAME)):
            return "ready (file in the cache; verified on first use)"
        return f"missing: put {ZIP_NAME} in {cache / self.name} or set `path` (downloaded when online)"
