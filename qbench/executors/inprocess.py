"""Runs cases one after another in the driver's own process (``--workers 1``).

Ctrl-C raises KeyboardInterrupt inside the running case; the runner lets it through, so the
half-run case yields nothing and the driver stores only finished ones.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from qbench.executors.worker import CaseRunner, default_runner
from qbench.matrix import Case


class InProcessExecutor:
    def __init__(self, device: str = "cpu", threads: int = 1, runner: CaseRunner | None = None) -> None:
        self.device = device
        self.threads = threads
        self.runner = runner

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        run = self.runner or default_runner()
        for case in cases:
            yield run(case, self.device, self.threads)

    def close(self) -> None:
        pass
