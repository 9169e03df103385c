"""Atomic writes (a temporary file in the same folder, fsynced, renamed into place) and the sweep of
what killed writers left behind."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; on success fsync it and ``os.replace`` it into place.

    On any exception (or a kill) the temporary file is removed or left as ``.<name>.*.partial``,
    which no loader reads; ``path`` itself is either the old complete file or the new one.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # not tempfile.mkstemp: its 0600 mode would make shared caches unreadable to other users
    tmp = path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(6)}.partial"
    try:
        yield tmp
        with open(tmp, "rb+") as stream:
            os.fsync(stream.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def _fsync_dir(folder: Path) -> None:
    # the rename itself is durable only once the directory entry is flushed (POSIX); not on Windows
    with contextlib.suppress(OSError, AttributeError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


#: leftovers of a killed process older than this are removed (a younger one may still be in use)
STALE_SECONDS = 3600.0


def sweep_stale(folder: str | os.PathLike[str]) -> list[Path]:
    """Remove what killed preparations left in ``folder``: ``.*.partial`` files and ``.npm-pack-*`` /
    ``.pip-download-*`` work folders older than :data:`STALE_SECONDS`. Returns what was removed."""
    import time

    removed: list[Path] = []
    root = Path(folder)
    if not root.is_dir():
        return removed
    now = time.time()
    for entry in root.iterdir():
        name = entry.name
        leftover = name.startswith(".") and (name.endswith(".partial") or name.startswith((".npm-pack-",
                                                                                             ".pip-download-")))
        with contextlib.suppress(OSError):
            if leftover and now - entry.stat().st_mtime > STALE_SECONDS:
                if entry.is_dir():
                    shutil.rmtree(entry, ignore_errors=True)
                else:
                    entry.unlink()
                removed.append(entry)
    return removed


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_copy(source: str | os.PathLike[str], path: str | os.PathLike[str]) -> None:
    """Copy a file to ``path`` atomically."""
    with atomic_path(path) as tmp:
        shutil.copyfile(source, tmp)
