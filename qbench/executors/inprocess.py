"""Runs cases one after another in the driver's own process."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from qbench.matrix import Case


class InProcessExecutor:
    def __init__(self, device: str = "cpu") -> None:
        self.device = device

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        from qbench.runner import run_case

        for case in cases:
            yield run_case(case, self.device)

    def close(self) -> None:
        pass
