"""``qbench site RUN_OR_MERGED_DIR --out DIR``: the browsable static site of a run or a merge."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "site"
HELP = "write a browsable static site (index, a page per dataset and per configuration) of a run or a merge"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, metavar="RUN_OR_MERGED_DIR", help="a run folder or a merge's --out")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where to write the site (the leaderboard files are copied beside it): a new or "
                        "empty folder, an earlier site's (the files it wrote, listed in its qbench-files.json, "
                        "are replaced while unchanged), or RUN_OR_MERGED_DIR itself")  # fmt: skip
    parser.add_argument("--replace", action="store_true",
                        help="write into --out even where it holds files qbench site did not write: those of the "
                        "same name (a store, leaderboards) are overwritten, the others left alone")  # fmt: skip


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode
    from qbench.publish.site import publish_site

    written = publish_site(args.folder, args.out, args.replace)
    print(f"{len(written)} pages and assets -> {args.out / 'index.html'}")
    return ExitCode.OK
