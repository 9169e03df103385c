"""Prepared arrays: ``.npz`` files keyed by what produced them, carrying their metadata and fingerprint."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from qbench.datacache.atomic import atomic_path, sweep_stale
from qbench.datacache.location import dataset_dir
from qbench.datacache.messages import say

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

_META_KEY = "__meta__"


def fingerprint(arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """sha256 over the arrays (sorted by name: name, dtype, shape, bytes) and the JSON of ``meta``."""
    import numpy as np

    hasher = hashlib.sha256()
    hasher.update(json.dumps(meta, sort_keys=True, ensure_ascii=True).encode())
    for name in sorted(arrays):
        array = np.ascontiguousarray(arrays[name])
        hasher.update(f"\0{name}\0{array.dtype.str}\0{array.shape}\0".encode())
        hasher.update(array.reshape(-1).view(np.uint8).data)
    return hasher.hexdigest()


def prepared_path(cache: str | os.PathLike[str] | None, name: str, key: dict[str, Any],
                  create: bool = True) -> Path:
    """Where the prepared arrays for ``key`` (everything that determines them) are cached."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return dataset_dir(cache, name, create=create) / f"prepared-{digest}.npz"


def save_prepared(path: str | os.PathLike[str], arrays: dict[str, np.ndarray], meta: dict[str, Any]) -> str:
    """Write arrays and ``meta`` (JSON-able) atomically as ``.npz``; return their fingerprint."""
    import numpy as np

    if _META_KEY in arrays:
        raise ValueError(f"array name {_META_KEY!r} is reserved")
    digest = fingerprint(arrays, meta)
    header = json.dumps({"meta": meta, "fingerprint": digest}, sort_keys=True)
    payload: dict[str, Any] = {**arrays, _META_KEY: np.array(header)}
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as stream:
            np.savez(stream, **payload)
    return digest


def load_prepared(path: str | os.PathLike[str]) -> tuple[dict[str, np.ndarray], dict[str, Any], str] | None:
    """Return ``(arrays, meta, fingerprint)`` from a prepared file, or None if absent or damaged.

    Damaged means unreadable, missing its metadata, or its arrays no longer matching the stored
    fingerprint; such a file is removed so that it is prepared again (and never trusted).
    """
    import numpy as np

    path = Path(path)
    if not path.is_file():
        return None
    try:
        # our own handle: np.load leaks its file when a damaged archive makes it raise
        with open(path, "rb") as stream, np.load(stream, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in npz.files if key != _META_KEY}
            header = json.loads(str(npz[_META_KEY][()]))
        meta, stored = header["meta"], header["fingerprint"]
    except Exception as exc:  # any damage: zip error, missing key, bad JSON, ValueError
        say(f"ignoring damaged cache file {path} ({type(exc).__name__}: {exc}); preparing again")
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    if fingerprint(arrays, meta) != stored:
        say(f"ignoring cache file {path}: its contents do not match its fingerprint; preparing again")
        with contextlib.suppress(OSError):
            path.unlink()
        return None
    return arrays, meta, stored


def load_or_prepare(path: str | os.PathLike[str], build: Any, what: str) -> tuple[dict[str, np.ndarray],
                                                                               dict[str, Any], str]:
    """Return the cached ``(arrays, meta, fingerprint)`` at ``path``, or build, save and return them.

    ``build()`` returns ``(arrays, meta)``; it runs only when no valid cached file exists, so a
    second run prepares nothing again.
    """
    cached = load_prepared(path)
    if cached is not None:
        return cached
    sweep_stale(Path(path).parent)
    say(f"{what}: preparing (once; cached in {Path(path).parent})")
    arrays, meta = build()
    digest = save_prepared(path, arrays, meta)
    return arrays, meta, digest
