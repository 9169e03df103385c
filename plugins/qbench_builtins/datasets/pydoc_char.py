"""``pydoc-char``: the embedded default, the Python reference documentation shipped with CPython."""

from __future__ import annotations

import hashlib
import json
import sys
from typing import Any, ClassVar

from qbench import DatasetError, Param
from qbench.datacache.prepared import prepared_path

from .base import LM_PARAMS, PREP_VERSION, CharLMDataset

#: share of characters aimed at for valid and test each (whole topics, so slightly above)
HELD_OUT_SHARE = 0.05


def read_topics() -> dict[str, str]:
    """``pydoc_data.topics.topics``: topic name -> text (part of every CPython installation)."""
    try:
        from pydoc_data.topics import topics
    except ImportError as exc:  # some distributions strip it (e.g. minimal Debian python3)
        raise DatasetError(
            f"pydoc-char: this Python ({sys.executable}) has no pydoc_data module ({exc}); install the full "
            "standard library (on Debian: apt-get install libpython3-stdlib) or pick another dataset"
        ) from exc
    if not topics:
        raise DatasetError("pydoc-char: pydoc_data.topics is empty in this Python; pick another dataset")
    return dict(topics)


def split_topics(topics: dict[str, str]) -> dict[str, list[str]]:
    """Assign whole topics to test, valid and train, deterministically.

    Topics are visited in the order of the sha256 of their names (independent of Python's hash
    seed and of the dict order). Each held-out split takes topics until it holds
    ``HELD_OUT_SHARE`` of all characters, test first, then valid; topics larger than that share
    always go to train, so no held-out split is dominated by one huge topic. Everything else is
    train (about 90%).
    """
    total = sum(len(text) for text in topics.values())
    target = HELD_OUT_SHARE * total
    order = sorted(topics, key=lambda name: hashlib.sha256(name.encode()).hexdigest())
    splits: dict[str, list[str]] = {"train": [], "valid": [], "test": []}
    filled = {"valid": 0, "test": 0}
    for name in order:
        size = len(topics[name])
        held = next((s for s in ("test", "valid") if filled[s] < target), None)
        if held is None or size > target:
            splits["train"].append(name)
        else:
            splits[held].append(name)
            filled[held] += size
    return {split: sorted(names) for split, names in splits.items()}


class PydocChar(CharLMDataset):
    """Characters of the Python reference docs (pydoc_data), split by topic ~90/5/5; embedded."""

    name: ClassVar[str] = "pydoc-char"
    description: ClassVar[str] = (
        "Python reference documentation (pydoc_data/topics.py, ~465k chars), split by topic ~90/5/5"
    )
    licence: ClassVar[str] = "PSF License (Python documentation)"
    params: ClassVar[dict[str, Param]] = dict(LM_PARAMS)

    def _source(self) -> tuple[dict[str, str], dict[str, Any]]:
        topics = read_topics()
        digest = hashlib.sha256(json.dumps(topics, sort_keys=True).encode()).hexdigest()
        return topics, {"dataset": self.name, "version": PREP_VERSION, "source_sha256": digest}

    def prepare(self, cache_dir: str):  # type: ignore[no-untyped-def]
        from .charlm import prepare_char_lm, to_language_model_data

        topics, key = self._source()
        path = prepared_path(cache_dir, self.name, key)

        def read_texts() -> tuple[str, str, str]:
            parts = split_topics(topics)
            train, valid, test = ("\n".join(topics[t] for t in parts[s]) for s in ("train", "valid", "test"))
            return train, valid, test

        meta = {**key, "python": sys.version.split()[0], "topics": split_topics(topics)}
        arrays, meta, digest = prepare_char_lm(path, self.name, read_texts, meta)
        return to_language_model_data(arrays, meta, digest, self.max_chars)

    def availability(self, cache_dir: str) -> str:
        try:
            _, key = self._source()
        except DatasetError as exc:
            return f"missing: {exc}"
        if prepared_path(cache_dir, self.name, key, create=False).is_file():
            return "ready"
        return "ready (embedded; prepared on first use)"
