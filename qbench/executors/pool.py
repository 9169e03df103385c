"""A local process pool (``--workers N``): one spawned process per worker, one case at a time each.

Not :class:`concurrent.futures.ProcessPoolExecutor`: when one of its workers dies the whole pool
breaks and nobody knows which case killed it. Here each worker has its own pipe and the driver
knows which case every worker holds, so a dead worker costs exactly its own case: that case is
retried once on a fresh worker, then recorded as an error, and the other cases go on.

Workers are forked from a fork server that has imported torch once (``spawn`` where there is no
fork server): the server never initialises CUDA or starts threads, so this is as safe as ``spawn``
with torch and CUDA, and a worker starts in milliseconds. Workers ignore SIGINT (the driver decides),
die with the driver (``PR_SET_PDEATHSIG`` plus a watch thread), and run each case with a fixed
number of torch threads (1 by default: the same numbers whatever the worker count).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import signal
import threading
import time
from collections import deque
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from typing import Any

from qbench.executors.runner import CaseRunner
from qbench.executors.worker import pool_worker_main
from qbench.matrix import Case
from qbench.numerics import environment_for_children, pinned_environment, process_problems

#: Imported once by the fork server, so that a worker (first or replacement) starts in milliseconds
#: instead of importing torch itself (seconds; its optimizers import torch._dynamo on first use).
#: None of these starts a thread or touches CUDA at import, which is what makes forking them safe.
PRELOAD = ("qbench.executors.worker", "torch", "torch._dynamo", "qbench.case_runner", "qbench.training")

#: A worker that dies this many times in a row before it ever reports ready means a broken environment.
MAX_START_FAILURES = 3


@dataclass(eq=False)
class _Worker:
    index: int
    process: Any  # multiprocessing.context.SpawnProcess
    conn: Connection
    pid: int | None = None
    job: tuple[Case, int] | None = None  # the case in flight and how many attempts it had before
    started: float = 0.0  # time.monotonic() when the job was sent


@contextlib.contextmanager
def _sigint_ignored() -> Iterator[None]:
    """SIGINT ignored for the moment a process is executed (an ignored signal stays ignored across
    exec, and Python then installs no KeyboardInterrupt handler of its own).

    The fork server imports torch for seconds after it starts, and a spawned worker imports qbench:
    a Ctrl-C meanwhile would print their KeyboardInterrupt traceback after qbench's own message.
    Only the exec is covered (milliseconds), so the driver keeps its Ctrl-C.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def describe_exit(exitcode: int | None) -> str:
    if exitcode is None:
        return "still running"
    if exitcode < 0:
        try:
            return f"killed by {signal.Signals(-exitcode).name}"
        except ValueError:
            return f"killed by signal {-exitcode}"
    return f"exit code {exitcode}"


