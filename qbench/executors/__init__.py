"""Executors move cases out and records back; the driver alone writes the store.

One switch, :func:`executor_for`, over a :class:`RunConfig` that :func:`resolve_run_config` checked
once (:func:`get_executor` does both, for callers with loose settings):

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

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Protocol

from qbench.executors.config import EXECUTORS, RunConfig, resolve_run_config
from qbench.executors.policy import CasePolicy
from qbench.executors.runner import CaseRunner
from qbench.matrix import Case

__all__ = ["EXECUTORS", "CasePolicy", "CaseRunner", "Executor", "RunConfig", "case_runner_for", "executor_for",
           "get_executor", "resolve_run_config"]


class Executor(Protocol):
    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        """Yield one record per case as cases finish."""
        ...

    def close(self) -> None:
        """Stop every worker (idempotent)."""
        ...


def get_executor(name: str, workers: int = 1, device: str = "cpu", scheduler: str | None = None,
                 threads: int = 1, case_timeout: float | None = None, host: Any = None,
                 numerics: str = "native") -> Executor:
    """The executor for ``--executor NAME --workers N --device D [--scheduler ADDR]``.

    ``threads`` is torch's intra-op thread count per worker, fixed once when the worker binds its
    :class:`CaseRunner`; keep 1 for results that do not depend on the worker count.
    ``case_timeout``: seconds a case may run (:class:`CasePolicy`); then it is recorded as an
    ``error`` (timeout): the process pool kills its worker and starts a fresh one, the in-process
    executor interrupts the case with SIGALRM (the driver's process goes on), Dask cancels the task
    and restarts its worker. ``host``: the plugin host cases are built from (default:
    the installed plugins).
    """
    config = resolve_run_config(name, workers, device, scheduler, threads, case_timeout, host, numerics)
    return executor_for(config.sized_for(workers), host)


def executor_for(config: RunConfig, host: Any = None, prepared: Mapping[str, Any] | None = None) -> Executor:
    """Start the executor of an already checked :class:`RunConfig` (nothing is checked again).

    In process, cases use ``host`` itself and the datasets the driver already ``prepared``
    (``{dataset label: data}``); worker processes rebuild the host from ``config.host``.
    """
    if config.workers is None:
        raise ValueError("the worker count is not fixed yet: start the executor of config.sized_for(pending)")
    runner = case_runner_for(config, host, prepared)
    if config.in_process:
        from qbench.executors.inprocess import InProcessExecutor

        return InProcessExecutor(runner)
    if config.executor == "local":
        from qbench.executors.pool import ProcessPoolExecutor

        return ProcessPoolExecutor(config.workers, runner)
    from qbench.executors.dask_cluster import DaskExecutor

    return DaskExecutor(config.workers, runner, scheduler=config.scheduler)


def case_runner_for(config: RunConfig, host: Any = None, prepared: Mapping[str, Any] | None = None) -> CaseRunner:
    """The one case runner of a run: in process with ``host`` itself (built here, once per executor: a
    host cached for the process would miss plugins installed since) and the ``prepared`` datasets;
    for worker processes with the host's recipe, and no prepared data (they prepare their own)."""
    if config.in_process:
        host = host if host is not None else config.host.build()
    else:
        host, prepared = config.host, None
    return CaseRunner(device=config.device, threads=config.threads, numerics=config.numerics,
                      policy=CasePolicy(case_timeout=config.case_timeout), host=host, prepared=prepared)
