"""SIGTERM handled like Ctrl-C: batch schedulers and containers stop a job with SIGTERM.

Inside :func:`sigterm_as_interrupt` a SIGTERM raises :class:`KeyboardInterrupt` in the main
thread, so the driver takes its Ctrl-C path: finished cases stay stored, workers are stopped,
leaderboards are written, exit code 2.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any


class Terminated(KeyboardInterrupt):
    """The KeyboardInterrupt a SIGTERM raises (so messages can say which signal it was)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    raise Terminated("SIGTERM")


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
