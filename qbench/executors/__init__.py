"""Executors move cases out and records back; the driver alone writes the store.

One switch, :func:`get_executor`:

=========================  =================================================================
``local``, workers == 1    in the driver's own process (:mod:`qbench.executors.inprocess`)
``local``, workers > 1     a pool of spawned processes (:mod:`qbench.executors.pool`)
``dask``                   Dask distributed, an existing scheduler or a local cluster
                           (:mod:`qbench.executors.dask_cluster`)
=========================  =================================================================

Every executor yields exactly one record per case, as cases finish (in completion order, not
submission order), and never a half-done one. Workers run each case with a fixed number of torch
threads (1 by default), so a case and seed give the same numbers whatever the executor and the
worker count. A case that raises is the runner's business (it returns an ``error`` record); a
worker that dies is the executor's: its case is retried once, then recorded as ``error``.
``close()`` stops every worker process promptly (Ctrl-C, ``-x``).

With ``device="cuda"`` a pool of N workers runs N cases at once on the GPU (on several GPUs
the workers are spread round-robin): the paper's models are far too small to fill one.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Protocol

from qbench.errors import UsageError
from qbench.matrix import Case

EXECUTORS = ("local", "dask")


class Executor(Protocol):
    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        """Yield one record per case as cases finish."""
        ...

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        ...


def _check_device(device: str) -> None:
    if device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise UsageError(f"--device {device!r} is not supported; use 'cpu' or 'cuda' (or 'cuda:N')")


def _refuse_in_process_plugins(name: str, workers: int) -> None:
    """Worker processes build their plugin host from the installed distributions: a plugin registered
    only in this process would be missing there, and every case using it would fail one by one."""
    from qbench.host import in_process_plugins

    local = in_process_plugins()
    if local:
        raise UsageError(f"plugin(s) {', '.join(local)} are registered in this process only, so the worker "
                         f"processes of --executor {name} --workers {workers} cannot load them; install them as a "
                         "package with a 'qbench' entry point, or run with --executor local --workers 1")  # fmt: skip


def get_executor(name: str, workers: int = 1, device: str = "cpu", scheduler: str | None = None,
                 threads: int = 1, case_timeout: float | None = None) -> Executor:
    """The executor for ``--executor NAME --workers N --device D [--scheduler ADDR]``.

    ``threads`` is torch's intra-op thread count per worker (per case); keep 1 for results that do
    not depend on the worker count. ``case_timeout``: seconds a case may run; then it is recorded
    as an ``error`` (timeout): the process pool kills its worker and starts a fresh one, the
    in-process executor interrupts the case with SIGALRM (the driver's process goes on), Dask
    cancels the task and restarts its worker.
    """
    if workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if threads < 1:
        raise UsageError(f"threads per worker must be at least 1, got {threads}")
    _check_device(device)
    if case_timeout is not None and not case_timeout > 0:
        raise UsageError(f"--case-timeout must be a positive number of seconds, got {case_timeout}")
    if scheduler is not None and name != "dask":
        raise UsageError("--scheduler ADDR is only meaningful with --executor dask")
    if not (name == "local" and workers == 1):
        _refuse_in_process_plugins(name, workers)
    if name == "local":
        if workers == 1:
            from qbench.executors.inprocess import InProcessExecutor

            return InProcessExecutor(device=device, threads=threads, case_timeout=case_timeout)
        from qbench.executors.pool import ProcessPoolExecutor

        return ProcessPoolExecutor(workers, device=device, threads=threads, case_timeout=case_timeout)
    if name == "dask":
        from qbench.executors.dask_cluster import DaskExecutor

        return DaskExecutor(workers, device=device, scheduler=scheduler, threads=threads, case_timeout=case_timeout)
    raise UsageError(f"unknown executor {name!r}; use one of: {', '.join(EXECUTORS)}")
