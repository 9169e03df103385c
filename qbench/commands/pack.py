"""``qbench pack RUN_DIR``: one archive of a run (store, leaderboards, matrix, environment, manifest)."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "pack"
HELP = "pack a run folder into one submission bundle (.tar.gz or .zip) with a manifest of sha256 hashes"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of a qbench run")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="bundle to write, .tar.gz or .zip (default: RUN_DIR.qbench.tar.gz beside the folder)")
    parser.add_argument("--replace", action="store_true", help="overwrite -o FILE even when it is not a bundle "
                        "qbench pack wrote (an earlier bundle is replaced without it)")  # fmt: skip
    parser.add_argument("--by", metavar="NAME", help="who contributes the results (default: $QBENCH_CONTRIBUTOR, "
                        "else your login name)")  # fmt: skip
    parser.add_argument("--machine", metavar="TEXT", help="the machine they ran on (default: $QBENCH_MACHINE, "
                        "else the host name)")  # fmt: skip


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode
    from qbench.publish.bundle import pack

    written = pack(args.run_dir, args.output, args.by, args.machine, args.replace)
    print(f"{args.run_dir} -> {written}")
    return ExitCode.OK
