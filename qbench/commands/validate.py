"""``qbench validate DIR``: check a published leaderboard (schema, arithmetic, hashes, records)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "validate"
HELP = "check a published leaderboard: schema, file hashes, statistics, every row traceable to a record"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR", help="folder holding leaderboard.json")
    parser.add_argument(
        "--store",
        type=Path,
        metavar="PATH",
        help="the qbench.sqlite the leaderboard was built from (default: DIR/qbench.sqlite)",
    )


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode, UsageError
    from qbench.leaderboard.validate import validate_directory

    store = getattr(args, "store", None)
    if store is not None and not Path(store).is_file():
        raise UsageError(f"--store {store}: no such file")
    report = validate_directory(args.directory, store)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"invalid: {problem}")
    if report.ok:
        checked = ", every published value recomputed from them" if report.recomputed else ""
        print(f"{args.directory}: valid ({report.aggregates} rows, {report.runs} runs, "
              f"{report.traced} traced to stored records{checked})")  # fmt: skip
        return ExitCode.OK
    print(f"{args.directory}: {len(report.problems)} problem(s)")
    return ExitCode.CASES_FAILED
