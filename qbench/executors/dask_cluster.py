"""Dask distributed (``--executor dask``): an existing cluster (``--scheduler ADDR``) or a local one.

Every case is one task, ``qbench.executors.worker.dask_task``; the worker imports qbench and
builds the plugin host itself, so plugins must be installed on the workers. Records come back to
the driver, which alone writes the store.

A worker that dies while running a case makes the scheduler raise ``KilledWorker`` for that task
(the local cluster is started with ``allowed_failures=0`` so that the first death surfaces; an
existing scheduler applies its own ``distributed.scheduler.allowed-failures`` first), and with a
worker saturation of 1.0 so that a worker holds no queued case besides the one it runs (a death
would charge them too). The case is then resubmitted once under a new key and, if its worker
dies again, recorded as an error. Scheduler log lines about the death are silenced: the error
record says it.

A time limit per case (``case_timeout``): the driver asks the workers which tasks they are
executing (:func:`_executing`, at most every second) and counts a case's time from when it is
first seen executing; past the limit the task is cancelled, its worker restarted by its nanny
(``Client.restart_workers``: the process is killed and a fresh one joins) and the case recorded
as an ``error`` (timeout), never resubmitted.

Worker processes of a local cluster are forked from a server that imported torch once (see
:func:`_fork_workers_from_server`), so starting and restarting them is cheap.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterator, Sequence
from typing import Any

from qbench.errors import UsageError
from qbench.executors.runner import CaseRunner
from qbench.executors.worker import dask_task
from qbench.matrix import Case


def _fork_workers_from_server() -> None:
    """Local cluster: fork worker processes from a server that imported torch once (as the pool does).

    A worker then starts, and restarts after a death, in well under a second instead of importing
    torch again. The setting is process-wide (the nanny reads it whenever it starts a worker), which
    is fine in the qbench driver; where there is no fork server Dask's default (spawn) stays.
    """
    import multiprocessing

    import dask
    from distributed.utils import get_mp_context

    from qbench.executors.pool import PRELOAD

    if "forkserver" not in multiprocessing.get_all_start_methods():
        return
    dask.config.set({"distributed.worker.multiprocessing-method": "forkserver"})
    get_mp_context()  # lets Dask set its own preload list once, then ours replaces it
    multiprocessing.get_context("forkserver").set_forkserver_preload(["distributed", *PRELOAD])


class DaskExecutor:
    """Submits cases to a Dask cluster and yields records in completion order."""

    def __init__(self, workers: int, runner: CaseRunner | None = None, scheduler: str | None = None,
                 connect_timeout: float = 30.0) -> None:  # fmt: skip
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("--executor dask needs dask.distributed: pip install 'qbench[dask]'") from None
        self.runner = runner if runner is not None else CaseRunner()
        self.policy = self.runner.policy
        self.device = self.runner.device  # of the error records the driver's side writes
        numerics = self.runner.numerics
        self._started: dict[str, float] = {}  # task key -> when it was first seen executing
        self.cluster: Any = None
        self.client: Any
        if scheduler:
            try:
                self.client = Client(scheduler, timeout=connect_timeout)
            except OSError as exc:
                raise UsageError(f"--scheduler {scheduler}: cannot reach the Dask scheduler ({exc})") from None
        else:
            import dask

            from qbench.numerics import pinned_environment, process_problems

            # Pinned workers need the pins before torch and numpy load: unless this process is pinned
            # already (then forked workers inherit it), they are spawned with the pins in the
            # environment they start with. The nanny's `env` is applied too late for that (the
            # worker process has imported numpy by then); its pre-spawn environment is set in this
            # process before each spawn (restarts included), and this process's environment is
            # put back once the cluster is up and again on close. (This process's own libraries
            # were initialised long before: its numerics do not change.)
            pins = pinned_environment(numerics) if process_problems(numerics) else {}
            self._saved_environ = {name: os.environ.get(name) for name in pins}
            if pins:
                method = {"distributed.worker.multiprocessing-method": "spawn",
                          "distributed.nanny.pre-spawn-environ": dict(pins)}
            else:
                _fork_workers_from_server()
                method = {}
            # saturation 1.0: a worker holds only the case it runs, so its death charges no other case
            with dask.config.set({"distributed.scheduler.worker-saturation": 1.0, **method}):
                # The scheduler's HTTP server (/metrics, /health) starts even without a dashboard, on
                # :8787 unless told otherwise: a second cluster on this machine would then fail to
                # start. Port 0 takes any free port.
                self.cluster = LocalCluster(
                    n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0",
                    silence_logs=logging.CRITICAL, scheduler_kwargs={"allowed_failures": 0},
                    **({"env": pins} if pins else {}),
                )
            self._restore_environ()
            self.client = Client(self.cluster)

    @property
    def pids(self) -> list[int]:
        """Process ids of the Dask workers (tests kill them)."""
        import os

        return sorted(self.client.run(os.getpid).values())

    def _submit(self, case: Case, attempt: int) -> Any:
        return self.client.submit(
            dask_task, self.runner, case,
            # a fresh key per submission: a released result of an earlier run (or another driver's
            # task on a shared cluster) must never stand in for this one
            key=f"qbench-case-{case.case_id}-{attempt}-{uuid.uuid4().hex[:12]}", pure=False, retries=0,
        )

    @staticmethod
    def _outcome(future: Any) -> tuple[dict | None, BaseException | None]:
        """(record, None) for a finished task; (None, exception or None when lost/cancelled) otherwise."""
        from asyncio import CancelledError

        if future.status == "finished":
            try:
                return future.result(), None
            except (Exception, CancelledError):  # its worker died before the result was fetched
                return None, None
        if future.status == "error":
            return None, future.exception()
        return None, None

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        jobs: dict[Any, tuple[Case, int]] = {}
        for case in cases:
            jobs[self._submit(case, 0)] = (case, 0)
        try:
            yield from self._collect(jobs)
        finally:
            if jobs:  # interrupted or broken out of: stop the cases still queued or running
                self.client.cancel(list(jobs), force=True)
                jobs.clear()

    def _collect(self, jobs: dict[Any, tuple[Case, int]]) -> Iterator[dict]:
        """Records of the futures in ``jobs`` as they finish (each popped from it), retrying deaths once."""
        from dask.distributed import as_completed

        pending = as_completed(list(jobs))
        while not pending.is_empty():
            if self.policy.case_timeout is None:
                finished = [next(pending)]
            else:
                finished = pending.next_batch(block=False) if pending.has_ready() else []
                yield from self._expire(jobs, pending)
                if not finished:
                    finished = self._wait_one(jobs, pending)
            for future in finished:
                if future not in jobs:  # cancelled for its time limit just now
                    continue
                case, attempts = jobs.pop(future)
                record, retry = self._settle(future, case, attempts)
                if retry is not None:
                    jobs[retry] = (case, attempts + 1)
                    pending.add(retry)
                if record is not None:
                    yield record

    def _settle(self, future: Any, case: Case, attempts: int) -> tuple[dict | None, Any]:
        """(record, None) for a finished or failed task; (None, the resubmitted future) after a first death."""
        from distributed.scheduler import KilledWorker

        from qbench.case_runner import error_record

        record, exc = self._outcome(future)
        future.release()
        if record is not None:
            return record, None
        if exc is None or isinstance(exc, KilledWorker):
            # the worker died running it, or died holding its result (Dask then reports the task
            # lost/cancelled): either way a death, retried once like in the process pool
            if self.policy.retries(attempts + 1):
                return None, self._submit(case, attempts + 1)
            last = getattr(getattr(exc, "last_worker", None), "address", "?")
            return self.policy.died(case, f"the Dask worker running this case died (last one: {last})",
                                    self.device), None  # fmt: skip
        return error_record(case, f"Dask task failed: {type(exc).__name__}: {exc}", device=self.device), None

    def _wait_one(self, jobs: dict[Any, tuple[Case, int]], pending: Any) -> list[Any]:
        """The futures finished within the next poll of the workers (a second at most; none when it passes)."""
        from dask.distributed import TimeoutError as DaskTimeout
        from dask.distributed import wait

        assert self.policy.case_timeout is not None
        try:
            done = wait(list(jobs), timeout=min(1.0, self.policy.case_timeout / 4), return_when="FIRST_COMPLETED")
        except DaskTimeout:
            return []
        return pending.next_batch(block=False) if done.done else []

    def _expire(self, jobs: dict[Any, tuple[Case, int]], pending: Any) -> Iterator[dict]:
        """Cases executing for longer than the limit: cancelled, their workers restarted, recorded as timeouts."""
        import time

        now = time.monotonic()
        running = self.client.run(_executing)
        executing = {key for keys in running.values() for key in keys}
        started = self._started = {key: since for key, since in self._started.items() if key in executing}
        by_key = {future.key: future for future in jobs}
        for worker, keys in sorted(running.items()):
            for key in keys:
                since = started.setdefault(key, now)
                future = by_key.get(key)
                if future is None or not self.policy.expired(since, now):
                    continue
                case, _ = jobs.pop(future)
                self.client.cancel([future], force=True)
                outcome = self.client.restart_workers([worker], raise_for_error=False).get(worker, "?")
                replaced = "was restarted" if outcome == "OK" else f"could not be restarted ({outcome})"
                yield self.policy.timeout(case, f"its Dask worker ({worker}) {replaced}", self.device)

    def close(self) -> None:
        """Disconnect; a cluster qbench started is shut down with its worker processes."""
        client, self.client = self.client, None
        if client is not None:
            client.close(timeout=10)
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close(timeout=10)
        self._restore_environ()

    def _restore_environ(self) -> None:
        """This process's environment as it was before the pinned workers started."""
        for name, value in getattr(self, "_saved_environ", {}).items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def _executing(dask_worker: Any) -> list[str]:
    """The keys a worker is executing now (run by ``Client.run`` in the worker's event loop)."""
    return sorted(str(task.key) for task in dask_worker.state.executing)
