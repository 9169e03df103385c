"""``qbench site RUN_OR_MERGED_DIR --out DIR``: the browsable static site of a run or a merge."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "site"
HELP = "write a browsable static site (index, a page per dataset and per configuration) of a run or a merge"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("folder", type=Path, metavar="RUN_OR_MERGED_DIR", help="a run folder or a merge's --out")
    parser.add_argument("--out", type=Path, required=True, metavar="DIR",
                        help="where to write the site (the leaderboard files are copied beside it)")  # fmt: skip


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode
    from qbench.publish.site import write_site

    written = write_site(args.folder, args.out)
    print(f"{len(written)} pages and assets -> {args.out / 'index.html'}")
    return ExitCode.OK
