"""The ``runs`` table of ``leaderboard.json`` encoded beside the rest of the rebuild.

The table has a row per record and is most of a large rebuild's output; nothing else depends on
it, so on Linux, for a large table, a forked child encodes it into a temporary file while this
process draws the plots and renders the pages, and :meth:`RunRows.write_into` copies the file
into ``leaderboard.json``: on two cores the two halves of the work overlap. Everything pandas does
(the columns taken out of the frame) happens before the fork; the child only formats numbers and
strings (numpy and the standard library, no import, no lock another thread could hold, no
output) and leaves with ``os._exit``. Where there is no ``fork`` (or not on Linux, where forking a
process that holds other libraries' threads is less predictable), for a small table, or when the
child fails, the rows are encoded here instead, to the same bytes (an error such as an infinite
value then raises here, as it always did).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import warnings
from pathlib import Path
from typing import Any

from qbench.atomicio import temp_path
from qbench.leaderboard.compute.frame import GROUP_KEY, RunsFrame
from qbench.leaderboard.render.jsonrows import Column, encode_rows

#: the ``runs`` table's first columns (the run's identity and role); the value columns follow
RUN_COLUMNS = ["case_id", "matrix", "status", "error", *GROUP_KEY, "quantizer", "cell", "dataset", "seed",
               "record_sha256", "point", "role", "train_steps"]  # fmt: skip
#: rows from which a child encodes the table (below, forking costs more than it saves)
FORK_ROWS = 20000


def run_columns(frame: RunsFrame) -> list[str]:
    return [*RUN_COLUMNS, *frame.value_columns]


class RunRows:
    """The rows of the ``runs`` table, comma-separated, encoded a chunk at a time (all at once,
    100,000 runs would hold every cell's text beside the frame: hundreds of MB)."""

    def __init__(self, frame: RunsFrame, chunk: int = 10000) -> None:
        runs = frame.runs
        # the identity columns as Python values (seed an integer, train_steps a float or None)
        self.columns = [Column(runs[c], python=True) if c in RUN_COLUMNS else Column(runs[c].to_numpy())
                        for c in run_columns(frame)]  # fmt: skip
        self.rows, self.chunk = len(runs), chunk
        self.pid: int | None = None
        self.path: Path | None = None

    @classmethod
    def start(cls, frame: RunsFrame, folder: Path) -> RunRows:
        """The rows of ``frame``, being encoded by a child into a temporary file in ``folder`` where
        that pays (see the module's docstring); :meth:`write_into` gives them either way."""
        rows = cls(frame)
        if rows.rows >= FORK_ROWS and sys.platform.startswith("linux") and hasattr(os, "fork"):
            rows._fork(folder)
        return rows

    def _fork(self, folder: Path) -> None:
        path = temp_path(folder / "leaderboard.json")  # the parent's pid in its name: a killed run's is cleaned up
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()  # nothing buffered is written twice
        with warnings.catch_warnings():
            # Python 3.12+ warns about forking a process with threads (BLAS, torch); the child
            # takes none of their locks (see the module's docstring)
            warnings.simplefilter("ignore", DeprecationWarning)
            pid = os.fork()
        if pid == 0:  # pragma: no cover - the child (its output is compared by the tests)
            code = 1
            try:
                with open(path, "w", encoding="utf-8") as handle:
                    self._encode(handle)
                code = 0
            except BaseException:  # noqa: BLE001 - the parent encodes again and raises the error itself
                pass
            finally:
                os._exit(code)
        self.pid, self.path = pid, path

    def _encode(self, handle: Any) -> None:
        for start in range(0, self.rows, self.chunk):
            if start:
                handle.write(",")
            handle.write(encode_rows(self.columns, start, min(start + self.chunk, self.rows)))

    def write_into(self, handle: Any) -> None:
        """Write the rows to the text file ``handle`` (the child's file copied, or encoded here)."""
        if self.pid is not None:
            pid, self.pid = self.pid, None
            _, status = os.waitpid(pid, 0)
            if os.waitstatus_to_exitcode(status) == 0 and self.path is not None:
                handle.flush()
                with open(self.path, "rb") as encoded:
                    shutil.copyfileobj(encoded, handle.buffer, 1 << 20)
                return
        self._encode(handle)

    def close(self) -> None:
        """Stop a child still encoding (the rebuild failed or was interrupted) and remove its file."""
        if self.pid is not None:
            pid, self.pid = self.pid, None
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
            with contextlib.suppress(OSError):
                os.waitpid(pid, 0)
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None

    def __enter__(self) -> RunRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
