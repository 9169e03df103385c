"""Digests of files and bytes (sha256, sha1, md5, git blob ids) and verification against expected values."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import IO, Any

from qbench.datacache.messages import progress
from qbench.errors import DatasetError

#: bytes read at a time from files and downloads
CHUNK_BYTES = 1 << 20


def _hash_stream(stream: IO[bytes], hasher: Any, size: int | None, desc: str | None) -> None:
    bar = progress(size, desc) if desc and size and size > 16 * CHUNK_BYTES else None
    while True:
        chunk = stream.read(CHUNK_BYTES)
        if not chunk:
            break
        hasher.update(chunk)
        if bar is not None:
            bar.update(len(chunk))
    if bar is not None:
        bar.close()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256", desc: str | None = None) -> str:
    """Hex digest of a file's bytes (``sha256``, ``sha1``, ``md5``), read in chunks."""
    hasher = hashlib.new(algorithm)
    size = os.path.getsize(path)
    with open(path, "rb") as stream:
        _hash_stream(stream, hasher, size, desc)
    return hasher.hexdigest()


def git_blob_id(data: bytes) -> str:
    """The git blob id of ``data``: sha1 of ``b"blob <len>\\0" + data`` (what ``git hash-object`` prints)."""
    hasher = hashlib.sha1(b"blob %d\0" % len(data))
    hasher.update(data)
    return hasher.hexdigest()


def digest_bytes(data: bytes, algorithm: str) -> str:
    """Hex digest of ``data``; ``algorithm`` may also be ``git_blob``."""
    if algorithm == "git_blob":
        return git_blob_id(data)
    return hashlib.new(algorithm, data).hexdigest()


HASH_KINDS = ("sha256", "sha1", "md5", "git_blob")


def verify_bytes(data: bytes, expected: dict[str, Any], what: str, how_to_fix: str) -> None:
    """Check ``data`` against ``expected`` (``size`` and any of :data:`HASH_KINDS`).

    Raises :class:`DatasetError` saying what was expected, what was found and ``how_to_fix``.
    """
    size = expected.get("size")
    if size is not None and len(data) != size:
        hint = "truncated" if len(data) < size else "too long"
        raise DatasetError(
            f"{what} is {len(data):,} bytes, expected {size:,} ({hint}: an incomplete or different copy). "
            f"{how_to_fix}"
        )
    for kind in HASH_KINDS:
        if kind in expected:
            found = digest_bytes(data, kind)
            if found != expected[kind]:
                label = "git blob id" if kind == "git_blob" else kind
                raise DatasetError(
                    f"{what} has {label} {found}, expected {expected[kind]} (altered or a different "
                    f"version). {how_to_fix}"
                )


def verify_file(path: str | os.PathLike[str], expected: dict[str, Any], what: str, how_to_fix: str) -> None:
    """Like :func:`verify_bytes` for a file; checks the size first, so a truncated copy fails fast."""
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{what}: {path} does not exist or is not a file. {how_to_fix}")
    size = expected.get("size")
    found_size = path.stat().st_size
    if size is not None and found_size != size:
        hint = "truncated" if found_size < size else "too long"
        raise DatasetError(
            f"{what} ({path}) is {found_size:,} bytes, expected {size:,} ({hint}: an incomplete or "
            f"different copy). {how_to_fix}"
        )
    if "git_blob" in expected:
        verify_bytes(path.read_bytes(), {"git_blob": expected["git_blob"]}, f"{what} ({path})", how_to_fix)
    for kind in ("sha256", "sha1", "md5"):
        if kind in expected:
            found = file_digest(path, kind, desc=f"verifying {path.name}")
            if found != expected[kind]:
                raise DatasetError(
                    f"{what} ({path}) has {kind} {found}, expected {expected[kind]} (altered or a "
                    f"different version). {how_to_fix}"
                )
