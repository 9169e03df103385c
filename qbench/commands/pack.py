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
    note = _matrix_note(args.run_dir)
    if note:
        print(f"note: {note}")
    return ExitCode.OK


def _matrix_note(run_dir: Path) -> str:
    """Why the bundle holds no matrix.toml, when it holds none (the records are complete either way)."""
    import json

    from qbench.publish.bundle import find_matrix

    try:
        run_info = json.loads((Path(run_dir) / "run.json").read_text())
    except (OSError, ValueError):
        return ""
    if not isinstance(run_info, dict) or find_matrix(Path(run_dir), run_info) is not None:
        return ""
    return (f"matrix.toml not packed: no file at run.json's matrix_path ({run_info.get('matrix_path')}) has its "
            "matrix_hash (the matrix changed since the run, or lies elsewhere: pack from the folder the run was "
            "started in); the bundle's records are complete, but it cannot be re-run from a matrix of its own")
