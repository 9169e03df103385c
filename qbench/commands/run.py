"""``qbench run``: expand a matrix, train and evaluate every case, write leaderboards."""

from __future__ import annotations

import argparse
from pathlib import Path

NAME = "run"
HELP = "run a benchmark matrix (resumes: stored cases are skipped)"


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--matrix", required=True, metavar="FILE",
                        help="matrix file (TOML), e.g. matrices/quickstart.toml")
    parser.add_argument("--out", type=Path, metavar="DIR", help="output directory (default results/<matrix name>/)")
    parser.add_argument("--workers", type=int, default=None, metavar="N",
                        help="parallel workers (default: one per core, at most one per case)")
    parser.add_argument("--executor", choices=("local", "dask"), default="local", help="where cases run")
    parser.add_argument("--scheduler", metavar="ADDR", help="address of an existing Dask scheduler")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu", help="torch device for training")
    parser.add_argument("--dry-run", action="store_true", help="print the case table and exit")
    parser.add_argument("--no-resume", action="store_true", help="re-run cases already in the store")
    parser.add_argument("-x", "--exitfirst", action="store_true", help="stop at the first failed case")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--case-timeout", type=_seconds, metavar="SECONDS", default=None,
                        help="stop a case after this long and store it as an error (timeout); "
                        "default: the matrix's [limits] case_timeout, else no limit")  # fmt: skip
    parser.add_argument("--replace", action="store_true",
                        help="write into --out even where it holds files qbench run did not write (a merge's or a "
                        "site's folder, leaderboard files of another program): those of the same name are "
                        "overwritten")  # fmt: skip
    parser.add_argument("--numerics", choices=("native", "portable"), default=None,
                        help="native: the fastest kernels of this CPU (records reproduce on this kind of CPU); "
                        "portable: AVX2 kernels pinned in every worker (records reproduce bit for bit on any "
                        "x86-64 CPU with AVX2); default: the matrix's [numerics] mode, else native")  # fmt: skip
    parser.add_argument("--lock-wait", type=_seconds, metavar="SECONDS", default=600.0,
                        help="how long to wait for another qbench run on the same --out (default 600)")


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"must be a finite, non-negative number of seconds, got {text!r}")
    return value


def execute(args: argparse.Namespace) -> int:
    from qbench.driver import RunOptions, run_matrix

    # the driver checks the executor, workers, scheduler and device once, with the matrix's limits
    options = RunOptions(
        out=args.out, workers=args.workers, executor=args.executor, scheduler=args.scheduler, device=args.device,
        dry_run=args.dry_run, resume=not args.no_resume, exitfirst=args.exitfirst, progress=not args.no_progress,
        case_timeout=args.case_timeout, lock_wait=args.lock_wait, numerics=args.numerics, replace=args.replace,
    )
    return run_matrix(args.matrix, options)
