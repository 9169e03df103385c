"""What runs inside a worker process (process pool or Dask): thread setup, parent watch, one case.

This module stays light (no torch at import) because a spawned worker imports it first and
must fix its thread environment *before* torch loads.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

#: ``runner(case, device, threads) -> record``; the default is :func:`qbench.case_runner.run_case`.
CaseRunner = Callable[..., dict]

_THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
_configured: int | None = None


def default_runner() -> CaseRunner:
    """:func:`qbench.case_runner.run_case` with the installed plugins (executors started by the
    driver are given a runner with the driver's host recipe instead)."""
    import functools

    from qbench.case_runner import run_case
    from qbench.host import HostRecipe

    return functools.partial(run_case, host=HostRecipe())


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
    """Fix this process's torch threads once (so workers share the cores instead of fighting for them).

    Sets the OpenMP/BLAS environment before torch is imported, then torch's intra- and inter-op
    thread counts. Idempotent: a Dask worker calls it before every task.
    """
    global _configured
    if _configured == threads:
        return
    if "torch" not in sys.modules:
        for name in _THREAD_ENV:
            os.environ[name] = str(threads)
    import torch

    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:  # already set, or parallel work already started in this process
        pass
    _configured = threads


def _die_with_parent() -> None:
    """A worker must not outlive a driver that was killed (SIGKILL gives the driver no chance to clean up)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        except (OSError, AttributeError):
            pass
    parent = os.getppid()

    def watch() -> None:  # portable fallback, also covers a parent that died before prctl took effect
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(1)

    threading.Thread(target=watch, name="qbench-parent-watch", daemon=True).start()


def pool_worker_main(conn: Any, index: int, device: str, threads: int, runner: CaseRunner | None,
                     numerics: str = "native", case_timeout: float | None = None) -> None:  # fmt: skip
    """Loop of one process-pool worker: receive a case, send back its record, until ``None`` or EOF.

    SIGINT is ignored here: Ctrl-C reaches the whole process group, and the driver alone decides
    what happens (it stops the workers on ``close()``, so no case is half stored).
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # the fork server's handlers are not ours: die quietly
    _die_with_parent()
    configure_process(threads)
    run = runner or default_runner()
    device = worker_device(device, index)
    try:
        conn.send(("ready", os.getpid()))
        while True:
            try:
                case = conn.recv()
            except (EOFError, OSError):
                return
            if case is None:
                return
            conn.send(("record", run_guarded(run, case, device, threads, numerics, case_timeout)))
    except OSError:  # BrokenPipeError: the driver is gone or stopping; nothing to report to anyone
        return


def run_guarded(run: CaseRunner, case: Any, device: str, threads: int, numerics: str = "native",
                case_timeout: float | None = None) -> dict:  # fmt: skip
    """Run a case; an exception that escapes the runner (it should catch its own) still becomes a record,
    and a case that finished past ``case_timeout`` seconds is a timeout, whatever it measured.

    In the portable numerics mode the case runs only if this process's kernels are pinned: a worker
    that was started without the pins (a Dask worker started by hand, say) records an ``error``
    saying how to start it, rather than numbers that would not reproduce elsewhere.
    """
    if numerics != "native":
        from qbench.numerics import pinned_environment, problems

        found = problems(numerics)
        if found:
            from qbench.case_runner import error_record

            pins = " ".join(f"{k}={v}" for k, v in pinned_environment(numerics).items())
            return error_record(case, f"numerics: this worker cannot compute in the {numerics} mode ("
                                      f"{'; '.join(found)}); start it with {pins} in its environment, or run "
                                      "with --numerics native", device=device)  # fmt: skip
    began = time.monotonic()
    try:
        return past_time_limit(run(case, device, threads), case, time.monotonic() - began, case_timeout, device)
    except BaseException as exc:  # SystemExit or a KeyboardInterrupt from plugin code is the case's error too
        from qbench import signalled
        from qbench.case_runner import error_record

        if signalled.is_real(exc):
            raise
        return error_record(case, f"{signalled.plugin_raised(exc)} outside the runner", device=device)


def dask_task(case: Any, device: str, threads: int, runner: CaseRunner | None, numerics: str = "native",
              case_timeout: float | None = None) -> dict:  # fmt: skip
    """One case as a Dask task: the worker imports qbench and builds its plugin host itself."""
    configure_process(threads)
    return run_guarded(runner or default_runner(), case, device, threads, numerics, case_timeout)


def past_time_limit(record: dict, case: Any, elapsed: float, case_timeout: float | None, device: str) -> dict:
    """``record``, or a timeout error when the case ran longer than ``case_timeout``: the executors
    stop a case at its limit, but one that finishes between the limit and the executor's next look
    (a worker polled a moment late, an alarm held back by a long C call) must not count as done."""
    if case_timeout is None or elapsed <= case_timeout or record.get("status") not in ("ok", "diverged"):
        return record
    from qbench.case_runner import error_record

    return error_record(case, f"timeout: the case ran {elapsed:.3g} s, longer than the {case_timeout:g} s limit "
                              "(--case-timeout / [limits] case_timeout); its result is not kept", device=device)
