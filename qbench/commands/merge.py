"""``qbench merge BUNDLE_OR_DIR... --out SITE``: one leaderboard and site over several contributors' runs."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "merge"
HELP = ("merge bundles or run folders into one leaderboard and site: each input checked for what the merge "
        "uses, origins kept, only comparable records together")  # fmt: skip
#: What the merge checks of each input, said in the help and in the output.
CHECKED = ("inputs checked: integrity (manifest and file hashes), records (readable, known schema version), "
           "published values (run values, aggregates, paired differences); run qbench validate for the full check "
           "of an input's files")  # fmt: skip


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", type=Path, nargs="+", metavar="BUNDLE_OR_DIR",
                        help="bundles from qbench pack, or run folders; each is checked for what the merge uses "
                        "(manifest and file hashes, records readable and of a known schema version, run values, "
                        "aggregates and paired differences recomputed from them), not re-rendered: the merge "
                        "rebuilds every table from the records; run qbench validate for the full check of an "
                        "input's files")  # fmt: skip
    parser.add_argument("--out", type=Path, required=True, metavar="SITE", help="folder to write: new, empty, or "
                        "an earlier merge's (the files it wrote, listed in its qbench-files.json, are replaced while "
                        "unchanged; a folder holding anything else is refused)")  # fmt: skip
    parser.add_argument("--replace", action="store_true", help="write into --out even where it holds files qbench "
                        "merge did not write: those of the same name (a store, leaderboards) are overwritten, the "
                        "others left alone")  # fmt: skip
    parser.add_argument("--title", default="qbench merged leaderboard", help="title of the leaderboard and site")
    parser.add_argument("--no-plots", dest="plots", action="store_false", help="skip the pictures")
    parser.add_argument("--rerun", type=int, default=0, metavar="K",
                        help="require each input to reproduce: re-run K of its stored ok cases (drawn with "
                        "--rerun-seed) from their records and refuse the merge if one does not reproduce "
                        "(identical where both records are portable, else within --rerun-tolerance; see qbench "
                        "validate --rerun)")  # fmt: skip
    parser.add_argument("--rerun-seed", type=int, default=0, metavar="N", help="seed of the draw (default 0)")
    parser.add_argument("--rerun-tolerance", type=float, default=None, metavar="REL",
                        help="relative tolerance for records not both portable (default 0.05)")
    parser.add_argument("--workers", type=int, default=1, metavar="N", help="worker processes for the re-runs")


def _require_reproduction(args: argparse.Namespace) -> list[str]:
    """Re-run ``--rerun`` cases of every input (bundles extracted to a scratch folder)."""
    import tempfile

    from qbench.host import get_host
    from qbench.publish.bundle import extract, is_bundle
    from qbench.rerun import audit_folder

    problems, host = [], get_host()
    for path in args.inputs:
        print(f"{path}: re-running {args.rerun} case(s)")
        with tempfile.TemporaryDirectory(prefix="qbench-rerun-") as scratch:
            folder = extract(path, Path(scratch)).folder if is_bundle(path) else Path(path)
            found = audit_folder(folder / "qbench.sqlite", folder, args.rerun, [], args.rerun_seed,
                                 args.rerun_tolerance, args.workers, host)  # fmt: skip
        problems += [f"{path}: {problem}" for problem in found]
    return problems


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode
    from qbench.publish.merge import merge, numerics_notes

    if args.rerun < 0:
        from qbench.errors import UsageError

        raise UsageError(f"--rerun {args.rerun}: give a number of cases, at least 0")
    if args.rerun:
        from qbench.outdir import claim_output

        claim_output(args.out, "merge", args.replace)  # a --out merge may not write is refused before any re-run
        problems = _require_reproduction(args)
        if problems:
            for problem in problems:
                print(f"not reproduced: {problem}")
            print(f"merge refused: {len(problems)} re-run case(s) did not reproduce their stored records; nothing "
                  "was written")  # fmt: skip
            return ExitCode.CASES_FAILED
    merged = merge(args.inputs, args.out, args.title, args.plots, args.replace)
    contributors = sorted({(s.by, s.machine) for s in merged.sources})
    print(f"{len(args.inputs)} inputs from {len(contributors)} contributor(s): {len(merged.kept)} records merged, "
          f"{len(merged.excluded)} listed apart -> {args.out}")  # fmt: skip
    print(CHECKED)
    for entry in merged.excluded[:20]:
        print(f"  apart: {entry['case_id']} ({entry['by']} on {entry['machine']}): {entry['reason']}")
    if len(merged.excluded) > 20:
        print(f"  ... {len(merged.excluded) - 20} more in {args.out / 'merge.json'}")
    for note in numerics_notes(merged):
        print(f"note: {note}; their last bits, and after training differences of a few per cent, can come "
              "from the kernels, not the method (qbench run --numerics portable makes them comparable)")
    return ExitCode.OK
