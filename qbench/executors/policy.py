"""The one rule every executor applies to a case's time and to a worker's death, with its messages.

A case may run ``case_timeout`` seconds (None: no limit). Past it, the executor stops the case (the
pool kills its worker, Dask cancels the task and restarts its worker, the in-process executor
interrupts it with SIGALRM) and records an ``error`` (timeout); a case that finished past the limit
all the same (a worker polled a moment late, an alarm held back by a long C call) is a timeout too,
whatever it measured. A worker that dies running a case costs that case only: it is run again
on a fresh worker until it has had ``max_attempts``, then recorded as an ``error``.

Each executor says only how it stopped the case or which worker died; the rule and the rest of
each message live here, so the three executors cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

LIMIT_NAMES = "(--case-timeout / [limits] case_timeout)"


@dataclass(frozen=True)
class CasePolicy:
    """How long a case may run and how often a worker may die running it."""

    case_timeout: float | None = None  # seconds; None: no limit
    max_attempts: int = 2  # attempts of a case whose worker died; 2: retried once

    def time_left(self, started: float, now: float) -> float | None:
        """Seconds until a case started at ``started`` (``time.monotonic()``) passes the limit (None: no limit)."""
        return None if self.case_timeout is None else max(0.0, started + self.case_timeout - now)

    def expired(self, started: float, now: float) -> bool:
        return self.case_timeout is not None and now - started >= self.case_timeout

    def retries(self, deaths: int) -> bool:
        """Whether a case whose worker died ``deaths`` times runs again."""
        return deaths < self.max_attempts

    def timeout(self, case: Any, stopped: str, device: str) -> dict[str, Any]:
        """The record of a case stopped at its limit; ``stopped``: how the executor stopped it."""
        from qbench.case_runner import error_record

        return error_record(case, f"timeout: the case ran longer than the {self.case_timeout:g} s limit "
                                  f"{LIMIT_NAMES}; {stopped}", device=device)  # fmt: skip

    def finished_late(self, record: dict[str, Any], case: Any, elapsed: float, device: str) -> dict[str, Any]:
        """``record``, or a timeout error when the case ran longer than the limit: the executors stop a
        case at its limit, but one that finishes between the limit and the executor's next look must
        not count as done."""
        if self.case_timeout is None or elapsed <= self.case_timeout or record.get("status") not in ("ok", "diverged"):
            return record
        from qbench.case_runner import error_record

        return error_record(case, f"timeout: the case ran {elapsed:.3g} s, longer than the {self.case_timeout:g} s "
                                  f"limit {LIMIT_NAMES}; its result is not kept", device=device)  # fmt: skip

    def died(self, case: Any, how: str, device: str) -> dict[str, Any]:
        """The record of a case whose worker died on its last attempt; ``how``: which worker, how it died."""
        from qbench.case_runner import error_record

        times = {1: "once", 2: "twice"}.get(self.max_attempts, f"{self.max_attempts} times")
        return error_record(case, f"worker died {times}: {how}", device=device)
