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

from qbench import signalled


class Terminated(KeyboardInterrupt):
    """The KeyboardInterrupt a SIGTERM raises (so messages can say which signal it was)."""


def _raise_terminated(signum: int, frame: Any) -> None:
    signalled.note(signum)
    raise Terminated("SIGTERM")


def _noting(previous: Any) -> Any:
    """A SIGINT handler that notes the signal (a real Ctrl-C: the KeyboardInterrupt that follows is
    the user's), then does what ``previous`` (Python's handler, or one an embedding program set) did."""

    def handler(signum: int, frame: Any) -> Any:
        signalled.note(signum)
        return previous(signum, frame)

    handler.noting = True  # type: ignore[attr-defined]
    return handler


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM raises :class:`Terminated`; SIGINT (where Python's own handler is installed) raises
    KeyboardInterrupt as before; both are noted in :mod:`qbench.signalled`."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    previous_int = signal.getsignal(signal.SIGINT)
    # SIG_IGN / SIG_DFL stay as they are (no KeyboardInterrupt comes from them); a handler is noted once
    wrap = callable(previous_int) and not getattr(previous_int, "noting", False)
    if wrap:
        signal.signal(signal.SIGINT, _noting(previous_int))
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
        if wrap:
            signal.signal(signal.SIGINT, previous_int)
