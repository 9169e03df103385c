"""``qbench compare A B``: two runs or stores side by side; exit 1 when a metric regresses.

Meant for plugin authors' CI: keep a reference run (A), rerun the matrix with the change (B),
and fail the job when B is worse than A by more than ``--threshold`` on the compared metrics
(see :mod:`qbench.leaderboard.audit.compare` for the exact rule).
"""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "compare"
HELP = "compare two runs or stores side by side; exit 1 when a metric regresses past a threshold"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("a", type=Path, metavar="A", help="reference: a run directory, a qbench.sqlite or a "
                        "leaderboard.json")  # fmt: skip
    parser.add_argument("b", type=Path, metavar="B", help="candidate, same forms as A")
    parser.add_argument(
        "--metric",
        action="append",
        metavar="COLUMN",
        help="metric column to compare (repeatable; default: each dataset's primary metric)",
    )
    parser.add_argument("--threshold", default="1%", metavar="T",
                        help="how much worse B may be: absolute in the metric's unit (0.05) or relative to "
                        "A's mean (2%%); default 1%%")  # fmt: skip
    parser.add_argument("--gaps", action="store_true",
                        help="also show how each method's gap to the baseline changes from A to B, paired by "
                        "seed, with its test and verdict (two arms of a study)")  # fmt: skip
    parser.add_argument("--match", choices=("labels", "quantizer"), default="labels",
                        help="with --gaps: pair rows with the same dataset, cell and quantizer labels (default) or "
                        "every row with the same quantizer label (arms that differ in the dataset or the "
                        "cell)")  # fmt: skip


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode, UsageError
    from qbench.leaderboard.audit.compare import (
        Threshold,
        compare_records,
        gap_changes,
        render_comparison,
        render_gap_changes,
    )
    from qbench.leaderboard.audit.sources import load_source

    threshold = Threshold.parse(args.threshold)
    records_a, _, protocol_a = load_source(args.a)
    records_b, _, protocol_b = load_source(args.b)
    for path, records in ((args.a, records_a), (args.b, records_b)):
        if not records:
            raise UsageError(f"{path}: holds no records to compare")
    comparison = compare_records(records_a, records_b, args.metric, threshold, (protocol_a, protocol_b))
    print(render_comparison(comparison, str(args.a), str(args.b), threshold))
    if args.gaps:
        table = gap_changes(records_a, records_b, args.match, (protocol_a, protocol_b))
        print()
        print(render_gap_changes(table, str(args.a), str(args.b)))
    for note in _numerics_notes(records_a, records_b):
        print(f"note: {note}")
    return ExitCode.CASES_FAILED if len(comparison.regressions) else ExitCode.OK


def _numerics_notes(records_a: list[dict], records_b: list[dict]) -> list[str]:
    """Configurations of A and B whose records were computed by different kernels (qbench.numerics)."""
    from qbench import record as R
    from qbench.numerics import mixed_numerics

    groups: dict[str, list] = {}
    for origin, records in (("A", records_a), ("B", records_b)):
        for record in records:
            if record.get(R.STATUS) != "ok":
                continue
            label = f"{record.get(R.QUANTIZER_LABEL)} / {record.get(R.CELL_LABEL)} / {record.get(R.DATASET_LABEL)}"
            groups.setdefault(label, []).append((origin, record.get(R.PROVENANCE)))
    return mixed_numerics(groups)
