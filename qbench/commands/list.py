"""``qbench list``: the components of one kind with their parameters."""

from __future__ import annotations

import argparse

NAME = "list"
HELP = "list quantizers, cells, datasets or hardware backends and their parameters"
KINDS = {"quantizers": "quantizer", "cells": "cell", "datasets": "dataset", "hardware": "hardware"}


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("kind", choices=sorted(KINDS), help="which components")


def _params(cls: type) -> str:
    parts = []
    for key, spec in cls.params.items():  # type: ignore[attr-defined]
        default = "(required)" if spec.required else repr(spec.default)
        parts.append(f"{key}={default}")
    return "\n".join(parts) or "-"


def execute(args: argparse.Namespace) -> int:
    from tabulate import tabulate

    from qbench.errors import ExitCode
    from qbench.host import get_host

    kind = KINDS[args.kind]
    registry = get_host().registry(kind)
    headers = ["name", "description", "parameters", "plugin"]
    cache = None
    if kind == "dataset":
        from qbench.datacache import cache_dir

        cache = str(cache_dir())
        headers.insert(2, "local copy")
    rows = []
    for name, entry in registry.items():
        row = [name, entry.cls.description, _params(entry.cls), entry.plugin]
        if cache is not None:
            try:
                row.insert(2, entry.cls(**{}).availability(cache))  # type: ignore[attr-defined]
            except Exception as exc:  # a dataset with required params cannot be probed without them
                row.insert(2, f"unknown ({type(exc).__name__})")
        rows.append(row)
    # wrap the prose columns so the table fits a terminal
    widths = [None, 44, 36, 40, None] if cache is not None else [None, 50, 40, None]
    print(tabulate(rows, headers=headers, tablefmt="simple_grid", maxcolwidths=widths))
    if cache is not None:
        print(f"data cache: {cache} (set QBENCH_DATA to move it)")
    return ExitCode.OK
