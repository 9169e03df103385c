"""The rounds of one run: ask planning what to run next, run it, store each record, repeat.

:class:`Rounds` holds what one run knows between rounds (the matrix expanded once, the store, which
cases this run attempted, which stored records do not count); :meth:`Rounds.run` is the loop, and
the only place that writes records to the store, one transaction per finished case, so that a
killed driver, worker or case loses nothing already computed. The dry run asks the same object
what the next round would be, so it shows what ``qbench run`` would do.
"""

from __future__ import annotations

import sys
from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from qbench import record as R
from qbench.errors import ExitCode
from qbench.expanded import ExpandedMatrix
from qbench.matrix import Case
from qbench.planning import Round, extension_points, next_cases
from qbench.store import Store

#: Stored statuses that count as done; an ``error`` is re-run by the next run (it may be transient).
DONE_STATUSES = ("ok", "diverged")
FAILED_STATUSES = ("diverged", "error")

Echo = Callable[[str], None]


class Rounds:
    """The rounds of one matrix against one store.

    A stored record counts as done if this run made it, or (``resume``) if it is ``ok`` or
    ``diverged`` and not in ``redo`` (damaged or stale records, run again and replaced).
    """

    def __init__(self, expanded: ExpandedMatrix, store: Store, resume: bool = True,
                 redo: Iterable[str] = ()) -> None:  # fmt: skip
        self.expanded = expanded
        self.store = store
        self.resume = resume
        self.redo = frozenset(redo)
        self.attempted: set[str] = set()

    def _done(self, case_id: str, record: Mapping[str, Any]) -> bool:
        if case_id in self.attempted:
            return True
        return self.resume and case_id not in self.redo and record.get("status") in DONE_STATUSES

    def next(self) -> Round:
        """The next round (:func:`qbench.planning.next_cases` on the store as it is now)."""
        return next_cases(self.expanded, lambda cases: self.store.records_for([c.case_id for c in cases]), self._done)

    def reached(self, the_round: Round) -> list[Case]:
        """Every case the protocol may ask for with the decisions of ``the_round``: the grid, the
        extension points the methods reached, the seeds up to the maximum."""
        return self.expanded.candidates(extension_points(the_round.decisions))

    def run(self, first: Round, executor: Any, stamp: Mapping[str, Any], echo: Echo, exitfirst: bool = False,
            progress: bool = True) -> ExitCode:  # fmt: skip
        """Run ``first`` and every round after it until planning asks for nothing more; ``stamp``:
        provenance every record gets. OK, or INTERRUPTED (Ctrl-C, SIGTERM: what finished is stored)."""
        the_round = first
        while the_round.cases:
            if not self.expanded.protocol.trivial:
                echo(f"{the_round.phase}: {len(the_round.cases)} cases to run")
            code = self._execute(the_round.cases, executor, stamp, echo, exitfirst, progress)
            self.attempted |= {c.case_id for c in the_round.cases}
            if code is not ExitCode.OK or (exitfirst and self.any_failed(the_round.cases)):
                return code
            the_round = self.next()
        return ExitCode.OK

    def leaderboard_ids(self) -> set[str]:
        """The cases the leaderboards are built from: the grid, the extensions the protocol reached, the seeds."""
        return {c.case_id for c in self.reached(self.next())}

    def any_failed(self, cases: Iterable[Case]) -> bool:
        statuses = self.store.statuses()
        return any(statuses.get(c.case_id) in FAILED_STATUSES for c in cases)

    def _execute(self, cases: Sequence[Case], executor: Any, stamp: Mapping[str, Any], echo: Echo,
                 exitfirst: bool, progress: bool) -> ExitCode:  # fmt: skip
        from tqdm import tqdm

        from qbench.interrupts import Terminated

        stored = self.store.statuses()
        counts: Counter[str] = Counter()
        bar = tqdm(total=len(cases), unit="case", disable=not progress, file=sys.stderr, dynamic_ncols=True)
        try:
            for record in executor.run(cases):
                record.setdefault(R.PROVENANCE, {})
                record[R.PROVENANCE].update(stamp)
                if stored.get(record[R.CASE_ID]) is not None:
                    self.store.replace(record)
                else:
                    self.store.put(record)
                counts[record[R.STATUS]] += 1
                bar.update(1)
                bar.set_postfix_str(_summary(record))
                if record[R.STATUS] == "error":
                    bar.write(f"case {record['case_id']} ({record['quantizer_label']} / {record['cell_label']} / "
                              f"seed {record['seed']}) failed: {record.get('error')}")
                if exitfirst and record[R.STATUS] in FAILED_STATUSES:
                    bar.write("stopping at the first failed case (-x)")
                    break
        except KeyboardInterrupt as exc:
            bar.close()
            how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
            echo(f"{how}: {sum(counts.values())} cases finished and stored; run again to resume")
            return ExitCode.INTERRUPTED
        bar.close()
        echo("finished: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) if counts
             else "finished: nothing to run")
        return ExitCode.OK


def _summary(record: dict[str, Any]) -> str:
    from qbench.protocol import primary_metric

    metric = primary_metric(record.get("directions") or {}, record.get("metrics")) or None
    metric = metric if metric and isinstance(record.get(metric), (int, float)) else None
    value = f" {metric}={record[metric]:.3f}" if metric else ""
    return f"{record['quantizer_label']} seed {record['seed']}: {record['status']}{value}"
