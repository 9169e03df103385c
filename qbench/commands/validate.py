"""``qbench validate DIR``: check a published leaderboard (schema, arithmetic, hashes, records)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "validate"
HELP = ("check a published leaderboard (a folder or a bundle from qbench pack): schema, file hashes, every "
        "published value recomputed from the stored records")


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("directory", type=Path, metavar="DIR_OR_BUNDLE",
                        help="folder holding leaderboard.json, or a bundle written by qbench pack")
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
    from qbench.publish.bundle import is_bundle

    if is_bundle(args.directory):
        import tempfile

        from qbench.publish.bundle import extract

        with tempfile.TemporaryDirectory(prefix="qbench-bundle-") as scratch:
            bundle = extract(args.directory, Path(scratch))
            report = validate_directory(bundle.folder, store)
            report.problems[:0] = bundle.problems
            who = bundle.contributor
            report.notes.append(f"bundle by {who.get('by', 'unknown')} on {who.get('machine', 'unknown')}")
    else:
        report = validate_directory(args.directory, store)
    if not report.problems and not is_bundle(args.directory):
        from qbench.publish.site import compare_site

        difference = compare_site(Path(args.directory))
        if difference:
            report.problems.append(difference)
    for note in report.notes:
        print(f"note: {note}")
    for problem in report.problems:
        print(f"invalid: {problem}")
    if report.ok:
        checked = ", every published value recomputed from them" if report.recomputed else ""
        print(f"{args.directory}: valid ({report.aggregates} rows, {report.runs} runs, "
              f"{report.traced} traced to stored records{checked})")  # fmt: skip
        return ExitCode.OK
    untraced = "; not traced to stored records, not certified" if report.untraced else ""
    print(f"{args.directory}: {len(report.problems)} problem(s){untraced}")
    return ExitCode.CASES_FAILED
