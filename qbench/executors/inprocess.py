"""Runs cases one after another in the driver's own process (``--workers 1``).

Ctrl-C raises KeyboardInterrupt inside the running case; the runner lets it through, so the
half-run case yields nothing and the driver stores only finished ones.

A case time limit is a SIGALRM timer around the case: when it fires, :class:`CaseTimeout` (not
an ``Exception``, so the runner does not turn it into its own error record) is raised inside the
case wherever Python code runs next, and the case is recorded as an ``error`` (timeout). There is
no worker process to replace: the driver's process goes on with the next case. A case stuck in a
single C call that never returns to Python cannot be interrupted this way (use ``--workers 2``
or more, whose workers are killed). Off the main thread, or without SIGALRM, there is no limit.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from qbench.executors.worker import CaseRunner, default_runner, past_time_limit
from qbench.matrix import Case
from qbench.signalled import CaseTimeout

__all__ = ["CaseTimeout", "InProcessExecutor"]


def _alarm(signum: int, frame: Any) -> None:
    raise CaseTimeout


@contextlib.contextmanager
def _time_limit(seconds: float | None) -> Iterator[None]:
    if seconds is None or not hasattr(signal, "setitimer") or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


class InProcessExecutor:
    def __init__(self, device: str = "cpu", threads: int = 1, runner: CaseRunner | None = None,
                 case_timeout: float | None = None) -> None:  # fmt: skip
        self.device = device
        self.threads = threads
        self.runner = runner
        self.case_timeout = case_timeout

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        from qbench.case_runner import error_record

        run = self.runner or default_runner()
        for case in cases:
            try:
                began = time.monotonic()
                with _time_limit(self.case_timeout):
                    record = run(case, self.device, self.threads)
                # a case stuck in one C call sees the alarm only when it returns: it ran past the limit all the same
                record = past_time_limit(record, case, time.monotonic() - began, self.case_timeout, self.device)
            except CaseTimeout:
                record = error_record(case, f"timeout: the case ran longer than the {self.case_timeout:g} s limit "
                                            "(--case-timeout / [limits] case_timeout); it was interrupted in the "
                                            "driver's process", device=self.device)  # fmt: skip
            yield record

    def close(self) -> None:
        pass
