"""Atomic file writes: a unique temporary file in the target's folder, then ``os.replace``.

A reader (or a second driver) sees either the old file or the new one, never a half-written
one, and two writers never share a temporary name (``tempfile`` makes each one unique), so the
last rename wins instead of one writer renaming the other's file away.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

#: Temporary files start like this (``qbench validate`` and the tests recognise leftovers).
TEMP_PREFIX = ".qbench-tmp-"


def temp_path(target: Path) -> Path:
    """A new, empty, uniquely named file beside ``target`` (the caller renames or removes it).

    It keeps ``target``'s suffix, so that writers which infer a format from the name (matplotlib)
    write the right one.
    """
    # the writer's pid in the name: a later writer removes the files of writers that no longer run
    fd, name = tempfile.mkstemp(prefix=f"{TEMP_PREFIX}{os.getpid()}-{target.name}.", suffix=target.suffix,
                                dir=target.parent)  # fmt: skip
    os.close(fd)
    return Path(name)


def is_temp_name(name: str) -> bool:
    """Whether ``name`` is one of :func:`temp_path`'s temporary files (the only files cleaned up)."""
    return name.startswith(TEMP_PREFIX)


#: A temporary file without a writer's pid (an older qbench's) is removed once this old (seconds).
ORPHAN_AGE = 3600.0


def remove_stale_temps(folder: Path) -> list[Path]:
    """Remove from ``folder`` the temporary files of writers that were killed (their process is
    gone), never another file and never a live writer's; returns what was removed."""
    import time

    removed = []
    try:
        entries = [p for p in Path(folder).iterdir() if is_temp_name(p.name)]
    except OSError:
        return []
    for path in entries:
        if path.is_symlink() or not path.is_file():
            continue
        pid_text = path.name[len(TEMP_PREFIX):].split("-", 1)[0]
        if pid_text.isdigit():
            if int(pid_text) == os.getpid() or _running(int(pid_text)):
                continue
        else:
            with contextlib.suppress(OSError):
                if time.time() - path.stat().st_mtime < ORPHAN_AGE:
                    continue
        with contextlib.suppress(OSError):
            path.unlink()
            removed.append(path)
    return removed


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True  # someone else's process, or cannot tell: leave its file
    return True


@contextlib.contextmanager
def atomic_open(target: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file beside ``target`` for writing; on success it replaces ``target``.

    On an exception (including KeyboardInterrupt) the temporary file is removed and ``target``
    is left as it was.
    """
    target = Path(target)
    tmp = temp_path(target)
    try:
        with open(tmp, mode, **kwargs) as handle:
            yield handle
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_text(target: str | Path, text: str, encoding: str = "utf-8") -> None:
    with atomic_open(target, "w", encoding=encoding) as handle:
        handle.write(text)


def write_bytes(target: str | Path, data: bytes) -> None:
    with atomic_open(target, "wb") as handle:
        handle.write(data)


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back for a few system calls (delivered when the block ends).

    Only the main thread receives signals in Python; elsewhere (or where the platform has no
    signal masks) this does nothing.
    """
    if not hasattr(signal, "pthread_sigmask") or threading.current_thread() is not threading.main_thread():
        yield
        return
    held = {signal.SIGINT, signal.SIGTERM}
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)


class StagedFiles:
    """A set of files written under temporary names and renamed into place together by :meth:`commit`.

    ``path(target)`` gives the temporary path to write ``target``'s content to. Until
    :meth:`commit` nothing visible changes; :meth:`discard` (or leaving the ``with`` block with
    an exception) removes every temporary file. The renames themselves are one ``os.replace``
    each, done last and in the order asked, so an interruption can only fall between two renames
    of complete files (the caller renames the file that lists the others last).
    """

    def __init__(self) -> None:
        self._staged: list[tuple[Path, Path]] = []

    def path(self, target: str | Path) -> Path:
        target = Path(target)
        tmp = temp_path(target)
        self._staged.append((tmp, target))
        return tmp

    def source(self, target: str | Path) -> Path:
        """Where ``target``'s content is now: its temporary file until committed, else itself."""
        target = Path(target)
        return next((tmp for tmp, final in self._staged if final == target), target)

    def commit(self) -> list[Path]:
        """Rename every staged file into place, with SIGINT and SIGTERM held back until all are renamed."""
        staged, self._staged = self._staged, []
        with signals_deferred():
            for tmp, target in staged:
                os.replace(tmp, target)
        return [target for _, target in staged]

    def discard(self) -> None:
        staged, self._staged = self._staged, []
        for tmp, _ in staged:
            with contextlib.suppress(OSError):
                tmp.unlink()

    def __enter__(self) -> StagedFiles:
        return self

    def __exit__(self, exc_type: object, *rest: object) -> None:
        self.discard()  # after commit() there is nothing left to discard


def file_sha256(path: Path) -> str:
    """sha256 (hex) of a file, read in 1 MiB blocks (a store or a bundle can be large)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
