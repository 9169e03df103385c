"""The case runner of one run, bound once per worker to its device, threads, host and prepared data.

The driver makes one :class:`CaseRunner` from the run's checked settings; it travels to every
worker (it pickles: a worker process gets the host's recipe, never the host), and each worker binds
it once (:meth:`CaseRunner.bind`): the torch threads are fixed then, the device chosen (a pool
spreads its workers over the GPUs), and every case after that is one call, ``bound(case)``. The
executors never see the device or the thread count; they move cases out and records back.

This module stays light (no torch at import): a spawned worker imports it first and must fix its
thread environment *before* torch loads.
"""

from __future__ import annotations

import functools
import os
import sys
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from qbench.executors.policy import CasePolicy
from qbench.numerics import NATIVE

#: ``run(case, device) -> record``: what a bound runner calls for each case; the default is
#: :func:`qbench.case_runner.run_case` with the runner's host and prepared data (tests stand in others).
CaseFunction = Callable[..., dict]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


@dataclass(frozen=True, eq=False)
class CaseRunner:
    """How every worker of one run runs a case (see :meth:`bind`)."""

    device: str = "cpu"
    threads: int = 1  # torch intra-op threads per worker: 1 gives the same numbers whatever the worker count
    numerics: str = NATIVE  # qbench.numerics: a worker that cannot compute in this mode records an error
    policy: CasePolicy = field(default_factory=CasePolicy)
    host: Any = None  # the driver's Host (in process), the HostRecipe a worker rebuilds it from, or None: installed
    prepared: Mapping[str, Any] | None = None  # {dataset label: data} the driver prepared (in process only)
    run: CaseFunction | None = None  # instead of run_case (tests): run(case, device) -> record
    # names this runner across processes: a Dask worker binds each run's runner once (see bound_once)
    token: str = field(default_factory=lambda: uuid.uuid4().hex)

    def bind(self, index: int | None = None) -> BoundRunner:
        """This runner in the calling process, which becomes worker ``index`` (None: the device as
        given, not spread over GPUs): torch's threads are fixed now, once."""
        configure_process(self.threads)
        return BoundRunner(self, self.device if index is None else worker_device(self.device, index))


class BoundRunner:
    """A :class:`CaseRunner` bound to one worker: ``bound(case)`` runs the case and returns its record.

    It keeps the datasets its worker prepared (``prepared``, starting from the driver's in process),
    so a worker prepares each dataset of the run once, whatever the number of its cases.
    """

    def __init__(self, runner: CaseRunner, device: str) -> None:
        self.runner = runner
        self.device = device
        if runner.run is not None:
            self._run = runner.run
        else:
            from qbench.case_runner import run_case
            from qbench.host import HostRecipe

            host = runner.host if runner.host is not None else HostRecipe()
            # the datasets this worker prepared stay with it: its next cases of a dataset reuse them
            self.prepared: dict[str, Any] = dict(runner.prepared or {})
            self._run = functools.partial(run_case, host=host, prepared=self.prepared)

    def __call__(self, case: Any) -> dict:
        """Run a case; an exception that escapes the case function (it should catch its own) still
        becomes a record, and a case that finished past the time limit is a timeout, whatever it measured.

        In the portable numerics mode the case runs only if this process's kernels are pinned: a worker
        that was started without the pins (a Dask worker started by hand, say) records an ``error``
        saying how to start it, rather than numbers that would not reproduce elsewhere.
        """
        numerics = self.runner.numerics
        if numerics != NATIVE:
            from qbench.numerics import pinned_environment, problems

            found = problems(numerics)
            if found:
                from qbench.case_runner import error_record

                pins = " ".join(f"{k}={v}" for k, v in pinned_environment(numerics).items())
                return error_record(case, f"numerics: this worker cannot compute in the {numerics} mode ("
                                          f"{'; '.join(found)}); start it with {pins} in its environment, or run "
                                          "with --numerics native", device=self.device)  # fmt: skip
        began = time.monotonic()
        try:
            record = self._run(case, self.device)
        except BaseException as exc:  # SystemExit or a KeyboardInterrupt from plugin code is the case's error too
            from qbench import signalled
            from qbench.case_runner import error_record

            if signalled.is_real(exc):
                raise
            return error_record(case, f"{signalled.plugin_raised(exc)} outside the runner", device=self.device)
        return self.runner.policy.finished_late(record, case, time.monotonic() - began, self.device)


_bound: tuple[str, BoundRunner] | None = None


def bound_once(runner: CaseRunner) -> BoundRunner:
    """``runner`` bound in this process, once per run (a Dask worker receives it with every task)."""
    global _bound
    if _bound is None or _bound[0] != runner.token:
        _bound = (runner.token, runner.bind())
    return _bound[1]


def worker_device(device: str, index: int) -> str:
    """Spread a pool over the GPUs: plain ``cuda`` becomes ``cuda:<index mod count>`` when there are several.

    With one GPU (the usual case) every worker shares it: the paper's models do not fill a GPU, so
    several small cases at once keep it busy.
    """
    if device != "cuda":
        return device
    import torch

    count = torch.cuda.device_count()
    return f"cuda:{index % count}" if count > 1 else device


def configure_process(threads: int) -> None:
    """Fix this process's torch threads (so workers share the cores instead of fighting for them).

    Sets the OpenMP/BLAS environment before torch is imported, then torch's intra- and inter-op
    thread counts. Called once per bound runner, never per case.
    """
    if "torch" not in sys.modules:
        for name in _THREAD_ENV:
            os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass
