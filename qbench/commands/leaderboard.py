"""``qbench leaderboard``: rebuild the leaderboards from a store."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "leaderboard"
HELP = "rebuild leaderboards (md, csv, json, html, plots) from a results store"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--store", type=Path, metavar="PATH", help="qbench.sqlite or a run directory (default: --out)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="where to write (default: the store's directory)")
    parser.add_argument("--matrix", metavar="NAME", help="only records of this matrix")
    parser.add_argument("--replace", action="store_true", help="write into --out even where it holds files qbench "
                        "leaderboard did not write (another store's folder, a merge or a site, leaderboard files "
                        "of another program): those of the same name are overwritten")  # fmt: skip


def execute(args: argparse.Namespace) -> int:
    from qbench.errors import ExitCode, UsageError
    from qbench.store import STORE_FILENAME, Store

    if args.store is None and args.out is None:
        raise UsageError("give --store PATH (a qbench.sqlite or a run directory) or --out DIR")
    store_path = args.store if args.store is not None else args.out
    if store_path.is_dir():
        store_path = store_path / STORE_FILENAME
    out = args.out or store_path.parent
    with Store.read_only(store_path) as store:
        count = store.count(args.matrix)
        matrices = store.matrices()
    if not count:
        which = f" of matrix {args.matrix!r}" if args.matrix else ""
        raise UsageError(f"{store_path}: the store holds no records{which}")
    from qbench.leaderboard import rebuild_from_store
    from qbench.outdir import claim_run_files, prepare_out_dir

    claim_run_files(out, "leaderboard", args.replace, store_folder=store_path.parent)
    prepare_out_dir(out)

    title = args.matrix or (matrices[0] if len(matrices) == 1 else "qbench")
    written = rebuild_from_store(store_path, out, title, matrix=args.matrix)
    print(f"{count} records -> " + ", ".join(str(p) for p in written if p.parent == out))
    return ExitCode.OK
