"""``ptb-char``: the paper's Penn Treebank character files (Mikolov's ``simple-examples``), verified.

Format of ``ptb.char.{train,valid,test}.txt``: one sentence per line, characters separated by
single spaces, ``_`` marking a word boundary. Each space-separated token becomes one symbol
(``_`` stays ``_``) and each line end one ``"\\n"`` symbol, so the vocabulary is the ~50 symbols
of the files plus the line end.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.hashing import verify_bytes
from qbench.datacache.location import dataset_dir, resolve_cache
from qbench.datacache.obtaining import download
from qbench.datacache.prepared import prepared_path

from .base import LM_PARAMS, PATH_PARAM, PREP_VERSION, ObtainedCharLMDataset

URL = "http://www.fit.vutbr.cz/~imikolov/rnnlm/simple-examples.tgz"
ARCHIVE = "simple-examples.tgz"
FILES = {split: f"ptb.char.{split}.txt" for split in ("train", "valid", "test")}
#: what correct files are (module constant so that tests can patch it); docs/data.md
EXPECTED: dict[str, dict[str, Any]] = {
    "ptb.char.train.txt": {"git_blob": "84b890a87aed6ad2989aa12d03f1129c41d727b2"},
    "ptb.char.valid.txt": {
        "size": 786_084,
        "sha256": "21661f63ec355085879458b6524644d4add5573541b4be14fb52ab2e2e995eb8",
    },
    "ptb.char.test.txt": {
        "size": 884_846,
        "sha256": "1ef5607ac3c463b16e38bfe7900dd3bfc91de5a96e0f21e7eab5188b465b8ebe",
    },
}
#: sub-folders searched under a given or cached folder
SUBFOLDERS = ("", "data", "simple-examples/data")


def how_to_get(cache: Path) -> str:
    return (f"Get Mikolov's {ARCHIVE} ({URL}; qbench downloads it itself when online) and either give the "
            f"archive or its data/ folder as the dataset's `path` parameter, or put the archive or "
            f"{', '.join(FILES.values())} in {cache / 'ptb-char'}")


def _from_archive(archive: Path) -> dict[str, bytes]:
    """The three files from a ``simple-examples.tgz``-like archive (read with tarfile, not extracted)."""
    import tarfile

    found: dict[str, bytes] = {}
    try:
        with tarfile.open(archive, "r:*") as tar:
            for member in tar.getmembers():
                base = member.name.rsplit("/", 1)[-1]
                if member.isfile() and base in FILES.values() and base not in found:
                    stream = tar.extractfile(member)
                    assert stream is not None
                    found[base] = stream.read()
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DatasetError(f"ptb-char: cannot read the archive {archive} ({exc}); it is truncated or not "
                           f"{ARCHIVE}. {how_to_get(resolve_cache(None))}") from exc
    return found


def _files_folder(folder: Path) -> Path | None:
    """The first of ``SUBFOLDERS`` under ``folder`` that holds all three files, else None."""
    for sub in SUBFOLDERS:
        candidate = folder / sub if sub else folder
        if all((candidate / name).is_file() for name in FILES.values()):
            return candidate
    return None


def _from_folder(folder: Path) -> dict[str, bytes] | None:
    """The files from :func:`_files_folder`, else None."""
    found = _files_folder(folder)
    return None if found is None else {name: (found / name).read_bytes() for name in FILES.values()}


def parse(data: bytes, what: str) -> str:
    """One split's text in the ptb.char format -> one character per symbol, ``"\\n"`` per line."""
    lines = data.decode("ascii", errors="strict").splitlines()
    out = []
    for number, line in enumerate(lines, start=1):
        tokens = line.split()
        long = next((t for t in tokens if len(t) != 1), None)
        if long is not None:
            raise DatasetError(f"ptb-char: {what} line {number} has the token {long!r}; the ptb.char files "
                               "hold single characters separated by spaces (is this the word-level file?)")
        out.append("".join(tokens) + "\n")
    return "".join(out)


class PtbChar(ObtainedCharLMDataset):
    """Penn Treebank characters (Mikolov's split: ~5.0M / 0.39M / 0.44M symbols), the paper's task."""

    name: ClassVar[str] = "ptb-char"
    description: ClassVar[str] = (
        "Penn Treebank characters (Mikolov's simple-examples ptb.char.*), the paper's language-model task"
    )
    licence: ClassVar[str] = "Penn Treebank (LDC99T42) excerpt as distributed with Mikolov's RNNLM examples"
    params: ClassVar[dict[str, Param]] = {**PATH_PARAM, **LM_PARAMS}
    path: str

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.name, "version": PREP_VERSION,
                "expected": {name: EXPECTED[name] for name in sorted(EXPECTED)}}

    def _user_copy(self, fix: str) -> dict[str, bytes]:
        given = Path(self.path).expanduser()
        if given.is_file():
            return _from_archive(given)
        if given.is_dir():
            files = _from_folder(given)
            if files is not None:
                return files
            archives = [given / ARCHIVE] if (given / ARCHIVE).is_file() else []
            if archives:
                return _from_archive(archives[0])
            raise DatasetError(f"ptb-char: the folder {given} holds neither {', '.join(FILES.values())} "
                               f"(also looked in data/ and simple-examples/data/) nor {ARCHIVE}. {fix}")
        raise DatasetError(f"ptb-char: path {self.path!r} does not exist. {fix}")

    def obtain(self, cache_dir: str) -> dict[str, bytes]:
        """The three verified files: the user's copy, the cache, or the canonical archive when online."""
        cache = resolve_cache(cache_dir)
        fix = how_to_get(cache)
        if self.path:
            files, origin = self._user_copy(fix), str(Path(self.path).expanduser())
        else:
            folder = dataset_dir(cache, self.name)
            files, origin = _from_folder(folder) or {}, str(folder)
            if not files:
                if not (folder / ARCHIVE).is_file():
                    download(URL, folder / ARCHIVE, "ptb-char", fix)
                files, origin = _from_archive(folder / ARCHIVE), str(folder / ARCHIVE)
            fix = f"Remove the copy in {origin} and try again. {fix}"
        for name in FILES.values():
            if name not in files:
                raise DatasetError(f"ptb-char: {name} is missing from {origin}. {fix}")
            verify_bytes(files[name], EXPECTED[name], f"ptb-char: {name} in {origin}", fix)
        return files

    def split_texts(self, source: dict[str, bytes]) -> tuple[str, str, str]:
        train, valid, test = (parse(source[FILES[s]], FILES[s]) for s in ("train", "valid", "test"))
        return train, valid, test

    def availability(self, cache_dir: str) -> str:
        cache = resolve_cache(cache_dir)
        if prepared_path(cache, self.name, self._key(), create=False).is_file():
            return "ready"
        folder = cache / self.name
        if _files_folder(folder) is not None:
            return "ready (files in the cache; verified on first use)"
        if (folder / ARCHIVE).is_file():
            return "ready (archive in the cache; verified on first use)"
        return f"missing: put {ARCHIVE} or ptb.char.*.txt in {folder} or set `path` (downloaded when online)"
