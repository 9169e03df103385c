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
    print(f"{args.directory}: {len(report.problems)} problem(s)")
    return ExitCode.CASES_FAILED


def _rerun_asked(args: argparse.Namespace) -> bool:
    return getattr(args, "rerun", None) is not None or bool(getattr(args, "rerun_case", []))


def _audit(args: argparse.Namespace, store_path: Path, folder: Path) -> list[str]:
    """Re-run the chosen cases; each verdict printed, and a problem for each that is not identical or
    within tolerance."""
    import json

    from qbench.errors import UsageError
    from qbench.host import get_host
    from qbench.rerun import DEFAULT_TOLERANCE, choose, rerun
    from qbench.store import Store

    if not Path(store_path).is_file():
        raise UsageError(f"{store_path}: no store to re-run cases from; --rerun needs the run's qbench.sqlite")
    with Store.read_only(store_path) as store:
        records = {r["case_id"]: r for r in store.records(skip_damaged=True)}
    try:  # only the cases the leaderboard was built from, when run.json names them
        published = set(json.loads((folder / "run.json").read_text())["case_ids"])
        records = {cid: r for cid, r in records.items() if cid in published or cid in args.rerun_case}
    except (OSError, ValueError, KeyError, TypeError):
        pass
    count = None if args.rerun == "all" else (args.rerun or 0)
    chosen = choose(records, count, args.rerun_case, args.rerun_seed)
    if not chosen:
        return ["--rerun: the store has no ok case to re-run"]
    tolerance = DEFAULT_TOLERANCE if args.rerun_tolerance is None else args.rerun_tolerance
    verdicts = rerun(records, chosen, get_host(), args.workers, tolerance)
    for verdict in verdicts:
        print(f"rerun: {verdict.line()}")
    good = sum(v.ok for v in verdicts)
    print(f"rerun: {good} of {len(verdicts)} re-run case(s) reproduce their stored records")
    return [f"re-run of {v.case_id} ({v.label}): {v.outcome}: {v.detail}" for v in verdicts if not v.ok]
