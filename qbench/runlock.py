"""One driver per output folder: an exclusive ``flock`` on ``<out>/qbench.lock`` for the whole run.

Two drivers on one folder would train every case twice and race on the leaderboards. The second
one waits (a bounded time) for the first to finish, then plans against what the first stored;
if the wait runs out it stops with a usage error naming the holder (pid, host, start time,
command), read from the lock file. The kernel drops the lock when its holder dies, SIGKILL
included, so a stale lock file never blocks anyone; the file itself is never removed (removing
it would let a third driver lock a new file while the second holds the old one).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from qbench.errors import UsageError

LOCK_FILENAME = "qbench.lock"
#: How long a second driver waits for the first one by default (seconds).
DEFAULT_WAIT = 60.0


def holder_text(info: dict[str, Any]) -> str:
    if not info:
        return "a qbench driver that has not written its details yet"
    command = " ".join(str(part) for part in info.get("command", []))
    return (f"pid {info.get('pid', '?')} on {info.get('host', '?')}, started {info.get('started', '?')}"
            f"{f', command: {command}' if command else ''}")  # fmt: skip


class DriverLock:
    """``with DriverLock(out, wait, echo):`` holds the folder's lock for the block."""

    def __init__(self, folder: Path, wait: float = DEFAULT_WAIT, echo: Callable[[str], None] | None = None,
                 poll: float = 0.2) -> None:  # fmt: skip
        self.path = Path(folder) / LOCK_FILENAME
        self.wait = wait
        self.echo = echo or (lambda message: None)
        self.poll = poll
        self._fd: int | None = None

    def holder(self) -> dict[str, Any]:
        """What the current holder wrote into the lock file ({} when unreadable or empty)."""
        try:
            info = json.loads(self.path.read_text(encoding="utf-8") or "{}")
        except (OSError, ValueError):
            return {}
        return info if isinstance(info, dict) else {}

    def acquire(self) -> None:
        import fcntl

        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise UsageError(f"{self.path.parent}: cannot create the driver lock {LOCK_FILENAME} "
                             f"({exc.strerror or exc}); give --out a folder you can write to") from None  # fmt: skip
        deadline = time.monotonic() + self.wait
        told = False
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    pass
                holder = holder_text(self.holder())
                if time.monotonic() >= deadline:
                    raise UsageError(
                        f"{self.path.parent}: another qbench run is using this output folder ({holder}); "
                        f"waited {self.wait:g} s. Wait for it to finish, or give another --out "
                        "(--lock-wait SECONDS waits longer)"
                    )
                if not told:
                    self.echo(f"{self.path.parent}: another qbench run holds this output folder ({holder}); "
                              f"waiting up to {self.wait:g} s for it to finish")  # fmt: skip
                    told = True
                time.sleep(self.poll)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        info = {
            "pid": os.getpid(), "host": socket.gethostname(),
            "started": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"), "command": list(sys.argv),
        }  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(info).encode(), 0)

    def release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing drops the flock

    def __enter__(self) -> DriverLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()
