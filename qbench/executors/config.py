"""Where and how a run's cases execute, checked once: :func:`resolve_run_config` is the only place
that checks the executor, the worker count, the scheduler, the device and the case time limit.

The driver resolves it once per run; :func:`qbench.executors.executor_for` builds the executor from
it without checking anything again, and every case shipped to a worker carries the
:class:`qbench.host.HostRecipe` that rebuilds the driver's plugin host there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from qbench.errors import UsageError
from qbench.host import HostRecipe
from qbench.numerics import MODES, NATIVE, PORTABLE, machine_problems, pinned_environment, process_problems

EXECUTORS = ("local", "dask")


@dataclass(frozen=True)
class RunConfig:
    """The checked executor settings of one run (see :func:`resolve_run_config`)."""

    executor: str
    workers: int | None  # None: one per core, at most one per pending case (see :meth:`sized_for`)
    device: str = "cpu"
    scheduler: str | None = None
    threads: int = 1  # torch intra-op threads per worker: 1 gives the same numbers whatever the worker count
    case_timeout: float | None = None
    host: HostRecipe = field(default_factory=HostRecipe)
    numerics: str = NATIVE  # qbench.numerics: which kernels the workers may use

    @property
    def in_process(self) -> bool:
        """Cases run in the driver's own process (``local`` with one worker), unless the numerics mode
        pins kernels that this process did not load: then the one worker is a process of its own."""
        return self.executor == "local" and self.workers == 1 and not process_problems(self.numerics)

    def sized_for(self, pending: int) -> RunConfig:
        """The worker count fixed: as given, else one per core this process may use but no more than
        there are ``pending`` cases (one, in this process, when the host has in-process plugins)."""
        if self.workers is not None:
            return self
        if self.host.extra_plugins and self.executor == "local":
            return replace(self, workers=1)
        return replace(self, workers=auto_workers(pending))


def auto_workers(pending: int) -> int:
    """One worker per core this process may use, but no more than there are cases to run."""
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, pending))


def resolve_run_config(executor: str, workers: int | None, device: str = "cpu", scheduler: str | None = None,
                       threads: int = 1, case_timeout: float | None = None, host: Any = None,
                       numerics: str = NATIVE) -> RunConfig:  # fmt: skip
    """Check every executor setting once and return them frozen (raises :class:`UsageError`).

    ``host``: the driver's :class:`qbench.host.Host` (default: the installed plugins); executors
    whose workers are other processes refuse a host with plugins registered in this process only.
    """
    if executor not in EXECUTORS:
        raise UsageError(f"unknown executor {executor!r}; use one of: {', '.join(EXECUTORS)}")
    if workers is not None and workers < 1:
        raise UsageError(f"--workers must be at least 1, got {workers}")
    if threads < 1:
        raise UsageError(f"threads per worker must be at least 1, got {threads}")
    _check_device(device)
    if case_timeout is not None and not case_timeout > 0:
        raise UsageError(f"--case-timeout must be a positive number of seconds, got {case_timeout}")
    if scheduler is not None and executor != "dask":
        raise UsageError("--scheduler ADDR is only meaningful with --executor dask")
    _check_numerics(numerics, device)
    config = RunConfig(executor, workers, device, scheduler, threads, case_timeout,
                       host.recipe if host is not None else HostRecipe(), numerics)  # fmt: skip
    if (executor == "dask" or (workers or 1) > 1 or process_problems(numerics)) and host is not None:
        _refuse_in_process_plugins(host.in_process_plugins(), executor, workers, numerics)
    return config


def _check_numerics(numerics: str, device: str) -> None:
    if numerics not in MODES:
        raise UsageError(f"unknown numerics mode {numerics!r}; use one of: {', '.join(MODES)}")
    if numerics == PORTABLE and device != "cpu":
        raise UsageError(f"--numerics portable pins CPU kernels; on --device {device} the GPU's kernels decide "
                         "the last bits (records reproduce on the same GPU model, driver and torch only): "
                         "use --numerics native with a GPU")  # fmt: skip
    problems = machine_problems(numerics)
    if problems:
        raise UsageError(f"--numerics {numerics} cannot hold here: {'; '.join(problems)}; use --numerics native "
                         "(records then reproduce on this kind of CPU only)")  # fmt: skip


def _check_device(device: str) -> None:
    if not (device == "cpu" or device == "cuda" or (device.startswith("cuda:") and device[5:].isdigit())):
        raise UsageError(f"--device {device!r} is not supported; use 'cpu' or 'cuda' (or 'cuda:N')")
    if device != "cpu":
        import torch

        if not torch.cuda.is_available():
            raise UsageError(f"--device {device}: no CUDA device is available to torch here; use --device cpu")


def _refuse_in_process_plugins(local: list[str], name: str, workers: int | None, numerics: str = NATIVE) -> None:
    """Worker processes build their plugin host from the installed distributions: a plugin registered
    only in this process would be missing there, and every case using it would fail one by one."""
    if local and name == "local" and (workers or 1) == 1:  # one worker, but a process of its own for the pins
        pins = " ".join(f"{k}={v}" for k, v in pinned_environment(numerics).items())
        raise UsageError(f"plugin(s) {', '.join(local)} are registered in this process only, and the "
                         f"{numerics} numerics mode runs cases in a worker process with pinned kernels, which "
                         f"cannot load them; start Python with {pins} in its environment (then cases run in "
                         "this process) or use the native mode")  # fmt: skip
    if local:
        how = f"--executor {name}" + (f" --workers {workers}" if workers else "")
        raise UsageError(f"plugin(s) {', '.join(local)} are registered in this process only, so the worker "
                         f"processes of {how} cannot load them; install them as a package with a 'qbench' "
                         "entry point, or run with --executor local --workers 1")  # fmt: skip
