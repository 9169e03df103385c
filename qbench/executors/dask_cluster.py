"""Dask distributed (``--executor dask``): an existing cluster (``--scheduler ADDR``) or a local one.

Every case is one task, ``qbench.executors.worker.dask_task``; the worker imports qbench and
builds the plugin host itself, so plugins must be installed on the workers. Records come back to
the driver, which alone writes the store.

A worker that dies while running a case makes the scheduler raise ``KilledWorker`` for that task
(the local cluster is started with ``allowed_failures=0`` so that the first death surfaces; an
existing scheduler applies its own ``distributed.scheduler.allowed-failures`` first). The case is
then resubmitted once under a new key and, if its worker dies again, recorded as an error.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from typing import Any

from qbench.errors import UsageError
from qbench.executors.worker import CaseRunner, dask_task
from qbench.matrix import Case


class DaskExecutor:
    """Submits cases to a Dask cluster and yields records in completion order."""

    def __init__(self, workers: int, device: str = "cpu", scheduler: str | None = None, threads: int = 1,
                 runner: CaseRunner | None = None, max_attempts: int = 2, connect_timeout: float = 30.0) -> None:
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs dask.distributed: pip install 'qbench[dask]'") from None
        self.device = device
        self.threads = threads
        self.runner = runner
        self.max_attempts = max_attempts
        self.cluster: Any = None
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except OSError as exc:
                raise UsageError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        else:
            self.cluster = LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None,
                silence_logs=logging.ERROR, scheduler_kwargs={"allowed_failures": 0},
            )
            self.client = Client(self.cluster)

    @property
    def pids(self) -> list[int]:
        """Process ids of the Dask workers (tests kill them)."""
        import os

        return sorted(self.client.run(os.getpid).values())

    def _submit(self, case: Case, attempt: int) -> Any:
        return self.client.submit(
            dask_task, case, self.device, self.threads, self.runner,
            key=f"qbench-case-{case.case_id}-{attempt}", pure=False, retries=0,
        )

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        from dask.distributed import as_completed
        from distributed.scheduler import KilledWorker

        from qbench.runner import error_record

        jobs: dict[Any, tuple[Case, int]] = {}
        for case in cases:
            jobs[self._submit(case, 0)] = (case, 0)
        pending = as_completed(list(jobs))
        try:
            for future in pending:
                case, attempts = jobs.pop(future)
                if future.status == "finished":
                    record = future.result()
                    future.release()
                    yield record
                    continue
                exc = future.exception()
                future.release()
                if isinstance(exc, KilledWorker):
                    attempts += 1
                    if attempts < self.max_attempts:
                        retry = self._submit(case, attempts)
                        jobs[retry] = (case, attempts)
                        pending.add(retry)
                        continue
                    yield error_record(case, f"worker died twice: Dask {exc}", device=self.device)
                else:
                    yield error_record(case, f"Dask task failed: {type(exc).__name__}: {exc}", device=self.device)
        finally:
            if jobs:  # interrupted or broken out of: stop the cases still queued or running
                self.client.cancel(list(jobs), force=True)
                jobs.clear()

    def close(self) -> None:
        """Disconnect; a cluster qbench started is shut down with its worker processes."""
        client, self.client = self.client, None
        if client is not None:
            client.close(timeout=10)
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close(timeout=10)
