"""A child process for part of a large rebuild (Linux): started with ``fork``, waited for with a limit.

A rebuild of 100,000 records has two parts that each fill a core (reading the store, encoding the
JSON runs table); a forked child shares the parent's memory at no cost, where a fresh interpreter
would import pandas again and be sent the data. The rule for the child: it takes no lock another
thread of the parent could hold (no import, no output, no logging; numpy, the standard library, a
new SQLite connection to a store no writer has open), and it always leaves with ``os._exit``
(never the parent's exit handlers, never an exception reaching the caller). The parent never
relies on it: a child that fails, or is not done long after it should be (a lock held at the fork
after all), is stopped, and the parent does its part itself, to the same result.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
import warnings
from collections.abc import Callable


def available() -> bool:
    """Whether parts of a rebuild may go to a forked child here (Linux: elsewhere ``fork`` is
    missing, or less predictable in a process that holds other libraries' threads)."""
    return sys.platform.startswith("linux") and hasattr(os, "fork")


def start(work: Callable[[], None]) -> int | None:
    """Fork a child that runs ``work`` and exits 0, or 1 if ``work`` raised; the child's pid, or
    None where the system would not fork (no memory, too many processes): the caller does the work."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()  # nothing buffered is written twice
    with warnings.catch_warnings():
        # Python 3.12+ warns about forking a process with threads (BLAS, torch): see the module's docstring
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            pid = os.fork()
        except OSError:
            return None
    if pid == 0:  # pragma: no cover - the child (what it hands back is compared by the tests)
        code = 1
        try:
            work()
            code = 0
        except BaseException:  # noqa: BLE001 - the parent does the part itself
            pass
        finally:
            os._exit(code)
    return pid


def finished(pid: int, seconds: float) -> bool:
    """Wait up to ``seconds`` for the child; True when it exited 0. A child still running then is
    killed; a failed or killed child is reaped either way."""
    deadline = time.monotonic() + seconds
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status) == 0
        if time.monotonic() > deadline:
            stop(pid)
            return False
        time.sleep(0.002)


def stop(pid: int) -> None:
    """Kill the child and reap it (it may have exited already)."""
    with contextlib.suppress(OSError):
        os.kill(pid, signal.SIGKILL)
    with contextlib.suppress(OSError):
        os.waitpid(pid, 0)
