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
    audit = parser.add_argument_group(
        "audit by re-execution",
        "run stored cases again from the recipe in their records and compare the new records with the "
        "stored ones: identical bit for bit where both were made in the portable numerics mode, otherwise "
        "every metric within --rerun-tolerance",
    )
    audit.add_argument("--rerun", type=_count, metavar="K", default=None,
                       help="re-run K stored ok cases drawn with --rerun-seed ('all': every ok case)")
    audit.add_argument("--rerun-case", action="append", default=[], metavar="CASE_ID",
                       help="re-run this case (repeatable; with or without --rerun)")
    audit.add_argument("--rerun-seed", type=int, default=0, metavar="N",
                       help="seed of the draw of --rerun K (default 0: the same cases every time)")
    audit.add_argument("--rerun-tolerance", type=_fraction, default=None, metavar="REL",
                       help="relative tolerance on metrics for records not both made in the portable mode "
                       "(default 0.05)")
    audit.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes for the re-runs")


def _count(text: str) -> int | str:
    if text == "all":
        return text
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of cases: {text!r} (a positive integer or 'all')") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r} (e.g. 0.05 for 5%)") from None
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"must be a fraction in [0, 1), e.g. 0.05, got {text!r}")
    return value


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode, UsageError
    from qbench.leaderboard.audit.validate import validate_directory

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
            if _rerun_asked(args):
                report.problems += _audit(args, bundle.folder / "qbench.sqlite", bundle.folder)
    else:
        report = validate_directory(args.directory, store)
        if _rerun_asked(args):
            report.problems += _audit(args, store or Path(args.directory) / "qbench.sqlite", Path(args.directory))
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


def _rerun_asked(args: argparse.Namespace) -> bool:
    return getattr(args, "rerun", None) is not None or bool(getattr(args, "rerun_case", []))


def _audit(args: argparse.Namespace, store_path: Path, folder: Path) -> list[str]:
    from qbench.host import get_host
    from qbench.rerun import audit_folder

    count = None if args.rerun == "all" else (args.rerun or 0)
    return audit_folder(store_path, folder, count, args.rerun_case, args.rerun_seed, args.rerun_tolerance,
                        args.workers, get_host())
