"""Executors move cases out and records back; the driver alone writes the store."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from qbench.errors import UsageError
from qbench.matrix import Case


class Executor(Protocol):
    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        """Yield one record per case as cases finish."""
        ...

    def close(self) -> None: ...


def get_executor(name: str, workers: int = 1, device: str = "cpu", scheduler: str | None = None) -> Executor:
    if name == "local":
        from qbench.executors.inprocess import InProcessExecutor

        return InProcessExecutor(device=device)
    raise UsageError(f"unknown executor {name!r}; use 'local' or 'dask'")