class ProcessPoolExecutor:
    """Runs cases on ``workers`` local processes and yields records as cases finish."""

    def __init__(self, workers: int, runner: CaseRunner | None = None) -> None:
        if workers < 1:
            raise ValueError(f"workers must be at least 1, got {workers}")
        self.workers = workers
        self.runner = runner if runner is not None else CaseRunner()
        self.policy = self.runner.policy
        numerics = self.runner.numerics
        # Pinned kernels must be in a worker's environment before torch loads there. A fork server
        # started by this process has this process's environment (and torch loaded): unless this
        # process is pinned already, pinned workers are spawned, each with the pins, at the cost of
        # importing torch once per worker.
        self._env = pinned_environment(numerics) if process_problems(numerics) else {}
        self._ctx: Any
        if "forkserver" in mp.get_all_start_methods() and not self._env:
            self._ctx = mp.get_context("forkserver")
            self._ctx.set_forkserver_preload(list(PRELOAD))  # no effect once this process's server runs
        else:
            self._ctx = mp.get_context("spawn")
        self._pool: list[_Worker] = []
        self._next_index = 0

    @property
    def pids(self) -> list[int]:
        """Process ids of the pool's worker processes, every one started (tests check or kill them).

        Known from the start, not from the worker's "ready" message: that message is read only while
        :meth:`run`'s generator runs, so a caller holding a suspended generator would wait for it forever."""
        return [w.process.pid for w in self._pool]

    def _spawn(self) -> _Worker:
        here, there = self._ctx.Pipe(duplex=True)
        index = self._next_index
        self._next_index += 1
        process = self._ctx.Process(
            target=pool_worker_main,
            args=(there, index, self.runner),
            name=f"qbench-worker-{index}",
        )
        with environment_for_children(self._env):
            if self._ctx.get_start_method() == "forkserver":
                from multiprocessing import forkserver

                with _sigint_ignored():  # its forked workers inherit the ignored SIGINT from it
                    forkserver.ensure_running()
                process.start()
            else:
                with _sigint_ignored():
                    process.start()
        there.close()  # so that recv() sees EOF when the worker dies
        worker = _Worker(index, process, here)
        self._pool.append(worker)
        return worker

    def _assign(self, queue: deque[tuple[Case, int]]) -> None:
        while queue:
            worker = next((w for w in self._pool if w.job is None), None)
            if worker is None:
                if len(self._pool) >= self.workers:
                    return
                worker = self._spawn()
            job = queue.popleft()
            try:
                if not worker.process.is_alive():
                    raise BrokenPipeError
                worker.conn.send(job[0])
            except OSError:  # died before taking the case: not the case's fault, give it to another worker
                queue.appendleft(job)
                self._discard(worker)
                continue
            worker.job = job
            worker.started = time.monotonic()

    def _wait_timeout(self) -> float | None:
        """Seconds until the first busy worker passes the time limit (None: no limit)."""
        starts = [w.started for w in self._pool if w.job is not None]
        return self.policy.time_left(min(starts), time.monotonic()) if starts else None

    def _expired(self) -> list[_Worker]:
        now = time.monotonic()
        return [w for w in self._pool if w.job is not None and self.policy.expired(w.started, now)]

    def _discard(self, worker: _Worker) -> None:
        self._pool.remove(worker)
        worker.process.join(timeout=5)
        worker.conn.close()

    def run(self, cases: Sequence[Case]) -> Iterator[dict]:
        queue: deque[tuple[Case, int]] = deque((case, 0) for case in cases)
        start_failures = 0
        finished = False
        try:
            while True:
                self._assign(queue)
                busy = [w for w in self._pool if w.job is not None]
                if not busy:
                    break
                handles: dict[Any, _Worker] = {}
                for w in self._pool:
                    handles[w.conn] = w
                    handles[w.process.sentinel] = w
                ready = wait(list(handles), timeout=self._wait_timeout())
                for worker in self._expired():
                    if worker.conn.poll() or not worker.process.is_alive():
                        continue  # it finished (or died) just now: handled below like any other
                    case, _ = worker.job  # type: ignore[misc]
                    worker.process.kill()  # a hung case cannot be stopped politely; its worker is replaced
                    worker.job = None
                    self._discard(worker)
                    yield self.policy.timeout(case, f"its worker (pid {worker.pid}) was killed and replaced",
                                              self.runner.device)
                ready = [h for h in ready if handles[h] in self._pool]
                for worker in dict.fromkeys(handles[h] for h in ready):  # each worker once, in order
                    died = False
                    while not died and worker.conn.poll():  # drain: a record may precede the worker's death
                        try:
                            kind, payload = worker.conn.recv()
                        except (EOFError, OSError):
                            died = True
                            break
                        if kind == "ready":
                            worker.pid = payload
                            start_failures = 0
                        elif kind == "record" and worker.job is not None:
                            worker.job = None
                            yield payload
                    if not died and worker.process.is_alive():
                        continue
                    worker.process.join(timeout=5)
                    reason = describe_exit(worker.process.exitcode)
                    job = worker.job
                    started = worker.pid is not None
                    self._discard(worker)
                    if not started:
                        start_failures += 1
                        if start_failures >= MAX_START_FAILURES:
                            raise RuntimeError(
                                f"qbench worker processes die before starting ({reason}, {start_failures} times "
                                "in a row); run with --workers 1 to see the error"
                            )
                        if job is not None:
                            queue.appendleft(job)
                        continue
                    if job is None:
                        continue
                    case, attempts = job
                    attempts += 1
                    if self.policy.retries(attempts):
                        queue.appendleft((case, attempts))
                    else:
                        yield self.policy.died(case, f"{reason} (worker {worker.index}, pid {worker.pid}) while "
                                                     "running this case", self.runner.device)  # fmt: skip
            finished = True
        finally:
            if not finished:  # interrupted, broken out of, or failed: no worker may outlive this
                self.close()

    def close(self, grace: float = 3.0) -> None:
        """Stop every worker now: idle ones are asked to exit, busy ones terminated, stragglers killed."""
        pool, self._pool = self._pool, []
        for w in pool:
            if w.job is None and w.process.is_alive():
                try:
                    w.conn.send(None)
                except OSError:
                    pass
            else:
                w.process.terminate()
        deadline = time.monotonic() + grace
        for w in pool:
            w.process.join(timeout=max(0.0, deadline - time.monotonic()))
        for w in pool:
            if w.process.is_alive():
                w.process.kill()
                w.process.join(timeout=5)
            w.conn.close()
