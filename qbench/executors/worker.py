"""What runs inside a worker process (process pool or Dask): the parent watch, the loop over cases.

This module stays light (no torch at import) because a spawned worker imports it first and
must fix its thread environment *before* torch loads (:meth:`qbench.executors.runner.CaseRunner.bind`).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import Any

from qbench.executors.runner import CaseRunner, bound_once


def _die_with_parent() -> None:
    """A worker must not outlive a driver that was killed (SIGKILL gives the driver no chance to clean up)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    parent = os.getppid()

    def watch() -> None:  # portable fallback, also covers a parent that died before prctl took effect
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="qbench-parent-watch", daemon=True).start()


def pool_worker_main(conn: Any, index: int, runner: CaseRunner) -> None:
    """Loop of one process-pool worker: bind the runner, then receive a case, send back its record,
    until ``None`` or EOF.

    SIGINT is ignored here: Ctrl-C reaches the whole process group, and the driver alone decides
    what happens (it stops the workers on ``close()``, so no case is half stored).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the fork server's handlers are not ours: die quietly
    _die_with_parent()
    bound = runner.bind(index)
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                case = conn.recv()
            except (EOFError, OSError):
                return
            if case is None:
                return
            conn.send(("record", bound(case)))
    except OSError:  # BrokenPipeError: the driver is gone or stopping; nothing to report to anyone
        return


def dask_task(runner: CaseRunner, case: Any) -> dict:
    """One case as a Dask task: the worker binds the run's runner on its first case (its host is built
    from the recipe there, so plugins must be installed on the workers)."""
    return bound_once(runner)(case)
