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
import shutil
import struct
import time
from pathlib import Path
from typing import Any

from qbench.atomicio import temp_path
from qbench.leaderboard.compute import forking
from qbench.leaderboard.compute.frame import GROUP_KEY, RunsFrame
from qbench.leaderboard.render.jsonrows import Column, columns_of, encode_rows

#: the ``runs`` table's first columns (the run's identity and role); the value columns follow
RUN_COLUMNS = ["case_id", "matrix", "status", "error", *GROUP_KEY, "quantizer", "cell", "dataset", "seed",
               "record_sha256", "point", "role", "train_steps"]  # fmt: skip
#: rows from which a child encodes the table (below, forking costs more than it saves)
FORK_ROWS = 20000
#: rows encoded at a time (the unit the two processes share out)
CHUNK = 5000


def run_columns(frame: RunsFrame) -> list[str]:
    return [*RUN_COLUMNS, *frame.value_columns]


class RunRows:
    """The rows of the ``runs`` table, comma-separated, encoded a chunk at a time (all at once,
    100,000 runs would hold every cell's text beside the frame: hundreds of MB).

    With a child, the chunks are shared out: the child takes them from the front, writing each to
    its file, and this process, once the rest of the set is written, takes them from the back (in
    memory) until the two meet, so that neither core waits for the other. A claim is two counters
    in shared memory, read and moved under an ``flock`` of the child's file (released by the
    kernel if either process dies).
    """

    def __init__(self, frame: RunsFrame, chunk: int | None = None) -> None:
        runs = frame.runs
        # the identity columns as Python values (seed an integer, train_steps a float or None), the
        # value columns as arrays (the float ones encoded together: see jsonrows.FloatBlock)
        self.columns = columns_of([Column(runs[c], python=True) if c in RUN_COLUMNS else runs[c].to_numpy()
                                   for c in run_columns(frame)])  # fmt: skip
        self.rows, self.chunk = len(runs), chunk or CHUNK
        self.chunks = -(-self.rows // self.chunk)
        self.pid: int | None = None
        self.path: Path | None = None
        self._shared: Any = None  # the claim counters (front, back) while a child shares the work

    @classmethod
    def start(cls, frame: RunsFrame, folder: Path) -> RunRows:
        """The rows of ``frame``, being encoded by a child into a temporary file in ``folder`` where
        that pays (see the module's docstring); :meth:`write_into` gives them either way."""
        rows = cls(frame)
        if rows.rows >= FORK_ROWS and forking.available():
            rows._fork(folder)
        return rows

    def _fork(self, folder: Path) -> None:
        import mmap

        path = temp_path(folder / "leaderboard.json")  # the parent's pid in its name: a killed run's is cleaned up
        self._shared = mmap.mmap(-1, 16)  # anonymous and shared: the child sees the parent's claims
        struct.pack_into("qq", self._shared, 0, 0, self.chunks)

        def child() -> None:
            with open(path, "w", encoding="utf-8") as handle:
                while (index := self._claim(handle, front=True)) is not None:
                    handle.write(self._text(index))

        self.path = path
        self.pid = forking.start(child)  # None: not forked, the rows are encoded here

    def _claim(self, handle: Any, front: bool) -> int | None:
        """The next chunk from the front (the child) or the back (this process); None when none is left."""
        import fcntl

        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            low, high = struct.unpack_from("qq", self._shared)
            if low >= high:
                return None
            struct.pack_into("q", self._shared, 0 if front else 8, low + 1 if front else high - 1)
            return low if front else high - 1
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _text(self, index: int) -> str:
        """Chunk ``index`` as text, with the comma that separates it from the previous chunk."""
        start = index * self.chunk
        return ("," if index else "") + encode_rows(self.columns, start, min(start + self.chunk, self.rows))

    def write_into(self, handle: Any) -> None:
        """Write the rows to the text file ``handle`` (the child's file and the chunks taken from
        the back, or everything encoded here)."""
        if self.pid is not None and self.path is not None:
            mine: list[tuple[int, str]] = []
            started = time.monotonic()
            with open(self.path, "rb") as lock:
                while (index := self._claim(lock, front=False)) is not None:
                    mine.append((index, self._text(index)))
            # the child has at most the chunk it took last to finish: far longer means it is stuck
            each = (time.monotonic() - started) / max(len(mine), 1)
            pid, self.pid = self.pid, None
            if forking.finished(pid, max(30.0, 10 * each)):
                handle.flush()
                with open(self.path, "rb") as encoded:
                    shutil.copyfileobj(encoded, handle.buffer, 1 << 20)
                for _, text in sorted(mine):
                    handle.write(text)
                return
        for index in range(self.chunks):
            handle.write(self._text(index))

    def close(self) -> None:
        """Stop a child still encoding (the rebuild failed or was interrupted) and remove its file."""
        if self.pid is not None:
            pid, self.pid = self.pid, None
            forking.stop(pid)
        if self.path is not None:
            with contextlib.suppress(OSError):
                self.path.unlink()
            self.path = None
        if self._shared is not None:
            self._shared.close()
            self._shared = None

    def __enter__(self) -> RunRows:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
