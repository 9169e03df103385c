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


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode
    from qbench.publish.merge import merge

    merged = merge(args.inputs, args.out, args.title, args.plots, args.replace)
    contributors = sorted({(s.by, s.machine) for s in merged.sources})
    print(f"{len(args.inputs)} inputs from {len(contributors)} contributor(s): {len(merged.kept)} records merged, "
          f"{len(merged.excluded)} listed apart -> {args.out}")  # fmt: skip
    print(CHECKED)
    for entry in merged.excluded[:20]:
        print(f"  apart: {entry['case_id']} ({entry['by']} on {entry['machine']}): {entry['reason']}")
    if len(merged.excluded) > 20:
        print(f"  ... {len(merged.excluded) - 20} more in {args.out / 'merge.json'}")
    return ExitCode.OK
