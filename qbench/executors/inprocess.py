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
from collections.abc import Iterator, Sequence
from typing import Any

from qbench.executors.runner import BoundRunner, CaseRunner
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
    def __init__(self, runner: CaseRunner | None = None) -> None:
        self.runner = runner if runner is not None else CaseRunner()
        self._bound: BoundRunner | None = None

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        policy = self.runner.policy
        if self._bound is None:  # bound on the first case, not at start: an executor closed unused costs nothing
            self._bound = self.runner.bind()
        for case in cases:
            try:
                with _time_limit(policy.case_timeout):
                    record = self._bound(case)
            except CaseTimeout:
                record = policy.timeout(case, "it was interrupted in the driver's process", self._bound.device)
            yield record

    def close(self) -> None:
        pass
